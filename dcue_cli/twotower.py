"""The paper's index ablation (section 5.1): DCUE's two towers over user and song indices, no audio.

The item side is built like the user side (a lookup, then the same MLP), and trained the way
`dcue train` trains DCUE: the same hinge loss and margin, the same song-grouped batches with a
shared pool and in-batch negatives, the same optimiser and schedule (a `TrainConfig`). A song is
then known by who played it, as in WMF, so like WMF it is a warm-start model: fitted on all songs
(`--fit-on all`) it is the paper's row "how much does the audio cost against an index"; on a
warm split's training plays it is scored with `dcue score --train-plays/--test-plays`.

`fit_twotower` fits a Plays table; `run_twotower` is `dcue twotower` (plays in, embeddings out).
"""

import time
from dataclasses import dataclass

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError


@dataclass
class TwoTowerRun:
    """What `run_twotower` fitted and wrote, for the line the command prints."""

    output: str
    n_users: int
    n_items: int
    dims: int
    steps: int
    final_loss: float
    seconds: float


class IndexSource:
    """What the pair sampler asks for a song's 'crop': here the song's index itself."""

    @staticmethod
    def random_crops(rows, generator):
        return rows


def index_training_data(plays):
    """A Plays table as the pair sampler's training data: every item a training song."""
    from dcue_cli.train.data import TrainingData

    plays = plays.deduplicate()
    none = np.zeros(0, np.int64)
    return TrainingData(mel_ids=plays.item_ids, lengths=np.ones(plays.n_items, np.int64),
                        train_items=np.arange(plays.n_items), valid_items=none, user_ids=plays.user_ids,
                        pair_users=plays.users.astype(np.int64), pair_items=plays.items.astype(np.int64),
                        pair_counts=plays.counts.astype(np.int64), valid_users=none, valid_pair_items=none)


def check_config(cfg) -> None:
    """Refuse what this model cannot train with, in the words of the options."""
    if cfg.objective not in ("hinge", "softmax"):
        raise DcueError(f"--objective {cfg.objective}: the index model ranks, so hinge or softmax.")
    if cfg.listeners_per_song > 1 and not cfg.shared_negatives:
        raise DcueError("--listeners-per-song above 1 needs the shared pool of negatives.")


def fit_twotower(plays, cfg, model_cfg, *, device="auto", stop=None, show_progress=True):
    """Train the index towers on `plays`: (user ids, user vectors (U, d), item ids, item vectors (I, d), info).

    `cfg` is a `TrainConfig` (its ranking settings, optimiser and schedule), `model_cfg` a
    `ModelConfig` (embed_dim, user_embed_dim, user_hidden and user_init_std are used; n_users is
    set here). `stop`, a StopSignals, is checked between steps.
    """
    import dataclasses

    import torch

    from dcue_cli.model import IndexTowers, all_user_vectors
    from dcue_cli.runtime import check_network_memory, torch_device
    from dcue_cli.train.sampling import PairSampler

    check_config(cfg)
    data = index_training_data(plays)
    n_items = len(data.train_items)
    if len(data.pair_users) == 0:
        raise DcueError("there are no plays to fit the index model to.")
    model_cfg = dataclasses.replace(model_cfg, n_users=data.n_users)
    dev = torch_device(device)
    check_network_memory(lambda: IndexTowers(model_cfg, n_items), "lower --user-embed-dim, --hidden or --embed-dim")
    torch.manual_seed(cfg.seed)
    model = IndexTowers(model_cfg, n_items).to(dev)
    sampler = PairSampler(data, IndexSource(), batch_size=cfg.batch_size, negatives=cfg.negatives, seed=cfg.seed,
                          shared_negatives=cfg.shared_negatives, in_batch=cfg.in_batch_negatives,
                          sampling=cfg.negative_sampling, weighting=cfg.weighting, device=dev,
                          listeners_per_song=cfg.listeners_per_song)
    steps_per_epoch = cfg.steps_per_epoch or sampler.steps_per_epoch()
    log.info("index model: %s users x %s songs, %s plays; %s parameters; %d x %d steps of %d pairs on %s",
             f"{data.n_users:,}", f"{n_items:,}", f"{len(data.pair_users):,}",
             f"{sum(p.numel() for p in model.parameters()):,}", cfg.epochs, steps_per_epoch, cfg.batch_size, dev)
    start = time.perf_counter()
    last_loss = train_steps(model, sampler, cfg, steps_per_epoch, stop=stop, show_progress=show_progress)
    model.eval()
    user_vectors = all_user_vectors(model.user, data.n_users, dev).cpu().numpy()
    item_vectors = all_user_vectors(model.item, n_items, dev).cpu().numpy()
    info = {"steps": cfg.epochs * steps_per_epoch, "final_loss": last_loss, "seconds": time.perf_counter() - start,
            "device": str(dev)}
    return data.user_ids, user_vectors, data.mel_ids, item_vectors, info


def train_steps(model, sampler, cfg, steps_per_epoch: int, *, stop=None, show_progress=True) -> float:
    """`cfg.epochs` x `steps_per_epoch` optimiser steps; the last epoch's mean loss."""
    from dcue_cli.train.objectives import ranking_loss, refuse_divergence
    from dcue_cli.train.schedule import learning_rate
    from dcue_cli.train.setup import optimizer

    opt = optimizer(model, cfg)
    total = cfg.epochs * steps_per_epoch
    loss_sum, n_loss, last_loss = 0.0, 0, float("nan")
    bar = log.progress(total=total, desc="index model", unit=" steps", disable=not show_progress)
    for step in range(total):
        epoch, in_epoch = divmod(step, steps_per_epoch)
        batch = sampler.batch(epoch, in_epoch)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step, total)
        users, items = model(batch.crops, batch.users)
        loss = ranking_loss(users, items, batch, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum, n_loss = loss_sum + float(loss.detach()), n_loss + 1
        bar.update(1)
        if in_epoch == steps_per_epoch - 1:  # once an epoch: the loss so far, and a finite one
            last_loss, loss_sum, n_loss = loss_sum / n_loss, 0.0, 0
            refuse_divergence(last_loss, cfg, f"in epoch {epoch + 1}", model)
            bar.set_postfix(loss=f"{last_loss:.4f}", refresh=False)
        if stop is not None:
            stop.check()
    bar.close()
    return last_loss


def run_twotower(plays_path, output, cfg, model_cfg, *, splits=None, fit_on=None, device="auto",
                 columns=(0, 1, 2), header=None, skip_bad=False, show_progress=True) -> TwoTowerRun:
    """`dcue twotower`: read PLAYS (and --splits), fit the index towers, write an embeddings file."""
    import os

    from dcue_cli.interrupts import StopSignals
    from dcue_cli.io.atomic import (
        check_output_path,
        refuse_inputs_as_outputs,
        refuse_replacing_other_kind,
    )
    from dcue_cli.io.embeddings import Embeddings, is_embeddings_file, write_embeddings
    from dcue_cli.io.plays import read_plays
    from dcue_cli.io.splits import read_splits
    from dcue_cli.wmf import select_items_for_fit

    check_config(cfg)
    check_output_path(output, "embeddings")
    refuse_inputs_as_outputs({"-o": output}, {"PLAYS": plays_path, "--splits": splits})
    refuse_replacing_other_kind(output, "an embeddings file", is_embeddings_file)
    data = read_plays(plays_path, columns=columns, header=header, skip_bad=skip_bad)
    data, note = select_items_for_fit(data, read_splits(splits) if splits else None, fit_on or "all")
    if note:
        log.info(note)
    # Ctrl-C or SIGTERM: KeyboardInterrupt after the step in flight, before anything is written
    with StopSignals() as stop:
        user_ids, users, item_ids, items, info = fit_twotower(data, cfg, model_cfg, device=device, stop=stop,
                                                              show_progress=show_progress)
        stop.check()
        attrs = {"name": "DCUE, item index", "fit_on": fit_on or "all", "plays": os.path.basename(str(plays_path)),
                 "splits": os.path.basename(splits) if splits else None, "n_plays": len(data),
                 "steps": info["steps"], "final_loss": info["final_loss"], "device": info["device"],
                 "train_config": repr(cfg.to_dict()), "model_config": repr(model_cfg.to_dict())}
        write_embeddings(output, Embeddings(item_ids, items, user_ids, users, source="dcue-index",
                                            similarity="cosine", attrs=attrs))
    return TwoTowerRun(str(output), len(user_ids), len(item_ids), items.shape[1], info["steps"],
                       info["final_loss"], info["seconds"])
