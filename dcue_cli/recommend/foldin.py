"""Vectors for users the model does not know, from the items they played, without retraining.

dot (WMF, and WMF+Regression's predicted factors): the ALS user step of Hu, Koren & Volinsky
(2008) against the fixed item factors, in closed form, with the confidence weighting the WMF
fit used (`dcue_cli.wmf.confidence`; alpha, regularization and the confidence form are read
from the file's attributes, as `dcue wmf` writes them, unless given):

    x_u = (Y'Y + Y'(C_u - I)Y + lambda I)^-1 Y'C_u p_u

This is what implicit's `recalculate_user` computes for a fitted model.

cosine (DCUE): the user tower's job done from the item vectors. 'mean': the normalised mean of
the unit vectors of the items played (the direction closest, on average, to them); 'logistic':
an L2-regularised logistic fit of the user vector separating the played items from the others
(class-balanced, a sample of at most `negatives` unplayed items), the default: on the
benchmarks/foldin_bench.py --dcue set it ranked held-out users' held-out plays at AUC 0.686
against 0.620 for the mean (and 0.624 for trained users' tower vectors).
"""

import numpy as np

from dcue_cli.errors import DcueError
from dcue_cli.wmf import CONFIDENCES, WmfConfig, confidence

COSINE_METHODS = ("mean", "logistic")


def wmf_settings(attrs: dict, alpha=None, regularization=None, kind=None, epsilon=None) -> dict:
    """alpha, regularization, confidence and epsilon: given, else the file's, else dcue wmf's defaults."""
    defaults = WmfConfig()
    out = {}
    for key, given, default in (("alpha", alpha, defaults.alpha),
                                ("regularization", regularization, defaults.regularization),
                                ("confidence", kind, defaults.confidence),
                                ("epsilon", epsilon, defaults.epsilon)):
        value = given if given is not None else attrs.get(key, default)
        out[key] = str(value) if key == "confidence" else float(value)
    if out["confidence"] not in CONFIDENCES:
        raise DcueError(f"--confidence {out['confidence']!r}: use linear or log.")
    if out["alpha"] <= 0 or out["epsilon"] <= 0 or out["regularization"] < 0:
        raise DcueError("--alpha and --epsilon must be positive and --regularization non-negative.")
    return out


def als_fold_in(item_vectors: np.ndarray, played: list, *, alpha: float, regularization: float,
                confidence_kind: str = "linear", epsilon: float = 1.0) -> np.ndarray:
    """(n, d) float32: the ALS user step for each user's (item positions, play counts) in `played`."""
    y = np.asarray(item_vectors, np.float64)
    d = y.shape[1]
    base = y.T @ y + regularization * np.eye(d)
    out = np.zeros((len(played), d), np.float32)
    for u, (rows, counts) in enumerate(played):
        if not len(rows):
            continue
        c = confidence(counts, alpha, confidence_kind, epsilon).astype(np.float64)
        yu = y[rows]
        a = base + yu.T @ ((c - 1.0)[:, None] * yu)
        out[u] = np.linalg.solve(a, yu.T @ c)
    return out


def cosine_fold_in(item_vectors: np.ndarray, played: list, method: str = "logistic", *, regularization: float = 1.0,
                   negatives: int = 2000, seed: int = 0) -> np.ndarray:
    """(n, d) float32 unit user vectors for cosine files, by `method` (mean or logistic)."""
    from dcue_cli.recommend.topk import unit

    if method not in COSINE_METHODS:
        raise DcueError(f"--fold-in {method!r}: use one of {', '.join(COSINE_METHODS)} for a cosine file.")
    items = unit(np.asarray(item_vectors, np.float32)).astype(np.float64)
    rng = np.random.default_rng(seed)
    out = np.zeros((len(played), items.shape[1]), np.float32)
    for u, (rows, _counts) in enumerate(played):
        if not len(rows):
            continue
        rows = np.unique(rows)
        mean = items[rows].mean(0)
        if method == "logistic":
            mean = _logistic(items, rows, mean, regularization, negatives, rng)
        out[u] = mean
    return unit(out)


def _logistic(items, rows, start, regularization, negatives, rng, steps=8):
    """Newton steps on the class-balanced, L2-regularised logistic loss of w . item."""
    others = np.setdiff1d(np.arange(len(items)), rows)
    if len(others) > negatives:
        others = rng.choice(others, negatives, replace=False)
    if not len(others):
        return start
    x = np.concatenate([items[rows], items[others]])
    y = np.concatenate([np.ones(len(rows)), -np.ones(len(others))])
    weight = np.where(y > 0, 0.5 / len(rows), 0.5 / len(others))
    w = start * 4.0
    eye = regularization * np.eye(x.shape[1])
    for _ in range(steps):
        margin = y * (x @ w)
        p = 1.0 / (1.0 + np.exp(np.clip(margin, -50, 50)))  # sigma(-margin)
        grad = -(x.T @ (weight * y * p)) + regularization * w
        hess = (x.T * (weight * p * (1 - p))) @ x + eye
        w = w - np.linalg.solve(hess, grad)
    return w


def fold_in(emb, played: list, *, method: str | None = None, **wmf_options) -> tuple:
    """(vectors, how) for users given as [(item positions, counts)], by the file's similarity."""
    if emb.similarity == "dot":
        if method not in (None, "als"):
            raise DcueError(f"--fold-in {method}: a dot file ({emb.path}) folds users in by the ALS step "
                            "(--fold-in als).")
        s = wmf_settings(emb.attrs, **wmf_options)
        vectors = als_fold_in(emb.item_vectors, played, alpha=s["alpha"], regularization=s["regularization"],
                              confidence_kind=s["confidence"], epsilon=s["epsilon"])
        how = (f"the ALS user step (alpha {s['alpha']:g}, regularization {s['regularization']:g}, "
               f"confidence {s['confidence']})")
        return vectors, how
    method = method or "logistic"  # it ranked held-out plays better (benchmarks/foldin_bench.py --dcue)
    if method == "als":
        raise DcueError(f"--fold-in als needs a dot file; {emb.path} is cosine: use mean or logistic.")
    return cosine_fold_in(emb.item_vectors, played, method), f"the {method} of the played items' unit vectors"
