"""Users refitted on a model's fixed item vectors (`dcue refit`): the user side done again,
as well as a linear model can, from each user's training plays.

A two-tower model learns each user's vector jointly with the item tower, from a few dozen
plays, in the item tower's full width (256). Here the item vectors are reduced to their top
k principal directions (fitted on the training songs), and each user's taste is an
L2-regularised logistic regression of played (1) or not (0) over all training songs on
those k coordinates (intercept unpenalised): the reachable ceiling's own user model
(benchmarks/reachable_ceiling.py), run on what the item tower hears instead of the true
styles. k (every value from 2 to 16, then 24 and 32, in increasing order until three in a
row bring no better AUC) is chosen by the mean cold-start AUC on the validation songs at the
middle strength C, then C at that k, so the test songs are never looked at.

The output holds every item (cold ones included) in the k coordinates and every user with
training plays (also users the model never saw), similarity dot; a user's intercept is left
out, as it shifts all of that user's scores alike and so changes no ranking.

numpy only: Newton's method for a block of users at once (k + 1 parameters each).
"""

from dataclasses import dataclass

import numpy as np

from dcue_cli.errors import DcueError

# every k from 2 to 16, then coarser: the best k is sharp (on the demo set 7, the style's hearable
# dimensions: 0.805 on the valid songs against 0.792 at 6 and 0.800 at 8) and differs by set
DIMS = tuple(range(2, 17)) + (24, 32)
STRENGTHS = (0.3, 1.0, 3.0)
# the search over k (in increasing order) stops after this many values without a better valid AUC
K_PATIENCE = 3


@dataclass
class Basis:
    """x -> ((x / |x|) − mean) @ axes.T / scale: the top principal coordinates, unit variance
    on the training songs (rows are unit-normalised first for a cosine model)."""

    mean: np.ndarray
    axes: np.ndarray  # (k, d)
    scale: np.ndarray  # (k,)
    unit_rows: bool

    def project(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.unit_rows:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return (x - self.mean) @ self.axes.T / self.scale

    def first(self, k: int) -> "Basis":
        """The top k of these directions (the coordinates of a basis are its first columns)."""
        return Basis(self.mean, self.axes[:k], self.scale[:k], self.unit_rows)


def principal_basis(train_vectors: np.ndarray, k: int, unit_rows: bool) -> Basis:
    """The top k principal directions of the training songs' vectors (fewer where their rank is lower)."""
    x = np.asarray(train_vectors, np.float64)
    if unit_rows:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    mean = x.mean(axis=0)
    _, sv, vt = np.linalg.svd(x - mean, full_matrices=False)
    k = min(k, int((sv > 1e-9 * max(sv[0], 1e-30)).sum()) if len(sv) else 0)
    if k < 1:
        raise DcueError("the training songs' item vectors are all the same: there is no direction to fit users on.")
    axes = vt[:k]
    scale = np.maximum(((x - mean) @ axes.T).std(axis=0), 1e-12)
    return Basis(mean, axes, scale, unit_rows)


def fit_users(z: np.ndarray, played: np.ndarray, strength: float, steps: int = 30, block: int = 512) -> np.ndarray:
    """(users, k) tastes: per user, argmin Σ_i logloss(y_ui, w·z_i + b) + |w|² / (2 C) over the
    training songs `z` (n, k); `played` (users, n) bool. Newton steps for a block of users at
    once, each step halved until the user's objective falls (a full Newton step can overshoot a
    heavy user's taste to many times its size), until every step is negligible."""
    n, k = z.shape
    z1 = np.hstack([z, np.ones((n, 1))])
    penalty = np.full(k + 1, 1.0 / strength)
    penalty[-1] = 1e-8  # the intercept is (all but) free
    out = np.zeros((len(played), k))
    for a in range(0, len(played), block):
        y = played[a:a + block].astype(np.float64)
        w = np.zeros((len(y), k + 1))
        rate = np.clip(y.mean(axis=1), 1e-6, 1 - 1e-6)
        w[:, -1] = np.log(rate / (1 - rate))  # start at each user's base rate
        logits = w @ z1.T
        loss = _objectives(w, logits, y, penalty)
        for _ in range(steps):
            p = 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))
            grad = (p - y) @ z1 + w * penalty
            hess = _hessians(p, z1)
            hess[:, np.arange(k + 1), np.arange(k + 1)] += penalty
            step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
            w, logits, loss = _damped(w, logits, step, loss, z1, y, penalty)
            if np.abs(step).max() < 1e-8:
                break
        out[a:a + len(y)] = w[:, :k]
    return out


def _objectives(w: np.ndarray, logits: np.ndarray, y: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Each user's penalised log loss (its row of `w`, whose scores of the songs are `logits`)."""
    return (np.logaddexp(0.0, logits) - y * logits).sum(axis=1) + 0.5 * (w * w * penalty).sum(axis=1)


def _damped(w, logits, step, loss, z1, y, penalty, halvings: int = 30):
    """(w − t·step, its logits, its objectives) with t = 1, 1/2, 1/4, ... per user, the first
    that does not raise the user's objective (t = 0 if none does: the user is at its optimum to
    float precision). The logits come back so that the next Newton step need not redo them."""
    w, logits, loss = w.copy(), logits.copy(), loss.copy()
    pending, t = np.arange(len(w)), 1.0
    for _ in range(halvings):
        cand = w[pending] - t * step[pending]
        cand_logits = cand @ z1.T
        cand_loss = _objectives(cand, cand_logits, y[pending], penalty)
        ok = cand_loss <= loss[pending] + 1e-12 * np.abs(loss[pending])
        rows = pending[ok]
        w[rows], logits[rows], loss[rows] = cand[ok], cand_logits[ok], cand_loss[ok]
        pending, t = pending[~ok], t / 2
        if not len(pending):
            break
    return w, logits, loss


def _hessians(p: np.ndarray, z1: np.ndarray) -> np.ndarray:
    """(users, k+1, k+1): Z' diag(p(1−p)) Z for each user's row of p."""
    r = p * (1 - p)
    return np.matmul(z1.T[None] * r[:, None, :], z1)


def played_matrix(item_ids, plays, splits: dict):
    """(users, the split of each item, (users, items) played) for the items of `item_ids` that
    have a split; users are those with a play of one of the training items."""
    column = {item: k for k, item in enumerate(item_ids)}
    split = np.array([splits.get(i, "") for i in item_ids], dtype=object)
    users_of = plays.user_ids[plays.users]
    cols = np.array([column.get(i, -1) for i in plays.item_ids], dtype=np.int64)[plays.items]
    keep = cols >= 0
    train_col = split == "train"
    with_training = np.unique(users_of[keep][train_col[cols[keep]]])
    row = {u: k for k, u in enumerate(with_training)}
    played = np.zeros((len(with_training), len(item_ids)), dtype=bool)
    rows = np.array([row.get(u, -1) for u in users_of[keep]], dtype=np.int64)
    ok = rows >= 0
    played[rows[ok], cols[keep][ok]] = True
    return with_training, split, played


@dataclass
class Refit:
    basis: Basis
    tastes: np.ndarray  # (users, k)
    dims: int
    strength: float
    valid_auc: dict  # (k, C) -> mean AUC on the valid songs


def choose_and_fit(vectors: np.ndarray, split: np.ndarray, played: np.ndarray, *, unit_rows: bool,
                   dims=DIMS, strengths=STRENGTHS) -> Refit:
    """k chosen on the valid songs at the middle strength (in increasing order, until K_PATIENCE
    values in a row bring no better AUC), then C at that k: a search along each axis, not the
    grid, since k needs a fine grid and C hardly matters (all within 0.001 on the demo set).
    One SVD and one projection serve every k."""
    from dcue_cli.evaluate.metrics import mean_auc

    train, valid = split == "train", split == "valid"
    if not train.any():
        raise DcueError("no item of the embeddings is a training song of the splits: there is nothing to fit "
                        "users on (give the splits the model was trained with).")
    middle = lambda values: sorted(values)[len(values) // 2]
    if not valid.any():  # nothing to choose on: the middle of each grid
        dims, strengths = (middle(dims),), (middle(strengths),)
    full = principal_basis(vectors[train], max(dims), unit_rows)
    z_full = full.project(vectors)
    scores = {}

    def trial(k: int, c: float) -> Refit:
        z = z_full[:, :k]
        tastes = fit_users(z[train], played[:, train], c)
        auc = (mean_auc(tastes.astype(np.float32), z[valid].astype(np.float32), "dot", played[:, valid])
               if valid.any() else float("nan"))
        scores[(k, c)] = auc
        return Refit(full.first(k), tastes, k, c, scores)

    def better(a: Refit, b: Refit) -> bool:
        sa, sb = scores[(a.dims, a.strength)], scores[(b.dims, b.strength)]
        return sa > sb or (np.isnan(sb) and not np.isnan(sa))

    best, since_best = None, 0
    for k in sorted({min(k, full.axes.shape[0]) for k in dims}):
        fit = trial(k, middle(strengths))
        if best is None or better(fit, best):
            best, since_best = fit, 0
        else:
            since_best += 1
            if since_best >= K_PATIENCE:  # past the peak: larger k only cost more (and fit worse)
                break
    for c in sorted(set(strengths) - {middle(strengths)}):
        fit = trial(best.dims, c)
        best = fit if better(fit, best) else best
    return best


@dataclass
class RefitReport:
    output: str
    n_items: int
    n_users: int
    dims: int
    strength: float
    valid_auc: dict


def run_refit(embeddings_path, plays_path, splits_path, output, *, dims=DIMS, strengths=STRENGTHS,
              show_progress: bool = True, **plays_options) -> RefitReport:
    """Read a model's embeddings, the plays and the splits; write the refitted embeddings."""
    from dcue_cli.io.atomic import refuse_inputs_as_outputs, refuse_replacing_other_kind
    from dcue_cli.io.embeddings import (
        Embeddings,
        is_embeddings_file,
        read_embeddings,
        refuse_non_finite,
        write_embeddings,
    )
    from dcue_cli.io.plays import read_plays
    from dcue_cli.io.splits import read_splits

    refuse_inputs_as_outputs({"-o": output}, {"EMBEDDINGS": embeddings_path, "PLAYS": plays_path,
                                              "--splits": splits_path})
    refuse_replacing_other_kind(output, "an embeddings file", is_embeddings_file)
    emb = read_embeddings(embeddings_path)
    refuse_non_finite(embeddings_path, emb.item_vectors, emb.item_ids)
    splits = read_splits(splits_path)
    plays = read_plays(plays_path, show_progress=show_progress, **plays_options)
    users, split, played = played_matrix(list(emb.item_ids), plays, splits)
    if not len(users) and (split == "train").any():
        raise DcueError(f"{plays_path}: no user played a training song of {embeddings_path} (by --splits "
                        f"{splits_path}): were the embeddings made from these songs?")
    fit = choose_and_fit(emb.item_vectors, split, played, unit_rows=emb.similarity == "cosine",
                         dims=dims, strengths=strengths)
    items = fit.basis.project(emb.item_vectors).astype(np.float32)
    attrs = {"name": f"{emb.name} + refit users", "refit_dims": fit.dims, "refit_C": fit.strength,
             "refit_of": str(embeddings_path),
             "refit_valid_auc": max(fit.valid_auc.values()) if fit.valid_auc else float("nan")}
    write_embeddings(output, Embeddings(np.asarray(emb.item_ids, dtype=object), items,
                                        np.asarray(users, dtype=object), fit.tastes.astype(np.float32),
                                        source=f"{emb.source}+refit", similarity="dot", attrs=attrs))
    return RefitReport(str(output), len(items), len(users), fit.dims, fit.strength, fit.valid_auc)
