"""`dcue subset` on a Taste-Profile-shaped file: rows/s and peak memory beside the I/O floor.

Generates (once, cached in --workdir) a TSV with the shape of the MSD Taste Profile
train_triplets.txt (48,373,586 rows, 1,019,318 users, 384,546 songs; power-law users and
songs; user-grouped lines, 40-hex user ids, 18-character song ids), then measures in the
same run:
  - the I/O floor: `wc -l` over the same file (reading it once);
  - `dcue subset FILE -o OUT --songs 10000 --users 20000` as a subprocess, with its peak RSS.
Targets (issue 2): at most 90 s and under 3 GB peak on 2 cores for the full file.

    python benchmarks/subset_bench.py                 # full size (~2.9 GB file, a few minutes)
    python benchmarks/subset_bench.py --rows 5000000  # quicker, proportionally scaled
"""

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np

FULL_ROWS, FULL_USERS, FULL_SONGS = 48_373_586, 1_019_318, 384_546
HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
ALNUM = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", np.uint8)


def _ids(n, width, alphabet, prefix, rng):
    body = alphabet[rng.integers(0, len(alphabet), (n, width - len(prefix)))]
    head = np.tile(np.frombuffer(prefix, np.uint8), (n, 1))
    return np.concatenate([head, body], axis=1)


def generate(path, rows, n_users, n_songs, seed=0):
    rng = np.random.default_rng(seed)
    users = _ids(n_users, 40, HEX, b"", rng)
    songs = _ids(n_songs, 18, ALNUM, b"SO", rng)
    # Power-law song popularity and user activity, as in the Taste Profile.
    song_p = 1.0 / np.arange(1, n_songs + 1) ** 0.9
    song_p /= song_p.sum()
    activity = rng.pareto(1.5, n_users) + 1
    per_user = np.maximum(1, np.round(activity / activity.sum() * rows)).astype(np.int64)
    per_user[-1] += rows - per_user.sum()
    per_user = np.maximum(per_user, 1)
    tmp = path + ".tmp"
    with open(tmp, "wb") as out:
        user_of_row = np.repeat(np.arange(n_users), per_user)[:rows]
        step = 2_000_000
        for start in range(0, len(user_of_row), step):
            u = user_of_row[start:start + step]
            s = rng.choice(n_songs, size=len(u), p=song_p)
            counts = np.minimum(999, rng.geometric(0.35, len(u)))
            digits = np.stack([counts // 100, (counts // 10) % 10, counts % 10], axis=1) + ord("0")
            # Strip leading zeros by marking them with a sentinel byte removed afterwards.
            digits[:, 0][counts < 100] = 0
            digits[:, 1][counts < 10] = 0
            line = np.concatenate([users[u], np.full((len(u), 1), 9, np.uint8), songs[s],
                                   np.full((len(u), 1), 9, np.uint8), digits.astype(np.uint8),
                                   np.full((len(u), 1), 10, np.uint8)], axis=1).ravel()
            out.write(line[line != 0].tobytes())
    os.replace(tmp, path)


def timed(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, (peak_kb if peak_kb > before else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=FULL_ROWS)
    ap.add_argument("--workdir", default="/tmp/dcue-subset-bench")
    args = ap.parse_args()
    scale = args.rows / FULL_ROWS
    n_users, n_songs = max(100, int(FULL_USERS * scale)), max(100, int(FULL_SONGS * scale))
    os.makedirs(args.workdir, exist_ok=True)
    path = os.path.join(args.workdir, f"triplets_{args.rows}.tsv")
    if not os.path.exists(path):
        print(f"generating {path} ({args.rows:,} rows) ...", file=sys.stderr)
        generate(path, args.rows, n_users, n_songs)
    size_gb = os.path.getsize(path) / 1e9
    floor_s, _ = timed(["wc", "-l", path])
    dcue = [sys.executable, "-m", "dcue_cli", "-q", "subset", path, "-o", os.path.join(args.workdir, "out"),
            "--songs", "10000", "--users", "20000"]
    cmd_s, peak_kb = timed(dcue)
    peak_gb = peak_kb * 1024 / 1e9
    target_s = 90 * scale
    print(f"dcue subset on {args.rows:,} rows ({size_gb:.2f} GB), {os.cpu_count()} cores")
    print(f"{'figure':<28}{'value':>12}{'reference':>14}{'ratio':>8}")
    print(f"{'wall seconds':<28}{cmd_s:>12.1f}{floor_s:>12.1f} s{cmd_s / floor_s:>8.1f}   (reference: wc -l, the I/O floor)")
    print(f"{'rows per second':<28}{args.rows / cmd_s:>12,.0f}{args.rows / floor_s:>14,.0f}{floor_s / cmd_s:>8.2f}")
    print(f"{'wall seconds vs target':<28}{cmd_s:>12.1f}{target_s:>12.1f} s{cmd_s / target_s:>8.2f}   (target: 90 s for 48 M rows, scaled)")
    print(f"{'peak memory GB vs target':<28}{peak_gb:>12.2f}{3.0 * max(scale, 0.05):>12.2f} GB{peak_gb / (3.0 * max(scale, 0.05)):>8.2f}")


if __name__ == "__main__":
    main()
