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
    from dcue_cli.io.text import open_text, refuse_binary

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
            refuse_binary(source, "AUDIO", "audio nor a list of audio paths", "give an audio folder, audio "
                          "files, or a text file listing audio paths one a line ('-' for stdin)")
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
    paths: dict  # id -> path (through an id map: the song's first track in track-id order)
    failures: list = field(default_factory=list)  # (path, reason) decided without decoding
    alternates: dict = field(default_factory=dict)  # id -> the song's further tracks' paths, in order


TSV_BREAKERS = ("\t", "\n", "\r")


def printable(path) -> str:
    """`path` for a one-line message or a TSV field: tabs, newlines and carriage returns escaped."""
    text = str(path)
    for char, escaped in zip(TSV_BREAKERS, ("\\t", "\\n", "\\r")):
        text = text.replace(char, escaped)
    return text


def assign_ids(paths, id_map: dict | None = None, id_map_name: str = "", shard=None, strict=False) -> Inputs:
    """Id of each path (its stem, or the stem's song id through `id_map`), checked and sorted.

    Two paths with the same stem are a DcueError naming both. Several tracks of one song (an id
    map sends them to one song id, as unique_tracks.txt does for re-releases): the song keeps
    one, the first in track-id order that can be used (`alternates` holds the others, tried in
    turn when a file fails); with `strict` they are a DcueError too. Processing and output order
    is the sorted ids, so nothing depends on folder order, -j or the machine. shard: (K, N)
    keeps the K-th of N parts (by `in_shard`), None all.
    """
    tracks, failures = {}, []  # id -> [(stem, path)]
    for path in sorted(paths):  # sorted: the same error names the same two files every time
        stem = Path(path).stem
        item_id, reason = _id_of(stem, id_map, id_map_name)
        if reason:
            failures.append((path, reason))
            continue
        same = tracks.setdefault(item_id, [])
        other = next((p for s, p in same if s == stem), same[0][1] if same and strict else None)
        if other is not None:
            via = f" (through {id_map_name})" if id_map is not None else ""
            raise DcueError(f"two inputs have the same id {item_id!r}{via}: {other} and {path}: "
                            f"leave one of them out of the input.")
        same.append((stem, path))
    ids = sorted(i for i in tracks if in_shard(i, shard))
    ordered = {i: [p for _, p in sorted(tracks[i])] for i in ids}
    return Inputs(ids=ids, paths={i: ordered[i][0] for i in ids}, failures=failures,
                  alternates={i: ordered[i][1:] for i in ids if len(ordered[i]) > 1})


def _id_of(stem: str, id_map, id_map_name: str) -> tuple:
    """(the id of a file named `stem`, None) or (None, the reason it has none)."""
    item_id = stem
    if id_map is not None:
        entry = id_map.get(stem)
        if entry is None:
            return None, f"{stem} is not a track id in {id_map_name}"
        item_id = entry[0]
    try:
        item_id.encode("utf-8")
    except UnicodeEncodeError:
        return None, "the file name is not valid UTF-8"
    if not item_id:
        return None, "empty id (the file name has no stem)"
    if any(char in item_id for char in TSV_BREAKERS):
        return None, (f"its id {item_id!r} holds a tab, newline or carriage return, which no TSV "
                      f"output could hold: rename the file")
    return item_id, None
