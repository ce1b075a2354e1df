"""The reachable ceiling of cold-start recommendation on a set whose true item styles are known.

The content ceiling scores every song's true style with every user's TRUE taste, which no model
can know. The reachable ceiling keeps the true styles (perfect hearing) but gives each user the
taste that their training plays reveal: a per-user L2 logistic regression of played (1) or not
(0) on the training songs' styles, its strength C chosen (one for all users) by the mean AUC on
the validation songs. It is what a two-tower model would reach if its item tower heard the style
perfectly and its user side were fitted as well as a linear model can be.

It writes an embeddings file (items: the true styles; users: the fitted tastes; similarity dot;
source `fitted-ceiling`) that `dcue score` scores like any model, and `cold_start_efficiency.py`
reads as the reference of E_fit = (AUC - AUC_pop) / (AUC_fitted - AUC_pop).

    python benchmarks/reachable_ceiling.py demo-out/data/truth.h5 demo-out/subset/plays.tsv \\
        demo-out/subset/splits.tsv -o demo-out/fitted_ceiling.h5
    dcue score demo-out/dcue.h5 demo-out/fitted_ceiling.h5 demo-out/data/truth.h5 --popularity \\
        --plays demo-out/subset/plays.tsv --splits demo-out/subset/splits.tsv --json > report.json
    python benchmarks/cold_start_efficiency.py report.json
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)


def users_fitted_to_plays(style, train, played, C=0.3):
    """Each user's taste fitted by L2 logistic regression of played (1) or not (0) on the
    training songs' style vectors: (users, dims). `played` is a (users, songs) bool matrix. The
    same fit as `dcue refit`'s (dcue_cli.refit.fit_users: Newton steps, a block of users at once)."""
    from dcue_cli.refit import fit_users

    return fit_users(np.asarray(style, np.float64)[train], played[:, train], C)


def played_matrix(truth, plays, splits):
    """(items, true styles, split of each item, users, (users, items) played) over the truth's songs."""
    items = np.array([i for i in truth.item_ids if i in splits], dtype=object)
    ti, tu = truth.item_index(), truth.user_index()
    style = truth.item_vectors[[ti[i] for i in items]].astype(np.float64)
    split = np.array([splits[i] for i in items], dtype=object)
    column = {item: k for k, item in enumerate(items)}
    users = np.array([u for u in plays.user_ids if u in tu], dtype=object)
    row = {user: k for k, user in enumerate(users)}
    played = np.zeros((len(users), len(items)), dtype=bool)
    for u, i in zip(plays.user_ids[plays.users], plays.item_ids[plays.items]):
        if u in row and i in column:
            played[row[u], column[i]] = True
    return items, style, split, users, played


def mean_valid_auc(style, taste, played, valid):
    from dcue_cli.evaluate.metrics import mean_auc

    return mean_auc(taste.astype(np.float32), style[valid].astype(np.float32), "dot", played[:, valid])


def fit_ceiling(truth, plays, splits, grid=C_GRID):
    """(items, styles, users, tastes, chosen C, {C: valid AUC})."""
    items, style, split, users, played = played_matrix(truth, plays, splits)
    train, valid = split == "train", split == "valid"
    if not train.any():
        raise SystemExit("the splits have no training song among the truth's songs: nothing to fit tastes on")
    if not valid.any():  # nothing to choose the strength on: the middle of the grid
        grid = (sorted(grid)[len(grid) // 2],)
    scores, tastes = {}, {}
    for c in grid:
        tastes[c] = users_fitted_to_plays(style, train, played, C=c)
        scores[c] = mean_valid_auc(style, tastes[c], played, valid) if valid.any() else float("nan")
    best = max(grid, key=lambda c: -np.inf if np.isnan(scores[c]) else scores[c])
    return items, style, users, tastes[best], best, scores


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("truth", help="embeddings of the true styles and tastes (synth's truth.h5)")
    p.add_argument("plays")
    p.add_argument("splits")
    p.add_argument("-o", "--output", required=True, help="the reachable ceiling as an embeddings file")
    p.add_argument("--grid", default=",".join(map(str, C_GRID)), help="L2 strengths C tried on the valid songs")
    args = p.parse_args()

    from dcue_cli.io.embeddings import Embeddings, read_embeddings, write_embeddings
    from dcue_cli.io.plays import read_plays
    from dcue_cli.io.splits import read_splits

    start = time.perf_counter()
    truth = read_embeddings(args.truth, need_users=True)
    grid = tuple(float(c) for c in args.grid.split(",") if c.strip())
    items, style, users, taste, best, scores = fit_ceiling(truth, read_plays(args.plays, show_progress=False),
                                                           read_splits(args.splits), grid)
    write_embeddings(args.output, Embeddings(
        items, style.astype(np.float32), users, taste.astype(np.float32), source="fitted-ceiling",
        similarity="dot", attrs={"name": "reachable ceiling (true style, fitted tastes)", "C": best}))
    tried = ", ".join(f"C {c:g}: {a:.4f}" for c, a in scores.items())
    print(f"valid AUC by strength: {tried}; chose C {best:g}")
    print(f"wrote {args.output}: {len(items):,} songs, {len(users):,} users ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
