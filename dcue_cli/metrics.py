"""Evaluation metrics as pure numpy functions (no I/O, no click).

Exact by construction: AUC from average ranks (ties count one half), over the full list of
candidate items, never truncated at K.
"""

import numpy as np


def auc_per_user(scores: np.ndarray, positives: np.ndarray, candidates: np.ndarray = None) -> np.ndarray:
    """ROC-AUC of each row of `scores` against the boolean `positives`, ties as average ranks.

    scores: (U, I) float; positives: (U, I) bool; candidates: optional (U, I) bool of the
    items that take part for each user (others are ignored: e.g. a user's training items).
    Returns (U,) float64, NaN for a user without both a positive and a negative candidate.
    Equals sklearn.metrics.roc_auc_score row by row.
    """
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if candidates is not None:
        candidates = np.asarray(candidates, dtype=bool)
        positives = positives & candidates
        # Excluded items go strictly above every candidate: the candidates' ranks among
        # themselves are unchanged, and the excluded ones are never counted below.
        scores = np.where(candidates, scores, np.inf)
        n_cand = candidates.sum(axis=1)
    else:
        n_cand = np.full(scores.shape[0], scores.shape[1])
    ranks = rankdata(scores, axis=1, method="average")
    n_pos = positives.sum(axis=1)
    n_neg = n_cand - n_pos
    pos_rank_sum = np.where(positives, ranks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos_rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc
