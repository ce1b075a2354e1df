"""`dcue wmf` (the whole command) beside `implicit` called directly on the same matrix, same run.

An MSD-subset-sized play matrix: 20,000 users x 10,000 songs, ~1.5 % dense (3 M plays),
power-law song popularity and user activity, small geometric counts. Measured:
  - implicit's AlternatingLeastSquares.fit on the confidence matrix (1 + 40 c), 100 factors,
    15 iterations, BLAS limited to one thread as implicit recommends: the reference;
  - `dcue -q wmf plays.tsv -o wmf.h5` with the same hyperparameters, as a subprocess: reading
    the TSV, fitting, writing the HDF5, Python start-up included.
Target (issue 4): the command within 1.2x of the reference.

    python benchmarks/wmf_bench.py
    python benchmarks/wmf_bench.py --users 5000 --songs 2500   # quicker
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np


def make_plays(path, users, songs, density, seed=0):
    """A plays TSV; returns the users x songs count matrix it holds."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    target = int(users * songs * density)
    n = int(target * 1.3)  # popular songs draw repeats, merged below
    song_p = 1.0 / np.arange(1, songs + 1) ** 0.8
    song_p /= song_p.sum()
    activity = rng.pareto(2.0, users) + 1
    user_p = activity / activity.sum()
    rows = rng.choice(users, size=n, p=user_p)
    cols = rng.choice(songs, size=n, p=song_p)
    m = sp.csr_matrix((np.ones(n, np.float32), (rows, cols)), shape=(users, songs))
    m.sum_duplicates()
    if m.nnz > target:  # keep exactly `target` distinct (user, song) pairs
        drop = rng.choice(m.nnz, size=m.nnz - target, replace=False)
        m.data[drop] = 0
        m.eliminate_zeros()
    m.data = np.minimum(rng.geometric(0.35, m.nnz), 500).astype(np.float32)
    coo = m.tocoo()
    with open(path, "w") as out:
        out.write("".join(f"u{r}\ts{c}\t{int(v)}\n" for r, c, v in zip(coo.row, coo.col, coo.data)))
    return m


def implicit_direct(matrix, factors, iterations, threads, alpha):
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    conf = matrix.copy()
    conf.data = 1 + alpha * conf.data
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, regularization=0.01, alpha=1.0, iterations=iterations,
                                        num_threads=threads, random_state=0)
        start = time.perf_counter()
        model.fit(conf, show_progress=False)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--songs", type=int, default=10000)
    ap.add_argument("--density", type=float, default=0.015)
    ap.add_argument("--factors", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/dcue-wmf-bench")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    plays = os.path.join(args.workdir, f"plays_{args.users}_{args.songs}_{args.density}.tsv")
    matrix = make_plays(plays, args.users, args.songs, args.density)

    reference = implicit_direct(matrix, args.factors, args.iterations, args.threads, 40.0)
    cmd = [sys.executable, "-m", "dcue_cli", "-q", "wmf", plays, "-o", os.path.join(args.workdir, "wmf.h5"),
           "--factors", str(args.factors), "--iterations", str(args.iterations), "--threads", str(args.threads),
           "--alpha", "40", "--confidence", "linear"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    command = time.perf_counter() - start

    load = os.getloadavg()
    print(f"dcue wmf: {matrix.shape[0]:,} users x {matrix.shape[1]:,} songs, {matrix.nnz:,} plays "
          f"({matrix.nnz / np.prod(matrix.shape):.2%} dense), {args.factors} factors, {args.iterations} iterations, "
          f"{args.threads} threads, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'figure':<40}{'value':>10}{'reference':>12}{'ratio':>8}")
    print(f"{'whole command vs implicit fit (s)':<40}{command:>10.1f}{reference:>12.1f}{command / reference:>8.2f}"
          "   (target: ratio <= 1.2)")


if __name__ == "__main__":
    main()
