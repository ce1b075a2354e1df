"""Decoding: an audio file -> mono float32 samples at the configured rate, and the clip checks.

Decoding is libsndfile's (through soundfile), reading only the --offset/--max-seconds window;
channels are averaged; resampling is soxr's "HQ" quality (librosa's default), to exactly
ceil(n * sr / native) samples. Anything unusable raises `AudioError` with the reason that the
failures TSV lists; `check_clip` says why a decoded clip is unusable (too short, NaN, samples
beyond ±MAX_AMPLITUDE, silent).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

# Extensions a folder scan picks up: what libsndfile reads (MP3 since libsndfile 1.1, Opus in
# Ogg since 1.0.29). A path list may name any file; whatever cannot be decoded is listed as failed.
AUDIO_EXTENSIONS = frozenset({
    "mp3", "ogg", "oga", "opus", "flac", "wav", "wave", "aif", "aiff", "aifc", "au", "snd",
    "caf", "w64", "rf64", "mat", "voc", "htk", "sd2", "nist", "sph", "paf", "pvf", "xi", "wve",
})


# The largest |sample| a clip may hold. Integer formats decode to [-1, 1] and lossy codecs
# overshoot full scale by a few dB at most; a float file may hold anything, and one clip of 1e30
# would pass every other check and shift the whole dataset's mean and std.
MAX_AMPLITUDE = 1e3


class AudioError(Exception):
    """An input that cannot be used; the message is the reason listed in the failures TSV."""


@dataclass(frozen=True)
class ClipChecks:
    """What makes a decoded clip unusable (not feature settings: they never change the numbers)."""

    min_seconds: float = 1.0
    silence_db: float = -60.0  # peak level (dBFS) below which a clip counts as silent


def decode(path, config) -> tuple:
    """Read `path` as float32 mono at config.sr: (samples, native rate, channels).

    config: a FeatureConfig (sr, offset, max_seconds). Reads only the --offset/--max-seconds
    window (seek, then a bounded read, as librosa.load does), down-mixes by averaging the
    channels, resamples with soxr HQ. Raises AudioError with the reason for anything unusable.
    """
    path = os.fspath(path)
    _check_file(path)
    data, native, channels = _read_window(path, config)
    if data.shape[0] == 0:
        raise AudioError("no audio samples")
    mono = data if data.ndim == 1 else _downmix(data)
    return _resample(mono, native, config.sr), native, channels


def _check_file(path: str):
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


def _read_window(path: str, config) -> tuple:
    """(samples as float32, 1-D for mono, native rate, channels) of the configured window."""
    import soundfile as sf

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
    return data, native, channels


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
    from dcue_cli.errors import first_line

    text = first_line(exc)
    # "Error opening '/long/path.mp3': Format not recognised." -> "Format not recognised."
    if text.startswith("Error opening") and "': " in text:
        text = text.split("': ", 1)[1]
    if "does not exist or is not a regular file" in text:  # what libsndfile says of non-MPEG data in .mp3
        text = "not audio data libsndfile recognises"
    return text.rstrip(".")


def check_clip(y: np.ndarray, config, checks: ClipChecks) -> str | None:
    """The reason a decoded clip (mono samples at config.sr) is unusable, or None."""
    seconds = len(y) / config.sr
    if seconds < checks.min_seconds:
        return f"too short: {seconds:.2f} s < --min-seconds {checks.min_seconds:g}"
    peak = max(float(y.max()), -float(y.min())) if len(y) else 0.0
    if not math.isfinite(peak):
        return "non-finite samples (NaN or infinity)"
    if peak > MAX_AMPLITUDE:
        return (f"amplitude {peak:.3g} out of range (samples beyond +-{MAX_AMPLITUDE:g}, "
                f"{20.0 * math.log10(MAX_AMPLITUDE):.0f} dB over full scale: a float file with unscaled samples)")
    if checks.silence_db > -math.inf and (peak <= 0.0 or 20.0 * math.log10(peak) < checks.silence_db):
        level = "-inf" if peak <= 0.0 else f"{20.0 * math.log10(peak):.1f}"
        return f"silent: peak {level} dBFS < --silence-db {checks.silence_db:g}"
    return None
