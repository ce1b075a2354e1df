"""How sure a figure is: bootstrap means over users and their percentile intervals, and the
paired Wilcoxon signed-rank test between two models' per-user values."""

import numpy as np


def bootstrap_means(values: np.ndarray, n_boot: int = 1000, seed: int = 0, block: int = 100) -> np.ndarray:
    """Means of `values` (n,) or (n, m) over `n_boot` resamples of its rows with replacement.

    Returns (n_boot,) or (n_boot, m). The same seed gives the same resamples for any `values`
    of the same length, so columns bootstrapped together (or separately with one seed) are
    paired: the difference of two columns' means is a paired bootstrap.
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
        b = min(block, n_boot - start)
        dtype = np.int32 if b * n < 2**31 else np.int64
        draws = rng.integers(0, n, size=(b, n), dtype=dtype)
        draws += (np.arange(b, dtype=dtype) * n)[:, None]
        weights = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        out[start:start + b] = weights @ v / n
    return out[:, 0] if one else out


def percentile_interval(samples: np.ndarray, level: float = 0.95):
    """(low, high) percentiles of bootstrap samples along axis 0."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return low, high


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (1.0 when all are zero)."""
    from scipy.stats import wilcoxon

    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    if len(d) == 0 or not np.any(d != 0):
        return 1.0
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
