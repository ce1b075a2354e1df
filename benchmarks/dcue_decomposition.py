"""Where DCUE's cold-start AUC goes on `dcue synth` data: the item tower, the user tower, or the
cosine between them?

The generator knows every song's true style and every user's true taste (truth.h5), so each
tower of a trained model can be judged alone:
  - items decoded x true tastes: a linear map from DCUE's (unit) item vectors to the true style,
    fitted on the training songs only, applied to the cold test songs, scored with the TRUE
    tastes: how much style the audio network extracts;
  - true style x users decoded: the same from the user vectors to the true tastes (fitted on one
    half of the users, applied to the other, both ways), scored with the TRUE styles;
  - both decoded: the two together; and DCUE's own cosine.
Against the content ceiling (true style x true taste) and the popularity oracle. The decoding
uses the generator's truth, so these rows are diagnostics, never methods.

    python benchmarks/dcue_decomposition.py demo-out/data/truth.h5 demo-out/dcue.h5 \\
        demo-out/subset/plays.tsv demo-out/subset/splits.tsv --workdir /tmp/decomposition
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _ridge(x, y):
    from sklearn.linear_model import RidgeCV

    return RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x, y)


def decoded(truth, model, splits, seed=0):
    """(item ids, decoded styles, true styles, user ids, decoded tastes, true tastes)."""
    ti, mi = truth.item_index(), model.item_index()
    items = [i for i in model.item_ids if i in ti and i in splits]
    x = _unit(model.item_vectors[[mi[i] for i in items]])
    style = truth.item_vectors[[ti[i] for i in items]]
    train = np.array([splits[i] == "train" for i in items])
    style_hat = _ridge(x[train], style[train]).predict(x)

    tu, mu = truth.user_index(), model.user_index()
    users = [u for u in model.user_ids if u in tu]
    u = _unit(model.user_vectors[[mu[k] for k in users]])
    taste = truth.user_vectors[[tu[k] for k in users]]
    half = np.random.default_rng(seed).permutation(len(users))
    a, b = half[: len(users) // 2], half[len(users) // 2:]
    taste_hat = np.zeros_like(taste)
    taste_hat[b] = _ridge(u[a], taste[a]).predict(u[b])  # cross-fitted: no user decodes itself
    taste_hat[a] = _ridge(u[b], taste[b]).predict(u[a])
    return (np.array(items, dtype=object), style_hat, style, np.array(users, dtype=object), taste_hat, taste)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("truth")
    p.add_argument("model", help="DCUE embeddings (dcue embed)")
    p.add_argument("plays")
    p.add_argument("splits")
    p.add_argument("--workdir", default="dcue-decomposition")
    args = p.parse_args()

    from dcue_cli.io.embeddings import Embeddings, read_embeddings, write_embeddings
    from dcue_cli.io.tsv import read_splits

    truth = read_embeddings(args.truth, need_users=True)
    model = read_embeddings(args.model, need_users=True)
    items, style_hat, style, users, taste_hat, taste = decoded(truth, model, read_splits(args.splits))
    os.makedirs(args.workdir, exist_ok=True)
    files = []
    for name, iv, uv in (("items decoded x true tastes", style_hat, taste),
                         ("true style x users decoded", style, taste_hat),
                         ("both decoded", style_hat, taste_hat)):
        path = os.path.join(args.workdir, name.replace(" ", "_") + ".h5")
        write_embeddings(path, Embeddings(items, iv.astype(np.float32), users, uv.astype(np.float32),
                                          source="diagnostic", similarity="dot", attrs={"name": name}))
        files.append(path)
    report = json.loads(subprocess.run(
        [sys.executable, "-m", "dcue_cli", "-q", "score", args.truth, *files, args.model, "--popularity",
         "--plays", args.plays, "--splits", args.splits, "--json", "--bootstrap", "200"],
        check=True, capture_output=True, text=True).stdout)
    auc = {m["name"]: m["metrics"]["auc"]["mean"] for m in report["models"]}
    pop = next(m["name"] for m in report["models"] if m["source"] == "popularity")
    ceiling = next(m["name"] for m in report["models"] if str(m["source"]).endswith("truth"))
    print(f"cold-start AUC on {report['items']:,} test songs, {report['users']:,} users "
          f"(E: share of the ceiling's gain over popularity)")
    print(f"{'row':<36}{'AUC':>8}{'E':>7}")
    for name in [ceiling, "items decoded x true tastes", "true style x users decoded", "both decoded",
                 *[n for n in auc if n not in (ceiling, pop) and "decoded" not in n], pop]:
        e = (auc[name] - auc[pop]) / (auc[ceiling] - auc[pop])
        print(f"{name:<36}{auc[name]:>8.4f}{e:>7.2f}")


if __name__ == "__main__":
    main()
