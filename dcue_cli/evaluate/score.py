"""`run_score`: embeddings files (and popularity) scored on one protocol; what `dcue score` calls.

Reads the inputs, builds the task (cold start or warm), aligns every model to it, scores them
with paired statistics, and writes the per-user TSV and the plot when asked. The caller prints
the table and the JSON. With an artist map, the cold songs are also scored in two groups,
semi-cold and fully cold (`dcue_cli.evaluate.artists`).
"""

import math
from dataclasses import dataclass, field

from dcue_cli import log


@dataclass
class ScoreRequest:
    embeddings: list
    plays: str | None = None  # cold start: plays and splits
    splits: str | None = None
    on: str = "test"
    train_plays: str | None = None  # warm: training and held-out plays
    test_plays: str | None = None
    popularity: bool = False
    popularity_from: str = "auto"
    ks: tuple = (10,)
    missing: str = "penalize"
    n_boot: int = 1000
    seed: int = 0
    threads: int | None = None
    read_opts: dict = field(default_factory=dict)
    per_user: str | None = None  # a TSV path ('-': stdout)
    plot: str | None = None  # an image path
    plot_format: str | None = None
    paper: bool = False
    artists: str | None = None  # an artist map: also score the semi-cold and fully cold songs
    artist_mean: str | None = None  # WMF factors (fit on train): add the artist-mean baseline's row
    against: str | None = None  # the row (a name or a file) every other is paired against; None: the first


@dataclass
class ScoreResult:
    report: dict  # what --json prints
    table: str  # what people read


def run_score(req: ScoreRequest) -> ScoreResult:
    """Score; Ctrl-C or SIGTERM stops between stages, chunks of users and blocks of resamples
    (KeyboardInterrupt, nothing written: the outputs come last; a second signal stops at once)."""
    from dcue_cli.interrupts import StopSignals

    with StopSignals() as stop:
        return _score(req, stop)


def _score(req: ScoreRequest, stop) -> ScoreResult:
    from dcue_cli.evaluate.protocols import (
        cold_start_task,
        handle_missing,
        score_models,
        warm_task,
    )
    from dcue_cli.evaluate.report import format_artist_groups, format_table
    from dcue_cli.io.artists import read_artist_map
    from dcue_cli.io.atomic import refuse_inputs_as_outputs, refuse_replacing_binary
    from dcue_cli.io.embeddings import read_embeddings
    from dcue_cli.io.plays import read_plays
    from dcue_cli.io.splits import read_splits

    refuse_inputs_as_outputs({"--per-user": req.per_user, "--plot": req.plot},
                             {"EMB": list(req.embeddings), "--plays": req.plays, "--splits": req.splits,
                              "--train-plays": req.train_plays, "--test-plays": req.test_plays,
                              "--artists": req.artists, "--artist-mean": req.artist_mean})
    refuse_replacing_binary(req.per_user)
    files = [read_embeddings(path, need_users=True) for path in req.embeddings]  # fail fast, before the plays
    mean_file = read_embeddings(req.artist_mean, need_users=True) if req.artist_mean else None
    amap = read_artist_map(req.artists) if req.artists else None
    split_map = None
    stop.check()
    if req.plays:
        split_map = read_splits(req.splits)
        task = cold_start_task(read_plays(req.plays, **req.read_opts), split_map, req.on, splits_name=req.splits)
    else:
        task = warm_task(read_plays(req.train_plays, **req.read_opts), read_plays(req.test_plays, **req.read_opts),
                         train_name=req.train_plays)
    groups = None
    if amap is not None:
        from dcue_cli.evaluate.artists import artist_groups

        groups = artist_groups(task, split_map, amap, req.on)  # before the scoring: a map of other songs fails now
    models = _models(req, task, files, mean_file, split_map, amap)
    stop.check()
    task, models, counts = handle_missing(task, models, req.missing)
    report, values = score_models(task, models, req.ks, n_boot=req.n_boot, seed=req.seed, threads=req.threads,
                                  missing_counts=counts, progress=True, stop=stop)
    table = format_table(report, paper=req.paper)
    if groups is not None:
        from dcue_cli.evaluate.artists import score_artist_groups

        report["artist_groups"] = score_artist_groups(task, models, groups, amap, on=req.on, ks=req.ks,
                                                      n_boot=req.n_boot, seed=req.seed, threads=req.threads)
        table += format_artist_groups(report["artist_groups"])
    stop.check()  # the last point where nothing is written yet; a first signal from here on is too late
    if req.per_user:
        _write_per_user(req.per_user, values, report["models"])
    if req.plot:
        _plot(req.plot, req.plot_format, task, models, report, values)
    return ScoreResult(finite(report), table)


def _models(req, task, files, mean_file, split_map, amap) -> list:
    """The rows: popularity, the artist-mean baseline, the files; named, the --against row first."""
    from dcue_cli.evaluate.protocols import align, name_models, popularity_model

    models = [popularity_model(task, req.popularity_from)] if req.popularity else []
    if mean_file is not None:
        from dcue_cli.evaluate.artists import artist_mean_model

        models.append(artist_mean_model(task, mean_file, split_map, amap))
    models += [align(e, task) for e in files]
    name_models(models)
    if req.against is None:
        return models
    first = _row_named(models, req.against)
    return [models[first]] + models[:first] + models[first + 1:]


def _row_named(models, against: str) -> int:
    """The row --against names: by its name in the table, or by its file."""
    import os

    from dcue_cli.errors import OptionError

    for j, m in enumerate(models):
        if m.name == against:
            return j
    for j, m in enumerate(models):
        if m.path and os.path.exists(against) and os.path.exists(m.path) and os.path.samefile(m.path, against):
            return j
    names = ", ".join(repr(m.name) for m in models)
    raise OptionError(f"--against {against!r} is no row of the table: give one of {names}, or one of the files.")


def _write_per_user(path, values, models):
    from dcue_cli.evaluate.report import write_per_user
    from dcue_cli.io.atomic import open_text_output

    with open_text_output(path) as stream:
        write_per_user(stream, values, models)
    if path != "-":
        log.info("wrote per-user values to %s", path)


def _plot(path, fmt, task, models, report, values):
    import numpy as np

    from dcue_cli.evaluate.plots import draw, mean_roc

    users = np.isin(task.user_ids, values["user_ids"])  # the evaluated users, as in the table
    auc = values["names"].index("auc")
    curves = [mean_roc(task, model, users) for model in models]
    draw(path, fmt, report, [v[:, auc] for v in values["values"]], curves)
    log.info("wrote the per-user AUC and ROC plot to %s", path)


def finite(value):
    """NaN and infinities as null, so the JSON is strict."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
