"""Which audio files a `dcue melspec` run computes, and under which ids.

`gather_inputs` finds the audio files (folders, files, path lists, stdin), `assign_ids` names
them (by stem, or song id through an MSD id map), checks the ids and keeps one shard.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from dcue_cli.audio.decode import AUDIO_EXTENSIONS
from dcue_cli.errors import DcueError

# What a folder scan names in its error message (it finds every format libsndfile reads).
MAIN_EXTENSIONS = ("flac", "mp3", "ogg", "opus", "wav")


def is_audio_name(path) -> bool:
    return Path(path).suffix.lower().lstrip(".") in AUDIO_EXTENSIONS


def gather_inputs(sources) -> list:
    """Audio paths from folders (searched recursively), audio files, path lists and '-' (stdin).

    Hidden files and folders (names starting with '.', e.g. macOS '._x.mp3') are left out of
    folder scans. Relative paths in a list are taken relative to the working directory, as
    `find` prints them. The same path given twice counts once.
    """
    from dcue_cli.io.text import open_text

    paths, seen = [], set()

    def add(path):
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            paths.append(path)

    for source in sources:
        source = str(source)
        if source != "-" and os.path.isdir(source):
            found = 0
            for root, dirs, files in os.walk(source, followlinks=True):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in files:
                    if not name.startswith(".") and is_audio_name(name):
                        add(os.path.join(root, name))
                        found += 1
            if not found:
                raise DcueError(f"{source} holds no audio files (looked for "
                                f"{', '.join('.' + e for e in MAIN_EXTENSIONS)} "
                                f"and other formats libsndfile reads): check the folder.")
        elif source != "-" and is_audio_name(source):
            add(source)  # a single audio file; if it is missing it is listed as failed
        else:
            if source != "-" and not os.path.exists(source):
                raise DcueError(f"{source} does not exist: give an audio folder, an audio file, "
                                f"or a file listing audio paths one a line ('-' for stdin).")
            with open_text(source) as stream:
                for line in stream:
                    line = line.strip()
                    if line:
                        add(line)
    return paths


def in_shard(item_id: str, shard) -> bool:
    """A stable hash of the id, so every machine agrees whatever paths its files have."""
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(item_id.encode("utf-8", "surrogateescape")) % n == k - 1


@dataclass
class Inputs:
    ids: list  # sorted
    paths: dict  # id -> path
    failures: list = field(default_factory=list)  # (path, reason) decided without decoding


def assign_ids(paths, id_map: dict | None = None, id_map_name: str = "", shard=None) -> Inputs:
    """Id of each path (its stem, or the stem's song id through `id_map`), checked and sorted.

    Two paths with the same id are a DcueError naming both. Processing and output order is the
    sorted ids, so nothing depends on folder order, -j or the machine. shard: (K, N) keeps the
    K-th of N parts (by `in_shard`), None all.
    """
    by_id, failures = {}, []
    for path in sorted(paths):  # sorted: the same error names the same two files every time
        stem = Path(path).stem
        item_id = stem
        if id_map is not None:
            entry = id_map.get(stem)
            if entry is None:
                failures.append((path, f"{stem} is not a track id in {id_map_name}"))
                continue
            item_id = entry[0]
        try:
            item_id.encode("utf-8")
        except UnicodeEncodeError:
            failures.append((path, "the file name is not valid UTF-8"))
            continue
        if not item_id:
            failures.append((path, "empty id (the file name has no stem)"))
            continue
        if item_id in by_id:
            via = f" (through {id_map_name})" if id_map is not None else ""
            raise DcueError(f"two inputs have the same id {item_id!r}{via}: {by_id[item_id]} and {path}: "
                            f"leave one of them out of the input.")
        by_id[item_id] = path
    ids = sorted(i for i in by_id if in_shard(i, shard))
    return Inputs(ids=ids, paths={i: by_id[i] for i in ids}, failures=failures)
