"""Text renderings of a `dcue score` report: the human table and the per-user TSV."""

import math

from dcue_cli.evaluate.protocols import PAPER_TABLE1

_SHORT = {"auc": "AUC", "precision": "P", "recall": "R", "ndcg": "nDCG", "map": "MAP"}
MAX_WIDTH = 110


def short_name(metric: str) -> str:
    """'precision@10' -> 'P@10', 'auc' -> 'AUC'."""
    base, _, k = metric.partition("@")
    return _SHORT.get(base, base) + (f"@{k}" if k else "")


def _cell(stats: dict) -> str:
    half = max(stats["ci_high"] - stats["mean"], stats["mean"] - stats["ci_low"])
    if math.isnan(stats["mean"]):
        return "nan"
    return f"{stats['mean']:.4f} ±{half:.4f}"


def _p_text(p: float) -> str:
    if p < 1e-300:
        return "<1e-300"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _table(header, rows) -> list:
    widths = [max(len(str(r[c])) for r in [header] + rows) for c in range(len(header))]
    fmt = lambda r: "  ".join(str(v).ljust(w) if c == 0 else str(v).rjust(w)
                              for c, (v, w) in enumerate(zip(r, widths))).rstrip()
    return [fmt(header)] + [fmt(r) for r in rows]


def format_table(report: dict, paper: bool = False, footnotes: bool = True) -> str:
    """The comparison table (rows = models, like the paper's Table 1) with its footnotes
    (`footnotes=False`: only the report's own notes, for a table printed under another)."""
    lines = [(f"{report['description']}: {report['items']:,} {report['item_word']}, "
             f"{report['users']:,} users with a positive and a negative among them")]
    models = report["models"]
    marks = {}
    for m in models:
        if m["note"]:
            marks[m["name"]] = f"[{len(marks) + 1}]"
    labels = [m["name"] + (" " + marks[m["name"]] if m["name"] in marks else "") for m in models]
    metrics = report["metrics"]
    # Split the metric columns into groups that fit the width; the model column repeats.
    name_width = max(len(x) for x in labels + ["model"])
    per_group = max(1, (MAX_WIDTH - name_width) // 17)
    for start in range(0, len(metrics), per_group):
        group = metrics[start:start + per_group]
        rows = [[label] + [_cell(m["metrics"][n]) for n in group] for label, m in zip(labels, models)]
        lines.append("")
        lines.extend(_table(["model"] + [short_name(n) for n in group], rows))
    if len(models) > 1:
        first = models[0]["name"]
        lines.append("")
        lines.append(f"paired against {first} (per-user values of the same users):")
        rows = []
        for label, m in zip(labels[1:], models[1:]):
            row = [label]
            for n in ("auc",) + tuple(x for x in metrics if x.startswith("ndcg@"))[:1]:
                d = m["vs_first"][n]
                row += [f"{d['diff']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]", _p_text(d["p_wilcoxon"])]
            rows.append(row)
        extra = [x for x in metrics if x.startswith("ndcg@")][:1]
        header = ["model", "ΔAUC [95% CI]", "p"] + [cell for x in extra for cell in (f"Δ{short_name(x)} [95% CI]", "p")]
        lines.extend(_table(header, rows))
    lines.append("")
    if not footnotes:  # the marks [n] are those of the table above
        lines.extend(f"note: {note}" for note in report["notes"])
        return "\n".join(lines).rstrip("\n")
    for m in models:
        if m["name"] in marks:
            lines.append(f"{marks[m['name']]} {m['name']}: {m['note']}")
    b = report["bootstrap"]
    lines.append(f"±: half-width of the {b['level']:.0%} bootstrap interval over users ({b['resamples']:,} "
                 "resamples; exact bounds in --json). AUC over every ranked item, never truncated; "
                 "P/R/nDCG/MAP@k on the full ranking, ties in expectation.")
    if len(models) > 1:
        lines.append("p: two-sided Wilcoxon signed-rank test on the per-user values against the first row.")
    for note in report["notes"]:
        lines.append(f"note: {note}")
    if paper:
        figures = ", ".join(f"{name} {auc:.4f}" for name, auc in PAPER_TABLE1)
        lines.append(f"paper (Lee et al. 2018, Table 1; MSD, cold-start AUC): {figures}")
    return "\n".join(lines)


def format_artist_groups(groups: dict) -> str:
    """The semi-cold and fully cold songs' tables, under the whole task's (`score --artists`)."""
    songs = groups["songs"]
    none = groups["without_artist"]
    lines = ["", "", f"by artist ({groups['map']}): {songs['semi-cold']:,} semi-cold songs (their artist has "
             f"training songs) and {songs['fully-cold']:,} fully cold (their artist has none"
             + (f"; {none:,} of them have no artist in the map" if none else "") + ")"]
    for name in ("semi-cold", "fully-cold"):
        lines.append("")
        if groups[name] is None:
            lines.append(f"{name}: no user has a positive and a negative among these songs: not scored")
        else:
            lines.append(format_table(groups[name], footnotes=False))
    return "\n".join(lines)


def write_per_user(stream, per_user: dict, models: list) -> None:
    """Long-format TSV, one line per (model, user): model, user, positives, candidates, metrics."""
    names = per_user["names"]
    stream.write("\t".join(["model", "user", "positives", "candidates"] + names) + "\n")
    users = per_user["user_ids"]
    npos, ncand = per_user["n_positives"], per_user["n_candidates"]
    for model, values in zip(models, per_user["values"]):
        name = model["name"]
        stream.write("".join(
            f"{name}\t{u}\t{p}\t{c}\t" + "\t".join(format(v, ".10g") for v in row) + "\n"
            for u, p, c, row in zip(users, npos.tolist(), ncand.tolist(), values.tolist())))


def unique_names(names: list, paths: list) -> list:
    """Row names for a table of models: a name that repeats gets its file's name added."""
    import os

    return [f"{n} ({os.path.basename(p) or p})" if names.count(n) > 1 and p else n for n, p in zip(names, paths)]
