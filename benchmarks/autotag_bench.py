"""`dcue autotag`'s tagger: one torch thread beside torch's default thread count, same run.

The problem has the HetRec Last.fm-2k autotag shape (9,000 items x 100-d vectors, 50 tags,
train/valid/test 70/10/20), drawn at random with tags that depend on the vectors. For each
thread count it times the full library path (`evaluate`: training with early stopping on the
valid items, then per-tag AUC and AP on the test items), for a fixed number of epochs so both
do the same work. The reference is torch's default (one thread per core). `--threads 1` is the
command's default because a 512-wide MLP's ops are too small to share between threads: on a
busy machine every op then waits for a descheduled thread. Also times the per-tag metrics
beside sklearn's roc_auc_score + average_precision_score loop on the same scores.
Timings mean something only on an otherwise idle machine: the load average is printed.

    python benchmarks/autotag_bench.py [--items 9000 --dim 100 --tags 50 --epochs 10]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def problem(items, dim, tags, seed=0):
    from dcue_cli.autotag.dataset import TagDataset
    from dcue_cli.random_split import split_ids

    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(items, dim)).astype(np.float32)
    logits = vectors[:, :16] @ rng.normal(size=(16, tags)) + rng.normal(scale=2.0, size=(items, tags))
    labels = logits > np.quantile(logits, 0.9, axis=0)  # ~10% positives per tag, like Last.fm's top 50
    ids = np.array([f"A{i}" for i in range(items)], dtype=object)
    splits = split_ids(list(ids), seed=seed)
    data = TagDataset(ids, [f"tag{t}" for t in range(tags)], labels,
                      np.array([splits[i] for i in ids], dtype=object))
    return ids, vectors, data


def timed(fn, repeats=1):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=9000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--tags", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=10, help="fixed epochs (patience is set above it)")
    args = parser.parse_args()

    import torch
    from sklearn.metrics import average_precision_score, roc_auc_score

    from dcue_cli import log
    from dcue_cli.autotag.metrics import per_tag_ap, per_tag_auc
    from dcue_cli.autotag.report import evaluate_embeddings
    from dcue_cli.autotag.tagger import TaggerConfig
    from dcue_cli.io.embeddings import Embeddings

    log.configure(quiet=True)
    ids, vectors, data = problem(args.items, args.dim, args.tags)
    emb = Embeddings(ids, vectors, source="bench")
    default_threads = torch.get_num_threads()
    config = TaggerConfig(epochs=args.epochs, patience=args.epochs + 1)

    rows = []
    ref, ref_result = timed(lambda: evaluate_embeddings(emb, data, TaggerConfig(
        **{**config.__dict__, "threads": default_threads})))
    one, one_result = timed(lambda: evaluate_embeddings(emb, data, config))
    rows.append((f"tagger, {args.epochs} epochs, 1 thread", one, f"{default_threads} threads (torch default)", ref))

    test = data.mask("test")
    scores = one_result.tagger.predict(vectors[test])
    labels = data.labels[test]
    ours, _ = timed(lambda: (per_tag_auc(scores, labels), per_tag_ap(scores, labels)), repeats=3)
    theirs, _ = timed(lambda: [(roc_auc_score(labels[:, t], scores[:, t]), average_precision_score(labels[:, t], scores[:, t]))
                               for t in range(labels.shape[1])], repeats=3)
    rows.append((f"per-tag AUC+AP, {int(test.sum())} x {args.tags}", ours, "sklearn loop", theirs))

    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores: {os.cpu_count()}; "
          f"{args.items} items x {args.dim} dims, {args.tags} tags; AUC {one_result.auc:.4f} "
          f"(default threads: {ref_result.auc:.4f})")
    print(f"{'figure':<40} {'seconds':>8}  {'reference':<28} {'seconds':>8}  {'ratio':>6}")
    for name, value, ref_name, ref_value in rows:
        print(f"{name:<40} {value:8.3f}  {ref_name:<28} {ref_value:8.3f}  {value / ref_value:6.2f}")


if __name__ == "__main__":
    main()
