"""`dcue score`'s evaluation core beside the per-user sklearn loop, measured in the same run.

A model of 20,000 users x 2,000 test songs (the paper's subset: 20 % of 10,000 songs), 100
dimensions, ~1.5 % of the pairs positive with power-law song popularity. Measured:
  - `dcue_cli.evaluate.metrics.evaluate`: scores from the vectors, then AUC and precision/recall/nDCG/MAP
    at 10, 50 and 100 for every user, chunked over users;
  - the same plus the 95 % bootstrap intervals (1,000 resamples) that `dcue score` prints;
  - the reference: a loop over users of sklearn.metrics.roc_auc_score (AUC only) on a sample of
    users, extrapolated to all of them;
  - peak memory of the evaluation of --huge-users users x --huge-items items (bounded: the
    users x items matrix never exists at once).
Target (issue 4): at most 3 s for everything on 2 cores.

    python benchmarks/score_bench.py
    python benchmarks/score_bench.py --huge-users 1000000 --huge-items 10000   # minutes
"""

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np


def make(users, items, dim=100, density=0.015, seed=0):
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    # Multiples of 1/4: every dot product is exact in float32 whatever the summation order,
    # so sklearn's loop and the chunked matrix products see the very same scores (ties too).
    u = (np.round(rng.standard_normal((users, dim)) * 4) / 4).astype(np.float32)
    v = (np.round(rng.standard_normal((items, dim)) * 4) / 4).astype(np.float32)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    popularity /= popularity.sum()
    per_user = max(1, int(density * items))
    rows = np.repeat(np.arange(users), per_user)
    cols = rng.choice(items, size=len(rows), p=popularity)
    positives = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(users, items))
    positives.sum_duplicates()
    return u, v, positives


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def sklearn_loop(u, v, positives, sample, seed=0):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    users = rng.choice(len(u), size=sample, replace=False)
    start = time.perf_counter()
    aucs = {}
    for user in users:
        y = positives[user].toarray().ravel() > 0
        if 0 < y.sum() < len(y):
            aucs[user] = roc_auc_score(y, v @ u[user])
    return (time.perf_counter() - start) * len(u) / sample, aucs


def huge_child(users, items):
    """Run in a subprocess: evaluate a huge model for its peak RSS."""
    from dcue_cli.evaluate.metrics import evaluate

    u, v, positives = make(users, items, dim=32, density=0.003)
    start = time.perf_counter()
    result = evaluate(u, v, "dot", positives, ks=(10,), threads=2)
    print(f"{time.perf_counter() - start:.1f} {result['n_users']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample", type=int, default=1000, help="users in the sklearn loop (extrapolated)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--huge-users", type=int, default=200000)
    ap.add_argument("--huge-items", type=int, default=10000)
    ap.add_argument("--huge-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.huge_child:
        huge_child(args.huge_users, args.huge_items)
        return

    from dcue_cli.evaluate.metrics import (
        bootstrap_means,
        evaluate,
        metric_names,
        percentile_interval,
    )

    u, v, positives = make(args.users, args.items)
    ks = (10, 50, 100)
    evaluate(u[:100], v, "dot", positives[:100], ks=ks)  # warm-up: imports, thread pool
    t_eval, result = best_of(lambda: evaluate(u, v, "dot", positives, ks=ks, threads=args.threads), args.repeat)
    t_auc, _ = best_of(lambda: evaluate(u, v, "dot", positives, ks=(), threads=args.threads), args.repeat)

    def with_intervals():
        r = evaluate(u, v, "dot", positives, ks=ks, threads=args.threads)
        values = np.column_stack([r["per_user"][n][r["evaluated"]] for n in metric_names(ks)])
        return percentile_interval(bootstrap_means(values, 1000))

    t_all, _ = best_of(with_intervals, args.repeat)
    t_ref, aucs = sklearn_loop(u, v, positives, args.sample)
    worst = max(abs(result["per_user"]["auc"][user] - auc) for user, auc in aucs.items())

    out = subprocess.run([sys.executable, __file__, "--huge-child", "--huge-users", str(args.huge_users),
                          "--huge-items", str(args.huge_items)], check=True, capture_output=True, text=True).stdout
    huge_s = float(out.split()[0])
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    dense_gb = args.huge_users * args.huge_items * 8 / 1e9

    load = os.getloadavg()
    print(f"dcue score core: {args.users:,} users x {args.items:,} items, {positives.nnz:,} positives, "
          f"{args.threads} threads, {os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'figure':<46}{'value':>10}{'reference':>12}{'ratio':>8}")
    print(f"{'evaluate: AUC only (s)':<46}{t_auc:>10.2f}{t_ref:>12.1f}{t_ref / t_auc:>8.0f}x   "
          f"(reference: sklearn roc_auc_score loop, {args.sample} users extrapolated)")
    print(f"{'evaluate: AUC + P/R/nDCG/MAP@10,50,100 (s)':<46}{t_eval:>10.2f}{t_ref:>12.1f}{t_ref / t_eval:>8.0f}x")
    print(f"{'  + 95% bootstrap intervals (s)':<46}{t_all:>10.2f}{3.0:>12.1f}{t_all / 3.0:>8.2f}    (target: 3 s)")
    print(f"{'max |AUC - sklearn| on the sample':<46}{worst:>10.1e}{1e-9:>12.0e}")
    print(f"{f'peak RSS, {args.huge_users:,} x {args.huge_items:,} (GB)':<46}{peak_gb:>10.2f}{dense_gb:>12.1f}"
          f"{peak_gb / dense_gb:>8.3f}    (reference: one float64 users x items matrix; took {huge_s:.0f} s)")


if __name__ == "__main__":
    main()
