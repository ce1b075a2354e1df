"""The evaluation protocols of `dcue score`, as functions of plays, splits and embeddings.

- Cold start (the paper; docs/design.md): the songs of one split (test by default) are ranked for
  every user who has a positive and a negative among them; no interaction of theirs was seen
  in training.
- Warm: held-out interactions (`dcue subset --holdout-interactions`): every item of the
  training plays is ranked for each user except the items that user played in training,
  which are neither hits nor negatives.

A `Task` holds what is ranked and what counts as a hit; a `Model` holds vectors aligned to a
task (items or users without a vector are flagged, never silently dropped); `score_models`
evaluates several models on one task with paired statistics. No I/O here but logging.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.evaluate.metrics import evaluate, metric_names
from dcue_cli.evaluate.stats import (
    bootstrap_means,
    check_bootstrap,
    paired_interval,
    percentile_interval,
    wilcoxon_p,
)

PAPER_TABLE1 = (("Popularity", 0.7059), ("WMF", 0.9302), ("WMF+Regression", 0.6967), ("DCUE", 0.7914),
                ("DCUE, item index (section 5.1)", 0.7832))


@dataclass
class Task:
    """What is ranked (items), for whom (users), and what counts as a hit (positives)."""

    protocol: str  # "cold-start" or "warm"
    description: str  # one line for people
    user_ids: np.ndarray  # (U,) object
    item_ids: np.ndarray  # (I,) object: the ranked items
    positives: object  # csr (U, I), 1 = a positive
    exclude: object = None  # csr (U, I) of items not ranked for that user, or None
    popularity: dict = field(default_factory=dict)  # source -> (I,) total play counts
    notes: list = field(default_factory=list)
    item_word: str = "items"

    @property
    def n_users(self):
        return len(self.user_ids)

    @property
    def n_items(self):
        return len(self.item_ids)


@dataclass
class Model:
    """One row of the table: vectors aligned to a task's users and items."""

    name: str
    user_vectors: np.ndarray
    item_vectors: np.ndarray
    similarity: str
    missing_items: np.ndarray  # (I,) bool: no vector in the file
    missing_users: np.ndarray  # (U,) bool
    source: str = ""
    path: str = ""
    note: str = ""  # a caveat printed under the table (oracle, upper bound ...)


def _codes(ids: np.ndarray, index: dict) -> np.ndarray:
    """Position of each id in `index` ({id: position}), -1 where absent."""
    return np.fromiter((index.get(i, -1) for i in ids), np.int64, len(ids))


def _csr(rows, cols, shape, values=None):
    import scipy.sparse as sp

    data = np.ones(len(rows), np.float32) if values is None else values
    m = sp.csr_matrix((data, (rows, cols)), shape=shape)
    m.sum_duplicates()
    return m


def cold_start_task(plays, splits: dict, on: str = "test", splits_name: str = "the splits") -> Task:
    """The paper's protocol: rank the songs of split `on` for each user who played one of them.

    plays: a `Plays`; splits: {item_id: split}. Popularity (`evaluated`) is the total play
    count of each song over these plays: an oracle, as in the paper.
    """
    item_ids = np.array(sorted(i for i, s in splits.items() if s == on), dtype=object)
    if len(item_ids) == 0:
        raise DcueError(f"{splits_name} has no {on!r} songs: choose another --on, or rewrite the splits "
                        "with `dcue subset`.")
    column_of_code = _codes(plays.item_ids, {item: j for j, item in enumerate(item_ids)})
    cols = column_of_code[plays.items]
    rows = cols >= 0
    if not rows.any():
        raise DcueError(f"no play in the plays file is on a {on!r} song of {splits_name} "
                        f"(its songs look like {_examples(item_ids)}, the plays' like {_examples(plays.item_ids)}): "
                        "give the plays and splits written together by `dcue subset`.")
    user_codes, user_rows = np.unique(plays.users[rows], return_inverse=True)
    positives = _csr(user_rows, cols[rows], (len(user_codes), len(item_ids)))
    positives.data[:] = 1
    totals = np.bincount(cols[rows], weights=plays.counts[rows], minlength=len(item_ids))
    task = Task("cold-start", f"cold-start protocol: the {on} songs of {splits_name}",
                plays.user_ids[user_codes], item_ids, positives, None, {"evaluated": totals}, item_word="songs")
    unplayed = int((totals == 0).sum())
    if unplayed:
        task.notes.append(f"{unplayed:,} {on} songs have no play in the plays file: negatives for every user")
    return _evaluable_only(task)


def warm_task(train, test, train_name: str = "the training plays") -> Task:
    """Warm protocol: for each test user, rank the training items the user did not play in training.

    Test plays on items absent from the training plays cannot be ranked by a warm model: they
    are left out and counted in the task's notes. Popularity: `train` (training totals) and
    `evaluated` (test totals: an oracle).
    """
    item_ids = train.item_ids
    item_index = {item: j for j, item in enumerate(item_ids)}
    test_cols = _codes(test.item_ids, item_index)[test.items]
    known = test_cols >= 0
    notes = []
    if not known.all():
        lost_items = len(np.unique(test.items[~known]))
        notes.append(f"{int((~known).sum()):,} test plays on {lost_items:,} items that no training play has are "
                     "left out (the warm protocol ranks the training items; use --plays/--splits for cold items)")
    if not known.any():
        raise DcueError(f"no test play is on an item of {train_name}: give the plays.train.tsv and plays.test.tsv "
                        "written together by `dcue subset --holdout-interactions`.")
    user_codes, user_rows = np.unique(test.users[known], return_inverse=True)
    user_ids = test.user_ids[user_codes]
    positives = _csr(user_rows, test_cols[known], (len(user_ids), len(item_ids)))
    positives.data[:] = 1

    train_user_row = _codes(train.user_ids, {u: r for r, u in enumerate(user_ids)})[train.users]
    mine = train_user_row >= 0
    exclude = _csr(train_user_row[mine], train.items[mine], (len(user_ids), len(item_ids)))
    exclude.data[:] = 1
    both = positives.multiply(exclude).nnz
    if both:
        notes.append(f"{both:,} test (user, item) pairs were also played in training: not counted as hits")
    popularity = {
        "train": train.item_totals(),
        "evaluated": np.bincount(test_cols[known], weights=test.counts[known], minlength=len(item_ids)),
    }
    description = f"warm protocol: the items of {train_name} less each user's training items"
    return _evaluable_only(Task("warm", description, user_ids, item_ids, positives, exclude, popularity, notes))


def _evaluable_users(task: Task) -> np.ndarray:
    """(U,) bool: the users with a positive and a negative among their candidates."""
    pos = task.positives
    n_excluded = np.zeros(task.n_users, np.int64)
    if task.exclude is not None:
        pos = pos - pos.multiply(task.exclude)
        pos.eliminate_zeros()
        n_excluded = np.diff(task.exclude.indptr)
    n_pos = np.diff(pos.indptr)
    return (n_pos > 0) & (task.n_items - n_excluded - n_pos > 0)


def _evaluable_only(task: Task) -> Task:
    """Keep the users with a positive and a negative among their candidates (the others say nothing)."""
    keep = _evaluable_users(task)
    if keep.all():
        return task
    dropped = int((~keep).sum())
    task.notes.append(f"{dropped:,} users with no positive or no negative {task.item_word[:-1]} to rank "
                      "are not evaluated")
    task.user_ids = task.user_ids[keep]
    task.positives = task.positives[keep]
    if task.exclude is not None:
        task.exclude = task.exclude[keep]
    return task


def _examples(ids, n=2) -> str:
    return ", ".join(repr(str(i)) for i in list(ids[:n]))


def popularity_model(task: Task, source: str = "auto") -> Model:
    """Every user gets the same ranking: items by total play count, from `source`.

    source: 'evaluated' (the evaluated interactions: an oracle, as in the paper), 'train'
    (training plays; warm protocol only) or 'auto' (train when the task has it, else evaluated).
    """
    if source == "auto":
        source = "train" if "train" in task.popularity else "evaluated"
    if source not in task.popularity:
        raise DcueError("--popularity-from train needs training plays of the ranked items: the cold-start songs "
                        "have none by definition, so their popularity can only come from the evaluated "
                        "interactions (--popularity-from evaluated, an oracle as in the paper).")
    totals = np.asarray(task.popularity[source], np.float64)
    # Dense ranks keep every tie and stay exact in float32, whatever the counts.
    ranks = np.unique(totals, return_inverse=True)[1].astype(np.float32) + 1
    if source == "evaluated":
        where = "the test plays" if task.protocol == "warm" else "the evaluated interactions"
        note = f"ranks by total play count in {where}: an oracle, as in the paper"
    else:
        note = "ranks by total play count in the training plays"
    return Model("Popularity", np.ones((task.n_users, 1), np.float32), ranks[:, None], "dot",
                 np.zeros(task.n_items, bool), np.zeros(task.n_users, bool), source="popularity",
                 note=note)


# models that know a song by its index (its plays), not by its audio: on cold songs an upper bound
INDEX_SOURCES = ("wmf", "dcue-index")


def align(emb, task: Task) -> Model:
    """The rows of an `Embeddings` for the task's users and items, with what is missing flagged."""
    if emb.user_vectors is None:
        raise DcueError(f"{emb.path} has no user vectors (/users/ids, /users/vectors): scoring a "
                        "recommendation needs them; give the file written by `dcue embed` or `dcue wmf`.")
    item_rows = _codes(task.item_ids, emb.item_index())
    user_rows = _codes(task.user_ids, emb.user_index())
    if (item_rows < 0).all() and emb.source in INDEX_SOURCES and task.protocol == "cold-start":
        what = "WMF" if emb.source == "wmf" else "the index model"
        raise DcueError(f"{emb.path} is {what} fitted on the train songs only (fit_on={emb.attrs.get('fit_on')}), "
                        f"so it has no vector for the cold {task.item_word}: refit with --fit-on all for the "
                        "paper's row, or predict them from audio with `dcue train`.")
    if (item_rows < 0).all():
        raise DcueError(f"none of the {task.n_items:,} {task.item_word} to rank has a vector in {emb.path} "
                        f"(its ids look like {_examples(emb.item_ids)}, those to rank like "
                        f"{_examples(task.item_ids)}): were the embeddings made from the same songs "
                        "(melspec --id-map maps track ids to song ids)?")
    if (user_rows < 0).all():
        raise DcueError(f"none of the {task.n_users:,} users to evaluate has a vector in {emb.path} "
                        f"(its ids look like {_examples(emb.user_ids)}, those to evaluate like "
                        f"{_examples(task.user_ids)}): was it trained on these plays?")
    dim = emb.item_vectors.shape[1]
    items = np.zeros((task.n_items, dim), np.float32)
    items[item_rows >= 0] = emb.item_vectors[item_rows[item_rows >= 0]]
    users = np.zeros((task.n_users, dim), np.float32)
    users[user_rows >= 0] = emb.user_vectors[user_rows[user_rows >= 0]]
    _check_finite(emb.path, users, task.user_ids, "user", items, task.item_ids, "item")
    note = ""
    if emb.source in INDEX_SOURCES and task.protocol == "cold-start":
        note = "fitted on plays of the very songs ranked here: an upper bound, not a cold-start method"
    return Model(emb.name, users, items, emb.similarity, item_rows < 0, user_rows < 0, emb.source, emb.path, note)


def _check_finite(path, users, user_ids, user_word, items, item_ids, item_word) -> None:
    """Refuse vectors that give no score: NaN or infinity, or so large that a score overflows."""
    from dcue_cli.io.embeddings import refuse_non_finite, refuse_overflow

    for vectors, ids, word in ((items, item_ids, item_word), (users, user_ids, user_word)):
        refuse_non_finite(path, vectors, ids, word)
    refuse_overflow(path, users, items)


def name_models(models: Sequence[Model]) -> None:
    """Make row names unique: a repeated name gets its file's name."""
    from dcue_cli.evaluate.report import unique_names

    for m, name in zip(models, unique_names([m.name for m in models], [m.path for m in models])):
        m.name = name


def _restrict(task: Task, models: Sequence[Model], keep_users: np.ndarray, keep_items: np.ndarray):
    sub = Task(task.protocol, task.description, task.user_ids[keep_users], task.item_ids[keep_items],
               task.positives[keep_users][:, keep_items],
               None if task.exclude is None else task.exclude[keep_users][:, keep_items],
               {k: v[keep_items] for k, v in task.popularity.items()}, list(task.notes), task.item_word)
    out = [Model(m.name, m.user_vectors[keep_users], m.item_vectors[keep_items], m.similarity,
                 m.missing_items[keep_items], m.missing_users[keep_users], m.source, m.path, m.note) for m in models]
    return sub, out


def restrict_items(task: Task, models: Sequence[Model], keep_items: np.ndarray, description: str):
    """The task on some of its items (a group of songs), its users those with a positive and a
    negative among them, and the models' rows for it: (task, models), the task's notes its own."""
    sub, out = _restrict(task, models, np.ones(task.n_users, bool), keep_items)
    sub.description, sub.notes = description, []
    keep_users = _evaluable_users(sub)
    if not keep_users.all():
        sub, out = _restrict(sub, out, keep_users, np.ones(sub.n_items, bool))
    return sub, out


def handle_missing(task: Task, models: Sequence[Model], policy: str = "penalize"):
    """Say what is missing from each model and apply the policy; returns (task, models, counts).

    penalize: an item without a vector ranks below every other item (tied); a user without a
    vector ranks every item as a tie. drop: only the users and items that every model has are
    evaluated, for every model (so the rows stay comparable).
    counts: [(missing items, missing users)] per model, before the policy.
    """
    counts = []
    for m in models:
        n_items, n_users = int(m.missing_items.sum()), int(m.missing_users.sum())
        counts.append((n_items, n_users))
        if not (n_items or n_users):
            continue
        parts = []
        if n_items:
            parts.append(f"{n_items:,} of the {task.n_items:,} {task.item_word} to rank")
        if n_users:
            parts.append(f"{n_users:,} of the {task.n_users:,} users")
        if policy == "penalize":
            how = " and ".join(filter(None, [
                "such items rank below every other item (tied)" if n_items else "",
                "such users rank every item as a tie" if n_users else ""]))
            how += "; --missing drop evaluates only what every file has instead"
        else:
            how = "left out for every model (--missing drop)"
        log.warning("%s has no vector for %s: %s", m.path or m.name, " and ".join(parts), how)
    if policy == "drop" and any(a or b for a, b in counts):
        keep_items = ~np.any([m.missing_items for m in models], axis=0)
        keep_users = ~np.any([m.missing_users for m in models], axis=0)
        if not keep_items.any() or not keep_users.any():
            raise DcueError("with --missing drop nothing is left: no item (or user) has a vector in every file; "
                            "use --missing penalize or score the files separately.")
        task, models = _restrict(task, models, keep_users, keep_items)
        task.notes.append(f"--missing drop: evaluated on the {int(keep_items.sum()):,} {task.item_word} and "
                          f"{int(keep_users.sum()):,} users that every file has")
    elif policy == "penalize":
        for m, (n_items, n_users) in zip(models, counts):
            if n_items or n_users:
                what = " and ".join(filter(None, [f"{n_items:,} {task.item_word} without a vector ranked last"
                                                  if n_items else "",
                                                  f"{n_users:,} users without a vector scored as all ties"
                                                  if n_users else ""]))
                m.note = "; ".join(filter(None, [m.note, what + " (--missing penalize)"]))
    return task, models, counts


def score_models(task: Task, models: Sequence[Model], ks: Sequence[int] = (10,), *, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0, threads: int | None = None,
                 missing_counts: list | None = None, progress: bool = True, stop=None):
    """Evaluate every model on the task; bootstrap intervals; paired tests against the first.

    Returns (report, per_user): report is a JSON-ready dict; per_user has the evaluated users'
    ids, positives and candidates counts and one (n_users, n_metrics) array per model.
    `stop`: a StopSignals, checked between chunks of users and blocks of resamples. A
    bootstrap too large for the memory or the time is refused first (an OptionError).
    """
    names = metric_names(ks)
    check_bootstrap(n_boot, task.n_users, len(models) * len(names))
    values, evaluated, info = [], None, None
    for model in models:
        result = evaluate(model.user_vectors, model.item_vectors, model.similarity, task.positives,
                          ks=ks, exclude=task.exclude, missing_items=model.missing_items,
                          missing_users=model.missing_users, threads=threads, progress=progress, stop=stop)
        if evaluated is None:
            evaluated, info = result["evaluated"], result
        values.append(np.column_stack([result["per_user"][n][evaluated] for n in names]))
    n_eval = int(evaluated.sum())
    if n_eval == 0:
        raise DcueError(f"no user has both a positive and a negative among the {task.item_word} to rank: "
                        "nothing to measure (are the plays and splits from the same subset?)")
    boots = bootstrap_means(np.hstack(values), n_boot=n_boot, seed=seed, stop=stop).reshape(
        n_boot, len(models), len(names))
    rows = []
    for j, model in enumerate(models):
        mean = values[j].mean(axis=0)
        low, high = percentile_interval(boots[:, j], level)
        row = {
            "name": model.name, "file": model.path or None, "source": model.source, "similarity": model.similarity,
            "note": model.note or None,
            "missing_items": int(missing_counts[j][0]) if missing_counts else 0,
            "missing_users": int(missing_counts[j][1]) if missing_counts else 0,
            "metrics": {n: {"mean": float(mean[c]), "ci_low": float(low[c]), "ci_high": float(high[c])}
                        for c, n in enumerate(names)},
            "vs_first": None,
        }
        if j > 0:
            dlow, dhigh = paired_interval(boots[:, j], boots[:, 0], level)
            diff = values[j] - values[0]
            row["vs_first"] = {n: {"diff": float(diff[:, c].mean()), "ci_low": float(dlow[c]),
                                   "ci_high": float(dhigh[c]), "p_wilcoxon": wilcoxon_p(diff[:, c])}
                               for c, n in enumerate(names)}
        rows.append(row)
    report = {
        "protocol": task.protocol, "description": task.description,
        "users": n_eval, "items": task.n_items, "item_word": task.item_word, "ks": list(ks), "metrics": names,
        "bootstrap": {"resamples": n_boot, "level": level, "seed": seed, "over": "users"},
        "test": "paired: bootstrap interval of the mean difference and two-sided Wilcoxon signed-rank "
                "test on per-user values, each row against the first",
        "ties": "AUC counts a tie as one half; ranking metrics are expectations over the orders of tied items",
        "notes": list(task.notes), "models": rows,
    }
    per_user = {"user_ids": task.user_ids[evaluated], "n_positives": info["n_positives"][evaluated],
                "n_candidates": info["n_candidates"][evaluated], "names": names, "values": values}
    return report, per_user
