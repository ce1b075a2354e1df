"""Ad-hoc look-ups in an embeddings file: a user's top items, an item's nearest items."""


import numpy as np

from dcue_cli.errors import DcueError


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first; ties by position (deterministic)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    # Pull in every item tied with the k-th so the tie order is by position, not by chance.
    kth = scores[part].min()
    part = np.union1d(part, np.flatnonzero(scores == kth))
    order = np.lexsort((part, -scores[part]))
    return part[order][:k]


def _unknown(kind: str, value: str, ids, path: str) -> DcueError:
    examples = ", ".join(repr(str(i)) for i in list(ids[:3]))
    return DcueError(f"{kind} {value!r} is not in {path} ({len(ids):,} {kind}s, e.g. {examples}): check the id.")


def _allowed_mask(emb, allowed: set | None) -> np.ndarray:
    if allowed is None:
        return np.ones(len(emb.item_ids), bool)
    return np.fromiter((i in allowed for i in emb.item_ids), bool, len(emb.item_ids))


def _unit(v: np.ndarray) -> np.ndarray:
    # Scaled by the largest value first, so that a huge vector's squared norm cannot overflow.
    with np.errstate(invalid="ignore"):
        top = np.abs(v).max(axis=-1, keepdims=True)
        v = v / np.where(top > 0, top, 1)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norms > 0, norms, 1)


def recommend(emb, user_id: str, k: int = 10, exclude: set | None = None, allowed: set | None = None):
    """The k best items for a user as [(rank, item_id, score)], by the file's similarity.

    exclude: items not to recommend (e.g. the user's plays); allowed: only these items.
    """
    if emb.user_ids is None:
        raise DcueError(f"{emb.path} has no user vectors: --user needs a file written by `dcue embed` or `dcue wmf`.")
    row = emb.user_index().get(user_id)
    if row is None:
        raise _unknown("user", user_id, emb.user_ids, emb.path)
    items, user = emb.item_vectors, emb.user_vectors[row]
    if emb.similarity == "cosine":
        items, user = _unit(items), _unit(user)
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite scores are refused in _ranked
        scores = (items @ user).astype(np.float64)
    keep = _allowed_mask(emb, allowed)
    if exclude:
        keep &= np.fromiter((i not in exclude for i in emb.item_ids), bool, len(emb.item_ids))
    return _ranked(emb, scores, keep, k)


def similar_items(emb, item_id: str, k: int = 10, allowed: set | None = None):
    """The k items nearest to an item (itself left out) as [(rank, item_id, score)]."""
    row = emb.item_index().get(item_id)
    if row is None:
        raise _unknown("item", item_id, emb.item_ids, emb.path)
    items = emb.item_vectors
    if emb.similarity == "cosine":
        items = _unit(items)
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite scores are refused in _ranked
        scores = (items @ items[row]).astype(np.float64)
    keep = _allowed_mask(emb, allowed)
    keep[row] = False
    return _ranked(emb, scores, keep, k)


def _ranked(emb, scores, keep, k):
    candidates = np.flatnonzero(keep)
    bad = candidates[~np.isfinite(scores[candidates])]
    if len(bad):
        raise DcueError(f"{emb.path}: {len(bad):,} scores are NaN or infinite (e.g. item "
                        f"{str(emb.item_ids[bad[0]])!r}): its vectors hold NaN, infinity or overflowing values; "
                        "write the file again.")
    best = candidates[_top(scores[candidates], k)]
    return [(rank, str(emb.item_ids[i]), float(scores[i])) for rank, i in enumerate(best, 1)]


def titles_from_id_map(id_map: dict) -> dict:
    """{track_id or song_id: (artist, title)} from read_id_map's {track_id: (song_id, artist, title)}."""
    titles = {}
    for track, (song, artist, title) in id_map.items():
        titles[track] = (artist, title)
        titles.setdefault(song, (artist, title))
    return titles
