"""`MelsWriter`: durable, resumable writing of a mels file, for `dcue melspec`.

Completed items go to `OUTPUT.partial/seg-NNNNNN.h5` segments, each renamed into place when
closed; `finish()` writes the whole output and renames it over OUTPUT (the mechanism, and why
nothing is lost or half-done: the docstring of `dcue_cli.io.mels`). One writer at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from dcue_cli.errors import DcueError
from dcue_cli.io.lock import OutputLock
from dcue_cli.io.mels import MelsFile, feature_settings, item_stats, settings_difference
from dcue_cli.io.mels_append import AppendFile, fsync_path, write_sorted


class MelsWriter:
    """Durable, resumable writing of a mels file (see the module docstring for the mechanism).

        with MelsWriter("mels.h5", config.to_attrs()) as writer:
            todo = [p for p in inputs if id_of(p) not in writer.present]
            for item_id, mel in results:
                writer.append(item_id, mel)     # durable within checkpoint_seconds
            summary = writer.finish()           # OUTPUT complete, renamed into place

    An exception (or Ctrl-C) inside the block commits the items appended so far and keeps the
    partial folder: rerunning resumes. `overwrite=True` ignores the existing output and any
    partial work (the old output stays until the new one replaces it). The partial folder
    remembers an --overwrite run: a rerun without it finishes that run (the result is that of an
    uninterrupted --overwrite run), and a rerun with it starts afresh again.
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
        self._segment: AppendFile | None = None  # the open segment (a temporary file)
        # A run that starts from nothing writes the output itself as it goes (beside the
        # segments), so finishing is a rename, not a copy; any other run copies at the end.
        self._stream: AppendFile | None = None
        self._lock: OutputLock | None = None
        self._fresh = overwrite

    # --- opening and recovering -----------------------------------------------------------
    def __enter__(self):
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._lock is None:
            return False
        # not finished: keep what is complete, for a rerun
        error = self._write_failed(exc) if isinstance(exc, OSError) else None
        with contextlib.suppress(Exception):
            self.commit()
        self._release()
        if error is not None:
            raise error from None
        return False

    def open(self):
        from dcue_cli.io.atomic import check_output_path, make_folder

        check_output_path(self.output, "mels file")

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
        """Find what the output and an interrupted run's segments hold (`present`)."""
        for leftover in self.partial.glob("*.tmp"):  # the open segment of a killed run
            leftover.unlink()
        settings = feature_settings(self.attrs)
        self._check_manifest(settings)
        base_ids = self._base_ids(settings)
        self.base_items = len(base_ids)
        self.present = set(base_ids)
        self._adopt_segments(settings, base_ids)
        if not self.present:
            self._stream = AppendFile(self.partial / "output.h5.tmp", self.attrs, self.n_mels, self.dtype)

    def _check_manifest(self, settings: dict):
        """The partial folder's settings must be ours; a new folder gets our manifest."""
        manifest_path = self.partial / "manifest.json"
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

    def _base_ids(self, settings: dict) -> set:
        """Ids of the existing output this run adds to (none when it starts afresh)."""
        if not self.output.exists() or self._fresh:
            return set()
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
            return set(base.ids.tolist())

    def _adopt_segments(self, settings: dict, base_ids: set):
        """Keep the committed segments of an interrupted run; drop those that do not open or are done."""
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

    @property
    def replacing(self) -> bool:
        """Whether the output's items are dropped: an --overwrite run, or the rerun of one."""
        return self._fresh

    @property
    def resumes_overwrite(self) -> bool:
        """Whether this run, without overwrite=True, finishes an interrupted --overwrite run."""
        return self._fresh and not self.overwrite

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
            self._segment = AppendFile(self.partial / f"seg-{number:06d}.h5.tmp", self.attrs, self.n_mels,
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
            if segment.n_items and not segment.discarded:
                segment.close()
                final = segment.path.with_suffix("")  # seg-000001.h5.tmp -> seg-000001.h5
                os.replace(segment.path, final)
                fsync_path(self.partial)
                self._segments.append(final)
            else:
                segment.discard()

    def _write_failed(self, exc: OSError):
        """The one line for a write that failed (a full disk), once what fits is kept for the rerun:
        the streamed output dropped (it frees the most space), the open segment committed if it
        still can be, the committed ones kept. None for an OSError not of writing our files."""
        from dcue_cli.io.atomic import write_failed

        if exc.filename is None or not Path(os.fspath(exc.filename)).is_relative_to(self.partial):
            return None
        self._drop_stream()
        with contextlib.suppress(OSError):
            self.commit()
        kept = self.committed_items
        resume = (f" and rerun the same command (it resumes from the {kept} items kept in {self.partial})"
                  if kept else "")
        return write_failed(self.output, exc, resume)

    @property
    def committed_items(self) -> int:
        """Items in the committed segments (this run's and an interrupted run's)."""
        from dcue_cli.io.mels import MelsFile

        total = 0
        for path in self._segments:
            with contextlib.suppress(DcueError), MelsFile(path) as seg:
                total += len(seg)
        return total

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
            # needed once it is closed (a kill before the rename below recomputes its items);
            # if closing fails (a full disk), __exit__ commits the segment instead (`_write_failed`).
            self._stream = None
            summary = stream.close()
            if self._segment is not None:
                self._segment.discard()
                self._segment = None
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
        fsync_path(self.output.parent)
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
    from dcue_cli.io.atomic import write_bytes_atomically

    write_bytes_atomically(path, json.dumps(data, sort_keys=True).encode())
