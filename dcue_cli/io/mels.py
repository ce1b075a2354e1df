"""The mels HDF5 contract, written by `dcue melspec`, read by `train` and `embed`.

    /ids      (N,) UTF-8 strings, sorted
    /offsets  (N+1,) int64; item i is mel[offsets[i]:offsets[i+1]]
    /mel      (total_frames, n_mels) float16 or float32, chunked along frames, resizable
    /item_stats (N, 2) float64: sum and sum of squares of each item's stored values (so the
              mean/std of any subset, e.g. the training split, needs no pass over /mel)
    attributes: the feature settings (sr, n_fft, hop_length, n_mels, fmin, fmax, window, center,
                power, compression, resampler, max_seconds, offset, dtype ...), mean and std of
                all stored values, n_items, total_frames, dcue_version.

This module is the format's one reader, `MelsFile(path)`, and what every mels module shares
(attribute values, settings comparison, item statistics). Writers: `MelsWriter` in
`dcue_cli.io.mels_writer` (durable and resumable, for `dcue melspec`), over the one fixed
write sequence of `dcue_cli.io.mels_append`; `merge_mels` in `dcue_cli.io.mels_merge`.

How nothing is lost or half-done. An HDF5 file killed in the middle of a write can be left
unopenable, so no HDF5 file is ever modified in place:
  * completed items go to `OUTPUT.partial/seg-NNNNNN.h5`, each segment written under a temporary
    name and renamed into place when closed (every --checkpoint-every seconds), so each segment
    on disk is complete and opens; a kill loses at most the items of the open segment;
  * `finish()` writes the whole output (the previous output, if any, and the segments, in id
    order, with the statistics) to a temporary file, renames it over OUTPUT, then deletes the
    partial folder. A run that starts from nothing also streams the output-to-be beside the
    segments as it goes, so that finishing it is a rename rather than a copy.
A rerun after a kill at any point skips what the output and the segments hold and ends with
the same bytes an uninterrupted run writes: every output is written by one fixed sequence of
HDF5 calls over the items in id order (`AppendFile`), so its bytes depend only on the set of
items, never on how the work was cut into segments, streamed, or merged from shards.
"""

from __future__ import annotations

import math
import os

import numpy as np

from dcue_cli.errors import DcueError, first_line

WRITER_HINT = "was it written by `dcue melspec`?"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
STAT_KEYS = ("mean", "std", "n_items", "total_frames", "dcue_version", "created_by")
# Attributes that are not feature settings: they may differ between files that can be merged.
NON_FEATURE_KEYS = frozenset(STAT_KEYS) | {"shard", "min_seconds", "silence_db"}
# The feature settings a model trained on a mels file records in its checkpoint.
MODEL_FEATURE_KEYS = ("sr", "n_fft", "hop_length", "n_mels", "fmin", "fmax", "compression", "window", "crop_frames")


def plain(value):
    """HDF5 attribute -> plain Python (str, int, float, list), e.g. for a weights_only checkpoint."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()] if value.ndim else plain(value.item())
    if isinstance(value, np.generic):
        return value.item()
    return value


def is_hdf5(path) -> bool:
    """True when `path` is a readable file that starts with the HDF5 signature."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_MAGIC
    except OSError:
        return False


def read_mels_ids(path, option: str) -> list:
    """Only the /ids of a mels HDF5 (what `option`, e.g. --songs-with, needs), without the checks of
    a full `MelsFile` open: a file with /ids is enough."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DcueError(f"{path} is not a readable HDF5 file ({first_line(exc)}): give the mels file written by "
                        f"`dcue melspec` (or an id list) to {option}.") from None
    with f:
        try:
            if "ids" not in f or not isinstance(f["ids"], h5py.Dataset) or f["ids"].ndim != 1:
                raise DcueError(f"{path} has no /ids list: was it written by `dcue melspec`?")
            return [v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)
                    for v in f["ids"][()]]
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:  # h5py on damaged metadata
            raise DcueError(f"{path} is damaged ({first_line(exc)}): make it again with `dcue melspec`.") from None


def feature_settings(attrs: dict) -> dict:
    """The attributes that must agree for two mels files to be joined."""
    return {k: v for k, v in attrs.items() if k not in NON_FEATURE_KEYS}


def settings_difference(a: dict, b: dict) -> str | None:
    """'n_mels=96 vs 128' for the first feature setting that differs (a's value first), or None."""
    fa, fb = feature_settings(a), feature_settings(b)
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key, "<unset>"), fb.get(key, "<unset>")
        if va != vb and not (isinstance(va, float) and isinstance(vb, float) and math.isnan(va) and math.isnan(vb)):
            return f"{key}={va} vs {vb}"
    return None


class MelsFile:
    """A mels HDF5 file, read-only, its schema checked on open.

    `.ids` (object array of str), `.offsets` (int64, N+1), `.lengths` (frames per item),
    `.item_stats` ((N, 2) float64 sum and sum of squares per item, or None if absent),
    `.attrs` (dict), `.n_mels`, `.dtype`, `len()`, `.item(i)` -> float32 (frames, n_mels),
    `.read_all()` -> (total_frames, n_mels) in the stored dtype, `.index()` -> {id: i},
    `.mel` (the h5py dataset, for slicing), `.frames(start, stop)` (one contiguous read for
    many items), `.normalisation()`, `.model_features()`, `.item_sums(items)`. Picklable: a
    copy sent to a DataLoader worker reopens the file there; after fork() call
    `reopen_if_forked()` (h5py handles must not cross fork()).
    """

    def __init__(self, path):
        self.path = str(path)
        self._file = None
        self._open()

    def _open(self):
        import h5py

        name = self.path
        if os.path.isdir(name):
            raise DcueError(f"{name} is a folder: give a mels HDF5 file written by `dcue melspec`.")
        if not os.path.exists(name):
            raise DcueError(f"{name} does not exist: check the path, or make it with `dcue melspec`.")
        try:
            self._file = h5py.File(name, "r")
            self._pid = os.getpid()
        except OSError as exc:
            raise DcueError(f"{name} is not a readable HDF5 file ({first_line(exc)}): "
                            f"give a mels file written by `dcue melspec`.") from None
        try:
            self._check()
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:  # h5py on damaged metadata
            self.close()
            raise DcueError(f"{name} is damaged ({first_line(exc)}): make it again with `dcue melspec`.") from None
        except BaseException:
            self.close()
            raise

    def _check(self):
        f, name = self._file, self.path
        for key in ("ids", "offsets", "mel"):
            if key not in f:
                raise DcueError(f"{name} has no /{key}: {WRITER_HINT}")
        mel = f["mel"]
        if mel.ndim != 2:
            raise DcueError(f"{name}: /mel has shape {mel.shape}, expected (frames, n_mels): {WRITER_HINT}")
        if f["ids"].ndim != 1 or f["offsets"].ndim != 1:
            raise DcueError(f"{name}: /ids and /offsets must be 1-D: {WRITER_HINT}")
        ids = f["ids"]
        try:
            self.ids = np.array(ids.asstr()[()] if ids.dtype.kind == "O" else
                                [plain(v) for v in ids[()]], dtype=object)
        except (TypeError, ValueError, UnicodeDecodeError):
            raise DcueError(f"{name}: /ids is not a list of strings: {WRITER_HINT}") from None
        self.offsets = np.asarray(f["offsets"][()], dtype=np.int64)
        n = len(self.ids)
        if len(self.offsets) != n + 1:
            raise DcueError(f"{name}: /offsets has {len(self.offsets)} entries for {n} ids "
                            f"(expected {n + 1}): the file is damaged; make it again with `dcue melspec`.")
        if self.offsets[0] != 0 or self.offsets[-1] != mel.shape[0] or np.any(np.diff(self.offsets) < 0):
            raise DcueError(f"{name}: /offsets does not index /mel (0 .. {mel.shape[0]}, non-decreasing): "
                            f"the file is damaged; make it again with `dcue melspec`.")
        self.item_stats = None  # (N, 2) float64: sum and sum of squares of each item's stored values
        if "item_stats" in f:
            stats = f["item_stats"]
            if stats.shape != (n, 2):
                raise DcueError(f"{name}: /item_stats has shape {stats.shape}, expected ({n}, 2): "
                                f"the file is damaged; make it again with `dcue melspec`.")
            self.item_stats = np.asarray(stats[()], dtype=np.float64)
        self.attrs = {k: plain(v) for k, v in f.attrs.items()}
        declared = self.attrs.get("n_mels")
        if declared is not None and int(declared) != mel.shape[1]:
            raise DcueError(f"{name}: attribute n_mels={declared} but /mel has {mel.shape[1]} columns: {WRITER_HINT}")
        self.mel = mel

    # --- the reader API -------------------------------------------------------------------
    @property
    def n_mels(self) -> int:
        return int(self.mel.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.mel.dtype

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def total_frames(self) -> int:
        return int(self.offsets[-1])

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, i: int) -> np.ndarray:
        """Item i as float32 (frames, n_mels)."""
        n = len(self.ids)
        if not -n <= i < n:
            raise IndexError(f"item {i} out of range for {n} items in {self.path}")
        i %= n
        return np.asarray(self.mel[self.offsets[i]:self.offsets[i + 1]], dtype=np.float32)

    def read_all(self) -> np.ndarray:
        """Every frame, (total_frames, n_mels), in the stored dtype (slice with .offsets)."""
        return self.mel[()]

    def index(self) -> dict:
        return {item: i for i, item in enumerate(self.ids)}

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames start..stop of /mel (items lie end to end: see .offsets), in the stored dtype."""
        return self.mel[start:stop]

    def item_sums(self, items) -> np.ndarray:
        """(len(items), 2) float64 sum and sum of squares of each item's stored values: from
        /item_stats, or (older files) computed from the frames."""
        items = np.asarray(items, dtype=np.int64)
        if self.item_stats is not None:
            return self.item_stats[items]
        return np.array([item_stats(self.frames(int(self.offsets[i]), int(self.offsets[i + 1])))
                         for i in items], dtype=np.float64).reshape(len(items), 2)

    def normalisation(self):
        """(mean, std) as float32 arrays of shape (n_mels,) or (1,), or None when melspec stored none
        (or none usable: a std that is not positive)."""
        attrs = self.attrs
        if "mean" not in attrs or "std" not in attrs:
            return None
        mean = np.asarray(attrs["mean"], dtype=np.float32).reshape(-1)
        std = np.asarray(attrs["std"], dtype=np.float32).reshape(-1)
        if mean.size not in (1, self.n_mels) or std.size not in (1, self.n_mels) or not np.all(std > 0):
            return None
        return mean, std

    def model_features(self) -> dict:
        """The feature settings a model trained on this file records (a plain dict for the checkpoint)."""
        return {k: plain(self.attrs[k]) for k in MODEL_FEATURE_KEYS if k in self.attrs}

    # --- resources ------------------------------------------------------------------------
    def reopen_if_forked(self):
        """Open the file again in a forked child (a DataLoader worker): h5py handles must not cross fork()."""
        if self._pid != os.getpid():
            self._file = None  # the parent's handle: not closed here, it is the parent's
            self._open()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.path = state["path"]
        self._file = None
        self._open()

    def __repr__(self):
        return f"MelsFile({self.path!r}: {len(self)} items, {self.total_frames} frames x {self.n_mels})"


def item_stats(mel: np.ndarray) -> tuple:
    """(sum, sum of squares) of an item's stored values, in float64.

    float16 -> float32 and its square are exact; the accumulators are float64. The result
    depends only on the values, so it is the same in whichever file the item lies.
    """
    values = np.asarray(mel, dtype=np.float32)
    return float(values.sum(dtype=np.float64)), float(np.square(values).sum(dtype=np.float64))


def mean_std(stats: np.ndarray, count: int, *, min_var: float = 0.0) -> tuple:
    """Mean and std of `count` values from per-item (sum, sum of squares), summed in item order.

    The one place the statistics are derived from sums (the writers' attributes, a training
    set's estimate); min_var floors the variance (0: a constant gives std 0). No values: NaN.
    """
    if not count:
        return float("nan"), float("nan")
    total, total_sq = 0.0, 0.0
    for item_sum, item_sq in stats.tolist():  # sequential: the same order gives the same bits
        total += item_sum
        total_sq += item_sq
    mean = total / count
    return mean, math.sqrt(max(total_sq / count - mean * mean, min_var))
