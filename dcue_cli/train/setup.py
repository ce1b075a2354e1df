"""The pieces a training run is built from, one function each, in the order `Trainer` calls them:
the normalisation, the model's configuration, the crop sources and batch sampler, the
validator and the optimiser. Each takes what it needs and returns what it builds.
"""

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError


def report_data(data, mels_name: str, names: dict) -> None:
    """What the join dropped, and what training will see."""
    s = data.stats
    if s.get("items_without_split"):
        log.warning("%d songs of %s are in no split of %s: their plays are ignored",
                    s["items_without_split"], names.get("plays", "plays"), names.get("splits", "splits"))
    if s.get("items_without_mels"):
        log.warning("%d songs of the splits are absent from %s: their plays are ignored",
                    s["items_without_mels"], mels_name)
    if s.get("items_without_frames"):
        log.warning("%d songs of %s have no frames: ignored", s["items_without_frames"], mels_name)
    log.info("training: %s plays of %s users on %s songs; validation: %s plays on %s songs",
             f"{len(data.pair_users):,}", f"{data.n_users:,}", f"{len(data.train_items):,}",
             f"{len(data.valid_users):,}", f"{len(data.valid_items):,}")


def artists(ckpt, ckpt_path, amap, data, cfg, master: bool):
    """(vocabulary, artist index of each training song, of each validation song), or Nones.

    The vocabulary is the artists of the training songs (a resumed run's: its checkpoint's);
    songs without an artist in the map, and validation songs by other artists, get the unknown
    artist (0).
    """
    from dcue_cli.errors import OptionError
    from dcue_cli.io.artists import artist_indices, artist_vocabulary

    vocab = None if ckpt is None else ckpt.get("artist_vocab")
    if amap is None and vocab is not None:
        raise OptionError(f"--resume: {ckpt_path} was trained with --artists {cfg.artists or 'MAP'}: "
                          "give the same artist map again.")
    if amap is None or (ckpt is not None and vocab is None):
        if amap is not None and master:
            log.warning("--artists ignored: %s was trained without an artist map", ckpt_path)
        cfg.artists = ""  # no map, or one ignored: no part of this run
        return None, None, None
    if cfg.objective == "regress":
        raise OptionError("--artists applies to the ranking objectives (hinge, softmax), not --objective regress.")
    train_ids = data.mel_ids[data.train_items]
    if vocab is None:
        vocab = artist_vocabulary(amap, train_ids)
    if not vocab:
        raise DcueError(f"none of the {len(train_ids):,} training songs has an artist in {amap.path} (its items "
                        f"look like {', '.join(repr(i) for i in list(amap.artist_of)[:2])}, the songs like "
                        f"{', '.join(repr(str(i)) for i in train_ids[:2])}): give the map of these songs, keyed "
                        "by song id.")
    train, counts = artist_indices(train_ids, amap, vocab)
    valid, vcounts = artist_indices(data.mel_ids[data.valid_items], amap, vocab)
    if master:
        if counts["none"]:
            log.warning("%d of the %d training songs have no artist in %s: they train as the unknown artist",
                        counts["none"], len(train_ids), amap.path)
        log.info("artists: %s with training songs (the vocabulary); %s of %s validation songs by one of them",
                 f"{len(vocab):,}", f"{vcounts['known']:,}", f"{len(valid):,}")
    return list(vocab), train, valid


def normalisation(reader, data, ckpt, cfg, mels_name: str, master: bool):
    """(mean, std): the checkpoint's, else melspec's, else estimated from the training songs."""
    from dcue_cli.crops import estimate_normalisation

    if ckpt is not None:
        norm = ckpt["normalisation"]
        return np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
    stats = reader.normalisation()
    if stats is None:
        if master:
            log.warning("%s stores no mean/std: normalising with statistics estimated from the "
                        "training songs", mels_name)
        stats = estimate_normalisation(reader, data.train_items, np.random.default_rng(cfg.seed))
    return stats


def model_config(ckpt, ckpt_path, cfg, model_overrides: dict, explicit, target, n_users: int, n_mels: int,
                 master: bool, n_artists: int = 0):
    """The checkpoint's model configuration, else one from the options (regression: the WMF size;
    `n_artists`: the artist vocabulary's size with the unknown artist, 0 for none)."""
    from dcue_cli.io.checkpoints import model_config_of
    from dcue_cli.model import ModelConfig

    if ckpt is not None:
        return model_config_of(ckpt, ckpt_path)
    overrides = dict(model_overrides or {})
    if cfg.objective == "regress":
        d = target.item_vectors.shape[1]
        if "embed_dim" in set(explicit) and overrides.get("embed_dim") not in (None, d) and master:
            log.warning("--embed-dim %s ignored: the regression predicts the %d WMF factors",
                        overrides["embed_dim"], d)
        overrides["embed_dim"] = d
    overrides["n_users"] = 0 if cfg.objective == "regress" else n_users
    overrides["n_mels"] = n_mels
    overrides["n_artists"] = n_artists
    try:
        return ModelConfig(**overrides)
    except ValueError as exc:
        raise DcueError(f"model options: {exc}.") from None


def train_source(reader, data, mean, std, crop: int, cache_mode: str, cache_device):
    """Where training crops come from: a MelCache on a device, or the HDF5 file itself."""
    from dcue_cli.crops import H5CropSource, MelCache, Normaliser

    item_rows = data.train_items
    if cache_mode == "none":
        return H5CropSource(reader, item_rows, Normaliser(mean, std), crop)
    return MelCache.load(reader, item_rows, Normaliser(mean, std, device=cache_device),
                         crop, cache_device, desc="caching training mels")


# a step's memory over its crops' own bytes: the crops, the audio network's activations kept for
# the backward pass and their gradients (measured: 8.5x with the default network, float32, CPU)
STEP_MEMORY_FACTOR = 10


def crops_per_step(cfg) -> int:
    """Crops through the audio network per step (per process), as the samplers cut them."""
    if cfg.objective == "regress":
        return cfg.batch_size
    if cfg.shared_negatives:
        return -(-cfg.batch_size // cfg.listeners_per_song) + cfg.negatives
    return cfg.batch_size * (1 + cfg.negatives)


def check_negatives(cfg, n_train: int) -> None:
    """More negatives than training songs draws the same songs again and again (and costs a step
    per crop): refused, naming the most that makes sense."""
    if cfg.objective != "regress" and cfg.negatives > n_train:
        raise DcueError(f"--negatives {cfg.negatives}: there are only {n_train:,} training songs to draw "
                        f"negatives from: give --negatives {n_train} or fewer.")


def check_step_memory(cfg, source, device) -> None:
    """A step's crops and activations must fit the memory free now (the GPU's too), before the first."""
    from dcue_cli.runtime import available_memory

    n_mels = source.frames.shape[-1] if hasattr(source, "frames") else source.reader.n_mels
    crops = crops_per_step(cfg)
    need = STEP_MEMORY_FACTOR * crops * source.crop * n_mels * 4
    free, where = available_memory(), "in host memory"
    gpu = _training_gpu(device)
    if gpu is not None:
        import torch

        gpu_free = torch.cuda.mem_get_info(gpu)[0]
        if gpu_free < free:
            free, where = gpu_free, f"on {gpu}"
    if need > free:
        lower = ("--crop-frames or --batch-size" if cfg.objective == "regress"
                 else "--crop-frames, --batch-size or --negatives")
        raise DcueError(f"a training step needs about {need / 1e9:.1f} GB ({crops:,} crops of --crop-frames "
                        f"{source.crop} x {n_mels} mels, with the network's activations) but {free / 1e9:.1f} GB "
                        f"is free {where}: lower {lower}.")


def _training_gpu(device):
    """The CUDA device the model trains on: the cache's, else the current one once CUDA is in use."""
    import torch

    if getattr(device, "type", None) == "cuda":
        return device
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.device("cuda", torch.cuda.current_device())
    return None


def regression_sampler(data, target, source, cfg, device, dist, names, mels_name, master):
    """Batches of (training song, its WMF factors in units of their std); returns (sampler, scale)."""
    from dcue_cli.train.sampling import ItemSampler

    check_step_memory(cfg, source, device)
    item_rows = data.train_items
    index = {m: k for k, m in enumerate(target.item_ids)}
    have = np.array([index.get(m, -1) for m in data.mel_ids[item_rows]])
    keep = np.flatnonzero(have >= 0)
    if len(keep) == 0:
        raise DcueError(f"no training song of {mels_name} has factors in the target "
                        f"{names.get('target', 'file')}: was it written by `dcue wmf` on these plays?")
    if len(keep) < len(item_rows) and master:
        log.warning("%d of %d training songs have no factors in the target: trained without them",
                    len(item_rows) - len(keep), len(item_rows))
    factors = np.asarray(target.item_vectors, np.float32)[have[keep]]
    # WMF factors are small (std ~0.01): regress them in units of their std, and scale the
    # predictions back in `embed` (a global scale changes no user's ranking)
    scale = float(factors.std()) or 1.0
    sampler = ItemSampler(keep, factors / scale, source, batch_size=cfg.batch_size, seed=cfg.seed,
                          device=device, rank=dist.rank, world=dist.world)
    return sampler, scale


def pair_sampler(data, source, cfg, device, dist, item_artists=None):
    """Batches of (user, played song, negatives) for the ranking objectives (with their artists)."""
    from dcue_cli.train.sampling import PairSampler

    check_negatives(cfg, len(data.train_items))
    check_step_memory(cfg, source, device)
    try:
        return PairSampler(
            data, source, batch_size=cfg.batch_size, negatives=cfg.negatives, seed=cfg.seed,
            shared_negatives=cfg.shared_negatives,
            in_batch=cfg.objective == "softmax" or cfg.in_batch_negatives,
            sampling=cfg.negative_sampling, weighting=cfg.weighting, device=device,
            rank=dist.rank, world=dist.world, listeners_per_song=cfg.listeners_per_song,
            item_artists=item_artists, artist_dropout=cfg.artist_dropout)
    except ValueError as exc:
        raise DcueError(str(exc)) from None


def validator(reader, data, mean, std, crop, cfg, device, cache_mode, target_vectors, autocast, artists=None):
    """The master's validator over its own small cache of the validation songs, or None."""
    import torch

    from dcue_cli.crops import MelCache, MovedCache, Normaliser
    from dcue_cli.train.validate import Validator

    if not len(data.valid_items):
        log.warning("no validation songs: training without validation or early stopping (the last "
                    "epoch is kept)")
        return None
    vcache_device = device if cache_mode == "gpu" else torch.device("cpu")
    if device.type == "cuda" and cache_mode != "none":
        vcache_device = device  # validation songs are few: keep them by the model
    vcache = MelCache.load(reader, data.valid_items, Normaliser(mean, std, device=vcache_device),
                           crop, vcache_device, desc="caching validation mels")
    if vcache_device != device:
        vcache = MovedCache(vcache, device)
    users = None
    if cfg.objective == "regress":
        users = torch.as_tensor(np.asarray(target_vectors, np.float32))
    v = Validator(data, vcache, similarity="dot" if cfg.objective == "regress" else "cosine",
                  user_vectors=users, crop_batch=cfg.valid_crop_batch, autocast=autocast, artists=artists)
    if not v.possible:
        log.warning("no user has both a played and an unplayed validation song: training without "
                    "validation (the last epoch is kept)")
        return None
    return v


def optimizer(model, cfg):
    import torch

    params = list(model.parameters())
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":  # decoupled weight decay (Loshchilov & Hutter 2019)
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise DcueError(f"--optimizer {cfg.optimizer}: expected sgd, adam or adamw.")
