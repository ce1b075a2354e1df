"""The training loop: epochs of steps, validation, the best checkpoint, early stopping, resume, DDP.

`Trainer(...)` builds a run from its inputs (the steps in `dcue_cli.train.setup`), `run()`
trains it. Reproducibility: every step's randomness (its pairs, negatives and crop positions)
comes from a generator seeded with (seed, epoch, step, rank), so a resumed run redraws exactly
the batches the interrupted one would have drawn, on any number of processes.
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.interrupts import StopSignals
from dcue_cli.runtime import autocast_factory, configure_backends, torch_device
from dcue_cli.train import setup
from dcue_cli.train.config import (
    OBJECTIVES,
    TrainConfig,
    TrainingInterrupted,
    can_draw_curves,
    check_outputs,
    curves_path,
    last_path,
    log_path,
    resume_point,
    take_lock,
)
from dcue_cli.train.distributed import (
    any_flag,
    broadcast_flag,
    broadcast_float,
    init_distributed,
)
from dcue_cli.train.schedule import learning_rate


@dataclass
class TrainResult:
    best_auc: float
    best_epoch: int
    epochs_run: int
    steps: int
    crops_per_s: float
    output: str
    stopped_early: bool = False


class Trainer:
    """Builds everything from the inputs, then `run()`s epochs. One instance per process."""

    def __init__(self, mels_path, plays, splits: dict, output, cfg: TrainConfig, model_overrides: dict,
                 *, device="auto", target=None, resume=False, explicit=(), input_names=None, artists=None):
        from dcue_cli.crops import Normaliser
        from dcue_cli.io.mels import MelsFile

        self._outputs(output)
        self.dist = init_distributed(device)
        self.device = torch_device(device, self.dist.local_rank if self.dist.enabled else None)
        configure_backends(self.device)
        names = input_names or {}
        self.master = self.dist.master
        if self.master:  # now, not after the first epoch
            check_outputs(self.output, names)
        ckpt, self.cfg = resume_point(self.last, resume, cfg, model_overrides, explicit, self.master)
        cfg = self.cfg
        self.draw_curves = cfg.curves and self.master and can_draw_curves(self.curves_file)
        if cfg.objective not in OBJECTIVES:
            raise DcueError(f"--objective {cfg.objective}: expected one of {', '.join(OBJECTIVES)}.")

        self.reader = MelsFile(mels_path)
        mels_name = names.get("mels", str(mels_path))
        target_vectors = None
        if cfg.objective == "regress":
            if target is None:
                raise DcueError("--objective regress needs --target wmf.h5 (write it with "
                                "`dcue wmf PLAYS --splits SPLITS --fit-on train -o wmf.h5`).")
            target_vectors = target.user_vectors
        self.data = self._join(plays, splits, ckpt, target, names, mels_name)
        self.artist_vocab, self.train_artists, valid_artists = setup.artists(  # `artists`: an ArtistMap
            ckpt, self.last, artists, self.data, cfg, self.master)

        mean, std = setup.normalisation(self.reader, self.data, ckpt, cfg, mels_name, self.master)
        self.normaliser = Normaliser(mean, std, device=self.device)
        self.feature_config = self.reader.model_features()
        self.feature_config["n_mels"] = self.reader.n_mels
        self.model_cfg = setup.model_config(ckpt, self.last, cfg, model_overrides, explicit, target,
                                            self.data.n_users, self.reader.n_mels, self.master,
                                            n_artists=len(self.artist_vocab) + 1 if self.artist_vocab else 0)
        self._build_model()

        self._build_batches(mean, std, target, names, mels_name)
        self.autocast = autocast_factory(self.device, cfg.amp, on_cpu=cfg.cpu_amp)
        self.validator = None
        if self.master:
            self.validator = setup.validator(self.reader, self.data, mean, std, self.model_cfg.crop_frames, cfg,
                                             self.device, self.cache_mode, target_vectors, self.autocast,
                                             artists=valid_artists)
        self.optimizer = setup.optimizer(self.model, cfg)
        self._start_or_restore(ckpt)
        self.user_vectors_for_embed = None
        if cfg.objective == "regress":
            self.user_vectors_for_embed = np.asarray(target_vectors, np.float32)
        self.target_meta = {} if target is None else {
            "path": str(getattr(target, "path", "")), "source": str(target.source),
            "fit_on": str(target.attrs.get("fit_on", ""))}
        self._wrap_forward()
        self._stop = False
        if self.master:  # last, so that no failure above leaves it held
            self.lock = take_lock(self.output)

    # -- building --

    def _join(self, plays, splits, ckpt, target, names, mels_name):
        """The training data; a resumed run's users (or the regression target's) fix the numbering."""
        from dcue_cli.train.data import load_training_data

        user_ids = ckpt["user_ids"] if ckpt is not None else (
            np.asarray(target.user_ids, dtype=object) if self.cfg.objective == "regress" else None)
        data = load_training_data(self.reader.ids, self.reader.lengths, plays, splits,
                                  mels_name=mels_name, plays_name=names.get("plays", "plays"),
                                  splits_name=names.get("splits", "splits"), user_ids=user_ids)
        if ckpt is not None and ckpt.get("data") != data.fingerprint():
            raise DcueError(f"--resume: the inputs differ from those {self.last} was trained on "
                            f"({ckpt.get('data')} then, {data.fingerprint()} now): give the same files, "
                            "or start afresh without --resume.")
        if self.master:
            setup.report_data(data, mels_name, names)
        return data

    def _build_model(self):
        import torch

        from dcue_cli.model import DCUE, count_parameters
        from dcue_cli.runtime import check_network_memory

        check_network_memory(lambda: DCUE(self.model_cfg), "lower --user-embed-dim, --user-hidden, --embed-dim or "
                             "--conv-channels")
        torch.manual_seed(self.cfg.seed)
        self.model = DCUE(self.model_cfg).to(self.device)
        if self.master:
            part = lambda m: f"{count_parameters(m) if m is not None else 0:,}"
            log.info("model: %s parameters (audio %s, user %s%s); device %s",
                     f"{count_parameters(self.model):,}", part(self.model.audio), part(self.model.user),
                     "" if self.model.artist is None else f", artist {part(self.model.artist)}", self.device)

    def _outputs(self, output):
        self.output = Path(output)
        self.target_scale = 1.0
        self.last = last_path(output)
        self.log_file = log_path(output)
        self.curves_file = curves_path(output)
        self.lock = None

    def _build_batches(self, mean, std, target, names, mels_name):
        """The mels in memory (or streamed), and the sampler that cuts each step's batch."""
        import torch

        from dcue_cli.crops import choose_cache

        data, cfg = self.data, self.cfg
        frame_bytes = self.reader.n_mels * self.reader.mel.dtype.itemsize
        need = int(data.lengths[data.train_items].sum() + data.lengths[data.valid_items].sum()) * frame_bytes
        self.cache_mode = choose_cache(cfg.cache, self.device, need)
        cache_device = self.device if self.cache_mode == "gpu" else torch.device("cpu")
        if self.master:
            log.info("mels cache: %s (%.2f GB)", self.cache_mode, need / 1e9)
        source = setup.train_source(self.reader, data, mean, std, self.model_cfg.crop_frames,
                                    self.cache_mode, cache_device)
        sampler_device = self.device if self.cache_mode == "gpu" else torch.device("cpu")
        if self.device.type == "cpu":
            sampler_device = torch.device("cpu")
        if cfg.objective == "regress":
            self.sampler, self.target_scale = setup.regression_sampler(
                data, target, source, cfg, sampler_device, self.dist, names, mels_name, self.master)
        else:
            self.sampler = setup.pair_sampler(data, source, cfg, sampler_device, self.dist,
                                              item_artists=self.train_artists)

    def _start_or_restore(self, ckpt):
        from dcue_cli.train.state import restore

        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_auc, self.best_epoch, self.bad_epochs = float("-inf"), -1, 0
        self.lr_scale, self.plateau_epochs = 1.0, 0
        if ckpt is not None:
            restore(self, ckpt, self.last)
        elif self.cfg.centre_init:
            from dcue_cli.model import centre_outputs_

            probe = self.sampler.batch(-1, 0)  # its own (epoch, step): no training batch is consumed
            crops = probe.crops.reshape(-1, *probe.crops.shape[-2:])[:512].to(self.device)
            centre_outputs_(self.model, crops)

    def _wrap_forward(self):
        """The module the steps run through: DDP and/or torch.compile around the plain model."""
        import torch

        self.forward = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.forward = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.compile:
            self.forward = torch.compile(self.forward)

    # -- saving and logging (the master only) --

    def _save(self, path, *, epoch, step_in_epoch):
        from dcue_cli.io.checkpoints import save_checkpoint
        from dcue_cli.train.state import checkpoint_state

        save_checkpoint(path, checkpoint_state(self, epoch=epoch, step_in_epoch=step_in_epoch))

    def _draw_curves(self):
        """Redraw model.curves.png from the log; a failure is a warning, never the end of a run."""
        from dcue_cli.train.curves import redraw_or_warn

        if self.draw_curves:
            self.draw_curves = redraw_or_warn(self.log_file, self.curves_file, title=(
                f"{self.output.name}: {self.cfg.objective}, batch {self.cfg.batch_size}"))

    def _log_row(self, **row):
        if self.master:
            from dcue_cli.io.training_log import append_row

            append_row(self.log_file, **row)

    def _set_lr(self):
        lr = learning_rate(self.cfg, self.global_step, self.cfg.epochs * self._steps(), self.lr_scale)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    # -- the epochs --

    def request_stop(self, *_args):
        """What Ctrl-C does: finish the current step, save, exit."""
        self._stop = True

    def run(self) -> TrainResult:
        from dcue_cli.io.training_log import start_log

        if self.master:
            start_log(self.log_file, self.global_step)
        self.rate, stopped_early = 0.0, False
        # Ctrl-C and SIGTERM finish the step in flight, then save (dcue_cli.interrupts)
        with StopSignals(on_request=self.request_stop):
            self.model.train()
            while self.epoch < self.cfg.epochs:
                epoch = self.epoch
                mean_loss, seconds, lr = self._train_epoch(epoch)
                if self._end_epoch(epoch, mean_loss, seconds, lr):
                    stopped_early = True
                    break
        if self.master and not self.output.exists():  # e.g. --epochs reached before any save
            self._save(self.output, epoch=self.epoch, step_in_epoch=0)
        return TrainResult(self.best_auc if math.isfinite(self.best_auc) else float("nan"), self.best_epoch + 1,
                           self.epoch, self.global_step, self.rate, str(self.output), stopped_early)

    def _steps(self) -> int:
        return self.cfg.steps_per_epoch or self.sampler.steps_per_epoch()

    def _train_epoch(self, epoch):
        """The steps of one epoch (from where a resumed run stopped); (mean loss, seconds, lr)."""
        import torch

        from dcue_cli.train.objectives import batch_loss, refuse_divergence
        from dcue_cli.train.sampling import iterate_steps

        cfg, steps, crops_per_step = self.cfg, self._steps(), self.sampler.crops_per_batch()
        first = self.step_in_epoch
        loss_sum = torch.zeros((), device=self.device)
        n_loss = done = 0
        bar = log.progress(total=steps, initial=first, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                           unit=" steps", disable=not self.master)
        t0 = time.perf_counter()
        lr = self._set_lr()
        workers = cfg.workers if self.cache_mode == "none" else 0
        batches = iterate_steps(self.sampler, epoch, first, steps - first, workers=workers,
                                pin_memory=self.device.type == "cuda")
        interrupted = False
        for batch in batches:
            if batch.crops.device != self.device:
                batch = batch.to(self.device, non_blocking=True)
            lr = self._set_lr()
            loss = batch_loss(self.forward, batch, cfg, self.autocast)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach()
            n_loss += 1
            done += 1
            self.global_step += 1
            self.step_in_epoch = first + done
            if done % 10 == 0 or self.step_in_epoch == steps:
                rate = done * crops_per_step / max(time.perf_counter() - t0, 1e-9)
                running = float(loss_sum) / n_loss  # one host sync per 10 steps
                refuse_divergence(running, cfg, f"at step {self.global_step} (epoch {epoch + 1})")
                bar.set_postfix(loss=f"{running:.4f}", crops_s=f"{rate:,.0f}", refresh=False)
            bar.update(1)
            if cfg.log_every and self.global_step % cfg.log_every == 0 and self.step_in_epoch < steps:
                self._log_row(epoch=epoch + 1, step=self.global_step, loss=float(loss_sum) / n_loss,
                              crops_per_s=done * crops_per_step / max(time.perf_counter() - t0, 1e-9),
                              seconds=time.perf_counter() - t0, lr=lr)
            if self._should_stop(done, steps):
                interrupted = True
                break
        if hasattr(batches, "close"):
            batches.close()
        bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        self.rate = done * crops_per_step / max(seconds, 1e-9)
        mean_loss = float(loss_sum) / max(n_loss, 1)
        # before any save: the last good checkpoints stay what they are
        refuse_divergence(mean_loss, cfg, f"in epoch {epoch + 1}", self.model)
        if interrupted:
            if self.master:
                self._save(self.last, epoch=epoch, step_in_epoch=self.step_in_epoch)
                self._log_row(epoch=epoch + 1, step=self.global_step, loss=mean_loss,
                              crops_per_s=self.rate, seconds=seconds, lr=lr)
                self._draw_curves()
            raise TrainingInterrupted(self.last, epoch, self.step_in_epoch)
        return mean_loss, seconds, lr

    def _should_stop(self, done: int, steps: int) -> bool:
        if not self.dist.enabled:
            return self._stop
        # every process must stop after the same step: agree every 10 steps (one sync)
        return (done % 10 == 0 or self.step_in_epoch == steps) and any_flag(self._stop, self.dist, self.device)

    def _end_epoch(self, epoch, mean_loss, seconds, lr) -> bool:
        """Validate, keep the best, save, log; True when early stopping ends the run."""
        if self.master:
            auc, improved = self._judge(epoch)
            self.epoch, self.step_in_epoch = epoch + 1, 0
            # the best first: a kill between the two saves then repeats this epoch on
            # --resume (to the same weights) instead of leaving model.pt behind the state
            if improved:
                self._save(self.output, epoch=self.epoch, step_in_epoch=0)
            self._save(self.last, epoch=self.epoch, step_in_epoch=0)
            self._log_row(epoch=epoch + 1, step=self.global_step, loss=mean_loss, valid_auc=auc,
                          crops_per_s=self.rate, seconds=seconds, lr=lr)
            self._draw_curves()
            log.info("epoch %d: loss %.4f, valid AUC %s%s, %s crops/s, %.1f s", epoch + 1, mean_loss,
                     "-" if not math.isfinite(auc) else f"{auc:.4f}", " (best)" if improved and
                     self.validator is not None else "", f"{self.rate:,.0f}", seconds)
        else:
            self.epoch, self.step_in_epoch = epoch + 1, 0
        self.lr_scale = broadcast_float(self.lr_scale, self.dist, self.device)
        stop = self.master and self.validator is not None and self.bad_epochs >= self.cfg.patience > 0
        if broadcast_flag(stop, self.dist, self.device):
            if self.master:
                log.info("early stop: no better validation AUC for %d epochs (best %.4f at epoch %d)",
                         self.bad_epochs, self.best_auc, self.best_epoch + 1)
            return True
        return False

    def _judge(self, epoch):
        """(validation AUC, whether it is the best yet); drops the learning rate on a plateau."""
        cfg = self.cfg
        auc = float("nan")
        if self.validator is not None:
            auc = self.validator(self.model)
            improved = math.isfinite(auc) and auc > self.best_auc
        else:
            improved = True  # nothing to judge by: the latest is the best we have
        if improved:
            self.best_auc = auc if self.validator is not None else float("-inf")
            self.best_epoch, self.bad_epochs, self.plateau_epochs = epoch, 0, 0
        else:
            self.bad_epochs += 1
            self.plateau_epochs += 1
            if self.plateau_epochs >= cfg.plateau_patience > 0 and cfg.plateau_factor < 1:
                self.lr_scale *= cfg.plateau_factor
                self.plateau_epochs = 0
                log.info("no better validation AUC for %d epochs: learning rate x%g (now %.3g)",
                         cfg.plateau_patience, cfg.plateau_factor, cfg.lr * self.lr_scale)
        return auc, improved

    def close(self):
        self.reader.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self.dist.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()
