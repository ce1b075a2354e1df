"""Every tags form in one place: read as three lists (items, tags, weights), written as a TSV.

- tags TSV: `item_id<TAB>tag[<TAB>weight]` (a missing weight counts as 100, present);
- the MSD Last.fm SQLite `lastfm_tags.db` (tables tids, tags, tid_tag), found by its magic;
- HetRec 2011 Last.fm: `user_taggedartists(_full).dat` with its `tags.dat` (Latin-1, CRLF).

`write_tags` writes the TSV form (what `dcue synth` and `dcue autotag --predict` write).
"""

import math
from collections.abc import Iterable

from dcue_cli.errors import DcueError
from dcue_cli.io.rows import is_number, iter_rows
from dcue_cli.io.text import display_name, open_text


def read_tags(path, *, min_weight: float = 0.0):
    """Tags as three lists (items, tags, weights) from a TSV or the MSD `lastfm_tags.db`.

    TSV lines are `item_id<TAB>tag[<TAB>weight]`; a missing weight counts as 100 (present).
    """
    if str(path) != "-" and is_sqlite(path):
        return read_lastfm_db(path, min_weight=min_weight)
    name = display_name(path)
    items, tags, weights = [], [], []
    rows = iter_rows(
        path, min_fields=2, max_fields=3, what="tags TSV (item_id<TAB>tag[<TAB>weight])",
        looks_like_header=lambda f: len(f) == 3 and not is_number(f[2]),
    )
    for lineno, fields in rows:
        weight = 100.0
        if len(fields) == 3:
            try:
                weight = float(fields[2])
            except ValueError:
                raise DcueError(
                    f"{name}:{lineno}: tag weight {fields[2]!r} is not a number: "
                    "use item_id<TAB>tag<TAB>weight with a numeric weight (Last.fm: 0-100)."
                ) from None
            if not math.isfinite(weight):  # NaN would pass every --min-weight
                raise DcueError(
                    f"{name}:{lineno}: tag weight {fields[2]!r} is not a finite number: "
                    "use item_id<TAB>tag<TAB>weight with a numeric weight (Last.fm: 0-100)."
                )
        if weight < min_weight:
            continue
        items.append(fields[0])
        tags.append(fields[1].strip())
        weights.append(weight)
    return items, tags, weights


def write_tags(path, rows: Iterable[tuple]) -> None:
    """Write (item, tag, weight) rows as `item<TAB>tag<TAB>weight` lines (atomically; '-' for
    stdout). The weight is written as given: an int, or a string already formatted."""
    from dcue_cli.io.atomic import open_text_output

    with open_text_output(path) as out:
        for item, tag, weight in rows:
            out.write(f"{item}\t{tag}\t{weight}\n")


def is_sqlite(path) -> bool:
    """Whether `path` starts with SQLite's magic (a missing or unreadable file: False)."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def read_lastfm_db(path, *, min_weight: float = 0.0):
    """The MSD Last.fm SQLite: tables tids, tags, tid_tag(tid, tag, val) joined on ROWID."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rows = con.execute(
            "SELECT tids.tid, tags.tag, tid_tag.val FROM tid_tag "
            "JOIN tids ON tids.ROWID = tid_tag.tid JOIN tags ON tags.ROWID = tid_tag.tag "
            "WHERE tid_tag.val >= ?",
            (min_weight,),
        ).fetchall()
        con.close()
    except sqlite3.DatabaseError as exc:
        raise DcueError(
            f"{path} is an SQLite file but not the MSD Last.fm tags database ({exc}): "
            "expected tables tids, tags and tid_tag(tid, tag, val), as in lastfm_tags.db."
        ) from None
    return [r[0] for r in rows], [r[1] for r in rows], [float(r[2]) for r in rows]


def read_hetrec_tag_names(path) -> dict:
    """HetRec `tags.dat`: {tagID: tagValue}; Latin-1, header, CRLF."""
    name = display_name(path)
    names = {}
    with open_text(path, encoding="latin-1") as stream:
        for lineno, line in enumerate(stream, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if lineno == 1 and not fields[0].strip().isdigit():
                continue  # the header: tagID<TAB>tagValue
            if len(fields) != 2 or not fields[0].strip().isdigit():
                raise DcueError(
                    f"{name}:{lineno}: expected tagID<TAB>tagValue, found {line[:80]!r}: "
                    "give HetRec's tags.dat with --tag-names."
                )
            names[fields[0].strip()] = fields[1].strip()
    if not names:
        raise DcueError(f"{name} has no tags: expected HetRec tags.dat lines tagID<TAB>tagValue.")
    return names


def read_hetrec_tags(tagged_path, names_path, *, min_weight: float = 0.0):
    """HetRec 2011 Last.fm artist tags as rows (items, tags, weights), like `read_tags`.

    `tagged_path` is `user_taggedartists(_full).dat`: userID, artistID, tagID, day, month,
    year (header, CRLF); `names_path` is its `tags.dat`. An artist's weight for a tag is the
    number of distinct users who applied that tag to it (HetRec has no 0-100 Last.fm
    weight), so `min_weight=2` keeps the tags that two users or more agree on.
    """
    names = read_hetrec_tag_names(names_path)
    tagged_name = display_name(tagged_path)
    users: dict[tuple, set] = {}
    rows = iter_rows(tagged_path, min_fields=3, what="HetRec user_taggedartists file (userID, artistID, tagID, ...)",
                     looks_like_header=lambda f: not f[0].strip().isdigit())
    for lineno, fields in rows:
        user, artist, tag_id = (f.strip() for f in fields[:3])
        tag = names.get(tag_id)
        if tag is None:
            raise DcueError(
                f"{tagged_name}:{lineno}: tag id {tag_id!r} is not in {display_name(names_path)}: "
                "give the tags.dat of the same HetRec release with --tag-names."
            )
        users.setdefault((artist, tag), set()).add(user)
    items, tags, weights = [], [], []
    for (artist, tag), who in users.items():
        if len(who) >= min_weight:
            items.append(artist)
            tags.append(tag)
            weights.append(float(len(who)))
    return items, tags, weights
