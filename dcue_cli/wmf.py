"""Weighted matrix factorisation (Hu, Koren & Volinsky 2008) through `implicit`'s ALS: `run_wmf`
for `dcue wmf` (plays in, an embeddings file out), `fit_wmf` for a matrix.

Each observed play count c becomes a preference 1 with confidence
    linear: 1 + alpha * c            log: 1 + alpha * log(1 + c / epsilon)
and unobserved pairs preference 0 with confidence 1. `implicit` (0.7) takes the confidence
matrix itself (it treats the stored values as C_ui), so the confidences are computed here and
implicit's own `alpha` stays 1.

The CPU or GPU is chosen in one place, `dcue_cli.runtime.implicit_device`; implicit's warnings (the OpenBLAS
thread-pool advice, its progress bar) are handled here so that a user sees only our log.
"""

import os
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.runtime import check_memory, implicit_device, usable_cores

CONFIDENCES = ("linear", "log")


@dataclass
class WmfConfig:
    factors: int = 100
    regularization: float = 0.01
    iterations: int = 15
    alpha: float = 40.0
    confidence: str = "linear"
    epsilon: float = 1.0
    seed: int = 0
    threads: int | None = None  # CPU threads (None: all usable cores)
    device: str = "auto"  # auto, cpu, cuda, cuda:0

    def check(self) -> None:
        """Refuse settings ALS cannot fit with, in the words of the options that set them."""
        if self.confidence not in CONFIDENCES:
            raise DcueError(f"--confidence {self.confidence!r}: use linear or log.")
        for name in ("factors", "iterations"):
            if getattr(self, name) < 1:
                raise DcueError(f"--{name} {getattr(self, name)}: give a positive integer.")
        values = (self.alpha, self.regularization, self.epsilon)
        if not all(np.isfinite(values)) or self.alpha <= 0 or self.regularization < 0 or self.epsilon <= 0:
            raise DcueError("--alpha and --epsilon must be positive and --regularization non-negative "
                            "(finite numbers all).")

    def diverged(self) -> DcueError:
        """What to change when ALS gave non-finite factors."""
        return DcueError(f"WMF diverged (non-finite factors with --alpha {self.alpha:g} and --regularization "
                         f"{self.regularization:g}): give a smaller --alpha (default 40) or a --regularization "
                         "nearer the default 0.01.")

    def attrs(self) -> dict:
        """The hyperparameters as HDF5 attributes (threads and device are run details, kept too)."""
        out = {f"wmf_{k}" if k in ("threads", "device") else k: v for k, v in asdict(self).items()}
        return {k: v for k, v in out.items() if v is not None}


def confidence(counts: np.ndarray, alpha: float, kind: str = "linear", epsilon: float = 1.0) -> np.ndarray:
    """C = 1 + alpha * c (linear) or 1 + alpha * log(1 + c / epsilon) (log), as float32."""
    counts = np.asarray(counts, dtype=np.float64)
    if kind == "linear":
        conf = 1.0 + alpha * counts
    elif kind == "log":
        conf = 1.0 + alpha * np.log1p(counts / epsilon)
    else:
        raise ValueError(f"confidence must be one of {CONFIDENCES}, not {kind!r}")
    return conf.astype(np.float32)


def fit_wmf(counts, config: WmfConfig | None = None, show_progress: bool = True):
    """Fit WMF to a users x items sparse matrix of play counts.

    Returns (user_factors (U, f) float32, item_factors (I, f) float32, info dict with the
    device, threads and seconds). The same seed gives the same factors.
    """
    import scipy.sparse as sp
    from threadpoolctl import threadpool_limits

    config = config or WmfConfig()
    config.check()
    matrix = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    if matrix.nnz == 0:
        raise DcueError("there are no plays to fit WMF to.")
    with np.errstate(over="ignore"):  # an overflow is named below, in the words of the options
        matrix.data = confidence(matrix.data, config.alpha, config.confidence, config.epsilon)
    if not np.isfinite(matrix.data).all():  # alpha x count beyond float32
        raise config.diverged()

    users, items = matrix.shape
    # implicit's solver holds the factors, their copies, and factors x factors matrices
    check_memory(4 * config.factors * (2 * (users + items) + 2 * config.factors),
                 f"--factors {config.factors} for {users:,} users and {items:,} items", "lower --factors")
    device = implicit_device(config.device)
    threads = config.threads or usable_cores()
    log.info("fitting WMF on the %s: %s users x %s items, %s plays; %d factors, %d iterations, "
             "regularization %g, confidence %s (alpha %g%s)",
             "GPU (implicit CUDA)" if device == "gpu" else f"CPU ({threads} thread{'s' * (threads > 1)})",
             f"{matrix.shape[0]:,}", f"{matrix.shape[1]:,}", f"{matrix.nnz:,}", config.factors, config.iterations,
             config.regularization, config.confidence, config.alpha,
             f", epsilon {config.epsilon:g}" if config.confidence == "log" else "")
    start = time.perf_counter()
    bar = log.progress(total=config.iterations, desc="WMF (ALS)", unit=" iterations", disable=not show_progress)
    # implicit's ALS parallelises over users itself; a multi-threaded BLAS underneath only fights
    # it (implicit warns about exactly that): BLAS gets one thread while fitting.
    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if device == "gpu":
            from implicit.gpu.als import AlternatingLeastSquares

            model = AlternatingLeastSquares(factors=config.factors, regularization=config.regularization,
                                            alpha=1.0, iterations=config.iterations, random_state=config.seed)
        else:
            from implicit.cpu.als import AlternatingLeastSquares

            model = AlternatingLeastSquares(factors=config.factors, regularization=config.regularization,
                                            alpha=1.0, iterations=config.iterations, num_threads=threads,
                                            random_state=config.seed)
        try:
            model.fit(matrix, show_progress=False, callback=lambda *args: bar.update(1))
        except Exception as exc:
            if type(exc).__name__ == "ModelFitError":  # implicit's "NaN encountered in factors"
                raise config.diverged() from None
            raise
        finally:
            bar.close()
    if device == "gpu":
        model = model.to_cpu()
    users = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    if not (np.isfinite(users).all() and np.isfinite(items).all()):
        raise config.diverged()
    seconds = time.perf_counter() - start
    return users, items, {"device": device, "threads": threads if device == "cpu" else None, "seconds": seconds}


def select_items_for_fit(plays, splits: dict | None, fit_on: str):
    """The plays WMF is fitted on: all of them, or only those of the train songs.

    Returns (plays, note) where note says what was left out (for the log).
    """
    if splits is None or fit_on == "all":
        return plays, ""
    split_of = np.array([splits.get(i, "") for i in plays.item_ids], dtype=object)
    is_train = split_of == "train"
    if not is_train.any():
        raise DcueError("--fit-on train: no song of the plays is in the train split of --splits: give the "
                        "plays and splits written together by `dcue subset`.")
    unknown = int((split_of == "").sum())
    kept = plays.select(is_train[plays.items])
    note = (f"--fit-on train: {kept.n_items:,} train songs kept; {plays.n_items - kept.n_items:,} other songs "
            f"left out ({unknown:,} of them not in --splits); "
            f"{plays.n_users - kept.n_users:,} users left without plays")
    return kept, note


@dataclass
class WmfRun:
    """What `run_wmf` fitted and wrote, for the line the command prints."""

    output: str
    n_users: int
    n_items: int
    factors: int
    device: str  # "cpu" or "gpu"
    seconds: float  # the fit alone


def run_wmf(plays_path, output, config: WmfConfig, *, splits=None, fit_on: str | None = None,
            columns=(0, 1, 2), header: bool | None = None, skip_bad: bool = False,
            show_progress: bool = True) -> WmfRun:
    """`dcue wmf`: read PLAYS (and --splits), fit WMF, write the embeddings contract to `output`."""
    from dcue_cli.io.atomic import (
        check_output_path,
        refuse_inputs_as_outputs,
        refuse_replacing_other_kind,
    )
    from dcue_cli.io.embeddings import Embeddings, is_embeddings_file, write_embeddings
    from dcue_cli.io.plays import read_plays
    from dcue_cli.io.splits import read_splits

    config.check()
    check_output_path(output, "embeddings")  # before the fit, not after
    refuse_inputs_as_outputs({"-o": output}, {"PLAYS": plays_path, "--splits": splits})
    refuse_replacing_other_kind(output, "an embeddings file", is_embeddings_file)
    data = read_plays(plays_path, columns=columns, header=header, skip_bad=skip_bad)
    split_map = read_splits(splits) if splits else None
    data, note = select_items_for_fit(data, split_map, fit_on or "all")
    if note:
        log.info(note)
    user_factors, item_factors, info = fit_wmf(data.to_csr(), config, show_progress=show_progress)
    attrs = dict(config.attrs(), name="WMF", fit_on=fit_on or "all", plays=os.path.basename(str(plays_path)),
                 splits=os.path.basename(splits) if splits else None, n_users=data.n_users, n_items=data.n_items,
                 n_plays=len(data), wmf_device=info["device"], wmf_threads=info["threads"],
                 implicit_version=implicit_version())
    write_embeddings(output, Embeddings(data.item_ids, item_factors, data.user_ids, user_factors,
                                        source="wmf", similarity="dot", attrs=attrs))
    return WmfRun(str(output), data.n_users, data.n_items, config.factors, info["device"], info["seconds"])


def implicit_version() -> str:
    """The installed `implicit` version (an attribute of every WMF embeddings file)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("implicit")
    except PackageNotFoundError:
        return "unknown"
