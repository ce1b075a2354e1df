"""The log-mel spectrogram, exactly as DESIGN.md says, on numpy (`log_mel`) and torch (`TorchMel`).

The STFT uses a periodic Hann window with centred zero padding (librosa's defaults), the mel
filterbank is Slaney's (librosa's default; built here so that neither the parent nor the
workers pay librosa's two-second import), then `log10(1 + 10 * mel)`. The layout is
(frames, n_mels). `FeatureConfig` holds every setting that changes the numbers, and refuses
settings that contradict each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

COMPRESSION = "log10(1+10*mel)"


@dataclass(frozen=True)
class FeatureConfig:
    """Every setting that changes the stored numbers; all are recorded as output attributes.

    Contradicting settings are a ValueError whose message names the options; so are mel bands
    that cover no FFT bin (too many bands for --n-fft), which would be 0 for every input.
    """

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
        if self.top_hz <= self.fmin or self.top_hz > self.sr / 2:
            raise ValueError(f"--fmin {self.fmin:g} / --fmax {self.fmax:g}: need fmin < fmax <= sr/2 "
                             f"({self.sr / 2:g}).")
        if self.hop_length > self.n_fft:
            raise ValueError(f"--hop-length {self.hop_length} is larger than --n-fft {self.n_fft}: "
                             f"frames would skip audio.")
        empty = int((~mel_filterbank(self).any(axis=1)).sum())
        if empty:  # the model would see bands that are 0 for every input
            raise ValueError(f"--n-mels {self.n_mels} with --n-fft {self.n_fft}: {empty} of the {self.n_mels} "
                             f"mel bands fall between two FFT bins ({self.sr / self.n_fft:g} Hz apart) and "
                             f"would always be 0: lower --n-mels or raise --n-fft.")

    @property
    def top_hz(self) -> float:
        return float(self.fmax) if self.fmax else self.sr / 2.0

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def to_attrs(self) -> dict:
        return asdict(self)


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


class MelBank:
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


def mel_bank(config: FeatureConfig) -> MelBank:
    """The MelBank of `config`, built once per process (workers build theirs at start-up)."""
    bank = _BANKS.get(config)
    if bank is None:
        bank = _BANKS[config] = MelBank(config)
    return bank


# ---------------------------------------------------------------------------------------------
# numpy

def log_mel(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(frames, n_mels) float32 log10(1 + 10 * mel magnitude) of mono samples at config.sr."""
    import scipy.fft

    bank = mel_bank(config)
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


# ---------------------------------------------------------------------------------------------
# torch: the same STFT and mel, batched, on any torch device

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
        return [mel[row, :self.n_frames(len(w))] for row, w in enumerate(waveforms)]

    def n_frames(self, n_samples: int) -> int:
        cfg = self.config
        if cfg.center:
            return 1 + n_samples // cfg.hop_length
        return 1 + (max(n_samples, cfg.n_fft) - cfg.n_fft) // cfg.hop_length
