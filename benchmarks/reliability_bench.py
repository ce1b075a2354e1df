"""Load: peak memory of `dcue melspec` over 10,000 small files and `dcue score` over 200,000 users,
each beside the same command on a tenth of the input, measured in the same run.

Memory that stays flat means the per-item cost is small and constant: the full run's peak
resident memory is close to the tenth's, and the extra memory per added file (or user) is a
few hundred bytes, not a buffer that grows with the input. For each command it prints:
  - peak RSS of the command's own process (getrusage in the process itself, exact) and of its
    largest worker process (melspec), for the full input and for a tenth of it;
  - their ratio, and the extra bytes per added file or user;
  - for score, the size of one dense users x test-songs float64 matrix: what an implementation
    that scored everything at once would need at least;
  - wall time, and files (users) per second, so a slowdown with size shows too.

    python benchmarks/reliability_bench.py                      # ~2 min on 2 idle cores
    python benchmarks/reliability_bench.py --files 2000 --users 40000 --workdir /tmp/rb

Inputs are made once in --workdir (default: a temporary folder, removed afterwards unless
--keep). Timings mean little on a loaded machine: the load average is printed.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# Runs `dcue ARGS` and, at exit, writes this process's peak RSS and its largest waited-for
# child's (the melspec workers) to $DCUE_RSS_OUT, in kB (Linux getrusage units).
WRAPPER = """
import atexit, os, resource, sys
def report():
    with open(os.environ["DCUE_RSS_OUT"], "w") as f:
        f.write(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} "
                f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
atexit.register(report)
sys.argv = ["dcue", *sys.argv[1:]]
from dcue_cli.cli import main
main()
"""


def run_measured(args, workdir: Path):
    """(seconds, own peak RSS bytes, largest child's peak RSS bytes) of `dcue ARGS`."""
    out = workdir / "rss.txt"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               DCUE_RSS_OUT=str(out))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, "-q", *map(str, args)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"dcue {' '.join(map(str, args))} failed:\n{proc.stderr}")
    own, child = (int(x) * 1024 for x in out.read_text().split())
    return seconds, own, child


# ----------------------------------------------------------------------------- inputs


def make_audio(folder: Path, n: int, seed=0):
    """n tiny WAV files (0.3 s, 8 kHz mono, 16 bit: ~5 kB each) under folder/XX/."""
    import soundfile as sf

    if (folder / "done").exists():
        return
    rng = np.random.default_rng(seed)
    t = np.arange(2400) / 8000
    for k in range(n):
        sub = folder / f"{k % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        y = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(sub / f"TR{k:06d}.wav", y.astype(np.float32), 8000, subtype="PCM_16")
    (folder / "done").write_text("")


def audio_list(folder: Path, n: int, path: Path) -> Path:
    files = sorted(folder.glob("*/TR*.wav"))[:n]
    path.write_text("".join(f"{f}\n" for f in files))
    return path


def make_score_inputs(folder: Path, users: int, songs: int, per_user: int, dim=32, seed=0):
    """Plays of `users` users (~per_user songs each, long-tailed), a 70/10/20 song split and an
    embeddings file with a vector for every user and song; the plays also for the first half and
    the first tenth of the users (the references)."""
    from dcue_cli.io.embeddings import Embeddings, write_embeddings

    if (folder / "done").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    song_ids = np.array([f"SO{k:06d}" for k in range(songs)])
    user_ids = np.array([f"{k:08x}{'u' * 12}" for k in range(users)])
    popularity = 1.0 / np.arange(1, songs + 1) ** 0.8
    popularity /= popularity.sum()
    counts = rng.integers(1, 2 * per_user, users)
    rows_u = np.repeat(np.arange(users), counts)
    rows_s = rng.choice(songs, size=len(rows_u), p=popularity)
    plays = rng.geometric(0.4, len(rows_u))
    for name, keep in (("plays.full.tsv", users), ("plays.half.tsv", users // 2), ("plays.tenth.tsv", users // 10)):
        mask = rows_u < keep
        with open(folder / name, "w") as f:
            step = 500_000
            idx = np.flatnonzero(mask)
            for start in range(0, len(idx), step):
                part = idx[start:start + step]
                f.write("".join(f"{u}\t{s}\t{c}\n" for u, s, c in zip(user_ids[rows_u[part]], song_ids[rows_s[part]],
                                                                     plays[part].tolist())))
    split = rng.permutation(songs)
    labels = np.empty(songs, dtype=object)
    labels[split[:int(0.7 * songs)]] = "train"
    labels[split[int(0.7 * songs):int(0.8 * songs)]] = "valid"
    labels[split[int(0.8 * songs):]] = "test"
    (folder / "splits.tsv").write_text("".join(f"{s}\t{l}\n" for s, l in zip(song_ids, labels)))
    write_embeddings(folder / "emb.h5", Embeddings(song_ids.astype(object), rng.standard_normal((songs, dim)),
                                                   user_ids.astype(object), rng.standard_normal((users, dim)),
                                                   source="dcue", similarity="cosine"))
    (folder / "done").write_text("")


# ----------------------------------------------------------------------------- report

READ_PLAYS = """
import resource, sys
from dcue_cli.io.plays import read_plays
plays = read_plays(sys.argv[1], show_progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def plays_reader_peak(path: Path) -> int:
    """Peak RSS (bytes) of a process that only reads the plays file: the reader's own share."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", READ_PLAYS, str(path)], env=env, check=True, capture_output=True,
                         text=True).stdout
    return int(out.split()[-1]) * 1024


def mb(n):
    return n / 2**20


def row(figure, value, reference=None, unit="MB", note=""):
    ref = f"{reference:>11.1f}" if reference is not None else f"{'':>11}"
    ratio = f"{value / reference:>7.2f}x" if reference else f"{'':>8}"
    print(f"{figure:<46}{value:>11.1f}{ref} {unit:<4}{ratio}  {note}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=10_000, help="audio files for melspec (reference: a tenth)")
    ap.add_argument("--users", type=int, default=200_000, help="users for score (reference: a tenth)")
    ap.add_argument("--songs", type=int, default=2_000, help="songs for score (20%% are ranked)")
    ap.add_argument("--per-user", type=int, default=10, help="mean songs per user for score")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="melspec worker processes")
    ap.add_argument("--workdir", type=Path, default=None, help="where the inputs are made (and kept)")
    ap.add_argument("--keep", action="store_true", help="keep a temporary --workdir")
    ap.add_argument("--skip", choices=["melspec", "score"], action="append", default=[])
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dcue-reliability-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = {"tenth": 10, "half": 2, "full": 1}
    try:
        results = {}
        if "melspec" not in args.skip:
            t = time.perf_counter()
            make_audio(workdir / "audio", args.files)
            print(f"(made {args.files:,} files in {time.perf_counter() - t:.0f} s)", file=sys.stderr)
            for label, div in sizes.items():
                listing = audio_list(workdir / "audio", args.files // div, workdir / f"audio.{label}.txt")
                out = workdir / f"mels.{label}.h5"
                shutil.rmtree(f"{out}.partial", ignore_errors=True)
                results[("melspec", label)] = run_measured(
                    ["melspec", listing, "-o", out, "-j", args.jobs, "--min-seconds", 0.2, "--overwrite"], workdir)
        if "score" not in args.skip:
            t = time.perf_counter()
            make_score_inputs(workdir / "score", args.users, args.songs, args.per_user)
            print(f"(made the score inputs in {time.perf_counter() - t:.0f} s)", file=sys.stderr)
            s = workdir / "score"
            for label in sizes:
                plays = s / f"plays.{label}.tsv"
                results[("score", label)] = run_measured(
                    ["score", s / "emb.h5", "--plays", plays, "--splits", s / "splits.tsv", "--threads", 2,
                     "--json"], workdir)
            reader_full = plays_reader_peak(s / "plays.full.tsv")

        load = os.getloadavg()
        print(f"reliability under load: {os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print(f"{'figure':<46}{'value':>11}{'reference':>11} {'':<4}{'ratio':>8}")
        if ("melspec", "full") in results:
            (tf, own_f, kid_f), (_, own_h, _), (tt, own_t, kid_t) = (
                results[("melspec", "full")], results[("melspec", "half")], results[("melspec", "tenth")])
            n, h, m = args.files, args.files // 2, args.files // 10
            row(f"melspec {n:,} files: peak RSS, main process", mb(own_f), mb(own_t),
                note=f"(reference: {m:,} files)")
            row(f"melspec {n:,} files: peak RSS, largest worker", mb(kid_f), mb(kid_t))
            row(f"melspec: added per file, {h:,} -> {n:,}", (own_f - own_h) / (n - h), None, "B",
                note=f"({mb(own_h):.1f} MB at {h:,} files: start-up caches fill by then)")
            row("melspec: files per second", n / tf, m / tt, "/s")
        if ("score", "full") in results:
            (tf, own_f, _), (_, own_h, _), (tt, own_t, _) = (results[("score", "full")], results[("score", "half")],
                                                             results[("score", "tenth")])
            n, h, m = args.users, args.users // 2, args.users // 10
            ranked = round(0.2 * args.songs)
            row(f"score {n:,} users: peak RSS", mb(own_f), mb(own_t), note=f"(reference: {m:,} users)")
            row(f"score: added per user, {h:,} -> {n:,}", (own_f - own_h) / (n - h), None, "B",
                note=f"(~{args.per_user} plays each; mostly the plays reader's blocks filling, see below)")
            row("score: peak RSS beside reading its plays alone", mb(own_f), mb(reader_full),
                note="(reference: read_plays of the same file alone: its 64 MB blocks' temporaries)")
            row(f"score: a dense {n:,} x {ranked:,} float64", mb(n * ranked * 8), mb(own_f),
                note="(never made; reference: the full run's peak)")
            row("score: users per second", n / tf, m / tt, "/s")
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            print(f"(inputs kept in {workdir})", file=sys.stderr)


if __name__ == "__main__":
    main()
