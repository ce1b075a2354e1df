"""How sure a figure is: bootstrap means over users and their percentile intervals, and the
paired Wilcoxon signed-rank test between two models' per-user values."""

import numpy as np

# The resamples are drawn in blocks of at most ~4 M draws, so the users cost no memory; what
# grows with --bootstrap is the (resamples, columns) float64 result and the time, one draw per
# user and resample (~15 M draws a second on one core).
MAX_DRAWS = 10**11  # resamples x users: about two hours at that rate
BYTES_PER_RESAMPLE_COLUMN = 8  # float64


def check_bootstrap(n_boot: int, n_users: int, n_columns: int) -> None:
    """An OptionError (exit 2) naming the largest --bootstrap that fits, when `n_boot` resamples of
    `n_users` users and `n_columns` figures (models x metrics) need more memory than is free, or
    more than MAX_DRAWS draws (hours)."""
    from dcue_cli.errors import OptionError
    from dcue_cli.runtime import available_memory

    # the result, and one column's copy and difference while its interval is computed
    per_resample = BYTES_PER_RESAMPLE_COLUMN * (n_columns + 2)
    free = available_memory() // 2  # the rest of the run needs memory too
    if n_boot * per_resample > free:
        raise OptionError(f"--bootstrap {n_boot:,}: {n_boot:,} resamples of {n_columns} figures (models x "
                          f"metrics) need {n_boot * per_resample / 1e9:.1f} GB, more than half the "
                          f"{2 * free / 1e9:.1f} GB of memory free now: give --bootstrap {free // per_resample:,} "
                          "or fewer.")
    if n_boot * max(n_users, 1) > MAX_DRAWS:
        raise OptionError(f"--bootstrap {n_boot:,}: {n_boot:,} resamples of {n_users:,} users are "
                          f"{n_boot * n_users:.1e} random draws, hours of work: give --bootstrap "
                          f"{MAX_DRAWS // n_users:,} or fewer (1,000 to 10,000 is usual).")


def bootstrap_means(values: np.ndarray, n_boot: int = 1000, seed: int = 0, block: int = 100,
                    stop=None) -> np.ndarray:
    """Means of `values` (n,) or (n, m) over `n_boot` resamples of its rows with replacement.

    Returns (n_boot,) or (n_boot, m). The same seed gives the same resamples for any `values`
    of the same length, so columns bootstrapped together (or separately with one seed) are
    paired: the difference of two columns' means is a paired bootstrap. `stop`: a StopSignals,
    checked between blocks of resamples.
    """
    values = np.asarray(values, dtype=np.float64)
    one = values.ndim == 1
    v = values[:, None] if one else values
    n = len(v)
    if n == 0:
        out = np.full((n_boot, v.shape[1]), np.nan)
        return out[:, 0] if one else out
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, v.shape[1]))
    # At most ~4 M draws at once (~100 MB of temporaries), however many users: memory stays flat.
    # The draws do not depend on the block size, only the last bits of the float sums may.
    block = max(1, min(block, (1 << 22) // n))
    for start in range(0, n_boot, block):
        if stop is not None:
            stop.check()
        b = min(block, n_boot - start)
        dtype = np.int32 if b * n < 2**31 else np.int64
        draws = rng.integers(0, n, size=(b, n), dtype=dtype)
        draws += (np.arange(b, dtype=dtype) * n)[:, None]
        weights = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        out[start:start + b] = weights @ v / n
    return out[:, 0] if one else out


def percentile_interval(samples: np.ndarray, level: float = 0.95):
    """(low, high) percentiles of bootstrap samples along axis 0, a column at a time (a copy of
    one column at most, however many there are)."""
    if samples.ndim == 1:
        return _interval(samples, level)
    return _columns([_interval(samples[:, c], level) for c in range(samples.shape[1])])


def paired_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95):
    """`percentile_interval(a - b)` for (n_boot, m) samples, without the whole difference at once."""
    return _columns([_interval(a[:, c] - b[:, c], level) for c in range(a.shape[1])])


def _interval(column: np.ndarray, level: float):
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(column, [tail, 100 - tail])
    return low, high


def _columns(pairs: list):
    both = np.array(pairs, dtype=np.float64).reshape(len(pairs), 2)
    return both[:, 0], both[:, 1]


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (1.0 when all are zero)."""
    from scipy.stats import wilcoxon

    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    if len(d) == 0 or not np.any(d != 0):
        return 1.0
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
