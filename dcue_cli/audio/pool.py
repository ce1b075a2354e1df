"""Many files through worker processes, their Outcomes yielded in input order.

Nothing about the output depends on the number of workers: results come back in input order,
at most two tasks in flight per worker (flat memory). A worker that dies (a decoder crash on a
hostile file) is replaced, and only the file that kills it again is listed as failed.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field

from dcue_cli.audio.clip import Outcome, process
from dcue_cli.audio.decode import ClipChecks
from dcue_cli.audio.logmel import FeatureConfig, mel_bank

# Files per task sent to a worker: the pool costs the parent ~0.4 ms of CPU per task (pickling,
# its queue threads, wake-ups), as much as writing an item, so tasks carry several files.
BATCH_FILES = 4
# Freed arrays up to this size stay in the worker's heap for the next file (see _reuse_freed_memory).
KEEP_FREED_BYTES = 32 << 20
CRASHED = "the decoder crashed on it (worker process died)"

_WORKER: dict = {}


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker computes with. crash_test_name: tests only, a worker given a file of
    this base name kills itself (SIGKILL), as a decoder crash would."""

    config: FeatureConfig
    checks: ClipChecks = field(default_factory=ClipChecks)
    waveform_only: bool = False
    quiet_decoders: bool = True
    crash_test_name: str | None = None


def init_worker(settings: WorkerSettings):
    """Start-up of a worker process (public for benchmarks/melspec_bench.py, which times one)."""
    # One BLAS thread per worker: the workers already use every core.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    try:
        from threadpoolctl import threadpool_limits

        _WORKER["blas_limit"] = threadpool_limits(1)
    except ImportError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if settings.quiet_decoders:  # mpg123 prints "Note: Illegal Audio-MPEG-Header" etc. straight to fd 2
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    _watch_parent(os.getppid())
    _reuse_freed_memory()
    _WORKER["settings"] = settings
    mel_bank(settings.config)
    import scipy.fft  # noqa: F401  (imported now, not inside the first file's timing)
    import soundfile  # noqa: F401
    import soxr  # noqa: F401


def _reuse_freed_memory():
    """Keep freed multi-megabyte arrays in the heap for the next file (glibc only; else nothing).

    By default glibc maps fresh pages for each array over 128 KiB and unmaps them when it is
    freed, so every file paid for faulting them in again (~100-170 page faults, ~0.3 ms of
    system time a 30 s clip); a worker's arrays have the same sizes file after file.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, KEEP_FREED_BYTES)
    mallopt(m_trim_threshold, 4 * KEEP_FREED_BYTES)


def _watch_parent(parent: int):
    """Exit when the parent dies (even by kill -9), instead of lingering as an orphan."""
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="dcue-parent-watch").start()


def _work(paths) -> list:
    """Outcomes of one task's files, in order."""
    settings = _WORKER["settings"]
    outcomes = []
    for path in paths:
        if settings.crash_test_name and os.path.basename(path) == settings.crash_test_name:
            os.kill(os.getpid(), signal.SIGKILL)
        outcomes.append(process(path, settings.config, settings.checks, settings.waveform_only))
    return outcomes


class _Pool:
    """A process pool that survives a worker dying (a decoder crash on a hostile file)."""

    def __init__(self, jobs, settings: WorkerSettings):
        self.jobs, self.settings = jobs, settings
        self.executor = None
        self.start()

    def start(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: workers inherit no open HDF5 handle, lock or thread from the parent.
        self.executor = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=init_worker, initargs=(self.settings,))

    def restart(self):
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.start()

    def submit(self, paths):
        return self.executor.submit(_work, paths)

    def close(self, cancel=False):
        if self.executor is not None:
            self.executor.shutdown(wait=not cancel, cancel_futures=cancel)
            self.executor = None


@contextlib.contextmanager
def _one_blas_thread():
    """BLAS on one thread while features are computed in this process (-j 0).

    The mel product is small: split over OpenBLAS threads while another process used the
    other core, it took 30 ms a file instead of 0.4 ms.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def ordered_outcomes(paths, jobs: int, settings: WorkerSettings) -> Iterator[Outcome]:
    """Outcomes of `paths` in order; jobs: worker processes (0: in this process, for debugging
    and tiny inputs; the crash test hook applies to workers only)."""
    paths = list(paths)
    if jobs <= 0:
        with _one_blas_thread():
            for path in paths:
                yield process(path, settings.config, settings.checks, settings.waveform_only)
        return
    size = max(1, min(BATCH_FILES, len(paths) // (4 * jobs)))  # small inputs: still every worker busy
    batches = iter([paths[k:k + size] for k in range(0, len(paths), size)])
    pool = _Pool(jobs, settings)
    finished = False
    try:
        yield from _in_order(pool, batches, 2 * jobs)
        finished = True
    finally:
        pool.close(cancel=not finished)


def _in_order(pool: _Pool, batches, in_flight: int) -> Iterator[Outcome]:
    """The batches' outcomes in order, at most `in_flight` tasks submitted at a time."""
    from concurrent.futures.process import BrokenProcessPool

    window = collections.deque()  # (batch, future), in input order; future None: not submitted
    while True:
        try:
            while len(window) < in_flight:
                batch = next(batches, None)
                if batch is None:
                    break
                window.append((batch, None))  # first: if submit finds the pool broken, it is retried
                window[-1] = (batch, pool.submit(batch))
            if not window:
                return
            outcomes = window[0][1].result()
        except BrokenProcessPool:
            crashed = list(window)
            window.clear()
            yield from _after_crash(pool, crashed)
            continue
        window.popleft()
        yield from outcomes


def _after_crash(pool: _Pool, in_flight) -> Iterator[Outcome]:
    """Outcomes of the tasks that were in flight when a worker died, in order.

    Which file killed it is unknown: tasks that had finished keep their results, and the files
    of the others are computed again one per task, so that the file that kills its worker
    again is listed as failed, and only that one.
    """
    from concurrent.futures.process import BrokenProcessPool

    pool.restart()
    for batch, future in in_flight:
        if future is not None and future.done() and not future.cancelled() and future.exception() is None:
            yield from future.result()
            continue
        for path in batch:
            try:
                outcome = pool.submit([path]).result()[0]
            except BrokenProcessPool:
                pool.restart()
                outcome = Outcome(None, 0.0, CRASHED)
            yield outcome
