"""`dcue recommend`'s top-k core beside implicit's `recommend` and a bare floor, in the same run.

Vectors: --items songs (default 380,000) x --dim (256) dot vectors around --styles centres, a sample of --sample
users (default 5,000; --users is the full size the time is extrapolated to, default 1,000,000),
each with --played plays (power-law popularity) that are excluded. Top --k (100). Measured:
  - dcue: `dcue_cli.recommend.topk.iter_topk` (chunked matmul, exclusion mask, deterministic
    top-k) on the torch device (the GPU when present);
  - implicit: `AlternatingLeastSquares.recommend(users, user_items, N=k,
    filter_already_liked_items=True)` on the same vectors (implicit's CPU model);
  - floor: a bare numpy matmul per chunk + np.argpartition (no exclusion, no sort), and the
    product dcue uses (numpy's BLAS on the CPU, torch on a GPU) + torch.topk: its own floor;
  - with --ann (faiss installed): an IVF-Flat inner-product index, recall@k against the exact
    top-k and its speed-up (build time apart).
Peak memory: the process's peak RSS after each stage (after each one's warm-up, in the order
printed, dcue first, so its figure is its own; the item matrix alone is items x dim x 4
bytes), and torch's peak on a GPU.

    python benchmarks/recommend_bench.py                      # 5,000 users x 380,000 songs
    python benchmarks/recommend_bench.py --sample 1000 --ann  # faiss: pip install faiss-cpu
    python benchmarks/recommend_bench.py --sample 1000000     # the full size (hours on 2 cores)
"""

import argparse
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make(args):
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    # Clustered like real embeddings (styles): each vector is a random style centre plus noise.
    centres = rng.standard_normal((args.styles, args.dim), dtype=np.float32)
    items = centres[rng.integers(args.styles, size=args.items)]
    items += rng.standard_normal(items.shape, dtype=np.float32)
    items /= np.float32(np.sqrt(2 * args.dim))
    users = centres[rng.integers(args.styles, size=args.sample)]
    users += rng.standard_normal(users.shape, dtype=np.float32)
    popularity = 1.0 / np.arange(1, args.items + 1) ** 0.8
    popularity /= popularity.sum()
    cols = rng.choice(args.items, size=args.sample * args.played, p=popularity)
    rows = np.repeat(np.arange(args.sample), args.played)
    played = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(args.sample, args.items))
    played.sum_duplicates()
    return users, items, played


def run_dcue(users, items, played, k, device):
    from dcue_cli.recommend.topk import (
        catalogue,
        chunk_users,
        exclusion_columns,
        iter_topk,
    )
    from dcue_cli.runtime import torch_device

    cat = catalogue(items, False, None, torch_device(device))
    step = chunk_users(cat)
    out = []
    start = time.perf_counter()
    for first in range(0, len(users), step):
        excluded = exclusion_columns(cat, [played.indices[played.indptr[u]:played.indptr[u + 1]]
                                           for u in range(first, min(first + step, len(users)))])
        for _, ranked in iter_topk(cat, users[first:first + step], k, excluded, chunk=step):
            out += [p for p, _ in ranked]
    return time.perf_counter() - start, out


def run_implicit(users, items, played, k, threads):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=items.shape[1], num_threads=threads)
    model.user_factors, model.item_factors = users, items
    start = time.perf_counter()
    ids, _ = model.recommend(np.arange(len(users)), played, N=k, filter_already_liked_items=True)
    return time.perf_counter() - start, ids


def run_floor_numpy(users, items, k, step=256):
    start = time.perf_counter()
    for first in range(0, len(users), step):
        s = users[first:first + step] @ items.T
        np.argpartition(-s, k - 1, axis=1)[:, :k]
    return time.perf_counter() - start


def run_floor_topk(users, items, k, device, step=256):
    """The product dcue uses on this device (numpy's BLAS on the CPU, torch on a GPU) + torch.topk."""
    import torch

    from dcue_cli.runtime import torch_device

    dev = torch_device(device)
    it = torch.from_numpy(items).to(dev)
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(users), step):
            if dev.type == "cpu":
                s = torch.from_numpy(users[first:first + step] @ items.T)
            else:
                s = torch.from_numpy(users[first:first + step]).to(dev) @ it.T
            torch.topk(s, k, dim=1)[1].cpu()
    return time.perf_counter() - start


def run_ann(users, items, played, k, exact, nlist, nprobe):
    import faiss

    start = time.perf_counter()
    quantizer = faiss.IndexFlatIP(items.shape[1])
    index = faiss.IndexIVFFlat(quantizer, items.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(items[np.random.default_rng(1).choice(len(items), min(len(items), 40 * nlist), replace=False)])
    index.add(items)
    build = time.perf_counter() - start
    index.nprobe = nprobe
    extra = int(np.diff(played.indptr).max())
    start = time.perf_counter()
    _, found = index.search(users, k + extra)  # then the played items are dropped
    hits = 0
    for u in range(len(users)):
        seen = set(played.indices[played.indptr[u]:played.indptr[u + 1]].tolist())
        top = [i for i in found[u] if i >= 0 and i not in seen][:k]
        hits += len(set(top) & set(exact[u].tolist()))
    return build, time.perf_counter() - start, hits / sum(len(e) for e in exact)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1_000_000, help="the full size the time is extrapolated to")
    p.add_argument("--sample", type=int, default=5_000, help="users actually ranked")
    p.add_argument("--items", type=int, default=380_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("-k", type=int, default=100)
    p.add_argument("--played", type=int, default=50, help="plays per user (excluded)")
    p.add_argument("--styles", type=int, default=500, help="clusters the vectors are drawn around")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="implicit's threads (0: all)")
    p.add_argument("--rounds", type=int, default=5, help="slices of users the methods take turns on")
    p.add_argument("--ann", action="store_true", help="also an approximate faiss IVF index")
    p.add_argument("--nlist", type=int, default=1024)
    p.add_argument("--nprobe", type=int, default=32)
    args = p.parse_args()
    users, items, played = make(args)
    print(f"{args.sample:,} users (of {args.users:,}) x {args.items:,} songs, {args.dim}-d dot, top-{args.k}, "
          f"{played.nnz / args.sample:.0f} played items excluded per user; {os.cpu_count()} cores; "
          f"peak RSS after the data {peak_mb():,.0f} MB")
    # Other jobs share these cores: the methods take turns on slices of the users (in a rotating
    # order), so a burst of load falls on all of them alike; each is warmed up first, untimed.
    few = slice(0, min(64, args.sample))
    methods = {
        "dcue recommend": lambda sl: run_dcue(users[sl], items, played[sl], args.k, args.device),
        "implicit recommend (cpu)": lambda sl: run_implicit(users[sl], items, played[sl], args.k, args.threads),
        "floor: numpy matmul + argpartition": lambda sl: (run_floor_numpy(users[sl], items, args.k), None),
        "floor: matmul + torch.topk": lambda sl: (run_floor_topk(users[sl], items, args.k, args.device), None),
    }
    seconds, results = dict.fromkeys(methods, 0.0), {"dcue recommend": [], "implicit recommend (cpu)": []}
    peaks = {}
    for name, method in methods.items():
        method(few)
        peaks[name] = peak_mb()  # after its warm-up; dcue is first, so its figure is its own
    edges = np.linspace(0, args.sample, args.rounds + 1).astype(int)
    names = list(methods)
    for r in range(args.rounds):
        sl = slice(edges[r], edges[r + 1])
        for name in names[r % len(names):] + names[:r % len(names)]:
            t, found = methods[name](sl)
            seconds[name] += t
            if name in results:
                results[name] += list(found)
        print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{edges[r + 1] / seconds[n]:,.0f}" for n in names)
              + " users/s so far", flush=True)
    note = ""
    import torch

    if torch.cuda.is_available() and args.device != "cpu":
        note = f", GPU peak {torch.cuda.max_memory_allocated() / 2**20:,.0f} MB"
    rate = {n: args.sample / t for n, t in seconds.items()}
    for name in names:
        hours = args.users / rate[name] / 3600
        print(f"  {name:<36} {rate[name]:>8,.0f} users/s   {args.users:,} users: {hours:6.2f} h   "
              f"peak RSS {peaks[name]:,.0f} MB{note if name.startswith('dcue') else ''}", flush=True)
    ours, theirs = results["dcue recommend"], results["implicit recommend (cpu)"]
    agree = np.mean([len(set(a.tolist()) & set(b.tolist())) / args.k for a, b in zip(ours, theirs)])
    print(f"  (dcue and implicit agree on {agree:.4%} of the top-{args.k} items)")
    ours_rate = rate["dcue recommend"]
    print(f"dcue / implicit: {ours_rate / rate['implicit recommend (cpu)']:.2f}x;  dcue / numpy floor: "
          f"{ours_rate / rate['floor: numpy matmul + argpartition']:.2f}x;  dcue / matmul+topk floor: "
          f"{ours_rate / rate['floor: matmul + torch.topk']:.2f}x  (>1: dcue is faster)")
    if args.ann:
        try:
            import faiss  # noqa: F401
        except ImportError:
            print("ANN: faiss is not installed (pip install faiss-cpu)")
            return
        build, t, recall = run_ann(users, items, played, args.k, ours, args.nlist, args.nprobe)
        print(f"ANN faiss IVF-Flat (nlist {args.nlist}, nprobe {args.nprobe}): build {build:.1f} s; "
              f"{args.sample / t:,.0f} users/s ({ours_rate and (args.sample / t) / ours_rate:.1f}x exact dcue); "
              f"recall@{args.k} vs exact {recall:.3f}; peak RSS {peak_mb():,.0f} MB")


if __name__ == "__main__":
    main()
