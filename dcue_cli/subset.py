"""The paper's subset of the Taste Profile and its random song split (pure functions).

Lee et al. (section 3.2), after van den Oord et al.: the N most-played songs, then the M
most active users among them; the songs split at random 70/10/20 into train/valid/test.
"""

import re
from dataclasses import dataclass, field

import numpy as np

from dcue_cli.errors import DcueError
from dcue_cli.io.plays import Plays


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
    usable = np.ones(plays.n_items, bool)
    if excluded_songs:
        bad = np.fromiter((i in excluded_songs for i in plays.item_ids), bool, plays.n_items)
        report.excluded_songs = int(bad.sum())
        usable &= ~bad
    if allowed_songs is not None:
        has = np.fromiter((i in allowed_songs for i in plays.item_ids), bool, plays.n_items)
        report.songs_without_audio = int((usable & ~has).sum())
        usable &= has
    totals = plays.item_totals()
    if min_plays > 1:
        low = usable & (totals < min_plays)
        report.below_min_plays = int(low.sum())
        usable &= ~low
    candidates = np.flatnonzero(usable)
    if len(candidates) == 0:
        raise DcueError("no song is left after --songs-with/--exclude/--min-plays: check those inputs.")
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


def parse_fractions(text: str) -> tuple:
    """'0.7,0.1,0.2' -> (0.7, 0.1, 0.2): train, valid, test fractions summing to 1."""
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise DcueError(f"--split {text!r}: give three non-negative fractions for train,valid,test "
                        "that sum to 1, e.g. 0.7,0.1,0.2.")
    return parts


def split_songs(song_ids, fractions=(0.7, 0.1, 0.2), seed: int = 0) -> dict:
    """Split songs at random into train/valid/test: {song_id: split}, seeded.

    The songs are sorted before shuffling, so the split depends only on the set of songs.
    """
    ids = np.array(sorted(str(s) for s in song_ids), dtype=object)
    perm = np.random.default_rng(seed).permutation(len(ids))
    n_train = round(fractions[0] * len(ids))
    n_valid = round(fractions[1] * len(ids))
    labels = np.empty(len(ids), dtype=object)
    labels[perm[:n_train]] = "train"
    labels[perm[n_train:n_train + n_valid]] = "valid"
    labels[perm[n_train + n_valid:]] = "test"
    return dict(zip(ids, labels))


def holdout_interactions(plays: Plays, fraction: float, seed: int = 0) -> tuple:
    """Hold out round(fraction · n) of each user's n songs (never all of them): (train, test).

    For warm-start evaluation, where every item is seen in training by someone.
    """
    if not 0 < fraction < 1:
        raise DcueError(f"--holdout-interactions {fraction}: give a fraction between 0 and 1, e.g. 0.2.")
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


_MISMATCH = re.compile(r"<(SO[A-Z0-9]{16})\s+(TR[A-Z0-9]{16})>")


def read_song_exclusions(path) -> set:
    """Song ids from the MSD `sid_mismatches.txt` (`ERROR: <SONG TRACK> ...`) or a plain id list."""
    from dcue_cli.io.text import open_text

    songs = set()
    with open_text(path) as stream:
        for line in stream:
            match = _MISMATCH.search(line)
            if match:
                songs.add(match.group(1))
            elif line.strip() and not line.startswith(("ERROR", "WARNING")):
                songs.add(line.split("\t")[0].split("<SEP>")[0].strip())
    return songs


def read_song_set(path, id_map: dict | None = None) -> set:
    """Ids of songs that have audio: a mels HDF5 (/ids) or an id list, mapped through `id_map`.

    With an MSD id map ({track_id: (song_id, ...)}), track ids become song ids; ids that are
    already song ids pass through.
    """
    from dcue_cli.io.idmap import read_id_list

    if _is_hdf5(path):
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DcueError(f"{path} is not a readable HDF5 file ({reason}): give the mels file written by "
                            "`dcue melspec` (or an id list) to --songs-with.") from None
        with f:
            try:
                if "ids" not in f or not isinstance(f["ids"], h5py.Dataset) or f["ids"].ndim != 1:
                    raise DcueError(f"{path} has no /ids list: was it written by `dcue melspec`?")
                ids = [v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)
                       for v in f["ids"][()]]
            except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:  # h5py on damaged metadata
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise DcueError(f"{path} is damaged ({reason}): make it again with `dcue melspec`.") from None
    else:
        ids = read_id_list(path)
    if id_map:
        ids = [id_map[i][0] if i in id_map else i for i in ids]
    return set(ids)


def _is_hdf5(path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


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
