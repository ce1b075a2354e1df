"""Fold-in of new users (`dcue recommend --plays`) measured on users the model never saw.

A `dcue synth` world (default 300 songs, 600 users), `dcue subset` to plays; 20 % of the users
are held out of training entirely. Every user's played songs are split 80 / 20 at random.
  - WMF (`dcue wmf`) is fitted on the trained users' 80 %;
  - trained users: their fitted vector ranks every song they did not play in the 80 %; AUC of
    their 20 % against the songs they never played;
  - held-out users: folded in from their 80 % by `dcue_cli.recommend.foldin.fold_in` (the ALS user
    step with the file's alpha and regularization), the same AUC on their 20 %.
With --dcue also a small DCUE model (`melspec`, `train` on the trained users' 80 %, `embed`):
trained users by the user tower, held-out users by each cosine fold-in (mean, logistic).
Per-user AUC: mean over users, with the 95 % interval of the mean.

    python benchmarks/foldin_bench.py                 # WMF only, about a minute on 2 cores
    python benchmarks/foldin_bench.py --dcue          # plus DCUE (a few minutes)
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)


def dcue(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    subprocess.run([sys.executable, "-m", "dcue_cli", "-q", *map(str, args)], check=True, env=env)


def split_plays(plays, held_fraction, test_fraction, seed):
    """(held-out user set, {user: (train item ids, counts)}, {user: test item ids})."""
    rng = np.random.default_rng(seed)
    users = np.array(plays.user_ids, object)
    held = set(rng.choice(users, int(len(users) * held_fraction), replace=False).tolist())
    order = np.argsort(plays.users, kind="stable")
    bounds = np.searchsorted(plays.users[order], np.arange(plays.n_users + 1))
    train, test = {}, {}
    for u in range(plays.n_users):
        rows = order[bounds[u]:bounds[u + 1]]
        if len(rows) < 5:
            continue
        rows = rng.permutation(rows)
        cut = max(1, round(len(rows) * test_fraction))
        name = str(plays.user_ids[u])
        test[name] = [str(plays.item_ids[i]) for i in plays.items[rows[:cut]]]
        train[name] = ([str(plays.item_ids[i]) for i in plays.items[rows[cut:]]], plays.counts[rows[cut:]])
    return held, train, test


def auc(scores, positives, negatives):
    """Probability that a positive outscores a negative (ties half)."""
    from scipy.stats import rankdata

    s = np.concatenate([scores[positives], scores[negatives]])
    r = rankdata(s)[:len(positives)]
    n_pos, n_neg = len(positives), len(negatives)
    return (r.sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def per_user_auc(emb, vectors, names, train, test):
    from dcue_cli.recommend.topk import unit

    index = emb.item_index()
    items = unit(emb.item_vectors) if emb.similarity == "cosine" else emb.item_vectors
    if emb.similarity == "cosine":
        vectors = unit(vectors)
    out = []
    for v, name in zip(vectors, names):
        pos = np.array([index[i] for i in test[name] if i in index], np.int64)
        seen = {index[i] for i in train[name][0] if i in index} | set(pos.tolist())
        neg = np.array([i for i in range(len(items)) if i not in seen], np.int64)
        if len(pos) and len(neg):
            out.append(auc(items @ v, pos, neg))
    return np.array(out)


def fold(emb, names, train, method=None):
    from dcue_cli.recommend.foldin import fold_in

    index = emb.item_index()
    played = []
    for name in names:
        ids, counts = train[name]
        keep = [j for j, i in enumerate(ids) if i in index]
        played.append((np.array([index[ids[j]] for j in keep], np.int64), np.asarray(counts)[keep]))
    return fold_in(emb, played, method=method)[0]


def line(label, values):
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    print(f"  {label:<52} AUC {values.mean():.4f} ± {half:.4f}  ({len(values)} users)")


def evaluate(emb, held, train, test, methods):
    known = emb.user_index()
    trained = [u for u in train if u not in held and u in known]
    new = [u for u in train if u in held]
    print(f"{emb.name} ({emb.similarity}): {len(trained)} trained users, {len(new)} held-out users, "
          f"{len(emb.item_ids)} songs")
    line("trained users (their fitted vector)", per_user_auc(emb, emb.user_vectors[[known[u] for u in trained]],
                                                              trained, train, test))
    for method in methods:
        line(f"trained users re-folded from their 80 % ({method or 'als'})",
             per_user_auc(emb, fold(emb, trained, train, method), trained, train, test))
        line(f"held-out users folded in from their 80 % ({method or 'als'})",
             per_user_auc(emb, fold(emb, new, train, method), new, train, test))


def write_train_plays(path, train, held):
    with open(path, "w") as f:
        for user, (ids, counts) in train.items():
            if user not in held:
                f.writelines(f"{user}\t{i}\t{c}\n" for i, c in zip(ids, counts))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--songs", type=int, default=300)
    p.add_argument("--users", type=int, default=600)
    p.add_argument("--seconds", type=float, default=3)
    p.add_argument("--factors", type=int, default=32)
    p.add_argument("--dcue", action="store_true", help="also a small DCUE model (melspec, train, embed)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", help="folder for the files (default: a temporary one)")
    args = p.parse_args()
    from dcue_cli.io.embeddings import read_embeddings
    from dcue_cli.io.plays import read_plays

    d = args.work or tempfile.mkdtemp(prefix="foldin-")
    if not os.path.exists(os.path.join(d, "data", "train_triplets.txt")):
        dcue("synth", f"{d}/data", "--songs", args.songs, "--users", args.users, "--seconds", args.seconds,
             "--format", "wav", "--seed", args.seed)
    dcue("subset", f"{d}/data/train_triplets.txt", "-o", f"{d}/sub", "--songs", 0, "--users", 0)
    plays = read_plays(f"{d}/sub/plays.tsv", show_progress=False)
    held, train, test = split_plays(plays, 0.2, 0.2, args.seed)
    write_train_plays(f"{d}/train.tsv", train, held)
    dcue("wmf", f"{d}/train.tsv", "-o", f"{d}/wmf.h5", "--factors", args.factors, "--seed", args.seed)
    evaluate(read_embeddings(f"{d}/wmf.h5", need_users=True), held, train, test, [None])
    if args.dcue:
        if not os.path.exists(f"{d}/mels.h5"):
            dcue("melspec", f"{d}/data/audio", "-o", f"{d}/mels.h5", "--id-map", f"{d}/data/unique_tracks.txt")
        dcue("train", f"{d}/mels.h5", f"{d}/train.tsv", "--splits", f"{d}/sub/splits.tsv", "-o", f"{d}/model.pt",
             "--conv-channels", "16,32,32", "--conv-kernels", "4,4,4", "--pool-sizes", "4,4,4", "--embed-dim", "32",
             "--user-embed-dim", "32", "--user-hidden", "32", "--epochs", args.epochs, "--seed", args.seed)
        dcue("embed", f"{d}/model.pt", f"{d}/mels.h5", "-o", f"{d}/dcue.h5")
        evaluate(read_embeddings(f"{d}/dcue.h5", need_users=True), held, train, test, ["mean", "logistic"])


if __name__ == "__main__":
    main()
