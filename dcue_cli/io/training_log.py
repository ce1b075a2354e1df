"""The training log TSV (`dcue train -o model.pt` writes model.log.tsv): one row per epoch
(and every --log-every steps): epoch, step, loss, valid_auc, crops_per_s, seconds, lr.

Blank cells are values that do not exist (no validation AUC for a mid-epoch row).
"""

import math
from pathlib import Path

LOG_COLUMNS = ("epoch", "step", "loss", "valid_auc", "crops_per_s", "seconds", "lr")


def start_log(path, resumed_at_step: int = 0) -> None:
    """Write the header; a resumed run (at global step > 0) keeps the rows that led to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = []
    if resumed_at_step > 0 and path.exists():
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f):
                cells = line.rstrip("\n").split("\t")
                if n == 0 or (len(cells) > 1 and cells[1].isdigit() and int(cells[1]) <= resumed_at_step):
                    keep.append(line if line.endswith("\n") else line + "\n")
    if not keep:
        keep = ["\t".join(LOG_COLUMNS) + "\n"]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(keep)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def append_row(path, **row) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("\t".join(_cell(row.get(c)) for c in LOG_COLUMNS) + "\n")


def read_training_log(path) -> list:
    """The rows as dicts of floats (blank cells as nan)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines:
        return []
    head = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        cells = line.split("\t")
        if len(cells) != len(head):
            continue
        rows.append({k: float(v) if v not in ("", "-") else float("nan") for k, v in zip(head, cells)})
    return rows
