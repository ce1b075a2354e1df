"""Audio file -> log-mel spectrogram, exactly as DESIGN.md says, plus the machinery to do it fast.

`compute(path, config)` is the reference: a pure function of the file and the settings.
Decoding is libsndfile's (through soundfile), resampling soxr's "HQ" quality (librosa's
default), the STFT a periodic Hann window with centred zero padding (librosa's defaults),
the mel filterbank Slaney's (librosa's default; built here so that neither the parent nor the
workers pay librosa's two-second import), then `log10(1 + 10 * mel)`. The layout is
(frames, n_mels).

`extract_many` runs it over many files in worker processes and yields the results in input
order, so nothing about the output depends on the number of workers. `TorchMel` is the same
STFT and mel on a torch device (`--device cuda`), decoding staying in the CPU workers.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import signal
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import numpy as np

COMPRESSION = "log10(1+10*mel)"

# Extensions a folder scan picks up: what libsndfile reads (MP3 since libsndfile 1.1, Opus in
# Ogg since 1.0.29). A path list may name any file; whatever cannot be decoded is listed as failed.
AUDIO_EXTENSIONS = frozenset({
    "mp3", "ogg", "oga", "opus", "flac", "wav", "wave", "aif", "aiff", "aifc", "au", "snd",
    "caf", "w64", "rf64", "mat", "voc", "htk", "sd2", "nist", "sph", "paf", "pvf", "xi", "wve",
})


@dataclass(frozen=True)
class FeatureConfig:
    """Every setting that changes the stored numbers; all are recorded as output attributes."""

    sr: int = 22050
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float = 0.0  # 0: sr / 2
    max_seconds: float = 30.0  # 0: the whole file
    offset: float = 0.0
    dtype: str = "float16"
    # Fixed by the design; recorded so that a file says how it was made.
    window: str = "hann"
    center: bool = True
    pad_mode: str = "constant"
    power: float = 1.0  # magnitude
    mel_scale: str = "slaney"
    mel_norm: str = "slaney"
    compression: str = COMPRESSION
    resampler: str = "soxr_hq"

    def __post_init__(self):
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"dtype must be float16 or float32, not {self.dtype!r}")
        for name in ("sr", "n_fft", "hop_length", "n_mels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @property
    def top_hz(self) -> float:
        return float(self.fmax) if self.fmax else self.sr / 2.0

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def to_attrs(self) -> dict:
        return asdict(self)

    @classmethod
    def from_attrs(cls, attrs: dict) -> FeatureConfig:
        known = {k: attrs[k] for k in cls.__dataclass_fields__ if k in attrs}
        return replace(cls(), **known)


class Outcome(NamedTuple):
    """One input's result: the stored-dtype mel, or the reason it was skipped."""

    mel: np.ndarray | None
    seconds: float  # audio seconds used (after --offset, at most --max-seconds)
    reason: str | None = None
    stats: tuple | None = None  # io.mels.item_stats of the mel, computed where the mel was


class AudioError(Exception):
    """An input that cannot be used; the message is the reason listed in the failures TSV."""


@dataclass(frozen=True)
class ClipChecks:
    """What makes a decoded clip unusable (not feature settings: they never change the numbers)."""

    min_seconds: float = 1.0
    silence_db: float = -60.0  # peak level (dBFS) below which a clip counts as silent


# ---------------------------------------------------------------------------------------------
# The mel filterbank (Slaney's Auditory Toolbox, as librosa.filters.mel builds it by default)

def _hz_to_mel(hz):
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    log_step = np.log(6.4) / 27.0
    with np.errstate(divide="ignore"):
        logarithmic = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step
    return np.where(hz >= 1000.0, logarithmic, linear)


def _mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), mel * 200.0 / 3.0)


def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """(n_mels, 1 + n_fft/2) float32 triangular filters, area-normalised (Slaney), in Hz bins."""
    fft_hz = np.arange(config.n_bins, dtype=np.float64) * (config.sr / config.n_fft)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(config.fmin), _hz_to_mel(config.top_hz), config.n_mels + 2))
    widths = np.diff(edges)
    distance = edges[:, None] - fft_hz[None, :]  # (n_mels + 2, bins)
    rising = -distance[:-2] / widths[:-1, None]
    falling = distance[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def hann_window(n: int) -> np.ndarray:
    """The periodic Hann window (scipy's get_window('hann', n), i.e. fftbins=True)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


class _MelBank:
    """The filterbank applied band group by band group, skipping its zeros.

    Each triangle covers few FFT bins, so a dense (bins x n_mels) product wastes ~90% of its
    work; multiplying each group of neighbouring bands by only the bins it covers is ~5x faster.
    """

    GROUP = 16

    def __init__(self, config: FeatureConfig):
        self.config = config
        self.window = hann_window(config.n_fft)
        weights = mel_filterbank(config)
        self.groups = []
        for start in range(0, config.n_mels, self.GROUP):
            block = weights[start:start + self.GROUP]
            used = np.flatnonzero(block.any(axis=0))
            lo, hi = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
            self.groups.append((start, start + len(block), lo, hi, np.ascontiguousarray(block[:, lo:hi].T)))

    def apply(self, magnitude: np.ndarray) -> np.ndarray:
        out = np.empty((magnitude.shape[0], self.config.n_mels), dtype=np.float32)
        for start, stop, lo, hi, weights in self.groups:
            out[:, start:stop] = magnitude[:, lo:hi] @ weights
        return out


_BANKS: dict = {}


def _bank(config: FeatureConfig) -> _MelBank:
    bank = _BANKS.get(config)
    if bank is None:
        bank = _BANKS[config] = _MelBank(config)
    return bank


# ---------------------------------------------------------------------------------------------
# Decoding

def decode(path, config: FeatureConfig) -> tuple:
    """Read `path` as float32 mono at config.sr: (samples, native rate, channels).

    Reads only the --offset/--max-seconds window (seek, then a bounded read, as librosa.load
    does), down-mixes by averaging the channels, resamples with soxr HQ to exactly
    ceil(n * sr / native) samples. Raises AudioError with the reason for anything unusable.
    """
    import soundfile as sf

    path = os.fspath(path)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise AudioError("no such file") from None
    except OSError as exc:
        raise AudioError(f"cannot read: {exc.strerror or exc}") from None
    if os.path.isdir(path):
        raise AudioError("is a folder, not an audio file")
    if size == 0:
        raise AudioError("empty file (0 bytes)")
    try:
        with sf.SoundFile(path) as stream:
            native, channels, total = stream.samplerate, stream.channels, stream.frames
            start = int(config.offset * native)
            if start:
                if 0 < total <= start:
                    raise AudioError(f"nothing after --offset {config.offset:g} s "
                                     f"(the file lasts {total / native:.2f} s)")
                stream.seek(start)
            count = int(config.max_seconds * native) if config.max_seconds else -1
            data = stream.read(frames=count, dtype="float32", always_2d=channels > 1)
    except AudioError:
        raise
    except (RuntimeError, ValueError, TypeError, OSError) as exc:  # libsndfile's errors
        if not os.access(path, os.R_OK):  # libsndfile only says "System error"
            raise AudioError("cannot read: permission denied") from None
        raise AudioError(f"cannot decode: {_libsndfile_reason(exc)}") from None
    if data.shape[0] == 0:
        raise AudioError("no audio samples")
    mono = data if data.ndim == 1 else _downmix(data)
    return _resample(mono, native, config.sr), native, channels


def _downmix(data: np.ndarray) -> np.ndarray:
    # Channel by channel: summing a (frames, channels) array along axis 1 is ~10x slower.
    mono = data[:, 0].copy()
    for channel in range(1, data.shape[1]):
        mono += data[:, channel]
    mono /= np.float32(data.shape[1])
    return mono


def _resample(y: np.ndarray, native: int, target: int) -> np.ndarray:
    if native == target:
        return y
    import soxr

    n_out = math.ceil(len(y) * target / native)
    out = soxr.resample(y, native, target, quality="soxr_hq")
    if len(out) != n_out:  # librosa fixes the length the same way
        out = out[:n_out] if len(out) > n_out else np.pad(out, (0, n_out - len(out)))
    return np.ascontiguousarray(out, dtype=np.float32)


def _libsndfile_reason(exc) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # "Error opening '/long/path.mp3': Format not recognised." -> "Format not recognised."
    if text.startswith("Error opening") and "': " in text:
        text = text.split("': ", 1)[1]
    if "does not exist or is not a regular file" in text:  # what libsndfile says of non-MPEG data in .mp3
        text = "not audio data libsndfile recognises"
    return text.rstrip(".")


def check_clip(y: np.ndarray, config: FeatureConfig, checks: ClipChecks) -> str | None:
    """The reason a decoded clip is unusable, or None."""
    seconds = len(y) / config.sr
    if seconds < checks.min_seconds:
        return f"too short: {seconds:.2f} s < --min-seconds {checks.min_seconds:g}"
    if checks.silence_db > -math.inf:
        peak = max(float(y.max()), -float(y.min())) if len(y) else 0.0
        if not math.isfinite(peak):
            return "non-finite samples (NaN or infinity)"
        if peak <= 0.0 or 20.0 * math.log10(peak) < checks.silence_db:
            level = "-inf" if peak <= 0.0 else f"{20.0 * math.log10(peak):.1f}"
            return f"silent: peak {level} dBFS < --silence-db {checks.silence_db:g}"
    return None


# ---------------------------------------------------------------------------------------------
# Features

def log_mel(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(frames, n_mels) float32 log10(1 + 10 * mel magnitude) of mono samples at config.sr."""
    import scipy.fft

    bank = _bank(config)
    n_fft, hop = config.n_fft, config.hop_length
    pad = n_fft // 2 if config.center else 0
    padded = np.empty(max(len(y) + 2 * pad, n_fft), dtype=np.float32)
    padded[:pad] = 0.0
    padded[pad:pad + len(y)] = y
    padded[pad + len(y):] = 0.0
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]
    magnitude = np.empty((n_frames, config.n_bins), dtype=np.float32)
    block = 128  # frames per FFT batch: keeps the working set in cache
    windowed = np.empty((block, n_fft), dtype=np.float32)
    for start in range(0, n_frames, block):
        rows = frames[start:start + block]
        np.multiply(rows, bank.window, out=windowed[:len(rows)])
        spectrum = scipy.fft.rfft(windowed[:len(rows)], axis=1, workers=1)
        np.abs(spectrum, out=magnitude[start:start + len(rows)])
    return compress(bank.apply(magnitude))


def compress(mel: np.ndarray) -> np.ndarray:
    """log10(1 + 10 * mel), in place."""
    mel *= np.float32(10.0)
    mel += np.float32(1.0)
    return np.log10(mel, out=mel)


def compute(path, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """The log-mel of one audio file as float32 (frames, n_mels): the reference function."""
    y, _, _ = decode(path, config)
    return log_mel(y, config)


def to_stored(mel: np.ndarray, config: FeatureConfig) -> np.ndarray:
    if not mel.size:
        return mel.astype(config.dtype)
    # Features are >= 0, so the maximum is NaN or too large exactly when some value is.
    top = float(mel.max())
    if not top <= float(np.finfo(config.dtype).max):
        raise AudioError("non-finite features (NaN or infinite samples in the file)")
    if config.dtype == "float16" and mel.dtype == np.float32 and float(mel.min()) >= 0.0:
        return float32_to_float16(mel)
    return mel.astype(config.dtype, copy=False)


_HALF_EXPONENT_SHIFT = np.uint32((127 - 15) << 10)  # float32 -> float16 exponent bias, in place
_HALF_SUBNORMAL_MAGIC = np.float32(0.5)  # its float32 ulp is 2**-24, the float16 subnormal step


def float32_to_float16(values: np.ndarray) -> np.ndarray:
    """float32 values in [0, 65504] -> float16, bit for bit what `values.astype(np.float16)` gives.

    numpy converts value by value (slowest on the subnormals that quiet passages produce:
    ~1.3 ms for a 30 s clip, a third of the STFT and mel's time); this is the same rounding
    (to nearest, ties to even) done with integer operations on whole arrays, ~5x faster.
    Normal results: drop 13 mantissa bits with rounding, rebias the exponent. Subnormal results
    (below 2**-14): adding 0.5 makes the FPU round to a multiple of 2**-24 (the float16
    subnormal step), whose count is then the low bits of the sum. Callers check the range.
    """
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    half = (bits >> np.uint32(13)) & np.uint32(1)  # ties go to the even neighbour
    half += bits
    half += np.uint32(0x0FFF)
    half >>= np.uint32(13)
    half -= _HALF_EXPONENT_SHIFT
    subnormal = values < np.float32(2.0 ** -14)
    if subnormal.any():
        shifted = values[subnormal] + _HALF_SUBNORMAL_MAGIC
        half[subnormal] = shifted.view(np.uint32) - _HALF_SUBNORMAL_MAGIC.view(np.uint32)
    return half.astype(np.uint16).view(np.float16)


def stored_outcome(mel: np.ndarray, seconds: float, config: FeatureConfig) -> Outcome:
    """The mel in its stored dtype, with its statistics: computed by the worker, they cost the
    parent (the one writer, which bounds the speed-up of -j N) nothing."""
    from dcue_cli.io.mels import item_stats

    stored = to_stored(mel, config)
    return Outcome(stored, seconds, None, item_stats(stored))


def process(path, config: FeatureConfig, checks: ClipChecks = ClipChecks(), waveform_only=False) -> Outcome:
    """Decode, check and (unless waveform_only) compute one file; failures become an Outcome."""
    try:
        y, _, _ = decode(path, config)
        reason = check_clip(y, config, checks)
        if reason:
            return Outcome(None, len(y) / config.sr, reason)
        if waveform_only:  # the torch path computes the features in the parent
            return Outcome(y, len(y) / config.sr)
        return stored_outcome(log_mel(y, config), len(y) / config.sr, config)
    except AudioError as exc:
        return Outcome(None, 0.0, str(exc))
    except MemoryError:
        return Outcome(None, 0.0, "out of memory decoding it (lower --max-seconds)")


# ---------------------------------------------------------------------------------------------
# Torch: the same STFT and mel, batched, on any torch device

class TorchMel:
    """Batched STFT + mel on a torch device; agrees with `log_mel` within ~1e-5 (float32)."""

    def __init__(self, config: FeatureConfig, device="cpu"):
        import torch

        self.torch = torch
        self.config = config
        self.device = torch.device(device)
        self.window = torch.from_numpy(hann_window(config.n_fft)).to(self.device)
        self.basis = torch.from_numpy(mel_filterbank(config)).to(self.device)  # (n_mels, bins)

    def __call__(self, waveforms) -> list:
        """Mono float32 arrays at config.sr -> list of (frames, n_mels) float32 numpy arrays."""
        torch, cfg = self.torch, self.config
        if not waveforms:
            return []
        longest = max(len(w) for w in waveforms)
        longest = max(longest, 1 if cfg.center else cfg.n_fft)
        batch = np.zeros((len(waveforms), longest), dtype=np.float32)
        for row, w in enumerate(waveforms):
            batch[row, :len(w)] = w  # zeros after the end = the constant padding of the CPU path
        with torch.no_grad():
            signal_ = torch.from_numpy(batch).to(self.device, non_blocking=True)
            spec = torch.stft(signal_, cfg.n_fft, hop_length=cfg.hop_length, window=self.window,
                              center=cfg.center, pad_mode="constant", return_complex=True)
            mel = torch.matmul(self.basis, spec.abs())  # (batch, n_mels, frames)
            mel = torch.log10(1.0 + 10.0 * mel).transpose(1, 2).contiguous().cpu().numpy()
        out = []
        for row, w in enumerate(waveforms):
            n = 1 + len(w) // cfg.hop_length if cfg.center else 1 + (max(len(w), cfg.n_fft) - cfg.n_fft) // cfg.hop_length
            out.append(mel[row, :n])
        return out


# ---------------------------------------------------------------------------------------------
# Many files: worker processes, results in input order

_WORKER: dict = {}
CRASH_TEST_ENV = "DCUE_MELSPEC_TEST_CRASH"  # tests only: a worker given this file name dies
# Files per task sent to a worker: the pool costs the parent ~0.4 ms of CPU per task (pickling,
# its queue threads, wake-ups), as much as writing an item, so tasks carry several files.
BATCH_FILES = 4
# Freed arrays up to this size stay in the worker's heap for the next file (see _reuse_freed_memory).
KEEP_FREED_BYTES = 32 << 20


def _init_worker(config, checks, waveform_only, quiet_decoders):
    # One BLAS thread per worker: the workers already use every core.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    try:
        from threadpoolctl import threadpool_limits

        _WORKER["blas_limit"] = threadpool_limits(1)
    except ImportError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if quiet_decoders:  # mpg123 prints "Note: Illegal Audio-MPEG-Header" etc. straight to fd 2
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    _watch_parent(os.getppid())
    _reuse_freed_memory()
    _WORKER.update(config=config, checks=checks, waveform_only=waveform_only)
    _bank(config)
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
    crash = os.environ.get(CRASH_TEST_ENV)
    outcomes = []
    for path in paths:
        if crash and os.path.basename(path) == crash:
            os.kill(os.getpid(), signal.SIGKILL)
        outcomes.append(process(path, _WORKER["config"], _WORKER["checks"], _WORKER["waveform_only"]))
    return outcomes


class _Pool:
    """A process pool that survives a worker dying (a decoder crash on a hostile file)."""

    def __init__(self, jobs, initargs):
        self.jobs, self.initargs = jobs, initargs
        self.executor = None
        self.start()

    def start(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: workers inherit no open HDF5 handle, lock or thread from the parent.
        self.executor = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init_worker, initargs=self.initargs)

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


def _ordered(paths, jobs, config, checks, waveform_only, quiet_decoders=True) -> Iterator[Outcome]:
    """Outcomes of `paths` in order; at most two tasks in flight per worker (flat memory)."""
    from concurrent.futures.process import BrokenProcessPool

    paths = list(paths)
    if jobs <= 0:  # in-process: for debugging and tiny inputs
        with _one_blas_thread():
            for path in paths:
                yield process(path, config, checks, waveform_only)
        return
    size = max(1, min(BATCH_FILES, len(paths) // (4 * jobs)))  # small inputs: still every worker busy
    batches = iter([paths[k:k + size] for k in range(0, len(paths), size)])
    pool = _Pool(jobs, (config, checks, waveform_only, quiet_decoders))
    window = collections.deque()  # (batch, future), in input order; future None: not submitted
    finished = False
    try:
        while True:
            try:
                while len(window) < 2 * jobs:
                    batch = next(batches, None)
                    if batch is None:
                        break
                    window.append((batch, None))  # first: if submit finds the pool broken, it is retried
                    window[-1] = (batch, pool.submit(batch))
                if not window:
                    finished = True
                    return
                outcomes = window[0][1].result()
            except BrokenProcessPool:
                in_flight = list(window)
                window.clear()
                yield from _after_crash(pool, in_flight)
                continue
            window.popleft()
            yield from outcomes
    finally:
        pool.close(cancel=not finished)


def _after_crash(pool, in_flight) -> Iterator[Outcome]:
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
                outcome = Outcome(None, 0.0, "the decoder crashed on it (worker process died)")
            yield outcome


def extract_many(paths, config: FeatureConfig, *, jobs=1, checks: ClipChecks = ClipChecks(),
                 device="cpu", batch_size=16, quiet_decoders=True) -> Iterator[Outcome]:
    """Outcome for each path, in order. jobs: worker processes (0: in this process).

    device 'cpu': all in the workers; otherwise the workers decode and the parent computes the
    STFT and mel on the torch device, `batch_size` clips at a time. quiet_decoders: silence the
    decoders' own chatter on the workers' stderr.
    """
    if device == "cpu":
        yield from _ordered(paths, jobs, config, checks, False, quiet_decoders)
        return
    torch_mel = TorchMel(config, "cpu" if device == "cpu-torch" else device)
    held = []  # outcomes in order, waveforms awaiting the next batch

    def flush():
        indices = [k for k, o in enumerate(held) if o.mel is not None]
        mels = torch_mel([held[k].mel for k in indices])
        for k, mel in zip(indices, mels):
            try:
                held[k] = stored_outcome(mel, held[k].seconds, config)
            except AudioError as exc:
                held[k] = Outcome(None, held[k].seconds, str(exc))
        done = list(held)
        held.clear()
        return done

    waiting = 0
    for outcome in _ordered(paths, jobs, config, checks, True, quiet_decoders):
        held.append(outcome)
        waiting += outcome.mel is not None
        if waiting >= batch_size:
            yield from flush()
            waiting = 0
    yield from flush()
