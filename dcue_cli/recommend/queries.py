"""Ad-hoc look-ups in an embeddings file (`dcue score --user/--item`): a user's top items, an
item's nearest items, on the same top-k code as `dcue recommend`."""


import numpy as np

from dcue_cli.errors import DcueError
from dcue_cli.recommend.topk import catalogue, rank, scores


def unknown_id(kind: str, value: str, ids, path: str) -> DcueError:
    """The one-line error for an id that is not in the file, with examples of those that are."""
    examples = ", ".join(repr(str(i)) for i in list(ids[:3]))
    return DcueError(f"{kind} {value!r} is not in {path} ({len(ids):,} {kind}s, e.g. {examples}): check the id.")


def _allowed_rows(emb, allowed: set | None, exclude: set | None, leave_out: int | None = None) -> np.ndarray:
    keep = np.ones(len(emb.item_ids), bool)
    if allowed is not None:
        keep &= np.fromiter((i in allowed for i in emb.item_ids), bool, len(emb.item_ids))
    if exclude:
        keep &= np.fromiter((i not in exclude for i in emb.item_ids), bool, len(emb.item_ids))
    if leave_out is not None:
        keep[leave_out] = False
    return np.flatnonzero(keep)


def _query(emb, vector: np.ndarray, rows: np.ndarray, k: int):
    if not len(rows):
        return []
    cat = catalogue(emb.item_vectors, emb.similarity == "cosine", rows)
    with np.errstate(over="ignore", invalid="ignore"):
        s = scores(cat, vector[None, :])
    bad = ~np.isfinite(s[0].numpy())
    if bad.any():
        raise DcueError(f"{emb.path}: {int(bad.sum()):,} scores are NaN or infinite (e.g. item "
                        f"{str(emb.item_ids[rows[np.flatnonzero(bad)[0]]])!r}): its vectors hold NaN, infinity or "
                        "overflowing values; write the file again.")
    columns, values = rank(s, k)[0]
    return [(r, str(emb.item_ids[cat.rows[c]]), float(v)) for r, (c, v) in enumerate(zip(columns, values), 1)]


def recommend_user(emb, user_id: str, k: int = 10, exclude: set | None = None, allowed: set | None = None):
    """The k best items for a user as [(rank, item_id, score)], by the file's similarity.

    exclude: items not to recommend (e.g. the user's plays); allowed: only these items.
    """
    if emb.user_ids is None:
        raise DcueError(f"{emb.path} has no user vectors: --user needs a file written by `dcue embed` or `dcue wmf`.")
    row = emb.user_index().get(user_id)
    if row is None:
        raise unknown_id("user", user_id, emb.user_ids, emb.path)
    return _query(emb, emb.user_vectors[row], _allowed_rows(emb, allowed, exclude), k)


def similar_items(emb, item_id: str, k: int = 10, allowed: set | None = None):
    """The k items nearest to an item (itself left out) as [(rank, item_id, score)]."""
    row = emb.item_index().get(item_id)
    if row is None:
        raise unknown_id("item", item_id, emb.item_ids, emb.path)
    return _query(emb, emb.item_vectors[row], _allowed_rows(emb, allowed, None, leave_out=row), k)


def titles_from_id_map(id_map: dict) -> dict:
    """{track_id or song_id: (artist, title)} from read_id_map's {track_id: (song_id, artist, title)}."""
    titles = {}
    for track, (song, artist, title) in id_map.items():
        titles[track] = (artist, title)
        titles.setdefault(song, (artist, title))
    return titles
