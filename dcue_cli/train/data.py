"""What training is given, joined: mels, plays and splits as integer arrays.

`load_training_data` joins the mels' items, a plays table and a splits map into the training
pairs, the validation pairs and which songs are which, and says what it dropped.
"""

from dataclasses import dataclass, field

import numpy as np

from dcue_cli.errors import DcueError


@dataclass
class TrainingData:
    """Integer views of the inputs. Item numbers index the mels file; users index `user_ids`."""

    mel_ids: np.ndarray  # (N,) every item of the mels file
    lengths: np.ndarray  # (N,) frames per item
    train_items: np.ndarray  # mel indices of training songs (with frames)
    valid_items: np.ndarray  # mel indices of validation songs (with frames)
    user_ids: np.ndarray  # users with at least one training play: the model's users
    pair_users: np.ndarray  # (P,) training pairs: user number
    pair_items: np.ndarray  # (P,) position in train_items
    pair_counts: np.ndarray  # (P,) play counts
    valid_users: np.ndarray  # validation pairs (user number, position in valid_items)
    valid_pair_items: np.ndarray
    stats: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def fingerprint(self) -> dict:
        """What a resumed run checks it is given the same data."""
        return {"n_pairs": len(self.pair_users), "n_users": int(self.n_users),
                "n_train_items": len(self.train_items), "n_valid_items": len(self.valid_items)}


def load_training_data(mel_ids, lengths, plays, splits: dict, *, mels_name="mels", plays_name="plays",
                       splits_name="splits", user_ids=None) -> TrainingData:
    """Join plays (deduplicated, counts summed) with the splits and the mels' items.

    `user_ids`, when given (a resumed run, or a regression target's users), fixes the user
    numbering; otherwise users are those with a training play, in order of first appearance.
    """
    mel_ids = np.asarray(mel_ids, dtype=object)
    lengths = np.asarray(lengths, dtype=np.int64)
    mel_index = {m: i for i, m in enumerate(mel_ids)}
    plays = plays.deduplicate()

    # per item of the plays file: its mel index (-1: absent) and split code (0 train, 1 valid, 2 test, -1 none)
    code_of = {"train": 0, "valid": 1, "test": 2}
    item_mel = np.array([mel_index.get(i, -1) for i in plays.item_ids], dtype=np.int64)
    item_split = np.array([code_of.get(splits.get(i), -1) for i in plays.item_ids], dtype=np.int8)
    has_frames = np.zeros(len(plays.item_ids), bool)
    known = item_mel >= 0
    has_frames[known] = lengths[item_mel[known]] > 0

    stats = _dropped(item_split, known, has_frames, plays_name, splits_name)

    # training and validation songs: from the splits, present in the mels with frames
    split_codes = np.array([code_of.get(splits.get(m), -1) for m in mel_ids], dtype=np.int8)
    train_items = np.flatnonzero((split_codes == 0) & (lengths > 0))
    valid_items = np.flatnonzero((split_codes == 1) & (lengths > 0))
    if len(train_items) == 0:
        n_train = sum(1 for s in splits.values() if s == "train")
        if n_train == 0:
            raise DcueError(f"{splits_name} has no training song (its {len(splits):,} songs are all valid or "
                            "test): split the songs again with a train share, e.g. `dcue subset --split "
                            "0.7,0.1,0.2`.")
        raise DcueError(f"none of the {n_train} training songs of {splits_name} has frames in {mels_name}: "
                        "do the ids match? (melspec writes track ids unless given --id-map unique_tracks.txt)")
    train_pos = np.full(len(mel_ids), -1, np.int64)
    train_pos[train_items] = np.arange(len(train_items))
    valid_pos = np.full(len(mel_ids), -1, np.int64)
    valid_pos[valid_items] = np.arange(len(valid_items))

    row_mel = item_mel[plays.items]
    row_ok = row_mel >= 0
    row_train = np.zeros(len(plays), bool)
    row_valid = np.zeros(len(plays), bool)
    row_train[row_ok] = train_pos[row_mel[row_ok]] >= 0
    row_valid[row_ok] = valid_pos[row_mel[row_ok]] >= 0
    if not row_train.any():
        _no_training_play(item_split, plays_name, splits_name)
        raise DcueError(f"no play of {plays_name} is of a training song with frames in {mels_name}: "
                        f"check that {plays_name}, {splits_name} and {mels_name} describe the same songs.")

    if user_ids is None:
        used = np.unique(plays.users[row_train])
        # keep the plays file's order of first appearance, for a stable numbering
        user_ids = plays.user_ids[np.sort(used)]
    user_ids = np.asarray(user_ids, dtype=object)
    user_number = {u: k for k, u in enumerate(user_ids)}
    plays_user_to_model = np.array([user_number.get(u, -1) for u in plays.user_ids], dtype=np.int64)
    row_user = plays_user_to_model[plays.users]
    row_train &= row_user >= 0
    row_valid &= row_user >= 0

    return TrainingData(
        mel_ids=mel_ids, lengths=lengths, train_items=train_items, valid_items=valid_items,
        user_ids=user_ids,
        pair_users=row_user[row_train], pair_items=train_pos[row_mel[row_train]],
        pair_counts=plays.counts[row_train].astype(np.int64),
        valid_users=row_user[row_valid], valid_pair_items=valid_pos[row_mel[row_valid]],
        stats=stats,
    )


def _no_training_play(item_split, plays_name, splits_name) -> None:
    """When no play is of a training song because every song played is held out: say so."""
    held_out = (item_split == 1) | (item_split == 2)
    if (item_split != 0).all() and held_out.any():
        raise DcueError(f"none of the {int(held_out.sum()):,} songs of {plays_name} is a training song of "
                        f"{splits_name} (all are valid or test songs: held-out plays?): train on the plays "
                        "the splits were made with (`dcue subset` writes plays.tsv beside splits.tsv).")


def _dropped(item_split, known, has_frames, plays_name, splits_name) -> dict:
    """What the join leaves out, counted (items without a split, without mels, without frames)."""
    stats = {}
    no_split = item_split < 0
    if no_split.all():
        raise DcueError(f"no item of {plays_name} appears in {splits_name}: are they from the same "
                        "`dcue subset` run?")
    if no_split.any():
        stats["items_without_split"] = int(no_split.sum())
    in_split_not_mels = (~no_split) & (~known)
    if in_split_not_mels.any():
        stats["items_without_mels"] = int(in_split_not_mels.sum())
    empty = known & ~has_frames
    if empty.any():
        stats["items_without_frames"] = int(empty.sum())
    return stats
