"""The tagging data set: which items take part, their labels over the top tags, their splits."""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dcue_cli.errors import DcueError
from dcue_cli.io.splits import SPLITS
from dcue_cli.random_split import split_ids

DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)


def map_track_ids(items: Sequence[str], id_map: dict):
    """Track ids -> song ids through an MSD id map ({track: (song, artist, title)}).

    Ids that are not track ids of the map are kept as they are (they may be song ids
    already). Returns (mapped list, number of rows mapped).
    """
    mapped, n_mapped = [], 0
    for item in items:
        entry = id_map.get(item)
        if entry is None:
            mapped.append(item)
        else:
            mapped.append(entry[0])
            n_mapped += 1
    return mapped, n_mapped


@dataclass
class TagDataset:
    """The items that take part, their labels over the top tags, and their splits."""

    item_ids: np.ndarray  # (N,) object str
    tags: list[str]  # (T,) most used first
    labels: np.ndarray  # (N, T) bool
    split: np.ndarray  # (N,) object: train | valid | test
    stats: dict = field(default_factory=dict)  # what was left out and why, for logs and JSON

    def mask(self, name: str) -> np.ndarray:
        return self.split == name


def common_items(embeddings: Sequence) -> list:
    """The item ids present in every embeddings file, in the first file's order."""
    common = set(embeddings[0].item_ids)
    for emb in embeddings[1:]:
        common &= set(emb.item_ids)
    return [item for item in embeddings[0].item_ids if item in common]


def prepare_dataset(
    tag_items: Sequence[str],
    tag_names: Sequence[str],
    vector_items: Sequence[str],
    *,
    splits: dict | None = None,
    top: int = 50,
    fractions=DEFAULT_FRACTIONS,
    seed: int = 0,
    tags_name: str = "TAGS",
    splits_name: str = "SPLITS",
) -> TagDataset:
    """Labels for the items that have a vector, a split and one of the `top` most used tags.

    tag_items, tag_names: (item, tag) rows already filtered by weight (duplicates allowed).
    vector_items: the items that have a vector (in every embeddings file compared).
    splits: {item: train|valid|test}; items with vectors and tags but no split are left out.
    Without it, `dcue subset`'s seeded random split (`dcue_cli.random_split.split_ids`) in `fractions` (summing to 1)
    over the labelled items: the same seed splits the same items as `dcue subset` does.
    The top tags are counted (distinct items per tag, ties by name) among the items that take
    part; items with none of them are left out. Every exclusion is counted in `stats`.
    """
    pairs = _tag_pairs(tag_items, tag_names)
    stats = {"tag_rows": len(pairs), "tagged_items": int(pairs["item"].nunique())}
    pairs = _with_vectors(pairs, vector_items, stats, tags_name)
    if splits is not None:
        pairs = _with_splits(pairs, splits, stats, splits_name)
    top_tags, pairs = _top_tags(pairs, top, stats)
    items, labels = _label_matrix(pairs, top_tags)
    chosen = splits if splits is not None else split_ids(list(items), fractions, seed)
    split = np.array([chosen[item] for item in items], dtype=object)
    stats["items"] = len(items)
    for name in SPLITS:
        stats[name] = int((split == name).sum())
    stats["split_source"] = "random" if splits is None else "file"
    return TagDataset(items, top_tags, labels, split, stats)


def _tag_pairs(tag_items, tag_names):
    """The distinct (item, tag) pairs, as a DataFrame."""
    import pandas as pd

    pairs = pd.DataFrame({"item": pd.Series(tag_items, dtype=object), "tag": pd.Series(tag_names, dtype=object)})
    return pairs.drop_duplicates(ignore_index=True)


def _with_vectors(pairs, vector_items, stats: dict, tags_name: str):
    """The pairs whose item has a vector; counts the others in `stats`."""
    has_vector = pairs["item"].isin(set(vector_items))
    stats["tag_rows_without_vector"] = int((~has_vector).sum())
    stats["tagged_items_without_vector"] = int(pairs.loc[~has_vector, "item"].nunique())
    pairs = pairs[has_vector]
    if pairs.empty:
        raise DcueError(
            f"no item of {tags_name} has a vector in every embeddings file: compare files that share items, "
            "keyed by the same ids as the tags."
        )
    stats["vector_items"] = len(vector_items)
    stats["vector_items_without_tags"] = len(vector_items) - int(pairs["item"].nunique())
    return pairs


def _with_splits(pairs, splits: dict, stats: dict, splits_name: str):
    """The pairs whose item has a split; counts the others in `stats`."""
    has_split = pairs["item"].isin(set(splits))
    stats["tagged_items_without_split"] = int(pairs.loc[~has_split, "item"].nunique())
    pairs = pairs[has_split]
    if pairs.empty:
        raise DcueError(
            f"none of the items with tags and vectors is in {splits_name}: "
            "give the splits file of the same subset, or leave --splits out for a random split."
        )
    return pairs


def _top_tags(pairs, top: int, stats: dict):
    """The `top` tags on most items (ties by name) and the pairs of those tags."""
    counts = pairs.groupby("tag")["item"].nunique()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    top_tags = [tag for tag, _ in ranked[:top]]
    stats["distinct_tags"] = len(ranked)
    n_before = int(pairs["item"].nunique())
    pairs = pairs[pairs["tag"].isin(set(top_tags))]
    stats["items_without_top_tags"] = n_before - int(pairs["item"].nunique())
    return top_tags, pairs


def _label_matrix(pairs, top_tags: list):
    """The items (sorted) and their (items, tags) boolean labels."""
    import pandas as pd

    item_codes, items = pd.factorize(pairs["item"], sort=True)
    tag_index = {tag: t for t, tag in enumerate(top_tags)}
    labels = np.zeros((len(items), len(top_tags)), dtype=bool)
    labels[item_codes, pairs["tag"].map(tag_index).to_numpy()] = True
    return np.asarray(items, dtype=object), labels
