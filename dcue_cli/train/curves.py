"""model.curves.png: the training loss and the validation AUC of a run, drawn from its log TSV.

matplotlib is an optional extra (`dcue[plot]`), imported only when a picture is drawn.
"""

import numpy as np


def draw_training_curves(log_file, path, title: str = "") -> None:
    """Left: the training loss against the step; right: the validation AUC at each epoch's end
    (the best marked). From the log TSV, so it can be redrawn for any run."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from dcue_cli.io.atomic import atomic_path
    from dcue_cli.io.training_log import read_training_log

    rows = read_training_log(log_file)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    auc = np.array([r.get("valid_auc", np.nan) for r in rows])
    ok = np.isfinite(loss)
    left.plot(steps[ok], loss[ok], color="C0", linewidth=1.5, marker="." if ok.sum() < 60 else None)
    left.set_xlabel("step")
    left.set_ylabel("training loss (mean since the last row)")
    left.set_title("loss", fontsize=10)
    valid = np.isfinite(auc)
    if valid.any():
        epochs = np.array([r["epoch"] for r in rows])[valid]
        right.plot(epochs, auc[valid], color="C1", linewidth=1.5, marker="o", markersize=3)
        best = int(np.argmax(auc[valid]))
        right.plot([epochs[best]], [auc[valid][best]], "D", color="black", markersize=6,
                   label=f"best {auc[valid][best]:.4f} (epoch {int(epochs[best])})")
        right.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        right.legend(loc="lower right", fontsize=8)
    else:
        right.text(0.5, 0.5, "no validation", ha="center", va="center", transform=right.transAxes)
    right.set_xlabel("epoch")
    right.set_ylabel("cold-start AUC on the validation songs")
    right.set_title("validation AUC", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def redraw_or_warn(log_file, path, title: str = "") -> bool:
    """Redraw during a run: a failure is a warning, never the end of the run; False once it failed."""
    from dcue_cli import log

    try:
        draw_training_curves(log_file, path, title=title)
    except Exception as exc:  # noqa: BLE001 - a picture is never worth a lost run
        log.warning("could not draw %s (%s): training goes on without it", path, exc)
        return False
    return True
