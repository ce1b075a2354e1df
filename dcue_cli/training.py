"""The training loop: device, mixed precision, checkpoints, resume, validation, early stopping, DDP.

Files beside `-o model.pt`:
    model.pt          the best checkpoint by validation AUC (what `embed` reads)
    model.last.pt     the latest state, written every epoch and on Ctrl-C (what `--resume` reads)
    model.log.tsv     one row per epoch (and every --log-every steps): step, loss, valid AUC, crops/s

A checkpoint is a plain dict (tensors, numbers, strings, lists, dicts) that loads with
`torch.load(path, weights_only=True)`; see `checkpoint_state`.

Reproducibility: every step's randomness (its pairs, negatives and crop positions) comes from
a generator seeded with (seed, epoch, step, rank), so a resumed run redraws exactly the
batches the interrupted one would have drawn, on any number of processes.
"""

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from dcue_cli import __version__, log
from dcue_cli.errors import DcueError
from dcue_cli.runtime import autocast_factory, configure_backends, torch_device
from dcue_cli.interrupts import StopSignals

CHECKPOINT_FORMAT = "dcue-model"
CHECKPOINT_VERSION = 1
OBJECTIVES = ("hinge", "softmax", "regress")
# what may change when a run is resumed; everything else comes from its checkpoint
RESUMABLE = ("epochs", "patience", "cache", "workers", "log_every", "compile", "amp", "curves")


@dataclass
class TrainConfig:
    """Everything about how to train (the model's sizes live in `model.ModelConfig`)."""

    objective: str = "hinge"
    margin: float = 0.2
    negatives: int = 20
    negative_sampling: str = "uniform"
    listeners_per_song: int = 1  # >1: song-grouped batches, that many pairs share each song's crop
    shared_negatives: bool = True  # one pool per batch (measured: as good as per-user with in-batch, 20x cheaper)
    in_batch_negatives: bool = True  # the batch's other positives are negatives too (softmax: always)
    temperature: float = 0.1
    weighting: str = "binary"
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    lr_decay: float = 1e-6  # Keras-style: lr / (1 + decay * step), as the authors
    plateau_factor: float = 0.2  # lr x this after plateau_patience epochs without a better valid AUC (1: never)
    plateau_patience: int = 2
    weight_decay: float = 0.0
    epochs: int = 30
    steps_per_epoch: int = 0  # 0: one pass over the training plays
    patience: int = 5
    seed: int = 0
    compile: bool = False
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on a CPU)
    cache: str = "auto"
    workers: int = 0  # DataLoader workers for --cache none
    log_every: int = 0
    valid_crop_batch: int = 1024
    centre_init: bool = True  # centre the initial item/user vectors on data (model.centre_outputs_)
    curves: bool = True  # draw model.curves.png from the log after every epoch (needs matplotlib)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class TrainingInterrupted(Exception):
    """Ctrl-C: the state was saved to `path`; continue with --resume."""

    def __init__(self, path, epoch, step):
        super().__init__(f"interrupted at epoch {epoch + 1}, step {step}")
        self.path, self.epoch, self.step = path, epoch, step


# ---- paths ----


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


# ---- distributed ----


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def master(self) -> bool:
        return self.rank == 0


def init_distributed(device_spec: str) -> Dist:
    """Under torchrun (WORLD_SIZE > 1): join the process group (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device_spec or "auto").lower() != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank)


def _broadcast_flag(flag: bool, dist_info: Dist, device) -> bool:
    """The master's decision for everyone (early stopping)."""
    if not dist_info.enabled:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def _broadcast_float(value: float, dist_info: Dist, device) -> float:
    """The master's value for everyone (the learning-rate scale after a plateau)."""
    if not dist_info.enabled:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def _any_flag(flag: bool, dist_info: Dist, device) -> bool:
    """True when any process raised it (Ctrl-C reaches every process of torchrun, maybe not at once)."""
    if not dist_info.enabled:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# ---- checkpoints ----


def save_checkpoint(path, state: dict) -> None:
    """torch.save to a temporary file beside `path`, renamed into place when complete."""
    import torch

    from dcue_cli.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path, map_location="cpu") -> dict:
    """A checkpoint written by `dcue train`, loaded with weights_only=True; one-line errors."""
    import torch

    path = str(path)
    if not os.path.exists(path):
        raise DcueError(f"{path} does not exist: check the path (write it with `dcue train`).")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise DcueError(f"{path} is empty, not a dcue model checkpoint: write it with `dcue train`.")
    if head.startswith(b"\x89HDF"):
        raise DcueError(f"{path} is an HDF5 file (mels or embeddings?), not a dcue model checkpoint: give the "
                        "model.pt written by `dcue train`.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        if type(exc).__name__ == "UnpicklingError" and "Weights only load failed" in str(exc):
            why = "it holds Python objects, not only tensors and plain values: refused, as loading it could run code"
        else:
            why = f"truncated, damaged or not a torch file: {type(exc).__name__}: {_first_line(exc)}"
        raise DcueError(f"{path} is not a dcue model checkpoint ({why}): write it with `dcue train`.") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DcueError(f"{path} is not a dcue model checkpoint (no format={CHECKPOINT_FORMAT!r}): "
                        "write it with `dcue train`.")
    if int(ckpt.get("version", 0)) > CHECKPOINT_VERSION:
        raise DcueError(f"{path} was written by a newer dcue (checkpoint version {ckpt['version']}): "
                        "upgrade dcue to read it.")
    missing = [key for key in CHECKPOINT_KEYS if key not in ckpt]
    if missing:
        raise DcueError(f"{path} is a damaged dcue checkpoint (no {', '.join(missing)}): "
                        "write it again with `dcue train`.")
    return ckpt


CHECKPOINT_KEYS = ("model", "model_config", "train_config", "user_ids", "normalisation", "feature_config")


def model_from_checkpoint(ckpt: dict, path="the checkpoint"):
    """The DCUE network of a checkpoint, its weights loaded; a one-line DcueError when they do
    not fit its own model_config (a damaged or hand-edited checkpoint)."""
    from dcue_cli.model import DCUE

    model = DCUE(model_config_of(ckpt, path))
    load_weights(model, ckpt["model"], path)
    return model


def model_config_of(ckpt: dict, path):
    from dcue_cli.model import ModelConfig

    try:
        return ModelConfig.from_dict(ckpt["model_config"])
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise DcueError(f"{path} has an unusable model_config ({_first_line(exc)}): "
                        "write it again with `dcue train`.") from None


def load_weights(module, state: dict, path, what="model weights") -> None:
    """module.load_state_dict(state), with a one-line error naming the first mismatch."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise DcueError(f"{path}: its {what} do not fit the model it describes ({_first_line(exc)}): "
                        "it is damaged or from another model size; write it again with `dcue train`.") from None


def _first_line(exc) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if "size mismatch" in line or "Missing key" in line
                   or "Unexpected key" in line), lines[0] if lines else type(exc).__name__)
    return detail.rstrip(".")[:300]


def _rng_state(device) -> dict:
    import random

    import torch

    state = {"torch": torch.get_rng_state(), "python": _py_state(random.getstate())}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _py_state(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _set_rng_state(state: dict, device) -> None:
    import random

    import torch

    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


# ---- validation ----


class Validator:
    """Cold-start AUC on the validation songs, through the same metric code as `dcue score`."""

    def __init__(self, data, valid_cache, *, similarity: str, user_vectors=None, crop_batch=1024, autocast=None):
        import scipy.sparse as sp

        self.cache = valid_cache
        self.lengths = data.lengths[data.valid_items]
        self.rows = np.arange(len(data.valid_items))
        self.similarity = similarity
        self.fixed_users = user_vectors  # WMF users for the regression objective
        self.n_users = data.n_users
        self.crop_batch = crop_batch
        self.autocast = autocast
        self.positives = sp.csr_matrix(
            (np.ones(len(data.valid_users), np.float32), (data.valid_users, data.valid_pair_items)),
            shape=(data.n_users, len(data.valid_items)))
        self.positives.sum_duplicates()
        n_pos = np.diff(self.positives.indptr)
        self.n_eval_users = int(((n_pos > 0) & (n_pos < len(data.valid_items))).sum())

    @property
    def possible(self) -> bool:
        return self.n_eval_users > 0 and len(self.rows) > 1

    def __call__(self, model) -> float:
        import torch

        from dcue_cli.data import item_vectors
        from dcue_cli.metrics import mean_auc

        was_training = model.training
        model.eval()
        try:
            items = item_vectors(model.audio, self.cache, self.rows, self.lengths,
                                 batch_crops=self.crop_batch, autocast=self.autocast)
            if self.fixed_users is not None:
                users = self.fixed_users
            else:
                with torch.no_grad():
                    device = next(model.parameters()).device
                    users = torch.cat([model.user_vectors(torch.arange(a, min(a + 65536, self.n_users),
                                                                       device=device)).float()
                                       for a in range(0, self.n_users, 65536)])
            return mean_auc(users, items, self.similarity, self.positives)
        finally:
            model.train(was_training)


# ---- the loop ----


@dataclass
class TrainResult:
    best_auc: float
    best_epoch: int
    epochs_run: int
    steps: int
    crops_per_s: float
    output: str
    stopped_early: bool = False


def _memory_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def choose_cache(mode: str, device, nbytes: int) -> str:
    """auto: the GPU when the mels fit in (half of) its free memory, else host memory, else none."""
    import torch

    if mode == "gpu" and device.type != "cuda":
        raise DcueError("--cache gpu needs a CUDA device: use --cache cpu (or auto) on a CPU.")
    if mode != "auto":
        return mode
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        if nbytes < 0.5 * free:
            return "gpu"
    if nbytes < 0.6 * _memory_available():
        return "cpu"
    return "none"


def _estimate_normalisation(reader, items, rng, max_items=500):
    """Scalar mean/std over (a sample of) the training songs, when melspec stored none."""
    pick = items if len(items) <= max_items else rng.choice(items, max_items, replace=False)
    total, total_sq, n = 0.0, 0.0, 0
    for i in np.sort(pick):
        x = np.asarray(reader.frames(int(reader.offsets[i]), int(reader.offsets[i + 1])), np.float64)
        total += x.sum()
        total_sq += (x * x).sum()
        n += x.size
    mean = total / max(n, 1)
    std = math.sqrt(max(total_sq / max(n, 1) - mean * mean, 1e-12))
    return np.array([mean], np.float32), np.array([std], np.float32)


class Trainer:
    """Builds everything from the inputs, then `run()`s epochs. One instance per process."""

    def __init__(self, mels_path, plays, splits: dict, output, cfg: TrainConfig, model_overrides: dict,
                 *, device="auto", target=None, resume=False, explicit=(), input_names=None):
        import torch

        from dcue_cli.data import (
            MelCache,
            MelsReader,
            Normaliser,
            feature_config_from_attrs,
            load_training_data,
            normalisation_from_attrs,
        )
        from dcue_cli.io.atomic import check_output_path
        from dcue_cli.model import DCUE, ModelConfig, count_parameters

        self.output = Path(output)
        self.target_scale = 1.0
        self.last = last_path(output)
        self.log_file = log_path(output)
        self.curves_file = curves_path(output)
        self.lock = None
        self.dist = init_distributed(device)
        self.device = torch_device(device, self.dist.local_rank if self.dist.enabled else None)
        configure_backends(self.device)
        names = input_names or {}
        self.master = self.dist.master
        if self.master:  # now, not after the first epoch
            for path, what in ((self.output, "model"), (self.last, "latest state"), (self.log_file, "log"),
                               (self.curves_file, "curves")):
                check_output_path(path, f"{what} (-o names it)")

        ckpt = None
        if resume:
            if not self.last.exists():
                raise DcueError(f"--resume: {self.last} does not exist, so there is nothing to resume: "
                                "run without --resume to start afresh.")
            ckpt = load_checkpoint(self.last)
            cfg = self._resumed_config(ckpt, cfg, model_overrides or {}, set(explicit))
        elif self.master and self.last.exists():
            log.warning("%s exists: starting afresh and replacing it (continue it with --resume instead)",
                        self.last)
        self.cfg = cfg
        self.draw_curves = cfg.curves and self.master
        if self.draw_curves:
            from dcue_cli.plots import have_matplotlib

            if not have_matplotlib():
                log.warning("matplotlib is absent: no training curves in %s (pip install 'dcue[plot]', "
                            "or --no-curves to silence this)", self.curves_file)
                self.draw_curves = False
        if cfg.objective not in OBJECTIVES:
            raise DcueError(f"--objective {cfg.objective}: expected one of {', '.join(OBJECTIVES)}.")

        self.reader = MelsReader(mels_path)
        mels_name = names.get("mels", str(mels_path))

        # the regression baseline: targets (and the users who score with them) from the WMF file
        target_users = target_vectors = None
        if cfg.objective == "regress":
            if target is None:
                raise DcueError("--objective regress needs --target wmf.h5 (write it with "
                                "`dcue wmf PLAYS --splits SPLITS --fit-on train -o wmf.h5`).")
            target_users = np.asarray(target.user_ids, dtype=object)
            target_vectors = target.user_vectors
        user_ids = ckpt["user_ids"] if ckpt is not None else target_users

        self.data = load_training_data(self.reader.ids, self.reader.lengths, plays, splits,
                                       mels_name=mels_name, plays_name=names.get("plays", "plays"),
                                       splits_name=names.get("splits", "splits"), user_ids=user_ids)
        data = self.data
        if ckpt is not None and ckpt.get("data") != data.fingerprint():
            raise DcueError(f"--resume: the inputs differ from those {self.last} was trained on "
                            f"({ckpt.get('data')} then, {data.fingerprint()} now): give the same files, "
                            "or start afresh without --resume.")
        self._report_data(mels_name, names)

        # normalisation: the checkpoint's, else melspec's, else estimated from training songs
        if ckpt is not None:
            norm = ckpt["normalisation"]
            mean, std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
        else:
            stats = normalisation_from_attrs(self.reader.attrs, self.reader.n_mels)
            if stats is None:
                if self.master:
                    log.warning("%s stores no mean/std: normalising with statistics estimated from the "
                                "training songs", mels_name)
                stats = _estimate_normalisation(self.reader, data.train_items, np.random.default_rng(cfg.seed))
            mean, std = stats
        self.normaliser = Normaliser(mean, std, device=self.device)
        self.feature_config = feature_config_from_attrs(self.reader.attrs)
        self.feature_config["n_mels"] = self.reader.n_mels

        # the model
        if ckpt is not None:
            self.model_cfg = model_config_of(ckpt, self.last)
        else:
            overrides = dict(model_overrides or {})
            if cfg.objective == "regress":
                d = target.item_vectors.shape[1]
                if "embed_dim" in set(explicit) and overrides.get("embed_dim") not in (None, d) and self.master:
                    log.warning("--embed-dim %s ignored: the regression predicts the %d WMF factors",
                                overrides["embed_dim"], d)
                overrides["embed_dim"] = d
            overrides["n_users"] = 0 if cfg.objective == "regress" else data.n_users
            overrides["n_mels"] = self.reader.n_mels
            try:
                self.model_cfg = ModelConfig(**overrides)
            except ValueError as exc:
                raise DcueError(f"model options: {exc}.") from None
        crop = self.model_cfg.crop_frames
        torch.manual_seed(cfg.seed)
        self.model = DCUE(self.model_cfg).to(self.device)
        if self.master:
            log.info("model: %s parameters (audio %s, user %s); device %s",
                     f"{count_parameters(self.model):,}", f"{count_parameters(self.model.audio):,}",
                     f"{count_parameters(self.model.user) if self.model.user is not None else 0:,}",
                     self.device)

        # the mels in memory (or streamed), and the batches
        item_rows = data.train_items
        frame_bytes = self.reader.n_mels * self.reader.mel.dtype.itemsize
        need = int(data.lengths[item_rows].sum() + data.lengths[data.valid_items].sum()) * frame_bytes
        self.cache_mode = choose_cache(cfg.cache, self.device, need)
        cache_device = self.device if self.cache_mode == "gpu" else torch.device("cpu")
        if self.master:
            log.info("mels cache: %s (%.2f GB)", self.cache_mode, need / 1e9)
        if self.cache_mode == "none":
            from dcue_cli.data import H5CropSource

            train_source = H5CropSource(self.reader, item_rows, Normaliser(mean, std), crop)
        else:
            train_source = MelCache.load(self.reader, item_rows, Normaliser(mean, std, device=cache_device),
                                         crop, cache_device, desc="caching training mels")
        sampler_device = self.device if self.cache_mode == "gpu" else torch.device("cpu")
        if self.device.type == "cpu":
            sampler_device = torch.device("cpu")
        if cfg.objective == "regress":
            from dcue_cli.data import ItemSampler

            index = {m: k for k, m in enumerate(target.item_ids)}
            have = np.array([index.get(m, -1) for m in data.mel_ids[item_rows]])
            keep = np.flatnonzero(have >= 0)
            if len(keep) == 0:
                raise DcueError(f"no training song of {mels_name} has factors in the target "
                                f"{names.get('target', 'file')}: was it written by `dcue wmf` on these plays?")
            if len(keep) < len(item_rows) and self.master:
                log.warning("%d of %d training songs have no factors in the target: trained without them",
                            len(item_rows) - len(keep), len(item_rows))
            factors = np.asarray(target.item_vectors, np.float32)[have[keep]]
            # WMF factors are small (std ~0.01): regress them in units of their std, and scale the
            # predictions back in `embed` (a global scale changes no user's ranking)
            self.target_scale = float(factors.std()) or 1.0
            self.sampler = ItemSampler(keep, factors / self.target_scale,
                                       train_source, batch_size=cfg.batch_size, seed=cfg.seed,
                                       device=sampler_device, rank=self.dist.rank, world=self.dist.world)
        else:
            from dcue_cli.data import PairSampler

            try:
                self.sampler = PairSampler(
                    data, train_source, batch_size=cfg.batch_size, negatives=cfg.negatives, seed=cfg.seed,
                    shared_negatives=cfg.shared_negatives,
                    in_batch=cfg.objective == "softmax" or cfg.in_batch_negatives,
                    sampling=cfg.negative_sampling, weighting=cfg.weighting, device=sampler_device,
                    rank=self.dist.rank, world=self.dist.world, listeners_per_song=cfg.listeners_per_song)
            except ValueError as exc:
                raise DcueError(str(exc)) from None
        self.autocast = autocast_factory(self.device, cfg.amp)

        # validation (master only): its own small cache of the validation songs
        self.validator = None
        if self.master and len(data.valid_items):
            vcache_device = self.device if self.cache_mode == "gpu" else torch.device("cpu")
            if self.device.type == "cuda" and self.cache_mode != "none":
                vcache_device = self.device  # validation songs are few: keep them by the model
            vcache = MelCache.load(self.reader, data.valid_items, Normaliser(mean, std, device=vcache_device),
                                   crop, vcache_device, desc="caching validation mels")
            if vcache_device != self.device:
                vcache = _MovedCache(vcache, self.device)
            users = None
            if cfg.objective == "regress":
                users = torch.as_tensor(np.asarray(target_vectors, np.float32))
            self.validator = Validator(data, vcache, similarity="dot" if cfg.objective == "regress" else "cosine",
                                       user_vectors=users, crop_batch=cfg.valid_crop_batch, autocast=self.autocast)
            if not self.validator.possible:
                log.warning("no user has both a played and an unplayed validation song: training without "
                            "validation (the last epoch is kept)")
                self.validator = None
        elif self.master:
            log.warning("no validation songs: training without validation or early stopping (the last "
                        "epoch is kept)")

        # the optimiser
        params = list(self.model.parameters())
        if cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                             nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            raise DcueError(f"--optimizer {cfg.optimizer}: expected sgd or adam.")

        # where we are
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_auc, self.best_epoch, self.bad_epochs = float("-inf"), -1, 0
        self.lr_scale, self.plateau_epochs = 1.0, 0
        if ckpt is not None:
            load_weights(self.model, ckpt["model"], self.last)
            load_weights(self.optimizer, ckpt["optimizer"], self.last, "optimizer state")
            pos = ckpt["position"]
            self.epoch, self.step_in_epoch, self.global_step = pos["epoch"], pos["step_in_epoch"], pos["global_step"]
            best = ckpt["best"]
            self.best_auc = float(best["auc"]) if best["auc"] is not None else float("-inf")
            self.best_epoch, self.bad_epochs = int(best["epoch"]), int(best["bad_epochs"])
            self.lr_scale = float(pos.get("lr_scale", 1.0))
            self.plateau_epochs = int(best.get("plateau_epochs", 0))
            _set_rng_state(ckpt.get("rng", {}), self.device)
            if self.master:
                log.info("resuming %s at epoch %d, step %d", self.last, self.epoch + 1, self.step_in_epoch)
        elif cfg.centre_init:
            from dcue_cli.model import centre_outputs_

            probe = self.sampler.batch(-1, 0)  # its own (epoch, step): no training batch is consumed
            crops = probe.crops.reshape(-1, *probe.crops.shape[-2:])[:512].to(self.device)
            centre_outputs_(self.model, crops)
        self.user_vectors_for_embed = None
        if cfg.objective == "regress":
            self.user_vectors_for_embed = np.asarray(target_vectors, np.float32)
        self.target_meta = {} if target is None else {
            "path": str(getattr(target, "path", "")), "source": str(target.source),
            "fit_on": str(target.attrs.get("fit_on", ""))}

        # the module the steps run through: DDP and/or torch.compile around the plain model
        self.forward = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.forward = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:
            self.forward = torch.compile(self.forward)
        self._stop = False
        if self.master:  # last, so that no failure above leaves it held
            from dcue_cli.io.atomic import make_folder
            from dcue_cli.io.lock import OutputLock

            make_folder(self.output.parent)
            lock = sibling(self.output, ".lock")
            self.lock = OutputLock(lock, f"{self.output} is being trained by another `dcue train` right now "
                                         f"(it holds {lock}): wait for it, or give another -o.", remove=True)

    def _resumed_config(self, ckpt, cfg, model_overrides, explicit) -> TrainConfig:
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
        if ignored and self.master:
            log.warning("--resume continues with the saved settings: ignoring %s", "; ".join(ignored))
        return TrainConfig.from_dict(saved)

    # -- reporting --

    def _report_data(self, mels_name, names):
        if not self.master:
            return
        d, s = self.data, self.data.stats
        if s.get("items_without_split"):
            log.warning("%d songs of %s are in no split of %s: their plays are ignored",
                        s["items_without_split"], names.get("plays", "plays"), names.get("splits", "splits"))
        if s.get("items_without_mels"):
            log.warning("%d songs of the splits are absent from %s: their plays are ignored",
                        s["items_without_mels"], mels_name)
        if s.get("items_without_frames"):
            log.warning("%d songs of %s have no frames: ignored", s["items_without_frames"], mels_name)
        log.info("training: %s plays of %s users on %s songs; validation: %s plays on %s songs",
                 f"{len(d.pair_users):,}", f"{d.n_users:,}", f"{len(d.train_items):,}",
                 f"{len(d.valid_users):,}", f"{len(d.valid_items):,}")

    # -- checkpoints --

    def checkpoint_state(self, *, epoch, step_in_epoch) -> dict:
        """The plain dict saved in model.pt / model.last.pt (weights_only-loadable)."""
        import torch

        state = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "dcue_version": __version__,
            "objective": self.cfg.objective,
            "similarity": "dot" if self.cfg.objective == "regress" else "cosine",
            "source": "wmf-regression" if self.cfg.objective == "regress" else "dcue",
            "model_config": self.model_cfg.to_dict(),
            "train_config": self.cfg.to_dict(),
            "feature_config": dict(self.feature_config),
            "normalisation": self.normaliser.to_dict(),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "position": {"epoch": int(epoch), "step_in_epoch": int(step_in_epoch),
                         "global_step": int(self.global_step), "lr_scale": float(self.lr_scale)},
            "best": {"auc": None if not math.isfinite(self.best_auc) else float(self.best_auc),
                     "epoch": int(self.best_epoch), "bad_epochs": int(self.bad_epochs),
                     "plateau_epochs": int(self.plateau_epochs)},
            "user_ids": [str(u) for u in self.data.user_ids],
            "data": self.data.fingerprint(),
            "target": dict(self.target_meta),
            "rng": _rng_state(self.device),
        }
        if self.user_vectors_for_embed is not None:
            state["user_vectors"] = torch.as_tensor(self.user_vectors_for_embed)
            state["target_scale"] = float(self.target_scale)
        return state

    def _save(self, path, *, epoch, step_in_epoch):
        save_checkpoint(path, self.checkpoint_state(epoch=epoch, step_in_epoch=step_in_epoch))

    # -- the log TSV --

    LOG_COLUMNS = ("epoch", "step", "loss", "valid_auc", "crops_per_s", "seconds", "lr")

    def _open_log(self):
        if not self.master:
            return
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        keep = []
        if self.global_step > 0 and self.log_file.exists():  # resumed: keep what led here
            with open(self.log_file, encoding="utf-8") as f:
                for n, line in enumerate(f):
                    fields_ = line.rstrip("\n").split("\t")
                    if n == 0 or (len(fields_) > 1 and fields_[1].isdigit() and int(fields_[1]) <= self.global_step):
                        keep.append(line if line.endswith("\n") else line + "\n")
        if not keep:
            keep = ["\t".join(self.LOG_COLUMNS) + "\n"]
        with open(self.log_file, "w", encoding="utf-8") as f:
            f.writelines(keep)

    def _draw_curves(self):
        """Redraw model.curves.png from the log; a failure is a warning, never the end of a run."""
        if not self.draw_curves:
            return
        from dcue_cli.plots import draw_training_curves

        try:
            draw_training_curves(self.log_file, self.curves_file,
                                 title=f"{self.output.name}: {self.cfg.objective}, batch {self.cfg.batch_size}")
        except Exception as exc:  # noqa: BLE001 - a picture is never worth a lost run
            log.warning("could not draw %s (%s): training goes on without it", self.curves_file, exc)
            self.draw_curves = False

    def _log_row(self, **row):
        if not self.master:
            return

        def fmt(v):
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                return ""
            return f"{v:.6g}" if isinstance(v, float) else str(v)

        with open(self.log_file, "a", encoding="utf-8") as f:
            f.write("\t".join(fmt(row.get(c)) for c in self.LOG_COLUMNS) + "\n")

    # -- one step --

    def _loss(self, batch):
        import torch

        from dcue_cli.model import (
            cosine,
            cosine_all,
            hinge_loss,
            regression_loss,
            softmax_loss,
        )

        cfg = self.cfg
        ctx = self.autocast() if self.autocast else contextlib.nullcontext()
        with ctx:
            if cfg.objective == "regress":
                pred = self.forward(batch.crops)
                return (regression_loss(pred, batch.targets) * batch.weights).mean()
            crops = batch.crops.reshape(-1, *batch.crops.shape[-2:])
            users, items = self.forward(crops, batch.users)
        users, items = users.float(), items.float()
        b = len(batch.users)
        if batch.pos_index is not None:  # song-grouped: S song crops, then the pool
            n_songs = len(items) - batch.neg_mask.shape[1]  # shapes only: no wait on the device
            song_vec, pool = items[:n_songs], items[n_songs:]
            pos = cosine(users, song_vec[batch.pos_index].unsqueeze(1))[:, 0]
            neg = cosine_all(users, pool)
            mask = batch.neg_mask.float()
            if batch.batch_neg_mask is not None:  # the batch's songs this user did not play
                inb = cosine_all(users, song_vec)
                neg = torch.cat([neg, inb], 1)
                mask = torch.cat([mask, batch.batch_neg_mask.float()], 1)
            pos_vec = None
        elif cfg.shared_negatives:
            pos_vec, pool = items[:b], items[b:]
            pos = cosine(users, pos_vec.unsqueeze(1))[:, 0]
            neg = cosine_all(users, pool)
            mask = batch.neg_mask.float()
        else:
            items = items.view(b, -1, items.shape[-1])
            scores = cosine(users, items)
            pos, neg, mask = scores[:, 0], scores[:, 1:], None
            pos_vec = items[:, 0]
        if batch.batch_neg_mask is not None and pos_vec is not None:
            # the batch's other positives join the negatives (not the pair itself, nor songs the user played)
            inb = cosine_all(users, pos_vec)
            inb_mask = (batch.batch_neg_mask & ~torch.eye(b, dtype=torch.bool, device=inb.device)).float()
            if mask is None:
                mask = torch.ones_like(neg)
            neg, mask = torch.cat([neg, inb], 1), torch.cat([mask, inb_mask], 1)
        if cfg.objective == "hinge":
            per_pair = hinge_loss(pos, neg, cfg.margin, mask)
            if mask is not None:
                # a pool or the batch gives a varying number of negatives per pair: scale the sum
                # to --negatives terms, so the loss (and the learning rate) means the same in every mode
                per_pair = per_pair * (cfg.negatives / mask.sum(dim=1).clamp(min=1))
        else:
            per_pair = softmax_loss(pos, neg, cfg.temperature, mask)
        return (per_pair * batch.weights).mean()

    def _set_lr(self):
        lr = self.cfg.lr * self.lr_scale / (1.0 + self.cfg.lr_decay * self.global_step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    # -- the epochs --

    def request_stop(self, *_args):
        """What Ctrl-C does: finish the current step, save, exit."""
        self._stop = True

    def run(self) -> TrainResult:
        import torch

        from dcue_cli.data import iterate_steps

        cfg = self.cfg
        steps = cfg.steps_per_epoch or self.sampler.steps_per_epoch()
        crops_per_step = self.sampler.crops_per_batch()
        self._open_log()
        rate, stopped_early = 0.0, False
        workers = cfg.workers if self.cache_mode == "none" else 0
        # Ctrl-C and SIGTERM finish the step in flight, then save (dcue_cli.interrupts)
        with StopSignals(on_request=self.request_stop):
            self.model.train()
            while self.epoch < cfg.epochs:
                epoch = self.epoch
                first = self.step_in_epoch
                loss_sum = torch.zeros((), device=self.device)
                n_loss, shown_loss = 0, float("nan")
                bar = log.progress(total=steps, initial=first, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                                   unit=" steps", disable=not self.master)
                t0 = time.perf_counter()
                done = 0
                lr = self._set_lr()
                batches = iterate_steps(self.sampler, epoch, first, steps - first, workers=workers,
                                        pin_memory=self.device.type == "cuda")
                interrupted = False
                for batch in batches:
                    if batch.crops.device != self.device:
                        batch = batch.to(self.device, non_blocking=True)
                    lr = self._set_lr()
                    loss = self._loss(batch)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                    loss_sum += loss.detach()
                    n_loss += 1
                    done += 1
                    self.global_step += 1
                    self.step_in_epoch = first + done
                    if done % 10 == 0 or self.step_in_epoch == steps:
                        shown_loss = float(loss_sum) / n_loss  # one host sync per 10 steps
                        rate = done * crops_per_step / max(time.perf_counter() - t0, 1e-9)
                        bar.set_postfix(loss=f"{shown_loss:.4f}", crops_s=f"{rate:,.0f}", refresh=False)
                    bar.update(1)
                    if cfg.log_every and self.global_step % cfg.log_every == 0 and self.step_in_epoch < steps:
                        self._log_row(epoch=epoch + 1, step=self.global_step, loss=float(loss_sum) / n_loss,
                                      crops_per_s=done * crops_per_step / max(time.perf_counter() - t0, 1e-9),
                                      seconds=time.perf_counter() - t0, lr=lr)
                    if self.dist.enabled:
                        # every process must stop after the same step: agree every 10 steps (one sync)
                        if (done % 10 == 0 or self.step_in_epoch == steps) and \
                                _any_flag(self._stop, self.dist, self.device):
                            interrupted = True
                            break
                    elif self._stop:
                        interrupted = True
                        break
                if hasattr(batches, "close"):
                    batches.close()
                bar.close()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                seconds = time.perf_counter() - t0
                rate = done * crops_per_step / max(seconds, 1e-9)
                mean_loss = float(loss_sum) / max(n_loss, 1)
                if interrupted:
                    if self.master:
                        self._save(self.last, epoch=epoch, step_in_epoch=self.step_in_epoch)
                        self._log_row(epoch=epoch + 1, step=self.global_step, loss=mean_loss,
                                      crops_per_s=rate, seconds=seconds, lr=lr)
                        self._draw_curves()
                    raise TrainingInterrupted(self.last, epoch, self.step_in_epoch)

                # end of epoch: validate, keep the best, decide whether to go on
                auc = float("nan")
                improved = False
                if self.master:
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
                    self.epoch, self.step_in_epoch = epoch + 1, 0
                    # the best first: a kill between the two saves then repeats this epoch on
                    # --resume (to the same weights) instead of leaving model.pt behind the state
                    if improved:
                        self._save(self.output, epoch=self.epoch, step_in_epoch=0)
                    self._save(self.last, epoch=self.epoch, step_in_epoch=0)
                    self._log_row(epoch=epoch + 1, step=self.global_step, loss=mean_loss, valid_auc=auc,
                                  crops_per_s=rate, seconds=seconds, lr=lr)
                    self._draw_curves()
                    log.info("epoch %d: loss %.4f, valid AUC %s%s, %s crops/s, %.1f s", epoch + 1, mean_loss,
                             "-" if not math.isfinite(auc) else f"{auc:.4f}", " (best)" if improved and
                             self.validator is not None else "", f"{rate:,.0f}", seconds)
                else:
                    self.epoch, self.step_in_epoch = epoch + 1, 0
                self.lr_scale = _broadcast_float(self.lr_scale, self.dist, self.device)
                stop = self.master and self.validator is not None and self.bad_epochs >= cfg.patience > 0
                if _broadcast_flag(stop, self.dist, self.device):
                    stopped_early = True
                    if self.master:
                        log.info("early stop: no better validation AUC for %d epochs (best %.4f at epoch %d)",
                                 self.bad_epochs, self.best_auc, self.best_epoch + 1)
                    break
        if self.master and not self.output.exists():  # e.g. --epochs reached before any save
            self._save(self.output, epoch=self.epoch, step_in_epoch=0)
        return TrainResult(self.best_auc if math.isfinite(self.best_auc) else float("nan"), self.best_epoch + 1,
                           self.epoch, self.global_step, rate, str(self.output), stopped_early)

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


class _MovedCache:
    """A host-memory cache whose crops are moved to the model's device as they are cut."""

    def __init__(self, cache, device):
        self.cache, self.device, self.crop = cache, device, cache.crop

    def crops_at(self, rows, starts):
        return self.cache.crops_at(rows.cpu(), starts.cpu()).to(self.device, non_blocking=True)

