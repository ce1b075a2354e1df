"""Crops of log-mel spectrograms for the audio network, in training and in `embed`.

- `Normaliser`: (x − mean) / std with melspec's statistics (or `estimate_normalisation`'s).
- `MelCache` holds the frames of chosen songs as one flat tensor on a device (GPU or host
  memory) and cuts crops with one gather (short clips tiled); `H5CropSource` cuts them
  straight from the HDF5 file (`--cache none`, in DataLoader workers); `MovedCache` moves a
  host cache's crops to the model's device.
- `tiled_crop_plan` and `item_vectors`: an item's vector is the mean over its non-overlapping
  crops (the authors' encoder), for validation and for `embed`.

torch on whichever device it is given; no click.
"""

import contextlib

import numpy as np
import torch

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.runtime import available_memory


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
    def load(cls, reader, items: np.ndarray, normaliser: Normaliser, crop: int,
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

    def __init__(self, reader, items: np.ndarray, normaliser: Normaliser, crop: int):
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
    if nbytes < 0.6 * available_memory():
        return "cpu"
    return "none"


class MovedCache:
    """A host-memory cache whose crops are moved to the model's device as they are cut."""

    def __init__(self, cache, device):
        self.cache, self.device, self.crop = cache, device, cache.crop

    def crops_at(self, rows, starts):
        return self.cache.crops_at(rows.cpu(), starts.cpu()).to(self.device, non_blocking=True)


def estimate_normalisation(reader, items, rng, max_items=500):
    """Scalar mean/std over (a sample of) the training songs, when melspec stored none: from the
    per-item sums (`/item_stats`, or the frames of an older file) through `io.mels.mean_std`."""
    from dcue_cli.io.mels import mean_std

    pick = items if len(items) <= max_items else rng.choice(items, max_items, replace=False)
    pick = np.sort(pick)
    count = int(reader.lengths[pick].sum()) * reader.n_mels
    mean, std = mean_std(reader.item_sums(pick), count, min_var=1e-12) if count else (0.0, 1e-6)
    return np.array([mean], np.float32), np.array([std], np.float32)


@torch.no_grad()
def item_vectors(audio_net, source, rows: np.ndarray, lengths: np.ndarray, *, batch_crops: int = 1024,
                 autocast=None, desc=None, stop=None) -> torch.Tensor:
    """Mean item vector over non-overlapping crops for cache `rows` of a MelCache -> (n, d) float32.
    `stop`: a StopSignals, checked between batches."""
    device = source.device
    item, starts = tiled_crop_plan(lengths, source.crop)
    rows_t = torch.as_tensor(np.asarray(rows, np.int64), device=device)
    item_t = torch.as_tensor(item, device=device)
    starts_t = torch.as_tensor(starts, device=device)
    out = None
    bar = log.progress(total=len(item), desc=desc, unit=" crops", unit_scale=True, disable=desc is None)
    for a in range(0, len(item), batch_crops):
        if stop is not None:
            stop.check()
        sl = slice(a, a + batch_crops)
        x = source.crops_at(rows_t[item_t[sl]], starts_t[sl])
        with autocast() if autocast else contextlib.nullcontext():
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
