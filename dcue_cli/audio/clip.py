"""One audio file -> its Outcome: decoded, checked, its log-mel computed and stored-dtype.

`compute(path, config)` is the reference: a pure function of the file and the settings.
`process` is what a worker does with each file: every failure becomes an Outcome's reason.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dcue_cli.audio.decode import AudioError, ClipChecks, check_clip, decode
from dcue_cli.audio.logmel import FeatureConfig, log_mel
from dcue_cli.audio.stored import to_stored


class Outcome(NamedTuple):
    """One input's result: the stored-dtype mel, or the reason it was skipped."""

    mel: np.ndarray | None
    seconds: float  # audio seconds used (after --offset, at most --max-seconds)
    reason: str | None = None
    stats: tuple | None = None  # io.mels.item_stats of the mel, computed where the mel was


# Frozen settings: one shared default instance of each is safe.
DEFAULT_CONFIG = FeatureConfig()
DEFAULT_CHECKS = ClipChecks()


def compute(path, config: FeatureConfig = DEFAULT_CONFIG) -> np.ndarray:
    """The log-mel of one audio file as float32 (frames, n_mels): the reference function."""
    y, _, _ = decode(path, config)
    return log_mel(y, config)


def stored_outcome(mel: np.ndarray, seconds: float, config: FeatureConfig) -> Outcome:
    """The mel in its stored dtype, with its statistics: computed by the worker, they cost the
    parent (the one writer, which bounds the speed-up of -j N) nothing."""
    from dcue_cli.io.mels import item_stats

    stored = to_stored(mel, config)
    return Outcome(stored, seconds, None, item_stats(stored))


def process(path, config: FeatureConfig, checks: ClipChecks = DEFAULT_CHECKS, waveform_only=False) -> Outcome:
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
