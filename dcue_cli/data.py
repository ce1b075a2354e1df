"""What the training loop eats: mels and plays joined, crops and negatives drawn on the device.

- `load_training_data` joins a mels HDF5, a plays TSV and a splits TSV into integer arrays
  (training pairs, validation pairs, which songs are which) and says what it dropped.
- `MelCache` holds the log-mels of the songs training needs as one flat tensor on a device
  (GPU or CPU memory) and cuts random 130-frame crops (short clips tiled) with one gather,
  normalised with the statistics `melspec` stored. `H5CropSource` does the same straight
  from the HDF5 file, for sets that fit nowhere (`--cache none`, in DataLoader workers).
- `PairSampler` / `ItemSampler` draw each step's batch (users, positives, negatives) with a
  generator seeded from (seed, epoch, step, rank) alone: any step can be redrawn exactly,
  which makes `--resume` and several processes (DDP) reproducible without storing queues.

Everything here is torch on whichever device it is given; no click, no logging of progress.
"""

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from dcue_cli import log
from dcue_cli.errors import DcueError

# ---- reading the mels contract ----


class MelsReader:
    """`dcue_cli.io.mels.MelsFile` (schema checked on open) plus contiguous frame-range reads
    (one slice for many items, not one read per item) and a reopen after fork() for workers."""

    def __init__(self, path):
        from dcue_cli.io.mels import MelsFile

        self.path = str(path)
        self._mels = MelsFile(self.path)
        self._pid = os.getpid()
        self.ids = self._mels.ids
        self.offsets = self._mels.offsets
        self.attrs = self._mels.attrs
        self.n_mels = self._mels.n_mels

    @property
    def mel(self):
        return self._mels.mel

    def reopen_if_forked(self):
        """h5py handles must not cross fork(): a DataLoader worker opens its own."""
        if self._pid != os.getpid():
            from dcue_cli.io.mels import MelsFile

            self._mels = MelsFile(self.path)
            self._pid = os.getpid()

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def frames(self, start: int, stop: int) -> np.ndarray:
        return self._mels.mel[start:stop]

    def close(self):
        self._mels.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _plain(value):
    """HDF5 attribute -> plain Python (str, int, float, list) for a weights_only checkpoint."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, np.generic):
        return value.item()
    return value


def normalisation_from_attrs(attrs: dict, n_mels: int):
    """(mean, std) as float32 arrays of shape (n_mels,) or (1,), or None when melspec stored none."""
    if "mean" not in attrs or "std" not in attrs:
        return None
    mean = np.asarray(attrs["mean"], dtype=np.float32).reshape(-1)
    std = np.asarray(attrs["std"], dtype=np.float32).reshape(-1)
    if mean.size not in (1, n_mels) or std.size not in (1, n_mels) or not np.all(std > 0):
        return None
    return mean, std


def feature_config_from_attrs(attrs: dict) -> dict:
    """The feature settings a model was trained on (a plain dict for the checkpoint)."""
    keys = ("sr", "n_fft", "hop_length", "n_mels", "fmin", "fmax", "compression", "window", "crop_frames")
    return {k: _plain(attrs[k]) for k in keys if k in attrs}


# ---- joining plays, splits and mels ----


@dataclass
class TrainingData:
    """Integer views of the inputs. Item numbers index the mels file; users index `user_ids`."""

    mel_ids: np.ndarray  # (N,) every item of the mels file
    lengths: np.ndarray  # (N,) frames per item
    train_items: np.ndarray  # mel indices of training songs (with frames)
    valid_items: np.ndarray  # mel indices of validation songs (with frames)
    user_ids: np.ndarray  # users with at least one training play: the model's users
    pair_users: np.ndarray  # (P,) training pairs: user number
    pair_items: np.ndarray  # (P,) position in train_items
    pair_counts: np.ndarray  # (P,) play counts
    valid_users: np.ndarray  # validation pairs (user number, position in valid_items)
    valid_pair_items: np.ndarray
    stats: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def fingerprint(self) -> dict:
        """What a resumed run checks it is given the same data."""
        return {"n_pairs": len(self.pair_users), "n_users": int(self.n_users),
                "n_train_items": len(self.train_items), "n_valid_items": len(self.valid_items)}


def load_training_data(mel_ids, lengths, plays, splits: dict, *, mels_name="mels", plays_name="plays",
                       splits_name="splits", user_ids=None) -> TrainingData:
    """Join plays (deduplicated, counts summed) with the splits and the mels' items.

    `user_ids`, when given (a resumed run, or a regression target's users), fixes the user
    numbering; otherwise users are those with a training play, in order of first appearance.
    """
    mel_ids = np.asarray(mel_ids, dtype=object)
    lengths = np.asarray(lengths, dtype=np.int64)
    mel_index = {m: i for i, m in enumerate(mel_ids)}
    plays = plays.deduplicate()

    # per item of the plays file: its mel index (-1: absent) and split code (0 train, 1 valid, 2 test, -1 none)
    code_of = {"train": 0, "valid": 1, "test": 2}
    item_mel = np.array([mel_index.get(i, -1) for i in plays.item_ids], dtype=np.int64)
    item_split = np.array([code_of.get(splits.get(i), -1) for i in plays.item_ids], dtype=np.int8)
    has_frames = np.zeros(len(plays.item_ids), bool)
    known = item_mel >= 0
    has_frames[known] = lengths[item_mel[known]] > 0

    stats = {}
    no_split = item_split < 0
    if no_split.all():
        raise DcueError(f"no item of {plays_name} appears in {splits_name}: are they from the same "
                        "`dcue subset` run?")
    if no_split.any():
        stats["items_without_split"] = int(no_split.sum())
    in_split_not_mels = (~no_split) & (~known)
    if in_split_not_mels.any():
        stats["items_without_mels"] = int(in_split_not_mels.sum())
    empty = known & ~has_frames
    if empty.any():
        stats["items_without_frames"] = int(empty.sum())

    # training and validation songs: from the splits, present in the mels with frames
    split_codes = np.array([code_of.get(splits.get(m), -1) for m in mel_ids], dtype=np.int8)
    train_items = np.flatnonzero((split_codes == 0) & (lengths > 0))
    valid_items = np.flatnonzero((split_codes == 1) & (lengths > 0))
    if len(train_items) == 0:
        n_train = sum(1 for s in splits.values() if s == "train")
        raise DcueError(f"none of the {n_train} training songs of {splits_name} has frames in {mels_name}: "
                        "do the ids match? (melspec writes track ids unless given --id-map unique_tracks.txt)")
    train_pos = np.full(len(mel_ids), -1, np.int64)
    train_pos[train_items] = np.arange(len(train_items))
    valid_pos = np.full(len(mel_ids), -1, np.int64)
    valid_pos[valid_items] = np.arange(len(valid_items))

    row_mel = item_mel[plays.items]
    row_ok = row_mel >= 0
    row_train = np.zeros(len(plays), bool)
    row_valid = np.zeros(len(plays), bool)
    row_train[row_ok] = train_pos[row_mel[row_ok]] >= 0
    row_valid[row_ok] = valid_pos[row_mel[row_ok]] >= 0
    if not row_train.any():
        raise DcueError(f"no play of {plays_name} is of a training song with frames in {mels_name}: "
                        f"check that {plays_name}, {splits_name} and {mels_name} describe the same songs.")

    if user_ids is None:
        used = np.unique(plays.users[row_train])
        # keep the plays file's order of first appearance, for a stable numbering
        user_ids = plays.user_ids[np.sort(used)]
    user_ids = np.asarray(user_ids, dtype=object)
    user_number = {u: k for k, u in enumerate(user_ids)}
    plays_user_to_model = np.array([user_number.get(u, -1) for u in plays.user_ids], dtype=np.int64)
    row_user = plays_user_to_model[plays.users]
    row_train &= row_user >= 0
    row_valid &= row_user >= 0

    return TrainingData(
        mel_ids=mel_ids, lengths=lengths, train_items=train_items, valid_items=valid_items,
        user_ids=user_ids,
        pair_users=row_user[row_train], pair_items=train_pos[row_mel[row_train]],
        pair_counts=plays.counts[row_train].astype(np.int64),
        valid_users=row_user[row_valid], valid_pair_items=valid_pos[row_mel[row_valid]],
        stats=stats,
    )


# ---- crops ----


def random_starts(lengths: torch.Tensor, crop: int, generator) -> torch.Tensor:
    """A random start per item: within [0, L − crop] for long clips, any phase for short ones."""
    span = torch.where(lengths >= crop, lengths - crop + 1, lengths)
    u = torch.rand(lengths.shape, generator=generator, device=lengths.device)
    return torch.minimum((u * span).long(), span - 1)


def crop_positions(starts: torch.Tensor, lengths: torch.Tensor, crop: int) -> torch.Tensor:
    """(n, crop) frame positions within each item; wraps around (tiles) a clip shorter than a crop."""
    steps = torch.arange(crop, device=starts.device)
    return (starts.unsqueeze(1) + steps) % lengths.unsqueeze(1)


def tiled_crop_plan(lengths: np.ndarray, crop: int):
    """Non-overlapping crops of every item, for item vectors: (item index per crop, start per crop).

    An item of L frames gives max(1, L // crop) crops (the remainder is dropped, as the
    authors' encoder does); one shorter than a crop gives one tiled crop.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n_crops = np.maximum(1, lengths // crop)
    n_crops[lengths <= 0] = 0
    item = np.repeat(np.arange(len(lengths)), n_crops)
    first = np.concatenate([[0], np.cumsum(n_crops)[:-1]])
    k = np.arange(len(item)) - np.repeat(first, n_crops)
    return item, k * crop


class Normaliser:
    """x -> (x − mean) / std with melspec's statistics (scalar or per mel bin)."""

    def __init__(self, mean, std, device="cpu"):
        self.mean = torch.as_tensor(np.asarray(mean, np.float32).reshape(-1), device=device)
        self.std = torch.as_tensor(np.asarray(std, np.float32).reshape(-1), device=device)
        self.inv_std = 1.0 / self.std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) * self.inv_std

    def to_dict(self) -> dict:
        return {"mean": self.mean.cpu().tolist(), "std": self.std.cpu().tolist()}


class MelCache:
    """The frames of chosen items as one (frames, n_mels) tensor on a device; crops by gather."""

    def __init__(self, frames: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor,
                 normaliser: Normaliser, crop: int):
        self.frames = frames
        self.offsets = offsets
        self.lengths = lengths
        self.normalise = normaliser
        self.crop = crop
        self.device = frames.device

    @classmethod
    def load(cls, reader: MelsReader, items: np.ndarray, normaliser: Normaliser, crop: int,
             device, desc="caching mels"):
        """Copy `items` (mel indices, in this order) from the file into memory on `device`.

        Runs of consecutive items are read in single slices; the host copy is made one
        slice at a time, so a GPU cache never needs the whole set in host memory twice.
        """
        items = np.asarray(items, dtype=np.int64)
        lengths = reader.offsets[items + 1] - reader.offsets[items]
        new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        total = int(new_offsets[-1])
        dtype = torch.float16 if reader.mel.dtype == np.float16 else torch.float32
        frames = torch.empty((total, reader.n_mels), dtype=dtype, device=device)
        order = np.argsort(items, kind="stable")
        bar = log.progress(total=total, desc=desc, unit=" frames", unit_scale=True)
        budget = max(1, (512 << 20) // (reader.n_mels * reader.mel.dtype.itemsize))  # frames per read: ~512 MB
        i = 0
        while i < len(order):
            # a run of items consecutive in the file, up to the read budget
            j = i + 1
            start = reader.offsets[items[order[i]]]
            while (j < len(order) and items[order[j]] == items[order[j - 1]] + 1
                   and reader.offsets[items[order[j]] + 1] - start <= budget):
                j += 1
            stop = reader.offsets[items[order[j - 1]] + 1]
            block = torch.from_numpy(np.ascontiguousarray(reader.frames(int(start), int(stop))))
            run = order[i:j]
            if np.all(np.diff(run) == 1):  # the usual case (items in file order): one copy for the run
                frames[new_offsets[run[0]]:new_offsets[run[-1] + 1]].copy_(block)
            else:
                for k in run:
                    a = reader.offsets[items[k]] - start
                    n = lengths[k]
                    frames[new_offsets[k]:new_offsets[k] + n].copy_(block[a:a + n])
            bar.update(int(stop - start))
            i = j
        bar.close()
        return cls(frames, torch.as_tensor(new_offsets[:-1], device=device),
                   torch.as_tensor(lengths, device=device), normaliser, crop)

    def nbytes(self) -> int:
        return self.frames.numel() * self.frames.element_size()

    def random_crops(self, rows: torch.Tensor, generator) -> torch.Tensor:
        """One random crop per entry of `rows` (cache rows, any shape) -> (*rows.shape, crop, n_mels)."""
        flat = rows.reshape(-1)
        lengths = self.lengths[flat]
        starts = random_starts(lengths, self.crop, generator)
        return self._gather(flat, starts, lengths).view(*rows.shape, self.crop, -1)

    def crops_at(self, rows: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        return self._gather(rows, starts, self.lengths[rows])

    def _gather(self, rows, starts, lengths):
        pos = crop_positions(starts, lengths, self.crop) + self.offsets[rows].unsqueeze(1)
        x = self.frames.index_select(0, pos.reshape(-1)).view(len(rows), self.crop, -1)
        return self.normalise(x)


class H5CropSource:
    """Random crops read straight from the HDF5 file (`--cache none`), for DataLoader workers."""

    def __init__(self, reader: MelsReader, items: np.ndarray, normaliser: Normaliser, crop: int):
        self.reader = reader
        self.items = np.asarray(items, dtype=np.int64)  # cache row -> mel index
        self.offsets = reader.offsets
        self.lengths_np = reader.lengths[self.items]
        self.lengths = torch.as_tensor(self.lengths_np)
        self.normalise = normaliser
        self.crop = crop
        self.device = torch.device("cpu")

    def random_crops(self, rows: torch.Tensor, generator) -> torch.Tensor:
        self.reader.reopen_if_forked()
        flat = rows.reshape(-1).cpu()
        lengths = self.lengths[flat]
        starts = random_starts(lengths, self.crop, generator).numpy()
        rows_np, lens = flat.numpy(), lengths.numpy()
        out = np.empty((len(rows_np), self.crop, self.reader.n_mels), dtype=np.float32)
        # read in file order: neighbouring crops share HDF5 chunks in its cache
        for k in np.argsort(self.offsets[self.items[rows_np]] + starts, kind="stable"):
            base = self.offsets[self.items[rows_np[k]]]
            length, s = int(lens[k]), int(starts[k])
            if s + self.crop <= length:
                out[k] = self.reader.frames(base + s, base + s + self.crop)
            else:  # a short clip, tiled
                clip = self.reader.frames(base, base + length)
                out[k] = clip[(s + np.arange(self.crop)) % length]
        x = torch.from_numpy(out)
        return self.normalise(x).view(*rows.shape, self.crop, -1)


# ---- batches ----


def step_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed from (seed, epoch, step, rank, ...): splitmix64 over the parts."""
    x = seed & 0xFFFFFFFFFFFFFFFF
    for p in parts:
        x = (x + 0x9E3779B97F4A7C15 + (p & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


class _Seeded:
    """One reusable generator per device, reseeded for every (epoch, step)."""

    def __init__(self, seed: int, device):
        self.seed = seed
        self.device = torch.device(device)
        self._gen = torch.Generator(device=self.device)

    def generator(self, *parts) -> torch.Generator:
        self._gen.manual_seed(step_seed(self.seed, *parts))
        return self._gen


@dataclass
class Batch:
    users: torch.Tensor | None  # (B,)
    crops: torch.Tensor  # (B, K, crop, n_mels): positive then negatives; or (B + P, crop, n_mels) shared
    weights: torch.Tensor  # (B,) per-pair loss weight (1 when binarised)
    neg_mask: torch.Tensor | None = None  # (B, P) shared pool: which pool songs are negatives
    batch_neg_mask: torch.Tensor | None = None  # (B, B) softmax: other positives usable as negatives
    targets: torch.Tensor | None = None  # (B, d) regression targets
    n_crops: int = 0
    # song-grouped batches: the S positive songs' crops come first, pair i's is pos_index[i];
    # batch_neg_mask is then (B, S): which of the batch's songs each user has not played
    pos_index: torch.Tensor | None = None

    def to(self, device, non_blocking=False) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)
        return Batch(move(self.users), move(self.crops), move(self.weights), move(self.neg_mask),
                     move(self.batch_neg_mask), move(self.targets), self.n_crops, move(self.pos_index))


class PairSampler:
    """Batches of (user, played song, negatives) over the training pairs, on `device`.

    An epoch is one pass over the training pairs in a permutation drawn from (seed, epoch);
    with `world` processes each takes every `world`-th batch-sized slice. Negatives are
    training songs the user has not played: drawn uniformly (or by popularity), then any
    draw that hits one of the user's songs is redrawn (a fixed number of rounds, so the GPU
    never waits on the host; what is left after them is vanishingly rare at MSD sparsity).
    """

    REDRAW_ROUNDS = 8

    def __init__(self, data: TrainingData, source, *, batch_size: int, negatives: int, seed: int,
                 shared_negatives: bool = False, in_batch: bool = False, sampling: str = "uniform",
                 weighting: str = "binary", device="cpu", rank: int = 0, world: int = 1,
                 listeners_per_song: int = 1):
        self.device = torch.device(device)
        self.source = source
        self.batch_size = batch_size
        self.negatives = negatives
        self.shared = shared_negatives
        self.in_batch = in_batch
        if listeners_per_song < 1 or (listeners_per_song > 1 and not shared_negatives):
            raise ValueError("listeners per song above 1 needs shared negatives")
        self.listeners = listeners_per_song
        self.songs_per_batch = -(-batch_size // listeners_per_song)
        self.rank, self.world = rank, world
        self.n_train = len(data.train_items)
        self.seeds = _Seeded(seed, self.device)
        dev = self.device
        self.pair_users = torch.as_tensor(data.pair_users, device=dev)
        self.pair_items = torch.as_tensor(data.pair_items, device=dev)
        self.n_pairs = len(data.pair_users)
        keys = data.pair_users.astype(np.int64) * self.n_train + data.pair_items
        self.pos_keys = torch.as_tensor(np.unique(keys), device=dev)
        if sampling == "popularity":
            pop = np.bincount(data.pair_items, weights=data.pair_counts, minlength=self.n_train)
            cdf = np.cumsum(pop / pop.sum())
            self.neg_cdf = torch.as_tensor(cdf, dtype=torch.float64, device=dev)
        elif sampling == "uniform":
            self.neg_cdf = None
        else:
            raise ValueError(f"unknown negative sampling {sampling!r}")
        if weighting == "log":
            w = 1.0 + np.log(data.pair_counts.astype(np.float64))
            w /= w.mean()
        elif weighting == "binary":
            w = np.ones(self.n_pairs)
        else:
            raise ValueError(f"unknown weighting {weighting!r}")
        self.pair_weights = torch.as_tensor(w, dtype=torch.float32, device=dev)
        self._perm_epoch, self._perm = None, None
        if self.listeners > 1:  # each song's pairs, to draw its listeners from (CSR by song)
            order = np.argsort(data.pair_items, kind="stable")
            counts = np.bincount(data.pair_items, minlength=self.n_train)
            self.song_pairs = torch.as_tensor(order, device=dev)
            self.song_start = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)[:-1]]), device=dev)
            self.song_count = torch.as_tensor(counts, device=dev)

    def steps_per_epoch(self) -> int:
        return max(1, -(-self.n_pairs // (self.batch_size * self.world)))

    def crops_per_batch(self) -> int:
        if self.shared:
            return self.songs_per_batch + self.negatives
        return self.batch_size * (1 + self.negatives)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm_epoch != epoch:
            g = self.seeds.generator(epoch, -1)
            self._perm = torch.randperm(self.n_pairs, generator=g, device=self.device)
            self._perm_epoch = epoch
        return self._perm

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        q = users.long() * self.n_train + items.long()
        idx = torch.searchsorted(self.pos_keys, q).clamp(max=len(self.pos_keys) - 1)
        return self.pos_keys[idx] == q

    def _draw_items(self, shape, g) -> torch.Tensor:
        if self.neg_cdf is None:
            return torch.randint(self.n_train, shape, generator=g, device=self.device)
        u = torch.rand(shape, generator=g, device=self.device, dtype=torch.float64)
        return torch.searchsorted(self.neg_cdf, u).clamp(max=self.n_train - 1)

    def draw_negatives(self, users: torch.Tensor, g) -> torch.Tensor:
        """(B, negatives) training songs each user has not played (redrawn on a hit)."""
        shape = (len(users), self.negatives)
        negs = self._draw_items(shape, g)
        u = users.unsqueeze(1).expand(shape)
        for _ in range(self.REDRAW_ROUNDS):
            hit = self.is_positive(u, negs)
            negs = torch.where(hit, self._draw_items(shape, g), negs)
        return negs

    def batch(self, epoch: int, step: int) -> Batch:
        if self.listeners > 1:
            return self._song_grouped_batch(epoch, step)
        perm = self._permutation(epoch)  # (reseeds the shared generator: draw it first)
        g = self.seeds.generator(epoch, step, self.rank)
        start = (step * self.world + self.rank) * self.batch_size
        idx = perm[(start + torch.arange(self.batch_size, device=self.device)) % self.n_pairs]
        users, pos = self.pair_users[idx], self.pair_items[idx]
        weights = self.pair_weights[idx]
        batch_neg_mask = None
        if self.in_batch:
            # other pairs' positives serve as negatives unless this user played them too
            batch_neg_mask = ~self.is_positive(users.unsqueeze(1), pos.unsqueeze(0))
        if self.shared:
            pool = self._draw_items((self.negatives,), g)
            neg_mask = ~self.is_positive(users.unsqueeze(1), pool.unsqueeze(0))
            rows = torch.cat([pos, pool])
            crops = self.source.random_crops(rows, g)
            return Batch(users, crops, weights, neg_mask=neg_mask, batch_neg_mask=batch_neg_mask,
                         n_crops=len(rows))
        negs = self.draw_negatives(users, g)
        rows = torch.cat([pos.unsqueeze(1), negs], dim=1)
        crops = self.source.random_crops(rows, g)
        return Batch(users, crops, weights, batch_neg_mask=batch_neg_mask, n_crops=rows.numel())

    def _song_grouped_batch(self, epoch: int, step: int) -> Batch:
        """B pairs on B / L songs: L listeners of each song share its one crop, so a step sees
        L times the pairs per crop through the audio network (its cost). Each song is a pair
        drawn from the epoch's permutation, then L - 1 more of its pairs at random: every pair
        remains equally likely, only grouped. The batch's songs and a shared pool are the
        negatives, each masked where the user played it."""
        perm = self._permutation(epoch)
        g = self.seeds.generator(epoch, step, self.rank)
        s, b, dev = self.songs_per_batch, self.batch_size, self.device
        start = (step * self.world + self.rank) * s
        anchors = perm[(start + torch.arange(s, device=dev)) % self.n_pairs]
        songs = self.pair_items[anchors]
        draw = torch.rand((s, self.listeners - 1), generator=g, device=dev)
        offset = (draw * self.song_count[songs].unsqueeze(1)).long()
        others = self.song_pairs[self.song_start[songs].unsqueeze(1) + offset]
        pairs = torch.cat([anchors.unsqueeze(1), others], 1).reshape(-1)[:b]
        pos_index = torch.arange(s, device=dev).repeat_interleave(self.listeners)[:b]
        users = self.pair_users[pairs]
        pool = self._draw_items((self.negatives,), g)
        neg_mask = ~self.is_positive(users.unsqueeze(1), pool.unsqueeze(0))
        batch_neg_mask = ~self.is_positive(users.unsqueeze(1), songs.unsqueeze(0)) if self.in_batch else None
        rows = torch.cat([songs, pool])
        crops = self.source.random_crops(rows, g)
        return Batch(users, crops, self.pair_weights[pairs], neg_mask=neg_mask, batch_neg_mask=batch_neg_mask,
                     n_crops=len(rows), pos_index=pos_index)


class ItemSampler:
    """Batches of (training song crop, its WMF factors) for the regression objective."""

    def __init__(self, rows: np.ndarray, targets: np.ndarray, source, *, batch_size: int, seed: int,
                 device="cpu", rank: int = 0, world: int = 1):
        self.device = torch.device(device)
        self.source = source
        self.rows = torch.as_tensor(rows, device=self.device)  # cache row of each training song
        self.targets = torch.as_tensor(targets, dtype=torch.float32, device=self.device)
        self.batch_size = batch_size
        self.rank, self.world = rank, world
        self.seeds = _Seeded(seed, self.device)
        self.n = len(rows)
        self._perm_epoch, self._perm = None, None

    def steps_per_epoch(self) -> int:
        return max(1, -(-self.n // (self.batch_size * self.world)))

    def crops_per_batch(self) -> int:
        return self.batch_size

    def batch(self, epoch: int, step: int) -> Batch:
        if self._perm_epoch != epoch:
            self._perm = torch.randperm(self.n, generator=self.seeds.generator(epoch, -1), device=self.device)
            self._perm_epoch = epoch
        g = self.seeds.generator(epoch, step, self.rank)
        start = (step * self.world + self.rank) * self.batch_size
        idx = self._perm[(start + torch.arange(self.batch_size, device=self.device)) % self.n]
        crops = self.source.random_crops(self.rows[idx], g)
        ones = torch.ones(self.batch_size, device=self.device)
        return Batch(None, crops, ones, targets=self.targets[idx], n_crops=self.batch_size)


class StepDataset(torch.utils.data.Dataset):
    """Steps [first, first + n) of one epoch as a map-style dataset (for `--cache none` workers)."""

    def __init__(self, sampler, epoch: int, first: int, n: int):
        self.sampler, self.epoch, self.first, self.n = sampler, epoch, first, n

    def __len__(self):
        return self.n

    def __getitem__(self, k):
        return self.sampler.batch(self.epoch, self.first + k)


def _collate_one(batch):
    return batch


def iterate_steps(sampler, epoch: int, first: int, n: int, workers: int = 0, pin_memory=False):
    """Yield the batches of steps [first, first + n): in this process, or from worker processes."""
    if workers <= 0:
        for step in range(first, first + n):
            yield sampler.batch(epoch, step)
        return
    loader = torch.utils.data.DataLoader(
        StepDataset(sampler, epoch, first, n), batch_size=None, shuffle=False, num_workers=workers,
        collate_fn=_collate_one, pin_memory=pin_memory, prefetch_factor=4, persistent_workers=False)
    yield from loader


# ---- item vectors (validation and embed) ----


@torch.no_grad()
def item_vectors(audio_net, source, rows: np.ndarray, lengths: np.ndarray, *, batch_crops: int = 1024,
                 autocast=None, desc=None) -> torch.Tensor:
    """Mean item vector over non-overlapping crops for cache `rows` of a MelCache -> (n, d) float32."""
    device = source.device
    item, starts = tiled_crop_plan(lengths, source.crop)
    rows_t = torch.as_tensor(np.asarray(rows, np.int64), device=device)
    item_t = torch.as_tensor(item, device=device)
    starts_t = torch.as_tensor(starts, device=device)
    out = None
    bar = log.progress(total=len(item), desc=desc, unit=" crops", unit_scale=True, disable=desc is None)
    for a in range(0, len(item), batch_crops):
        sl = slice(a, a + batch_crops)
        x = source.crops_at(rows_t[item_t[sl]], starts_t[sl])
        with autocast() if autocast else _null():
            v = audio_net(x).float()
        if out is None:
            out = torch.zeros((len(rows), v.shape[1]), dtype=torch.float32, device=device)
        out.index_add_(0, item_t[sl], v)
        bar.update(len(v))
    bar.close()
    counts = torch.as_tensor(np.maximum(1, np.bincount(item, minlength=len(rows))), device=device)
    if out is None:
        return torch.zeros((len(rows), 0))
    return out / counts.unsqueeze(1).float()


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
