"""An unfinished `dcue synth` run, so that a rerun of the same command finishes it.

OUT_DIR/synth.partial holds the run's settings (one JSON line) and then one line per finished
song (`index<TAB>bytes`), appended after its audio file was renamed into place (every audio file
is written atomically, so a listed file is complete). The tables and truth.h5 are written after
the last song, and the file is removed when they are: while it exists the dataset is unfinished.
A rerun with the same settings skips the listed songs (whose files still have their size) and
renders the rest; every song's bytes are a function of (settings, index), so the result is the
same as an uninterrupted run's.
"""

import contextlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from dcue_cli.errors import DcueError

PROGRESS_FILE = "synth.partial"


def settings_of(config) -> dict:
    return json.loads(json.dumps(asdict(config), sort_keys=True))


def read_progress(out_dir):
    """(settings, {index: bytes}) of an unfinished run in `out_dir`, or (None, {}) when none."""
    path = Path(out_dir) / PROGRESS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, NotADirectoryError):  # no unfinished run (or a file in the folder's way)
        return None, {}
    except (OSError, UnicodeDecodeError) as exc:
        raise DcueError(f"cannot read {path} ({getattr(exc, 'strerror', None) or exc}): remove it and give "
                        "--overwrite to write the dataset again.") from None
    try:
        settings = json.loads(lines[0])
    except (IndexError, ValueError):
        return None, {}  # torn before its first line was complete: nothing was recorded
    done = {}
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():  # a torn last line is skipped
            done[int(parts[0])] = int(parts[1])
    return settings, done


def describe_settings(settings: dict) -> str:
    keys = ("songs", "users", "seconds", "audio_format", "sample_rate", "seed")
    return ", ".join(f"{key.replace('audio_format', 'format').replace('_', '-')} {settings.get(key)}"
                     for key in keys)


class Progress:
    """The record of one run: `start` (the settings), `add` (a finished song), `finish` (removed)."""

    def __init__(self, out_dir, config, done: dict):
        self.path = Path(out_dir) / PROGRESS_FILE
        self.settings = settings_of(config)
        self.done = dict(done)
        self._stream = None

    def start(self, fresh: bool) -> None:
        """Write the record afresh (the settings, and the songs kept when not `fresh`), then
        open it for appending: a line torn by a kill is dropped here, never glued to the next."""
        from dcue_cli.io.atomic import atomic_path, write_failed

        if fresh:
            self.done = {}
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.settings, sort_keys=True) + "\n"
                           + "".join(f"{i}\t{size}\n" for i, size in sorted(self.done.items())), encoding="utf-8")
        try:
            self._stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise write_failed(self.path, exc) from None

    def add(self, index: int, size: int) -> None:
        from dcue_cli.io.atomic import write_failed

        self.done[index] = size
        try:
            self._stream.write(f"{index}\t{size}\n")
            self._stream.flush()
        except OSError as exc:
            raise write_failed(self.path, exc) from None

    def close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.close()
            self._stream = None

    def finish(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
