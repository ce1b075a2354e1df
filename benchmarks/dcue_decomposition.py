"""Where DCUE's cold-start AUC goes on `dcue synth` data: the item tower, the user tower, or the
cosine between them?

The generator knows every song's true style and every user's true taste (truth.h5), so each
tower of a trained model can be judged alone:
  - items decoded x true tastes: a linear map from DCUE's (unit) item vectors to the true style,
    fitted on the training songs only, applied to the cold test songs, scored with the TRUE
    tastes: how much style the audio network extracts;
  - true style x users decoded: the same from the user vectors to the true tastes (fitted on one
    half of the users, applied to the other, both ways), scored with the TRUE styles;
  - both decoded: the two together; and DCUE's own cosine;
  - items decoded, users fitted: the decoded styles with every user fitted to their training
    plays (the reachable ceiling's user model): the most a linear user side could make of what
    the item tower hears, the headroom over `dcue refit` (which must find the subspace without
    the truth).
Against the content ceiling (true style x true taste) and the popularity oracle. The decoding
uses the generator's truth, so these rows are diagnostics, never methods.

And what any cold-start model could reach, whatever its network: "hearing R^2 = r" gives every
song the true style plus noise (each dimension keeps a share r of its variance, r = 1: perfect
hearing) and every user the taste that a per-user logistic regression of played-or-not on those
training-song styles fits (the user side of a two-tower model, done well). The ceiling itself
uses the users' TRUE tastes, which no model knows; these rows say how well a model must hear for
a given E. On `dcue synth` data one more row, "what the renderer lets be heard", hears every
dimension perfectly except the mode, which the renderer plays as a coin weighted by the style
(major or minor for the whole song): that dimension is heard as the best guess given the coin.

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
from reachable_ceiling import played_matrix, users_fitted_to_plays


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


def rendered_style(truth, items):
    """synth's style as its audio can tell it: the mode dimension replaced by E[mode | the
    song's major/minor coin], redrawn from the renderer's own per-song stream. None when
    `truth` is not synth's."""
    from dcue_cli.synth.render import sigmoid_cdf
    from dcue_cli.synth.world import STREAM_AUDIO, STYLE_DIMS, random_stream

    if truth.source != "synth-truth" or "seed" not in truth.attrs:
        return None
    seed = int(truth.attrs["seed"])
    ti = truth.item_index()
    index = np.array([ti[i] for i in items])
    style = truth.item_vectors[index].astype(np.float64)
    mode = STYLE_DIMS.index("mode")
    # The renderer's first draw from a song's audio stream is its coin (render_song).
    major = np.array([random_stream(seed, STREAM_AUDIO, int(k)).random() for k in index]) \
        < sigmoid_cdf(style[:, mode])
    z = np.linspace(-8, 8, 16001)
    density = np.exp(-z * z / 2)
    p = sigmoid_cdf(z)
    if_major = (z * p * density).sum() / (p * density).sum()
    if_minor = (z * (1 - p) * density).sum() / ((1 - p) * density).sum()
    style[:, mode] = np.where(major, if_major, if_minor)
    return style


def hearing_rows(truth, matrix, r2_values, seed=0):
    """[(name, item vectors, user vectors)]: noisy true styles x users fitted to their plays
    (`matrix`: reachable_ceiling.played_matrix's tuple)."""
    items, style, split, users, played = matrix
    train = split == "train"
    rng = np.random.default_rng(seed)
    scale = style.std(0)
    out = []
    rendered = rendered_style(truth, items)
    if rendered is not None:
        out.append(("what the renderer lets be heard, users fitted", items, rendered, users,
                    users_fitted_to_plays(rendered, train, played)))
    for r2 in r2_values:
        heard = np.sqrt(r2) * style + np.sqrt(1 - r2) * scale * rng.standard_normal(style.shape)
        name = "perfect hearing, users fitted" if r2 >= 1 else f"hearing R2 {r2:g}, users fitted"
        out.append((name, items, heard, users, users_fitted_to_plays(heard, train, played)))
    return out


def decoded_items_fitted_users(matrix, items, style_hat):
    """(name, items, decoded styles, users, tastes fitted to the plays on those styles)."""
    all_items, _, split, users, played = matrix
    at = {item: k for k, item in enumerate(items)}
    keep = np.array([i in at for i in all_items])
    heard = style_hat[[at[i] for i in all_items[keep]]]
    tastes = users_fitted_to_plays(heard, split[keep] == "train", played[:, keep])
    return ("items decoded, users fitted", all_items[keep], heard, users, tastes)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("truth")
    p.add_argument("model", help="DCUE embeddings (dcue embed)")
    p.add_argument("plays")
    p.add_argument("splits")
    p.add_argument("--workdir", default="dcue-decomposition")
    p.add_argument("--hearing", default="1,0.95,0.9,0.8",
                   help="R^2 values for the 'hearing' rows (comma-separated; empty: none)")
    args = p.parse_args()

    from dcue_cli.io.embeddings import Embeddings, read_embeddings, write_embeddings
    from dcue_cli.io.plays import read_plays
    from dcue_cli.io.splits import read_splits

    truth = read_embeddings(args.truth, need_users=True)
    model = read_embeddings(args.model, need_users=True)
    splits = read_splits(args.splits)
    items, style_hat, style, users, taste_hat, taste = decoded(truth, model, splits)
    rows = [("items decoded x true tastes", items, style_hat, users, taste),
            ("true style x users decoded", items, style, users, taste_hat),
            ("both decoded", items, style_hat, users, taste_hat)]
    matrix = played_matrix(truth, read_plays(args.plays), splits)
    rows.append(decoded_items_fitted_users(matrix, items, style_hat))
    r2_values = [float(v) for v in args.hearing.split(",") if v.strip()]
    if r2_values:
        rows += hearing_rows(truth, matrix, r2_values)
    os.makedirs(args.workdir, exist_ok=True)
    files = []
    for name, row_items, iv, row_users, uv in rows:
        path = os.path.join(args.workdir, name.replace(" ", "_").replace(",", "") + ".h5")
        write_embeddings(path, Embeddings(row_items, iv.astype(np.float32), row_users, uv.astype(np.float32),
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
    diagnostics = [name for name, *_ in rows]
    for name in [ceiling, *diagnostics, *[n for n in auc if n not in (ceiling, pop, *diagnostics)], pop]:
        e = (auc[name] - auc[pop]) / (auc[ceiling] - auc[pop])
        print(f"{name:<36}{auc[name]:>8.4f}{e:>7.2f}")


if __name__ == "__main__":
    main()
