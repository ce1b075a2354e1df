"""Artist maps: which artist made each song, read from the MSD's `unique_tracks.txt`
(`track<SEP>song<SEP>artist<SEP>title`, keyed by song id) or from an `item<TAB>artist` TSV.

A song with several tracks (re-releases) has one artist: when its tracks name different ones,
the first track's (in file order) is kept and the songs are counted in a warning. In a TSV an
item given two different artists is an error (the map contradicts itself); a repeated identical
line is harmless. A line with an empty artist leaves its item without one.

`artist_vocabulary` and `artist_indices` turn a map into the model's integers: index 0 is the
unknown artist (no training song, or none in the map), 1.. the artists with training songs.
"""

from dataclasses import dataclass

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.io.text import display_name, open_text, shorten

FORMATS = "the MSD unique_tracks.txt (track<SEP>song<SEP>artist<SEP>title) or item<TAB>artist lines"


@dataclass
class ArtistMap:
    """{item: artist} and what reading it counted."""

    artist_of: dict
    path: str
    conflicts: int = 0  # songs whose tracks name different artists (the first kept)
    without_artist: int = 0  # items listed with an empty artist

    def __len__(self):
        return len(self.artist_of)


def read_artist_map(path) -> ArtistMap:
    """An artist map from either format (told apart by the first line); one-line errors."""
    name = display_name(path)
    first = _first_line(path)
    if first is None:
        raise DcueError(f"{name} is empty: expected {FORMATS}.")
    if "<SEP>" in first or len(first.split("\t")) >= 4:
        amap = _from_id_map(path)
    elif len(first.split("\t")) == 2:
        amap = _from_tsv(path)
    else:
        raise DcueError(f"{name}:1: expected {FORMATS}, found {shorten(first)!r}.")
    if amap.conflicts:
        log.warning("%d songs of %s have tracks by different artists: each keeps its first track's artist",
                    amap.conflicts, name)
    if amap.without_artist:
        log.warning("%d items of %s have an empty artist: they count as having none", amap.without_artist, name)
    if not amap.artist_of:
        raise DcueError(f"{name} names no artist (every artist field is empty): expected {FORMATS}.")
    return amap


def _first_line(path):
    with open_text(path) as stream:
        for line in stream:
            line = line.rstrip("\r\n")
            if line.strip():
                return line
    return None


def _from_id_map(path) -> ArtistMap:
    from dcue_cli.io.idmap import read_id_map

    artist_of, conflicted, empty = {}, set(), set()
    for song, artist, _title in read_id_map(path).values():  # tracks in file order
        artist = artist.strip()
        if not artist:
            empty.add(song)
            continue
        previous = artist_of.setdefault(song, artist)
        if previous != artist:
            conflicted.add(song)
    return ArtistMap(artist_of, str(path), len(conflicted), len(empty - set(artist_of)))


def _from_tsv(path) -> ArtistMap:
    from dcue_cli.io.rows import iter_rows

    name = display_name(path)
    artist_of, line_of, empty = {}, {}, set()
    rows = iter_rows(path, min_fields=2, max_fields=2, what="TSV of artists (item<TAB>artist)",
                     looks_like_header=lambda f: f[0].strip().lower() in ("item", "item_id", "song", "song_id")
                     and f[1].strip().lower() == "artist",
                     fix=f": give {FORMATS}.")
    for lineno, (item, artist) in rows:
        item, artist = item.strip(), artist.strip()
        if not item:
            raise DcueError(f"{name}:{lineno}: an empty item id: give item<TAB>artist lines.")
        if not artist:
            empty.add(item)
            continue
        previous = artist_of.setdefault(item, artist)
        if previous != artist:
            raise DcueError(f"{name}:{lineno}: item {item!r} has artist {artist!r} here but {previous!r} on line "
                            f"{line_of[item]}: give each item one artist.")
        line_of.setdefault(item, lineno)
    return ArtistMap(artist_of, str(path), 0, len(empty - set(artist_of)))


def artist_vocabulary(amap: ArtistMap, train_items) -> list:
    """The artists of the training songs, sorted: artist k + 1 is entry k (0 is the unknown artist)."""
    return sorted({amap.artist_of[i] for i in train_items if i in amap.artist_of})


def artist_indices(item_ids, amap: ArtistMap, vocabulary) -> tuple:
    """(index of each item's artist, 0 where unknown; {"known", "unseen", "none"} counts).

    unseen: the item has an artist, but not one of the vocabulary's; none: the map has no
    artist for it.
    """
    index = {a: k + 1 for k, a in enumerate(vocabulary)}
    out = np.zeros(len(item_ids), np.int64)
    unseen = none = 0
    for j, item in enumerate(item_ids):
        artist = amap.artist_of.get(item)
        if artist is None:
            none += 1
        elif artist in index:
            out[j] = index[artist]
        else:
            unseen += 1
    return out, {"known": int((out > 0).sum()), "unseen": unseen, "none": none}
