"""`dcue score --plot`: each model's per-user AUC distribution and its mean ROC curve, in one figure.

The ROC curve of a model is the vertical average of its users' ROC curves (the true positive rate
at each false positive rate, averaged over the evaluated users), so its area is the mean per-user
AUC of the table, not the AUC of all (user, item) pairs pooled. Tied scores make a diagonal
segment, as AUC counts a tie as one half. matplotlib is an optional extra (`dcue[plot]`), imported
only here and only when a plot is asked for.
"""

from pathlib import Path

import numpy as np

from dcue_cli.errors import DcueError
from dcue_cli.runtime import have_matplotlib

MISSING_MATPLOTLIB = "--plot needs matplotlib: pip install 'dcue[plot]'"
GRID_POINTS = 201


def require_matplotlib() -> None:
    """Fail fast, before any scoring, when matplotlib is absent."""
    if not have_matplotlib():
        raise DcueError(MISSING_MATPLOTLIB)


def check_plot_path(path) -> str:
    """The image format from the file name (png, pdf, svg ...), or a one-line error."""
    require_matplotlib()
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise DcueError(f"--plot {path}: the file name must end in a known image format: "
                        f"{', '.join('.' + f for f in ('png', 'pdf', 'svg') if f in formats)} (or "
                        f"{', '.join('.' + f for f in sorted(formats) if f not in ('png', 'pdf', 'svg'))}).")
    parent = Path(path).parent
    if not parent.is_dir():
        raise DcueError(f"--plot {path}: the folder {parent} does not exist: create it or choose another path.")
    return suffix


def _block_roc(scores: np.ndarray, positives: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Sum over the rows (users) of their true positive rate at each false positive rate of `grid`.

    scores (B, I) float with NaN for items not ranked for that user; positives (B, I) bool. Each
    user's curve runs through the points after each group of tied scores, so a tie is a diagonal.
    """
    ranked_at = np.argsort(-scores, axis=1, kind="stable")  # NaN (not ranked) last
    ranked = np.take_along_axis(scores, ranked_at, axis=1)
    hits = np.take_along_axis(positives, ranked_at, axis=1)
    tp = np.cumsum(hits, axis=1)
    fp = np.cumsum(~hits, axis=1)
    ends = np.ones_like(hits)
    ends[:, :-1] = ranked[:, 1:] != ranked[:, :-1]  # the last item of each group of tied scores
    n_ranked = (~np.isnan(scores)).sum(axis=1)
    total = np.zeros(len(grid))
    for r, n in enumerate(n_ranked):
        last = ends[r, :n].copy()
        last[n - 1] = True
        fpr = np.concatenate([[0.0], fp[r, :n][last] / fp[r, n - 1]])
        tpr = np.concatenate([[0.0], tp[r, :n][last] / tp[r, n - 1]])
        total += np.interp(grid, fpr, tpr)
    return total


def mean_roc(task, model, users: np.ndarray, grid_points: int = GRID_POINTS, chunk_elements: int = 4_000_000):
    """(fpr grid, mean tpr) of `model` over the task's users selected by the bool mask `users`.

    Scores as `dcue score` ranks them: cosine or dot, items without a vector below every other
    item, users without a vector all ties, each user's excluded items (warm protocol) left out.
    Every selected user must have a positive and a negative among the ranked items.
    """
    from dcue_cli.evaluate.metrics import unit_rows

    grid = np.linspace(0.0, 1.0, grid_points)
    user_vectors, item_vectors = model.user_vectors, model.item_vectors
    if model.similarity == "cosine":
        user_vectors, item_vectors = unit_rows(user_vectors), unit_rows(item_vectors)
    rows = np.flatnonzero(users)
    total = np.zeros(grid_points)
    step = max(1, chunk_elements // max(1, task.n_items))
    for start in range(0, len(rows), step):
        block_rows = rows[start:start + step]
        block = (user_vectors[block_rows] @ item_vectors.T).astype(np.float64)
        block[:, model.missing_items] = -np.inf
        block[model.missing_users[block_rows]] = 0.0
        positives = task.positives[block_rows].toarray() > 0
        if task.exclude is not None:
            excluded = task.exclude[block_rows].toarray() > 0
            block[excluded] = np.nan
            positives &= ~excluded
        total += _block_roc(block, positives, grid)
    return grid, total / max(1, len(rows))


def draw(path, fmt: str, report: dict, auc_values: list, curves: list) -> None:
    """Left: each model's per-user AUC (violin, mean marked); right: the mean ROC curves.

    auc_values: one (n_users,) array per model, in the report's order; curves: (fpr, tpr) pairs.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib.figure import Figure

    from dcue_cli.io.atomic import atomic_path

    names = [m["name"] for m in report["models"]]
    means = [m["metrics"]["auc"]["mean"] for m in report["models"]]
    fig = Figure(figsize=(11, 0.9 + max(3.6, 0.55 * len(names))), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1.15, 1])
    positions = np.arange(len(names))[::-1]  # the first model on top, as in the table
    colors = [f"C{i}" for i in range(len(names))]

    import inspect

    # matplotlib 3.10 replaced vert=False by orientation="horizontal" (vert warns from 3.11)
    horizontal = ({"orientation": "horizontal"} if "orientation" in inspect.signature(left.violinplot).parameters
                  else {"vert": False})
    parts = left.violinplot([np.asarray(v, float) for v in auc_values], positions=positions, widths=0.8,
                            showextrema=False, **horizontal)
    for body, color in zip(parts["bodies"], colors):
        body.set_facecolor(color)
        body.set_alpha(0.45)
    for y, values, mean, color in zip(positions, auc_values, means, colors):
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        left.hlines(y, q1, q3, color=color, linewidth=4)
        left.plot([median], [y], "o", color="white", markeredgecolor=color, zorder=3)
        left.plot([mean], [y], "D", color="black", markersize=5, zorder=4)
    left.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    left.set_yticks(positions, [f"{n}\nmean {m:.4f}" for n, m in zip(names, means)])
    left.set_xlim(-0.02, 1.02)
    left.set_xlabel("AUC of a user")
    left.set_title(f"per-user AUC ({report['users']:,} users; ◆ mean, ○ median, bar: quartiles)", fontsize=10)

    for (fpr, tpr), name, mean, color in zip(curves, names, means, colors):
        right.plot(fpr, tpr, color=color, linewidth=2, label=f"{name} (mean AUC {mean:.4f})")
    right.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1.01)
    right.set_aspect("equal")
    right.set_xlabel("false positive rate")
    right.set_ylabel("true positive rate")
    right.set_title("ROC, averaged over users", fontsize=10)
    right.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{report['description']}: {report['items']:,} {report['item_word']}", fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120)
