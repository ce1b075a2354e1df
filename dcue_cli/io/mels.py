"""The mels HDF5 contract, written by `dcue melspec`, read by `train` and `embed`.

    /ids      (N,) UTF-8 strings, sorted
    /offsets  (N+1,) int64; item i is mel[offsets[i]:offsets[i+1]]
    /mel      (total_frames, n_mels) float16 or float32, chunked along frames, resizable
    /item_stats (N, 2) float64: sum and sum of squares of each item's stored values (so the
              mean/std of any subset, e.g. the training split, needs no pass over /mel)
    attributes: the feature settings (sr, n_fft, hop_length, n_mels, fmin, fmax, window, center,
                power, compression, resampler, max_seconds, offset, dtype ...), mean and std of
                all stored values, n_items, total_frames, dcue_version.

Readers: `MelsFile(path)`. Writers: `MelsWriter` (durable and resumable, for `dcue melspec`)
and `merge_mels` (shards into one file).

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
HDF5 calls over the items in id order (`_AppendFile`), so its bytes depend only on the set of
items, never on how the work was cut into segments, streamed, or merged from shards.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dcue_cli import __version__
from dcue_cli.errors import DcueError
from dcue_cli.io.lock import OutputLock

WRITER_HINT = "was it written by `dcue melspec`?"
CHUNK_ROWS = 512  # frames per HDF5 chunk: 128 KiB of float16 at 128 bands, ~6 s of audio
BLOCK_ROWS = CHUNK_ROWS * 32  # frames per write when assembling the final file
READ_ROWS = 1 << 16  # at most this many frames read at once when copying
STAT_KEYS = ("mean", "std", "n_items", "total_frames", "dcue_version", "created_by")
# Attributes that are not feature settings: they may differ between files that can be merged.
NON_FEATURE_KEYS = frozenset(STAT_KEYS) | {"shard", "min_seconds", "silence_db"}


def _plain(value):
    """HDF5 attribute -> plain Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


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
    `.mel` (the h5py dataset, for slicing). Picklable: a copy sent to a DataLoader worker
    reopens the file there.
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
        except OSError as exc:
            raise DcueError(f"{name} is not a readable HDF5 file ({_first_line(exc)}): "
                            f"give a mels file written by `dcue melspec`.") from None
        try:
            self._check()
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:  # h5py on damaged metadata
            self.close()
            raise DcueError(f"{name} is damaged ({_first_line(exc)}): make it again with `dcue melspec`.") from None
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
                                [_plain(v) for v in ids[()]], dtype=object)
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
        self.attrs = {k: _plain(v) for k, v in f.attrs.items()}
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

    # --- resources ------------------------------------------------------------------------
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


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Writing

def _attr_value(value):
    if value is None:
        return "none"
    if isinstance(value, (bool, int, float, str, np.number, np.bool_)):
        return value
    return json.dumps(value)


def item_stats(mel: np.ndarray) -> tuple:
    """(sum, sum of squares) of an item's stored values, in float64.

    float16 -> float32 and its square are exact; the accumulators are float64. The result
    depends only on the values, so it is the same in whichever file the item lies.
    """
    values = np.asarray(mel, dtype=np.float32)
    return float(values.sum(dtype=np.float64)), float(np.square(values).sum(dtype=np.float64))


class _AppendFile:
    """Writes a mels file item by item, in one fixed sequence of HDF5 calls.

    Frames go to disk in whole blocks of chunks as they come (no chunk is written twice); ids,
    offsets and per-item statistics at close. The same items appended in the same order give
    the same bytes, whatever else happened (no timestamps either): that is what makes a resumed
    or merged output identical to an uninterrupted one. Segments and final outputs are both
    written with it; the file is complete only once closed.
    """

    def __init__(self, path, attrs: dict, n_mels: int, dtype):
        import h5py

        self.path = Path(path)
        self.file = h5py.File(self.path, "w")
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

    def _flush(self):
        if self.filled:
            end = self.written + self.filled
            self.mel.resize(end, axis=0)
            self.mel[self.written:end] = self.buffer[:self.filled]
            self.written, self.filled = end, 0

    def close(self) -> dict:
        """Finish the file (ids, offsets, statistics, mean/std) and fsync it; returns a summary."""
        import h5py

        self._flush()
        f, n = self.file, len(self.ids)
        chunk = (max(1, min(4096, n)),)
        f.create_dataset("ids", data=np.asarray(self.ids, dtype=object), dtype=h5py.string_dtype("utf-8"),
                         maxshape=(None,), chunks=chunk, track_times=False)
        f.create_dataset("offsets", data=np.asarray([0] + self.ends, dtype=np.int64), maxshape=(None,),
                         chunks=(chunk[0] + 1,), track_times=False)
        stats = np.asarray(self.stats, dtype=np.float64).reshape(n, 2)
        f.create_dataset("item_stats", data=stats, maxshape=(None, 2), chunks=(chunk[0], 2), track_times=False)
        mean, std = _mean_std(stats, self.frames * self.mel.shape[1])
        f.attrs["mean"] = mean
        f.attrs["std"] = std
        f.attrs["n_items"] = n
        f.attrs["total_frames"] = self.frames
        f.attrs["dcue_version"] = __version__
        f.attrs["created_by"] = "dcue melspec"
        f.close()
        _fsync(self.path)
        return {"n_items": n, "total_frames": self.frames, "mean": mean, "std": std}

    def discard(self):
        with contextlib.suppress(Exception):
            self.file.close()
        self.path.unlink(missing_ok=True)


def _mean_std(stats: np.ndarray, count: int) -> tuple:
    """Mean and std of all values from per-item (sum, sum of squares), summed in item order."""
    if not count:
        return float("nan"), float("nan")
    total, total_sq = 0.0, 0.0
    for item_sum, item_sq in stats.tolist():  # sequential: the same order gives the same bits
        total += item_sum
        total_sq += item_sq
    mean = total / count
    return mean, math.sqrt(max(total_sq / count - mean * mean, 0.0))


def _fsync(path):
    """Flush a file or folder to disk (kill -9 needs none; power loss does). Best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class MelsWriter:
    """Durable, resumable writing of a mels file (see the module docstring for the mechanism).

        with MelsWriter("mels.h5", config.to_attrs()) as writer:
            todo = [p for p in inputs if id_of(p) not in writer.present]
            for item_id, mel in results:
                writer.append(item_id, mel)     # durable within checkpoint_seconds
            summary = writer.finish()           # OUTPUT complete, renamed into place

    An exception (or Ctrl-C) inside the block commits the items appended so far and keeps the
    partial folder: rerunning resumes. `overwrite=True` ignores the existing output and any
    partial work (the old output stays until the new one replaces it).
    """

    def __init__(self, output, attrs: dict, *, checkpoint_seconds: float = 30.0, overwrite: bool = False):
        self.output = Path(output)
        self.partial = Path(str(output) + ".partial")
        self.attrs = dict(attrs)
        self.n_mels = int(self.attrs["n_mels"])
        self.dtype = np.dtype(self.attrs.get("dtype", "float16"))
        self.checkpoint_seconds = float(checkpoint_seconds)
        self.overwrite = overwrite
        self.present: set = set()  # ids already in the output or in committed segments
        self.base_items = 0  # items in the output this run started from
        self.appended = 0
        self._segments: list = []
        self._segment: _AppendFile | None = None  # the open segment (a temporary file)
        # A run that starts from nothing writes the output itself as it goes (beside the
        # segments), so finishing is a rename, not a copy; any other run copies at the end.
        self._stream: _AppendFile | None = None
        self._lock: OutputLock | None = None
        self._fresh = overwrite

    # --- opening and recovering -----------------------------------------------------------
    def __enter__(self):
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._lock is not None:  # not finished: keep what is complete, for a rerun
            with contextlib.suppress(Exception):
                self.commit()
            self._release()
        return False

    def open(self):
        if self.output.is_dir():
            raise DcueError(f"{self.output} is a folder: give a file name for -o, e.g. {self.output}/mels.h5.")
        from dcue_cli.io.atomic import make_folder

        make_folder(self.output.parent)
        created = not self.partial.exists()
        make_folder(self.partial)
        lock = self.partial / "lock"
        self._lock = OutputLock(lock, f"{self.output} is being written by another `dcue melspec` right now "
                                      f"(it holds {lock}): wait for it to finish.")
        try:
            self._recover()
        except BaseException:
            self._release()
            if created:  # it holds nothing but our manifest: leave no stray folder behind an error
                shutil.rmtree(self.partial, ignore_errors=True)
            raise

    def _recover(self):
        for leftover in self.partial.glob("*.tmp"):  # the open segment of a killed run
            leftover.unlink()
        manifest_path = self.partial / "manifest.json"
        settings = feature_settings(self.attrs)
        if self.overwrite:
            for old in self.partial.glob("seg-*.h5"):
                old.unlink()
            manifest_path.unlink(missing_ok=True)
        manifest = None
        if manifest_path.exists():
            try:
                manifest = json.loads(manifest_path.read_text())
            except ValueError:
                manifest = None
        if manifest is not None:
            diff = settings_difference(manifest.get("settings", {}), settings)
            if diff:
                raise DcueError(f"{self.partial} holds the unfinished work of a run with other settings "
                                f"({diff}, before vs now): rerun with the same options to finish it, "
                                f"or add --overwrite to start afresh.")
            self._fresh = bool(manifest.get("fresh", False))
        else:
            _write_json(manifest_path, {"fresh": self._fresh, "settings": settings})

        base_ids = set()
        if self.output.exists() and not self._fresh:
            try:
                base = MelsFile(self.output)
            except DcueError as exc:
                raise DcueError(f"{self.output} exists but is not a complete mels file ({exc.message.rstrip('.')}); "
                                f"add --overwrite to replace it.") from None
            with base:
                diff = settings_difference(base.attrs, settings)
                if diff:
                    raise DcueError(f"{self.output} was made with other feature settings ({diff}, file vs "
                                    f"now): give the same options to add to it, or --overwrite to replace it.")
                base_ids = set(base.ids.tolist())
        self.base_items = len(base_ids)
        self.present = set(base_ids)

        for seg_path in sorted(self.partial.glob("seg-*.h5")):
            try:
                with MelsFile(seg_path) as seg:
                    ids = seg.ids.tolist()
                    diff = settings_difference(seg.attrs, settings)
            except DcueError:
                from dcue_cli import log

                log.warning(f"ignoring {seg_path}, which does not open (its items will be computed again)")
                seg_path.unlink()
                continue
            if diff:
                raise DcueError(f"{seg_path} was made with other settings ({diff}): "
                                f"add --overwrite to start afresh.")
            if ids and all(i in base_ids for i in ids):
                seg_path.unlink()  # already in the output: a kill came between rename and cleanup
                continue
            self.present.update(ids)
            self._segments.append(seg_path)
        if not self.present:
            self._stream = _AppendFile(self.partial / "output.h5.tmp", self.attrs, self.n_mels, self.dtype)

    @property
    def resumed_items(self) -> int:
        """Items found in committed segments of an interrupted run."""
        return len(self.present) - self.base_items - self.appended

    # --- appending ------------------------------------------------------------------------
    def append(self, item_id: str, mel: np.ndarray, stats: tuple | None = None):
        """Add one item; `stats`: its item_stats when already computed (by a worker)."""
        if item_id in self.present:
            raise ValueError(f"item {item_id!r} is already in {self.output}")
        mel = np.asarray(mel)
        if mel.ndim != 2 or mel.shape[1] != self.n_mels:
            raise ValueError(f"mel for {item_id!r} has shape {mel.shape}, expected (frames, {self.n_mels})")
        if self._stream is not None and self._stream.ids and item_id < self._stream.ids[-1]:
            self._drop_stream()  # not in id order: the output will be assembled by a copy
        if self._segment is None:
            number = 1 + max([int(p.stem.split("-")[1]) for p in self._segments] or [0])
            self._segment = _AppendFile(self.partial / f"seg-{number:06d}.h5.tmp", self.attrs, self.n_mels,
                                        self.dtype)
        if mel.dtype != self.dtype or stats is None:
            mel = mel.astype(self.dtype, copy=False)
            stats = item_stats(mel)
        self._segment.append(item_id, mel, stats)
        if self._stream is not None:
            self._stream.append(item_id, mel, stats)
        self.present.add(item_id)
        self.appended += 1
        if time.monotonic() - self._segment.opened >= self.checkpoint_seconds:
            self.commit()

    def commit(self):
        """Make every appended item durable (close the open segment, rename it into place)."""
        if self._segment is not None:
            segment, self._segment = self._segment, None
            if segment.n_items:
                segment.close()
                final = segment.path.with_suffix("")  # seg-000001.h5.tmp -> seg-000001.h5
                os.replace(segment.path, final)
                _fsync(self.partial)
                self._segments.append(final)
            else:
                segment.discard()

    def _drop_stream(self):
        if self._stream is not None:
            self._stream.discard()
            self._stream = None

    # --- finishing ------------------------------------------------------------------------
    def finish(self) -> dict:
        """Write the complete output (atomically) and remove the partial folder.

        Returns {"n_items", "total_frames", "mean", "std", "rewritten"}.
        """
        use_base = self.output.exists() and not self._fresh
        tmp = self.partial / "output.h5.tmp"
        stream = self._stream
        if stream is not None and not use_base and stream.n_items == self.appended == len(self.present):
            # The streamed output holds every item, in order: no copy. The open segment is not
            # needed any more (a kill before the rename below recomputes its items).
            if self._segment is not None:
                self._segment.discard()
                self._segment = None
            self._stream = None
            summary = stream.close()
        else:
            self.commit()
            self._drop_stream()
            if use_base and not self._segments:  # nothing new: the output stays as it is
                with MelsFile(self.output) as base:
                    summary = {"n_items": len(base), "total_frames": base.total_frames,
                               "mean": base.attrs.get("mean"), "std": base.attrs.get("std"), "rewritten": False}
                self._release()
                shutil.rmtree(self.partial, ignore_errors=True)
                return summary
            sources = ([self.output] if use_base else []) + list(self._segments)
            summary = write_sorted(sources, tmp, self.attrs, duplicates="first")
        os.replace(tmp, self.output)
        _fsync(self.output.parent)
        summary["rewritten"] = True
        self._release()
        shutil.rmtree(self.partial, ignore_errors=True)
        return summary

    def abandon(self):
        """Give up: remove the partial folder, leave the output as it was."""
        self._release()
        shutil.rmtree(self.partial, ignore_errors=True)

    def _release(self):
        if self._segment is not None:  # not committed: its items are computed again next time
            self._segment.discard()
            self._segment = None
        self._drop_stream()
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _write_json(path: Path, data: dict):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


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
    out = _AppendFile(target, attrs, n_mels, dtype)
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


def merge_mels(sources, output, *, overwrite: bool = False) -> dict:
    """Join shard files (same feature settings, disjoint ids) into `output`, atomically."""
    from dcue_cli.io.atomic import atomic_path

    sources = [str(s) for s in sources]
    if not sources:
        raise DcueError("--merge needs the shard files to join, e.g. dcue melspec --merge a.h5 b.h5 -o all.h5.")
    out = Path(output)
    if any(os.path.abspath(s) == os.path.abspath(out) for s in sources):
        raise DcueError(f"{output} is both a shard and the output: give a new file name for -o.")
    if out.exists() and not overwrite:
        raise DcueError(f"{output} exists: add --overwrite to replace it, or give another -o.")
    first_attrs = None
    for path in sources:
        with MelsFile(path) as f:
            if first_attrs is None:
                first_attrs, first_path = f.attrs, path
                continue
            diff = settings_difference(f.attrs, first_attrs)
            if diff:
                raise DcueError(f"{path} was made with other feature settings than {first_path} ({diff}): "
                                f"merge only shards made with the same options.")
    attrs = feature_settings(first_attrs)
    with atomic_path(out) as tmp:
        summary = write_sorted(sources, tmp, attrs, duplicates="error")
    return summary
