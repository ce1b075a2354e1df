"""The one fixed sequence of HDF5 calls that writes a mels file, and the sorted copy built on it.

`AppendFile` writes items as they come; `write_sorted` assembles a final file from others (a
finished run, a merge), items in id order. The same items in the same order give the same
bytes whatever else happened (no timestamps either): that is what makes a resumed or merged
output identical to an uninterrupted one. The format: `dcue_cli.io.mels`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dcue_cli import __version__
from dcue_cli.errors import DcueError
from dcue_cli.io.mels import STAT_KEYS, MelsFile, item_stats, mean_std

CHUNK_ROWS = 512  # frames per HDF5 chunk: 128 KiB of float16 at 128 bands, ~6 s of audio
BLOCK_ROWS = CHUNK_ROWS * 32  # frames per write when assembling the final file
READ_ROWS = 1 << 16  # at most this many frames read at once when copying


def _attr_value(value):
    if value is None:
        return "none"
    if isinstance(value, (bool, int, float, str, np.number, np.bool_)):
        return value
    return json.dumps(value)


class AppendFile:
    """Writes a mels file item by item, in one fixed sequence of HDF5 calls.

    Frames go to disk in whole blocks of chunks as they come (no chunk is written twice); ids,
    offsets and per-item statistics at close. The same items appended in the same order give
    the same bytes, whatever else happened (no timestamps either): that is what makes a resumed
    or merged output identical to an uninterrupted one. Segments and final outputs are both
    written with it; the file is complete only once closed.
    """

    def __init__(self, path, attrs: dict, n_mels: int, dtype):
        import h5py

        from dcue_cli.io.atomic import GuardedFile

        self.path = Path(path)
        self.discarded = False
        # HDF5 writes through a GuardedFile: a full disk is an OSError naming the file, and the
        # file can still be closed and removed (see `_writing`).
        self._raw = GuardedFile(self.path)
        self.file = None
        with self._writing():
            self.file = h5py.File(self._raw, "w")
            self.mel = self.file.create_dataset("mel", shape=(0, n_mels), maxshape=(None, n_mels), dtype=dtype,
                                                chunks=(CHUNK_ROWS, n_mels), track_times=False)
            for key in sorted(attrs):  # sorted: the same bytes whichever dict the settings came from
                if key not in STAT_KEYS:
                    self.file.attrs[key] = _attr_value(attrs[key])
        self.buffer = np.empty((BLOCK_ROWS, n_mels), dtype=dtype)
        self.filled = 0  # rows in the buffer
        self.written = 0  # rows in the file
        self.ids: list = []
        self.ends: list = []
        self.stats: list = []
        self.opened = time.monotonic()

    @property
    def n_items(self) -> int:
        return len(self.ids)

    @property
    def frames(self) -> int:
        return self.written + self.filled

    def append(self, item_id: str, mel: np.ndarray, stats: tuple):
        pos = 0
        while pos < len(mel):
            take = min(len(mel) - pos, BLOCK_ROWS - self.filled)
            self.buffer[self.filled:self.filled + take] = mel[pos:pos + take]
            self.filled += take
            pos += take
            if self.filled == BLOCK_ROWS:
                self._flush()
        self.ids.append(item_id)
        self.ends.append(self.frames)
        self.stats.append(stats)

    @contextlib.contextmanager
    def _writing(self):
        """A write that failed (a full disk) in the block: the file is discarded and the OSError
        of that write raised. HDF5 itself never sees the failure (the GuardedFile drops the
        writes from then on and reports them done): a failed write inside HDF5 can leave its
        objects half closed, which crashes the interpreter at exit."""
        try:
            yield
        except Exception:
            if self._raw.failure is None:
                raise
        failure = self._raw.failure
        if failure is not None:
            self.discard()
            raise failure from None

    def _flush(self):
        if self.filled:
            end = self.written + self.filled
            with self._writing():
                self.mel.resize(end, axis=0)
                self.mel[self.written:end] = self.buffer[:self.filled]
            self.written, self.filled = end, 0

    def close(self) -> dict:
        """Finish the file (ids, offsets, statistics, mean/std) and fsync it; returns a summary."""
        self._flush()
        with self._writing():
            summary = self._write_index()
            # Flushed before closing: a write that fails in close() leaves HDF5's objects half
            # closed (a crash at exit); one that fails in flush() leaves them whole.
            self.file.flush()
            self.file.close()
        self._raw.close()
        fsync_path(self.path)
        return summary

    def _write_index(self) -> dict:
        import h5py

        f, n = self.file, len(self.ids)
        chunk = (max(1, min(4096, n)),)
        f.create_dataset("ids", data=np.asarray(self.ids, dtype=object), dtype=h5py.string_dtype("utf-8"),
                         maxshape=(None,), chunks=chunk, track_times=False)
        f.create_dataset("offsets", data=np.asarray([0] + self.ends, dtype=np.int64), maxshape=(None,),
                         chunks=(chunk[0] + 1,), track_times=False)
        stats = np.asarray(self.stats, dtype=np.float64).reshape(n, 2)
        f.create_dataset("item_stats", data=stats, maxshape=(None, 2), chunks=(chunk[0], 2), track_times=False)
        mean, std = mean_std(stats, self.frames * self.mel.shape[1])
        f.attrs["mean"] = mean
        f.attrs["std"] = std
        f.attrs["n_items"] = n
        f.attrs["total_frames"] = self.frames
        f.attrs["dcue_version"] = __version__
        f.attrs["created_by"] = "dcue melspec"
        return {"n_items": n, "total_frames": self.frames, "mean": mean, "std": std}

    def discard(self):
        """Close and remove the file; its writes are dropped first (it is thrown away, and after
        a failed write HDF5 could not close it otherwise)."""
        self.discarded = True
        self._raw.drop()
        if self.file is not None:
            with contextlib.suppress(Exception):
                self.file.close()
        self._raw.close()
        self.path.unlink(missing_ok=True)


def fsync_path(path):
    """Flush a file or folder to disk (kill -9 needs none; power loss does). Best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------
# Sorted copy: the one way a final file is assembled (finish, merge)

def write_sorted(sources: Iterable, target, attrs: dict, *, duplicates: str = "error") -> dict:
    """Write the items of `sources` (mels file paths) to a new file `target`, sorted by id.

    The mean and std of all stored values come from the items' (sum, sum of squares), added in
    id order, so the same set of items gives the same bytes whatever files they came from.
    duplicates: 'error' (an id in two sources is a DcueError naming both) or 'first'.
    """
    files = [MelsFile(p) for p in sources]
    try:
        return _write_sorted(files, target, attrs, duplicates)
    finally:
        for f in files:
            f.close()


def _write_sorted(files, target, attrs, duplicates) -> dict:
    n_mels = int(attrs["n_mels"])
    dtype = np.dtype(attrs.get("dtype", "float16"))
    for f in files:
        if f.n_mels != n_mels:
            raise DcueError(f"{f.path} has {f.n_mels} mel bands, not {n_mels}: join only files made "
                            f"with the same settings.")
    entries = sorted((item, s, i) for s, f in enumerate(files) for i, item in enumerate(f.ids.tolist()))
    order, previous = [], None
    for item, s, i in entries:
        if previous is not None and item == previous[0]:
            if duplicates == "error":
                raise DcueError(f"item {item!r} is in both {files[previous[1]].path} and {files[s].path}: "
                                f"shards must not overlap (make them with --shard K/N).")
            continue
        previous = (item, s)
        order.append((s, i))
    out = AppendFile(target, attrs, n_mels, dtype)
    try:
        for s, i, values in _runs(files, order):
            known = files[s].item_stats
            out.append(files[s].ids[i], values, tuple(known[i]) if known is not None else item_stats(values))
        return out.close()
    except BaseException:
        out.discard()
        raise


def _runs(files, order):
    """(source, index, frames) of each item in `order`, reading consecutive items of a file at once."""
    k = 0
    while k < len(order):
        s, first = order[k]
        f = files[s]
        end = k + 1
        while (end < len(order) and order[end][0] == s and order[end][1] == order[end - 1][1] + 1
               and f.offsets[order[end][1] + 1] - f.offsets[first] <= READ_ROWS):
            end += 1
        last = order[end - 1][1]
        block = f.mel[f.offsets[first]:f.offsets[last + 1]]
        base = f.offsets[first]
        for i in range(first, last + 1):
            yield s, i, block[f.offsets[i] - base:f.offsets[i + 1] - base]
        k = end
