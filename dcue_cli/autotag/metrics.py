"""Exact per-tag metrics, pure functions of (scores, labels): ROC-AUC through
`dcue_cli.evaluate.metrics.auc_per_user` (a tag's column is ranked like a user's row) and average
precision, ties counted as sklearn counts them."""

import numpy as np

from dcue_cli.evaluate.metrics import auc_per_user


def per_tag_auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC-AUC of each tag (column) over the items (rows); NaN where a tag has no positive
    or no negative. Ties count one half, exactly as sklearn's roc_auc_score."""
    return auc_per_user(np.asarray(scores).T, np.asarray(labels, dtype=bool).T)


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Average precision of one ranking, NaN without a positive.

    Tied scores form one threshold (precision and recall taken after the whole tie group),
    which is how sklearn's average_precision_score counts them.
    """
    positives = np.asarray(positives, dtype=bool)
    if not positives.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    ranked = np.asarray(scores, dtype=np.float64)[order]
    hits = positives[order]
    tp = np.cumsum(hits)
    # the last position of each group of tied scores
    ends = np.r_[np.flatnonzero(np.diff(ranked) != 0), len(ranked) - 1]
    tp = tp[ends].astype(np.float64)
    precision = tp / (ends + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_tag_ap(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Average precision of each tag (column); NaN where a tag has no positive."""
    labels = np.asarray(labels, dtype=bool)
    return np.array([average_precision(scores[:, t], labels[:, t]) for t in range(labels.shape[1])])
