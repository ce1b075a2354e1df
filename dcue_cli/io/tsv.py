"""Tags TSVs and the Last.fm tags database, and MSD id maps (these move to io/tags.py and io/idmap.py).

Rows are read through `dcue_cli.io.rows` (iter_rows, shorten, is_number); the splits TSV lives in
`dcue_cli.io.splits`.
"""

from dcue_cli.errors import DcueError
from dcue_cli.io.rows import is_number as _is_number
from dcue_cli.io.rows import iter_rows
from dcue_cli.io.rows import shorten as _shorten
from dcue_cli.io.text import display_name, open_text


def read_tags(path, *, min_weight: float = 0.0):
    """Tags as three lists (items, tags, weights) from a TSV or the MSD `lastfm_tags.db`.

    TSV lines are `item_id<TAB>tag[<TAB>weight]`; a missing weight counts as 100 (present).
    """
    if str(path) != "-" and _is_sqlite(path):
        return _read_lastfm_db(path, min_weight=min_weight)
    name = display_name(path)
    items, tags, weights = [], [], []
    rows = iter_rows(
        path, min_fields=2, max_fields=3, what="tags TSV (item_id<TAB>tag[<TAB>weight])",
        looks_like_header=lambda f: len(f) == 3 and not _is_number(f[2]),
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
        if weight < min_weight:
            continue
        items.append(fields[0])
        tags.append(fields[1].strip())
        weights.append(weight)
    return items, tags, weights


def _is_sqlite(path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _read_lastfm_db(path, *, min_weight: float = 0.0):
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


def read_id_map(path) -> dict:
    """MSD `unique_tracks.txt`: {track_id: (song_id, artist, title)}.

    Fields are separated by `<SEP>` (the MSD's own separator) or by tabs.
    """
    name = display_name(path)
    mapping = {}
    with open_text(path) as stream:
        for lineno, line in enumerate(stream, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("<SEP>") if "<SEP>" in line else line.split("\t")
            if len(fields) < 2:
                raise DcueError(
                    f"{name}:{lineno}: expected track_id<SEP>song_id<SEP>artist<SEP>title, "
                    f"found {_shorten(line)!r}: give the MSD unique_tracks.txt."
                )
            track, song = fields[0].strip(), fields[1].strip()
            artist = fields[2] if len(fields) > 2 else ""
            title = "<SEP>".join(fields[3:]) if len(fields) > 3 else ""
            mapping[track] = (song, artist, title)
    if not mapping:
        raise DcueError(f"{name} is empty: expected MSD unique_tracks.txt lines.")
    return mapping


def read_id_list(path) -> list:
    """One id per line (the first tab- or <SEP>-separated field); blank lines skipped."""
    ids = []
    with open_text(path) as stream:
        for line in stream:
            line = line.strip()
            if line:
                ids.append(line.split("<SEP>")[0].split("\t")[0].strip())
    return ids
