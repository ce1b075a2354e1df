"""Evaluation metrics as pure numpy functions (no I/O, no click).

Exact by construction:
- AUC from average ranks (a tie counts one half), over the full list of candidate items,
  never truncated at K; equal to sklearn.metrics.roc_auc_score user by user.
- precision@k, recall@k, nDCG@k and MAP@k on the full ranking of every candidate item, with
  tied scores handled exactly: each value is its expectation over all orders of the tied
  items (McSherry & Najork, ECIR 2008), so a model that scores every item the same gets the
  random-ranking value, not a lucky or unlucky order. Without ties these are the usual
  definitions.

Everything works on a block of users at a time from their score rows: `evaluate` computes
scores from user and item vectors chunk by chunk, so memory stays bounded for any number of
users (the users x items matrix never exists at once).

The one idea behind the speed: sort each user's score row once; then for every positive item
a binary search in its row gives how many candidates score below it and how many the same. AUC, and the expected rank-based metrics, follow in closed form from those counts.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from dcue_cli.runtime import usable_cores

METRIC_NAMES = ("precision", "recall", "ndcg", "map")
DEFAULT_CHUNK_ELEMENTS = 1 << 21  # scores per chunk: 8 MB of float32, cache-friendly to sort


# --------------------------------------------------------------------------- core, per block


def _count_below(sorted_rows: np.ndarray, indptr: np.ndarray, values: np.ndarray):
    """For each positive: how many entries of its user's sorted row are < and <= its score.

    `indptr` (B + 1,) delimits each row's positives in `values`, as in a CSR matrix. A row
    fits in cache, so one searchsorted per row beats any global search; numpy sorts NaN
    last and searches consistently with that, so NaN entries (non-candidates) never count.
    """
    less = np.empty(len(values), np.int64)
    leq = np.empty(len(values), np.int64)
    for row in np.flatnonzero(np.diff(indptr)):
        lo, hi = indptr[row], indptr[row + 1]
        ranked, mine = sorted_rows[row], values[lo:hi]
        less[lo:hi] = ranked.searchsorted(mine, "left")
        leq[lo:hi] = ranked.searchsorted(mine, "right")
    return less, leq


def _discount_table(n: int) -> np.ndarray:
    """D[t] = sum over positions s < t of 1/log2(s + 2): cumulative DCG discounts, D[0] = 0."""
    out = np.zeros(n + 1)
    out[1:] = np.cumsum(1.0 / np.log2(np.arange(n) + 2.0))
    return out


def _harmonic_table(n: int) -> np.ndarray:
    """Hm[t] = sum over s = 1..t of 1/s, Hm[0] = 0."""
    out = np.zeros(n + 1)
    out[1:] = np.cumsum(1.0 / np.arange(1, n + 1))
    return out


def _block_metrics(scores: np.ndarray, pos_rows: np.ndarray, pos_cols: np.ndarray, n_cand: np.ndarray,
                   ks: Sequence[int], tables: dict) -> dict:
    """Per-user metrics of one block of users.

    scores: (B, I) float, NaN where an item is not a candidate for that user (it takes no
    part); sorted in place. pos_rows/pos_cols: the positive candidates, rows ascending, no
    duplicates.
    n_cand: (B,) number of candidates of each user. Returns {name: (B,) float64}, NaN for a
    user without both a positive and a negative candidate.
    """
    n_rows, n_cols = scores.shape
    values = scores[pos_rows, pos_cols]
    scores.sort(axis=1)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(pos_rows, minlength=n_rows))])
    less, leq = _count_below(scores, indptr, values)
    equal = leq - less  # includes the positive itself, so >= 1
    n_pos = np.bincount(pos_rows, minlength=n_rows)
    n_neg = n_cand - n_pos
    defined = (n_pos > 0) & (n_neg > 0)
    out = {}

    # AUC = (sum of the positives' average ranks - n_pos(n_pos+1)/2) / (n_pos n_neg); twice
    # the rank sum is an integer, so this is exact up to the one division.
    twice_rank_sum = np.bincount(pos_rows, weights=2 * less + equal + 1, minlength=n_rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (twice_rank_sum / 2.0 - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    auc[~defined] = np.nan
    out["auc"] = auc
    if not ks:
        return out

    # Rank-based metrics in expectation over the orders of tied items. In the descending
    # ranking, a positive's tie group occupies positions [g, g + e) (0-based); under a random
    # order of the group the positive is equally likely at each of them.
    g = n_cand[pos_rows] - leq  # candidates scoring strictly higher
    e = equal
    # h: positives of the same user scoring strictly higher; m: positives in the tie group.
    key = pos_rows.astype(np.int64) * (n_cols + 1) + g
    sorted_key = np.sort(key)
    first = np.searchsorted(sorted_key, key, "left")
    h = first - np.searchsorted(sorted_key, pos_rows.astype(np.int64) * (n_cols + 1), "left")
    m = np.searchsorted(sorted_key, key, "right") - first
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(e > 1, (m - 1) / np.maximum(e - 1, 1), 0.0)  # expected share of tied positives before
    disc, harm = tables["discount"], tables["harmonic"]
    for k in ks:
        a = np.minimum(g, k)
        b = np.minimum(g + e, k)
        hits = np.bincount(pos_rows, weights=(b - a) / e, minlength=n_rows)
        dcg = np.bincount(pos_rows, weights=(disc[b] - disc[a]) / e, minlength=n_rows)
        idcg = disc[np.minimum(n_pos, k)]
        # AP: at position t the precision is (1 + positives before t) / (t + 1); before t lie
        # the h higher positives and, in expectation, (t - g) * rho of the tied ones.
        dh = harm[b] - harm[a]
        ap_terms = ((1 + h) * dh + rho * ((b - a) - (g + 1) * dh)) / e
        ap = np.bincount(pos_rows, weights=ap_terms, minlength=n_rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"precision@{k}"] = np.where(defined, hits / k, np.nan)
            out[f"recall@{k}"] = np.where(defined, hits / n_pos, np.nan)
            out[f"ndcg@{k}"] = np.where(defined, dcg / idcg, np.nan)
            out[f"map@{k}"] = np.where(defined, ap / np.minimum(n_pos, k), np.nan)
    return out


def metric_names(ks: Iterable[int] = (10,)) -> list:
    """Column names in their order: auc, then precision@k, recall@k, ndcg@k, map@k for each k."""
    return ["auc"] + [f"{name}@{k}" for k in ks for name in METRIC_NAMES]


def _check_ks(ks) -> tuple:
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be a positive integer, not {ks}")
    return ks


def _tables(n_items: int, ks) -> dict:
    size = max([n_items] + list(ks)) + 1
    return {"discount": _discount_table(size), "harmonic": _harmonic_table(size)}


# --------------------------------------------------------------------------- dense inputs


def per_user_metrics(scores: np.ndarray, positives: np.ndarray, candidates: np.ndarray = None,
                     ks: Sequence[int] = (10,)) -> dict:
    """Every metric of each row of a dense score matrix: {name: (U,) float64}, NaN where undefined.

    scores: (U, I) float (not NaN); positives: (U, I) bool; candidates: optional (U, I) or (I,)
    bool of the items that take part (others, e.g. a user's training items, are ignored).
    Metric names as in `metric_names(ks)`.
    """
    ks = _check_ks(ks)
    scores = np.array(scores, copy=True)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    positives = np.asarray(positives, dtype=bool)
    if candidates is not None:
        candidates = np.broadcast_to(np.asarray(candidates, dtype=bool), scores.shape)
        positives = positives & candidates
        scores[~candidates] = np.nan  # sorted last and never counted: not part of the ranking
        n_cand = candidates.sum(axis=1)
    else:
        n_cand = np.full(scores.shape[0], scores.shape[1])
    rows, cols = np.nonzero(positives)
    return _block_metrics(scores, rows, cols, n_cand.astype(np.int64), ks, _tables(scores.shape[1], ks))


def auc_per_user(scores: np.ndarray, positives: np.ndarray, candidates: np.ndarray = None) -> np.ndarray:
    """ROC-AUC of each row of `scores` against the boolean `positives`, ties as average ranks.

    scores: (U, I) float; positives: (U, I) bool; candidates: optional (U, I) bool of the
    items that take part for each user (others are ignored: e.g. a user's training items).
    Returns (U,) float64, NaN for a user without both a positive and a negative candidate.
    Equals sklearn.metrics.roc_auc_score row by row.
    """
    return per_user_metrics(scores, positives, candidates, ks=())["auc"]


# --------------------------------------------------------------------------- from vectors, chunked


def _as_numpy(x, dtype=np.float32) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=dtype)


def unit_rows(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1)


def _candidate_columns(candidates, n_items: int) -> np.ndarray:
    if candidates is None:
        return np.arange(n_items)
    candidates = np.asarray(candidates)
    if candidates.dtype == bool:
        if candidates.shape != (n_items,):
            raise ValueError(f"a boolean candidates mask must have shape ({n_items},), not {candidates.shape}")
        return np.flatnonzero(candidates)
    return np.unique(candidates.astype(np.int64))


def evaluate(
    user_vectors,
    item_vectors,
    similarity: str,
    positives,
    candidates=None,
    ks: Sequence[int] = (10,),
    *,
    exclude=None,
    missing_items: np.ndarray | None = None,
    missing_users: np.ndarray | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    threads: int | None = None,
    progress: bool = False,
    stop=None,
) -> dict:
    """Rank items for every user from vectors and measure it against the positives, in chunks.

    user_vectors: (U, d); item_vectors: (I, d) (numpy or torch); similarity: 'dot' or 'cosine'.
    positives: sparse (U, I), nonzero = a positive (counts are binarised).
    candidates: the items that are ranked for everyone: None (all I), a boolean (I,) mask or
        item indices; the cold-start protocol passes the test songs here.
    ks: the cut-offs of precision/recall/nDCG/MAP; () for AUC only (faster).
    exclude: optional sparse (U, I): items not ranked for that user (the warm protocol's
        training plays); they are neither hits nor negatives.
    missing_items: optional (I,) bool: items without a real vector; they rank below every
        other item (tied), which never flatters the model.
    missing_users: optional (U,) bool: users without a real vector; every item ties for them.
    chunk_elements: scores held per chunk of users (memory is about 2 x 4 bytes x this per
        thread); threads: chunks scored at once (numpy sorts and BLAS release the GIL;
        default: the usable cores, at most 8). stop: a StopSignals, checked between chunks.

    Returns a dict: 'metrics' {name: mean over evaluated users}, 'per_user' {name: (U,)
    float64, NaN for users not evaluated}, 'evaluated' (U,) bool (a positive and a negative
    among the candidates), 'n_users' (evaluated), 'n_items' (candidates), 'n_positives' and
    'n_candidates' (U,) int64.
    """
    ks = _check_ks(ks)
    users, items, positives = _checked_inputs(user_vectors, item_vectors, similarity, positives)
    problem = _RankingProblem.build(users, items, positives, candidates, ks, exclude, missing_items,
                                    missing_users, chunk_elements)
    names = metric_names(ks) if ks else ["auc"]
    per_user = {name: np.full(len(users), np.nan) for name in names}
    starts = range(0, len(users), problem.step)
    threads = max(1, min(int(threads or min(8, usable_cores())), len(starts)))
    with _maybe_pool(threads) as pool:
        results = pool.map(problem.block, starts) if pool else map(problem.block, starts)
        if progress:
            from dcue_cli.log import progress as bar

            results = bar(results, total=len(starts), desc="scoring users", unit=" chunks")
        for start, end, got in results:
            for name in names:
                per_user[name][start:end] = got[name]
            if stop is not None:  # a StopSignals: Ctrl-C between chunks (the pool's others cancelled)
                stop.check()

    evaluated = ~np.isnan(per_user["auc"])
    with np.errstate(invalid="ignore"):
        means = {name: (float(values[evaluated].mean()) if evaluated.any() else float("nan"))
                 for name, values in per_user.items()}
    return {
        "metrics": means,
        "per_user": per_user,
        "evaluated": evaluated,
        "n_users": int(evaluated.sum()),
        "n_items": len(problem.cols),
        "n_positives": np.diff(problem.pos.indptr).astype(np.int64),
        "n_candidates": problem.n_cand,
    }


def _checked_inputs(user_vectors, item_vectors, similarity, positives):
    """(users, items, positives) as numpy float32 and CSR, unit rows for cosine; shapes checked."""
    import scipy.sparse as sp

    if similarity not in ("dot", "cosine"):
        raise ValueError(f"similarity must be 'dot' or 'cosine', not {similarity!r}")
    users = _as_numpy(user_vectors)
    items = _as_numpy(item_vectors)
    if users.ndim != 2 or items.ndim != 2 or users.shape[1] != items.shape[1]:
        raise ValueError(f"user vectors {users.shape} and item vectors {items.shape} must be (U, d) and (I, d)")
    positives = sp.csr_matrix(positives)
    if positives.shape != (len(users), len(items)):
        raise ValueError(f"positives has shape {positives.shape}, expected ({len(users)}, {len(items)})")
    if similarity == "cosine":
        users, items = unit_rows(users), unit_rows(items)
    return users, items, positives


@dataclass
class _RankingProblem:
    """What every block of users is scored against: the candidate items and each user's hits."""

    users: np.ndarray
    items_c: np.ndarray  # the candidates' vectors
    cols: np.ndarray  # the candidates' columns
    pos: object  # CSR (U, candidates): the hits
    exc: object  # CSR (U, candidates) or None: neither hits nor negatives
    n_cand: np.ndarray  # (U,) candidates per user
    penalty: np.ndarray | None  # (candidates,) items without a vector: ranked last
    lost_users: np.ndarray  # (U,) users without a vector: every item ties
    ks: tuple
    tables: dict
    step: int  # users per block

    @classmethod
    def build(cls, users, items, positives, candidates, ks, exclude, missing_items, missing_users, chunk_elements):
        import scipy.sparse as sp

        n_users = len(users)
        cols = _candidate_columns(candidates, len(items))
        penalty = None
        if missing_items is not None:
            missing_c = np.asarray(missing_items, bool)[cols]
            if missing_c.any():
                penalty = missing_c
        pos = _binary(positives[:, cols])
        if exclude is not None:
            exc = _binary(sp.csr_matrix(exclude)[:, cols])
            pos = _binary(pos - pos.multiply(exc))
            n_cand = len(cols) - np.diff(exc.indptr).astype(np.int64)
        else:
            exc = None
            n_cand = np.full(n_users, len(cols), np.int64)
        lost = np.zeros(n_users, bool) if missing_users is None else np.asarray(missing_users, bool)
        return cls(users, items[cols], cols, pos, exc, n_cand, penalty, lost, ks, _tables(len(cols), ks),
                   max(1, int(chunk_elements) // max(1, len(cols))))

    def block(self, start):
        """(start, stop, metrics of users start..stop)."""
        stop = min(start + self.step, len(self.users))
        block = self.users[start:stop] @ self.items_c.T
        if np.isnan(block).any():
            raise ValueError("the vectors give NaN scores: check them for NaN or infinite values")
        if self.penalty is not None:
            block[:, self.penalty] = -np.inf
        if self.lost_users.any():
            block[self.lost_users[start:stop]] = 0.0
        if self.exc is not None:
            sub = self.exc[start:stop]
            block[np.repeat(np.arange(stop - start), np.diff(sub.indptr)), sub.indices] = np.nan
        sub = self.pos[start:stop]
        rows = np.repeat(np.arange(stop - start), np.diff(sub.indptr))
        return start, stop, _block_metrics(block, rows, sub.indices.astype(np.int64), self.n_cand[start:stop],
                                           self.ks, self.tables)


class _maybe_pool:
    """A thread pool (BLAS limited to one thread inside it) when threads > 1, else nothing."""

    def __init__(self, threads: int):
        self.threads = threads
        self.pool = self.limits = None

    def __enter__(self):
        if self.threads <= 1:
            return None
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        self.limits = threadpool_limits(1, "blas")
        self.pool = ThreadPoolExecutor(self.threads)
        return self.pool

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.limits.restore_original_limits()
        return False


def _binary(m):
    m = m.tocsr()
    m.sum_duplicates()
    m.eliminate_zeros()
    m.data = np.ones_like(m.data, dtype=np.float32)
    m.sort_indices()
    return m


def mean_auc(user_vectors, item_vectors, similarity: str, positives, candidates=None, **kwargs) -> float:
    """The paper's figure: mean over users (with a positive and a negative candidate) of the AUC.

    Same arguments as `evaluate`; for validation during training.
    """
    return evaluate(user_vectors, item_vectors, similarity, positives, candidates, ks=(), **kwargs)["metrics"]["auc"]
