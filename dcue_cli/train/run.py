"""`run_train`: read the inputs, build a Trainer, train, report. What `dcue train` calls."""

from dataclasses import dataclass

from dcue_cli import log
from dcue_cli.train.config import TrainConfig, TrainingInterrupted, refuse_to_discard


@dataclass
class TrainReport:
    output: str
    log_file: str
    master: bool
    interrupted: bool = False
    best_auc: float = float("nan")
    best_epoch: int = 0
    epochs_run: int = 0
    stopped_early: bool = False


def run_train(mels, plays, splits, output, cfg: TrainConfig, model_overrides: dict, *, device="auto",
              target=None, resume=False, fresh=False, explicit=(), columns=(0, 1, 2), header=None,
              skip_bad=False, artists=None) -> TrainReport:
    """Train on MELS and PLAYS (split by SPLITS) into OUTPUT; Ctrl-C saves and reports `interrupted`.

    Without `resume`, an unfinished run's MODEL.last.pt is refused unless `fresh` (nothing is lost).
    `artists` (an artist map's path): the item tower adds an artist embedding to what it hears.
    """
    from dcue_cli.io.artists import read_artist_map
    from dcue_cli.io.embeddings import read_embeddings
    from dcue_cli.io.plays import read_plays
    from dcue_cli.io.splits import read_splits
    from dcue_cli.train.loop import Trainer

    refuse_to_discard(output, resume, fresh)
    target_emb = read_embeddings(target, need_users=True) if target else None
    if target_emb is not None:
        fit_on = str(target_emb.attrs.get("fit_on", ""))
        if fit_on and fit_on != "train":
            log.warning("%s was fitted on %s interactions: its factors have seen the songs that are scored "
                        "(use `dcue wmf --fit-on train` for an honest WMF+Regression)", target, fit_on)
    split_map = read_splits(splits)
    artist_map = read_artist_map(artists) if artists else None
    data = read_plays(plays, columns=columns, header=header, skip_bad=skip_bad)
    trainer = Trainer(mels, data, split_map, output, cfg, model_overrides, device=device, target=target_emb,
                      resume=resume, explicit=explicit, artists=artist_map,
                      input_names={"mels": mels, "plays": plays, "splits": splits, "target": target,
                                   "artists": artists})
    report = TrainReport(str(output), str(trainer.log_file), trainer.master)
    try:
        result = trainer.run()
    except TrainingInterrupted as stop:
        if trainer.master:
            log.warning("interrupted at epoch %d, step %d: saved %s; continue with the same command and --resume",
                        stop.epoch + 1, stop.step, stop.path)
        report.interrupted = True
        return report
    finally:
        trainer.close()
    report.best_auc, report.best_epoch = result.best_auc, result.best_epoch
    report.epochs_run, report.stopped_early = result.epochs_run, result.stopped_early
    return report
