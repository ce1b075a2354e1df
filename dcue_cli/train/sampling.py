"""Each training step's batch, drawn from (seed, epoch, step, rank) alone.

`PairSampler` draws (user, played song, negatives) for the ranking objectives, `ItemSampler`
(song, WMF factors) for the regression baseline; `iterate_steps` yields a range of steps in
this process or from DataLoader workers. Any step can be redrawn exactly, which makes
`--resume` and several processes (DDP) reproducible without storing queues.
"""

from dataclasses import dataclass

import numpy as np
import torch

from dcue_cli.train.data import TrainingData


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
    artists: torch.Tensor | None = None  # the artist index of each crop (rows' shape; 0: unknown or dropped)

    def to(self, device, non_blocking=False) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)
        return Batch(move(self.users), move(self.crops), move(self.weights), move(self.neg_mask),
                     move(self.batch_neg_mask), move(self.targets), self.n_crops, move(self.pos_index),
                     move(self.artists))


class PairSampler:
    """Batches of (user, played song, negatives) over the training pairs, on `device`.

    An epoch is one pass over the training pairs in a permutation drawn from (seed, epoch);
    with `world` processes each takes every `world`-th batch-sized slice. Negatives are
    training songs the user has not played: drawn uniformly (or by popularity), then any
    draw that hits one of the user's songs is redrawn (a fixed number of rounds, so the GPU
    never waits on the host; what is left after them is vanishingly rare at MSD sparsity).
    With `item_artists` (the artist index of each training song, 0 unknown) every crop carries its
    song's artist, replaced by the unknown artist with probability `artist_dropout`, drawn after
    the crops from the step's generator (so an audio-only run draws what it always drew).
    """

    REDRAW_ROUNDS = 8

    def __init__(self, data: TrainingData, source, *, batch_size: int, negatives: int, seed: int,
                 shared_negatives: bool = False, in_batch: bool = False, sampling: str = "uniform",
                 weighting: str = "binary", device="cpu", rank: int = 0, world: int = 1,
                 listeners_per_song: int = 1, item_artists=None, artist_dropout: float = 0.0):
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
        self.item_artists = None if item_artists is None else torch.as_tensor(
            np.asarray(item_artists, np.int64), device=dev)
        self.artist_dropout = float(artist_dropout)
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
                         n_crops=len(rows), artists=self.artists_of(rows, g))
        negs = self.draw_negatives(users, g)
        rows = torch.cat([pos.unsqueeze(1), negs], dim=1)
        crops = self.source.random_crops(rows, g)
        return Batch(users, crops, weights, batch_neg_mask=batch_neg_mask, n_crops=rows.numel(),
                     artists=self.artists_of(rows, g))

    def artists_of(self, rows: torch.Tensor, g) -> torch.Tensor | None:
        """The artist of each training song in `rows`, the unknown artist (0) where dropped; None
        without artists (and then no draw)."""
        if self.item_artists is None:
            return None
        artists = self.item_artists[rows]
        if self.artist_dropout > 0:
            drop = torch.rand(rows.shape, generator=g, device=self.device) < self.artist_dropout
            artists = artists.masked_fill(drop, 0)
        return artists

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
                     n_crops=len(rows), pos_index=pos_index, artists=self.artists_of(rows, g))


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
