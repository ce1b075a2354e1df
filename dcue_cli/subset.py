"""The paper's subset of the Taste Profile and its random song split: `run_subset` for `dcue subset`.

Lee et al. (section 3.2), after van den Oord et al.: the N most-played songs, then the M
most active users among them; the songs split at random 70/10/20 into train/valid/test
(`dcue_cli.random_split`). The selection, the warm hold-out and the summary are pure functions;
`run_subset` reads the inputs and writes OUT/plays.tsv, OUT/splits.tsv (and the hold-out files).
"""

import os
import time
from dataclasses import dataclass, field

import numpy as np

from dcue_cli.errors import DcueError, OptionError
from dcue_cli.io.plays import Plays

SUBSET_FILES = ("plays.tsv", "splits.tsv", "plays.train.tsv", "plays.test.tsv")  # the last two: --holdout-interactions


@dataclass
class SubsetReport:
    """What `select_subset` did, for the summary printed to the user."""

    input_rows: int = 0
    input_users: int = 0
    input_songs: int = 0
    excluded_songs: int = 0
    songs_without_audio: int = 0
    below_min_plays: int = 0
    duplicate_rows: int = 0
    songs_dropped_no_users: int = 0
    notes: list = field(default_factory=list)


def _id_ranks(ids: np.ndarray) -> np.ndarray:
    """Each id's position in sorted order: sorting codes by it sorts rows by id, cheaply."""
    ranks = np.empty(len(ids), np.int64)
    ranks[np.argsort(ids.astype(str), kind="stable")] = np.arange(len(ids))
    return ranks


def _order(ids: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Indices sorted by `key` descending, ties broken by id ascending (deterministic)."""
    return np.lexsort((ids.astype(str), -key))


def _candidate_songs(plays, totals, allowed_songs, excluded_songs, min_plays, report) -> np.ndarray:
    """Codes of the songs not excluded, with audio (if asked) and with at least `min_plays`; counted."""
    usable = np.ones(plays.n_items, bool)
    if excluded_songs:
        bad = np.fromiter((i in excluded_songs for i in plays.item_ids), bool, plays.n_items)
        report.excluded_songs = int(bad.sum())
        usable &= ~bad
    if allowed_songs is not None:
        has = np.fromiter((i in allowed_songs for i in plays.item_ids), bool, plays.n_items)
        report.songs_without_audio = int((usable & ~has).sum())
        if usable.any() and not (usable & has).any():
            example = f" (e.g. {min(allowed_songs)!r})" if allowed_songs else ""
            raise DcueError(f"none of the {int(usable.sum()):,} songs of the plays is among the "
                            f"{len(allowed_songs):,} ids of --songs-with{example}: do the ids match? (melspec "
                            "names items by track id: give --id-map unique_tracks.txt to map them to song ids).")
        usable &= has
    if min_plays > 1:
        low = usable & (totals < min_plays)
        report.below_min_plays = int(low.sum())
        usable &= ~low
    candidates = np.flatnonzero(usable)
    if len(candidates) == 0:
        raise DcueError("no song is left after --songs-with/--exclude/--min-plays: check those inputs.")
    return candidates


def select_subset(
    plays: Plays,
    *,
    n_songs: int = 10000,
    n_users: int = 20000,
    allowed_songs: set | None = None,
    excluded_songs: set | None = None,
    min_plays: int = 1,
) -> tuple:
    """Keep the `n_songs` most-played songs, then the `n_users` most active users among them.

    Songs rank by total play count, users by their number of distinct kept songs; ties go to
    the smaller id. 0 means no limit. Duplicate (user, song) rows are summed. Songs left with
    no play among the kept users are dropped. Returns (Plays, SubsetReport).
    """
    report = SubsetReport(len(plays), plays.n_users, plays.n_items)
    totals = plays.item_totals()
    candidates = _candidate_songs(plays, totals, allowed_songs, excluded_songs, min_plays, report)
    ranked = candidates[_order(plays.item_ids[candidates], totals[candidates])]
    if n_songs and len(ranked) < n_songs:
        report.notes.append(f"only {len(ranked)} songs available, fewer than --songs {n_songs}: keeping all of them")
    kept_songs = ranked[:n_songs] if n_songs else ranked
    song_mask = np.zeros(plays.n_items, bool)
    song_mask[kept_songs] = True

    rows = plays.select(song_mask[plays.items])
    n_rows = len(rows)
    deduped = rows.deduplicate()
    del rows
    report.duplicate_rows = n_rows - len(deduped)
    distinct = np.bincount(deduped.users, minlength=deduped.n_users)
    ranked_users = _order(deduped.user_ids, distinct)
    if n_users and len(ranked_users) < n_users:
        report.notes.append(
            f"only {len(ranked_users)} users play the kept songs, fewer than --users {n_users}: keeping all of them")
    kept_users = ranked_users[:n_users] if n_users else ranked_users
    user_mask = np.zeros(deduped.n_users, bool)
    user_mask[kept_users] = True
    result = deduped.select(user_mask[deduped.users])
    report.songs_dropped_no_users = len(kept_songs) - result.n_items
    # Rows sorted by (user id, song id) for a stable, diffable file.
    order = np.lexsort((_id_ranks(result.item_ids)[result.items], _id_ranks(result.user_ids)[result.users]))
    result = Plays(result.user_ids, result.item_ids, result.users[order], result.items[order],
                   result.counts[order])
    return result, report


def check_holdout_fraction(fraction: float | None) -> None:
    """A --holdout-interactions fraction must lie strictly between 0 and 1 (None: no hold-out)."""
    if fraction is not None and not 0 < fraction < 1:
        raise OptionError(f"--holdout-interactions {fraction}: give a fraction between 0 and 1, e.g. 0.2.")


def holdout_interactions(plays: Plays, fraction: float, seed: int = 0) -> tuple:
    """Hold out round(fraction · n) of each user's n songs (never all of them): (train, test).

    For warm-start evaluation, where every item is seen in training by someone.
    """
    check_holdout_fraction(fraction)
    rng = np.random.default_rng(seed)
    noise = rng.random(len(plays))
    order = np.lexsort((noise, plays.users))
    per_user = np.bincount(plays.users, minlength=plays.n_users)
    starts = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    position = np.empty(len(plays), np.int64)
    position[order] = np.arange(len(plays)) - starts[plays.users[order]]
    n_test = np.minimum(np.round(fraction * per_user).astype(np.int64), per_user - 1)
    is_test = position < n_test[plays.users]

    def part(mask):
        return Plays(plays.user_ids, plays.item_ids, plays.users[mask], plays.items[mask], plays.counts[mask])

    return part(~is_test), part(is_test)


def summarize(plays: Plays, splits: dict | None = None) -> list:
    """Rows (name, users, songs, interactions, density) for the whole subset and each split."""
    def row(name, p):
        density = len(p) / max(1, p.n_users * p.n_items)
        return (name, p.n_users, p.n_items, len(p), density)

    rows = [row("all", plays)]
    if splits:
        labels = np.array([splits.get(i, "") for i in plays.item_ids], dtype=object)
        for split in ("train", "valid", "test"):
            mask = (labels == split)[plays.items]
            if mask.any():
                rows.append(row(split, plays.select(mask)))
            else:
                rows.append((split, 0, 0, 0, 0.0))
    return rows


@dataclass
class SubsetRun:
    """What `run_subset` read, kept and wrote, for the summary the command prints."""

    source: str  # the plays input as named to the user ("<stdin>" for -)
    skipped: int  # bad plays lines skipped with --skip-bad
    selection: SubsetReport
    summary: list  # rows of `summarize`: (split, users, songs, interactions, density)
    holdout: tuple | None  # (training, test) interactions of the warm hold-out, or None
    holdout_fraction: float | None
    written: list  # paths written, in order
    seconds: float


def run_subset(plays_path, out_dir, *, fractions=(0.7, 0.1, 0.2), seed: int = 0, n_songs: int = 10000,
               n_users: int = 20000, songs_with=None, id_map=None, exclude=None, min_plays: int = 1,
               holdout_fraction: float | None = None, columns=(0, 1, 2), header: bool | None = None,
               skip_bad: bool = False) -> SubsetRun:
    """`dcue subset`: read PLAYS, keep the paper's subset, split its songs, write OUT (checked first)."""
    from dcue_cli.io.atomic import (
        check_output_path,
        make_folder,
        refuse_inputs_as_outputs,
        refuse_replacing_other_kind,
    )
    from dcue_cli.io.idmap import read_id_map
    from dcue_cli.io.plays import read_plays, write_plays
    from dcue_cli.io.song_sets import read_song_exclusions, read_song_set
    from dcue_cli.io.splits import write_splits
    from dcue_cli.io.text import looks_like_text
    from dcue_cli.random_split import split_ids

    start = time.perf_counter()
    check_holdout_fraction(holdout_fraction)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DcueError(f"{out_dir} exists and is not a folder: give a folder for -o/--output.")
    check_output_path(os.path.join(out_dir, "plays.tsv"), "subset")  # before the work, not after
    outputs = [os.path.join(out_dir, name) for name in SUBSET_FILES[:2 if holdout_fraction is None else 4]]
    refuse_inputs_as_outputs({"-o": outputs}, {"PLAYS": plays_path, "--songs-with": songs_with,
                                               "--id-map": id_map, "--exclude": exclude})
    for path in outputs:
        refuse_replacing_other_kind(path, "a TSV", looks_like_text)
    allowed = read_song_set(songs_with, read_id_map(id_map) if id_map else None) if songs_with else None
    excluded = read_song_exclusions(exclude) if exclude else None

    data = read_plays(plays_path, columns=columns, header=header, skip_bad=skip_bad)
    subset, report = select_subset(data, n_songs=n_songs, n_users=n_users, allowed_songs=allowed,
                                   excluded_songs=excluded, min_plays=min_plays)
    splits = split_ids(subset.item_ids, fractions, seed)  # in sorted song order

    make_folder(out_dir)
    written = outputs[:2]
    write_plays(written[0], subset)
    write_splits(written[1], splits)
    holdout = None
    if holdout_fraction is not None:
        train, test = holdout_interactions(subset, holdout_fraction, seed)
        for path, part in zip(outputs[2:], (train, test)):
            written.append(path)
            write_plays(path, part)
        holdout = (len(train), len(test))
    return SubsetRun("<stdin>" if plays_path == "-" else str(plays_path), data.skipped, report,
                     summarize(subset, splits), holdout, holdout_fraction, written, time.perf_counter() - start)
