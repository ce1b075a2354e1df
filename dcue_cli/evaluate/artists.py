"""Semi-cold and fully cold songs: the cold-start protocol split by what is known of a song's artist.

Most new releases are by artists listeners already know. Given an artist map, the cold songs
of the task (test songs, none played in training) fall in two groups, each scored as the whole
task is, on the same bootstrap resamples' seed:

- semi-cold: the song's artist has training songs (in the splits);
- fully cold: it has none, or the map gives the song no artist.

The artist-mean baseline (`artist_mean_model`) scores a cold song by the mean WMF item
factors of its artist's training songs, with the WMF user factors (dot); a song whose artist
has no training song (or no artist) gets the mean of all training songs' factors, so every
such song scores alike (ties broken only by float rounding in the products). It shows how much of an artist model's gain the artist alone explains.
No I/O here but logging.
"""

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.evaluate.protocols import Model, Task, restrict_items, score_models

GROUPS = (("semi-cold", "semi-cold songs: the {on} songs whose artist has training songs"),
          ("fully-cold", "fully cold songs: the {on} songs whose artist has no training song"))


def training_artists(splits: dict, amap) -> set:
    return {amap.artist_of[i] for i, s in splits.items() if s == "train" and i in amap.artist_of}


def artist_groups(task: Task, splits: dict, amap, on: str = "test") -> dict:
    """{"semi-cold": (I,) bool, "fully-cold": (I,) bool, "without-artist": count} over the task's songs."""
    artists = [amap.artist_of.get(i) for i in task.item_ids]
    if all(a is None for a in artists):
        examples = ", ".join(repr(str(i)) for i in list(amap.artist_of)[:2])
        raise DcueError(f"none of the {task.n_items:,} {on} songs has an artist in {amap.path} (its items look "
                        f"like {examples}, the songs like {', '.join(repr(str(i)) for i in task.item_ids[:2])}): "
                        "give the map of these songs, keyed by song id.")
    known = training_artists(splits, amap)
    semi = np.array([a is not None and a in known for a in artists], bool)
    return {"semi-cold": semi, "fully-cold": ~semi, "without-artist": sum(a is None for a in artists)}


def artist_mean_model(task: Task, emb, splits: dict, amap) -> Model:
    """The artist-mean baseline's row: each song the mean factors of its artist's training songs."""
    from dcue_cli.evaluate.protocols import _check_finite, _codes

    if emb.user_vectors is None:
        raise DcueError(f"--artist-mean {emb.path} has no user vectors: give WMF factors from "
                        "`dcue wmf --fit-on train`.")
    fit_on = str(emb.attrs.get("fit_on", ""))
    if fit_on and fit_on != "train":
        log.warning("--artist-mean %s was fitted on %s interactions: its factors have seen the songs that are "
                    "scored (use `dcue wmf --fit-on train`)", emb.path, fit_on)
    rows = [r for r, i in enumerate(emb.item_ids) if splits.get(i) == "train"]
    if not rows:
        raise DcueError(f"--artist-mean {emb.path} has no vector of a training song of the splits: give the "
                        "WMF factors fitted on these training songs (`dcue wmf --fit-on train`).")
    vectors = np.asarray(emb.item_vectors, np.float64)[rows]
    artists = [amap.artist_of.get(emb.item_ids[r]) for r in rows]
    sums, counts = {}, {}
    for artist, v in zip(artists, vectors):
        if artist is not None:
            sums[artist] = sums.get(artist, 0.0) + v
            counts[artist] = counts.get(artist, 0) + 1
    overall = vectors.mean(axis=0)
    items = np.array([sums[a] / counts[a] if a in sums else overall
                      for a in (amap.artist_of.get(i) for i in task.item_ids)], np.float32)
    user_rows = _codes(task.user_ids, emb.user_index())
    if (user_rows < 0).all():
        raise DcueError(f"none of the {task.n_users:,} users to evaluate has a vector in --artist-mean {emb.path}: "
                        "was it fitted on these plays?")
    users = np.zeros((task.n_users, items.shape[1]), np.float32)
    users[user_rows >= 0] = emb.user_vectors[user_rows[user_rows >= 0]]
    _check_finite(emb.path, users, task.user_ids, "user", items, task.item_ids, "item")
    note = ("a song is scored by the mean WMF factors of its artist's training songs; one whose artist has none, "
            "by the mean of all training songs (all such songs alike: AUC 0.5 among them, up to float rounding)")
    return Model("Artist mean", users, items, emb.similarity, np.zeros(task.n_items, bool), user_rows < 0,
                 source="artist-mean", path=emb.path, note=note)


def score_artist_groups(task: Task, models, groups: dict, amap, *, on: str = "test", ks=(10,), n_boot=1000,
                        seed=0, threads=None) -> dict:
    """Each group's report (as `score_models`' report), None where no user can be evaluated in it."""
    out = {"map": amap.path,
           "songs": {name: int(mask.sum()) for name, mask in groups.items() if name != "without-artist"},
           "without_artist": int(groups["without-artist"])}
    for name, template in GROUPS:
        mask = groups[name]
        description = template.format(on=on)
        sub, sub_models = restrict_items(task, models, mask, description) if mask.any() else (None, None)
        if sub is None or sub.n_users == 0:
            log.warning("no user has a positive and a negative among the %d %s songs: that group is not scored",
                        int(mask.sum()), name)
            out[name] = None
            continue
        if name == "fully-cold" and groups["without-artist"]:
            sub.notes.append(f"{groups['without-artist']:,} of these songs have no artist in {amap.path}")
        counts = [(int(m.missing_items.sum()), int(m.missing_users.sum())) for m in sub_models]
        out[name], _ = score_models(sub, sub_models, ks, n_boot=n_boot, seed=seed, threads=threads,
                                    missing_counts=counts, progress=False)
    return out
