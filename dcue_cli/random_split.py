"""The one seeded random train/valid/test split of a set of ids, and the one `--split` parser.

`dcue subset` splits songs with it; `dcue autotag` splits tagged items with it when no splits
file is given. The split depends only on the set of ids, the fractions and the seed.
"""

import math

import numpy as np

from dcue_cli.errors import OptionError


def parse_fractions(text: str, *, allow_zero: bool = True, option: str = "--split") -> tuple:
    """'0.7,0.1,0.2' -> (0.7, 0.1, 0.2): three finite train, valid, test fractions summing to 1.

    Each must be >= 0 (> 0 with `allow_zero=False`, for a job that needs all three parts).
    """
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    sign_ok = all(p >= 0 if allow_zero else p > 0 for p in parts)
    if len(parts) != 3 or not all(map(math.isfinite, parts)) or not sign_ok or abs(sum(parts) - 1) > 1e-6:
        kind = "non-negative" if allow_zero else "positive"
        raise OptionError(f"{option} {text!r}: give three {kind} fractions for train,valid,test "
                        "that sum to 1, e.g. 0.7,0.1,0.2.")
    return parts


def split_ids(ids, fractions=(0.7, 0.1, 0.2), seed: int = 0) -> dict:
    """Split ids at random into train/valid/test: {id: split} in sorted id order, seeded.

    The ids are sorted (as text) before shuffling, so the split depends only on the set of ids:
    round(fractions[0] * n) train, round(fractions[1] * n) valid, the rest test.
    """
    ids = np.array(sorted(str(s) for s in ids), dtype=object)
    perm = np.random.default_rng(seed).permutation(len(ids))
    n_train = round(fractions[0] * len(ids))
    n_valid = round(fractions[1] * len(ids))
    labels = np.empty(len(ids), dtype=object)
    labels[perm[:n_train]] = "train"
    labels[perm[n_train:n_train + n_valid]] = "valid"
    labels[perm[n_train + n_valid:]] = "test"
    return dict(zip(ids, labels))
