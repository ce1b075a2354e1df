"""How to train: the settings (`TrainConfig`), the files beside `-o`, and what a resume may change.

Files beside `-o model.pt`:
    model.pt          the best checkpoint by validation AUC (what `embed` reads)
    model.last.pt     the latest state, written every epoch and on Ctrl-C (what `--resume` reads)
    model.log.tsv     one row per epoch (and every --log-every steps): step, loss, valid AUC, crops/s
    model.curves.png  the loss and validation-AUC curves, redrawn after every epoch
"""

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from dcue_cli import log
from dcue_cli.errors import DcueError

OBJECTIVES = ("hinge", "softmax", "regress")
# what may change when a run is resumed; everything else comes from its checkpoint
RESUMABLE = ("epochs", "patience", "cache", "workers", "log_every", "compile", "amp", "cpu_amp", "curves",
             "artists")


@dataclass
class TrainConfig:
    """Everything about how to train (the model's sizes live in `model.ModelConfig`)."""

    objective: str = "hinge"
    margin: float = 0.2
    negatives: int = 20
    negative_sampling: str = "uniform"
    listeners_per_song: int = 0  # 0: auto (__post_init__); >1: song-grouped batches, that many pairs share each song's crop
    shared_negatives: bool = True  # one pool per batch (measured: as good as per-user with in-batch, 20x cheaper)
    in_batch_negatives: bool = True  # the batch's other positives are negatives too (softmax: always)
    temperature: float = 0.1
    weighting: str = "binary"
    batch_size: int = 0  # 0: auto (__post_init__): 2048 pairs, 128 crops for regress
    optimizer: str = "adamw"
    lr: float = 0.002
    momentum: float = 0.9
    lr_decay: float = 1e-6  # Keras-style: lr / (1 + decay * step), as the authors
    schedule: str = "cosine"  # warm-up, then cosine decay to 0 (train/schedule.py); "keras": the authors'
    warmup_steps: int = 100
    plateau_factor: float = 1.0  # lr x this after plateau_patience epochs without a better valid AUC (1: never)
    plateau_patience: int = 2
    weight_decay: float = 1e-4
    epochs: int = 12
    steps_per_epoch: int = 100  # 0: one pass over the training plays
    patience: int = 5
    seed: int = 0
    compile: bool = False
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on a CPU unless cpu_amp)
    cpu_amp: bool = False  # bfloat16 autocast on the CPU too: the GPU's code path, for tests
    cache: str = "auto"
    workers: int = 0  # DataLoader workers for --cache none
    log_every: int = 0
    valid_crop_batch: int = 1024
    centre_init: bool = True  # centre the initial item/user vectors on data (model.centre_outputs_)
    curves: bool = True  # draw model.curves.png from the log after every epoch (needs matplotlib)
    artists: str = ""  # the artist map the item tower's artist embedding was trained with ("": none)
    artist_dropout: float = 0.5  # with artists: the chance a training crop's artist is replaced by the unknown one

    def __post_init__(self):
        if self.batch_size == 0:  # auto: a regression step is batch_size crops, a ranking step 84 crops
            self.batch_size = 128 if self.objective == "regress" else 2048
        if self.listeners_per_song == 0:  # auto: 64 songs a step at most, each heard by up to 32 listeners
            self.listeners_per_song = min(32, max(1, self.batch_size // 64)) if self.shared_negatives else 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        # a checkpoint from before these settings existed trained with what they name
        d = {**BEFORE_SCHEDULES, **d} if "schedule" not in d else d
        return cls(**{k: v for k, v in d.items() if k in known})


# what a checkpoint written before --schedule and --cpu-bf16 existed was trained with
BEFORE_SCHEDULES = {"schedule": "keras", "warmup_steps": 0, "cpu_amp": False}


class TrainingInterrupted(Exception):
    """Ctrl-C: the state was saved to `path`; continue with --resume."""

    def __init__(self, path, epoch, step):
        super().__init__(f"interrupted at epoch {epoch + 1}, step {step}")
        self.path, self.epoch, self.step = path, epoch, step


def sibling(output, suffix: str) -> Path:
    """model.pt -> model<suffix> (model.last.pt, model.log.tsv)."""
    output = Path(output)
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    return output.with_name(stem + suffix)


def last_path(output) -> Path:
    return sibling(output, ".last.pt")


def curves_path(output) -> Path:
    return sibling(output, ".curves.png")


def log_path(output) -> Path:
    return sibling(output, ".log.tsv")


def is_finished(ckpt) -> bool:
    """Whether a MODEL.last.pt is a run that ended (all its epochs, or stopped early), not one cut short."""
    pos, best, saved = ckpt.get("position", {}), ckpt.get("best", {}), ckpt.get("train_config", {})
    if int(pos.get("step_in_epoch", 0)) > 0:
        return False
    epochs, patience = int(saved.get("epochs", 0)), int(saved.get("patience", 0))
    stopped = patience > 0 and best.get("auc") is not None and int(best.get("bad_epochs", 0)) >= patience
    return int(pos.get("epoch", 0)) >= epochs or stopped


def refuse_to_discard(output, resume: bool, fresh: bool) -> None:
    """Starting afresh would replace MODEL.last.pt: refused while it holds an unfinished run, unless --fresh.

    A finished run's MODEL.last.pt is replaced as before (its best model is MODEL.pt); a file
    that is no dcue checkpoint cannot be resumed, so it is no run to lose either.
    """
    from dcue_cli.io.checkpoints import load_checkpoint

    last = last_path(output)
    if resume or fresh or not last.exists():
        return
    try:
        ckpt = load_checkpoint(last)
    except DcueError:
        return
    if not is_finished(ckpt):
        pos = ckpt["position"]
        raise DcueError(f"{last} holds an unfinished run (stopped at epoch {int(pos['epoch']) + 1}, step "
                        f"{int(pos['step_in_epoch'])}): continue it with --resume, or give --fresh to start "
                        "afresh and replace it (or choose another -o).")


def resumed_config(ckpt, cfg: TrainConfig, model_overrides: dict, explicit: set, master: bool = True) -> TrainConfig:
    """The saved settings, with the resumable ones given now; name the others that differ."""
    saved, saved_model = dict(ckpt["train_config"]), ckpt["model_config"]
    now = cfg.to_dict()
    ignored = []
    for key in sorted(explicit):
        if key in RESUMABLE and key in now:
            saved[key] = now[key]
        elif key in now and key in saved and now[key] != saved[key]:
            ignored.append(f"--{key.replace('_', '-')} {now[key]} (the run has {saved[key]})")
        elif key in model_overrides and key in saved_model:
            value = model_overrides[key]
            value = list(value) if isinstance(value, tuple) else value
            if value != saved_model[key]:
                ignored.append(f"--{key.replace('_', '-')} {model_overrides[key]} (the run has {saved_model[key]})")
    if ignored and master:
        log.warning("--resume continues with the saved settings: ignoring %s", "; ".join(ignored))
    return TrainConfig.from_dict(saved)


def check_outputs(output, names: dict) -> None:
    """Every file beside -o can be written, and none of them is one of the inputs."""
    from dcue_cli.io.atomic import (
        check_output_path,
        refuse_inputs_as_outputs,
        refuse_replacing_binary,
    )

    files = (Path(output), last_path(output), log_path(output), curves_path(output))
    for path, what in zip(files, ("model", "latest state", "log", "curves")):
        check_output_path(path, f"{what} (-o names it)")
    refuse_inputs_as_outputs({"-o": list(files)},
                             {"MELS": names.get("mels"), "PLAYS": names.get("plays"),
                              "--splits": names.get("splits"), "--target": names.get("target"),
                              "--artists": names.get("artists")})
    refuse_replacing_binary(log_path(output))


def resume_point(last, resume: bool, cfg: TrainConfig, model_overrides, explicit, master: bool):
    """(the checkpoint to resume or None, the settings to train with)."""
    from dcue_cli.io.checkpoints import load_checkpoint

    last = Path(last)
    if resume:
        if not last.exists():
            raise DcueError(f"--resume: {last} does not exist, so there is nothing to resume: "
                            "run without --resume to start afresh.")
        ckpt = load_checkpoint(last)
        return ckpt, resumed_config(ckpt, cfg, model_overrides or {}, set(explicit), master)
    if master and last.exists():
        log.warning("%s exists: starting afresh and replacing it (continue it with --resume instead)", last)
    return None, cfg


def can_draw_curves(curves_file) -> bool:
    """Whether matplotlib is there to draw model.curves.png (a warning when it is not)."""
    from dcue_cli.runtime import have_matplotlib

    if have_matplotlib():
        return True
    log.warning("matplotlib is absent: no training curves in %s (pip install 'dcue[plot]', "
                "or --no-curves to silence this)", curves_file)
    return False


def take_lock(output):
    """The lock that stops a second `dcue train` on the same -o (released by the Trainer's close)."""
    from dcue_cli.io.atomic import make_folder
    from dcue_cli.io.lock import OutputLock

    output = Path(output)
    make_folder(output.parent)
    lock = sibling(output, ".lock")
    return OutputLock(lock, f"{output} is being trained by another `dcue train` right now "
                            f"(it holds {lock}): wait for it, or give another -o.", remove=True)
