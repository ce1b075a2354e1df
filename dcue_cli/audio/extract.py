"""`extract_many`: the Outcome of every file, in input order, on the CPU or a torch device.

device 'cpu': all in the worker processes (`dcue_cli.audio.pool`); otherwise the workers
decode and the parent computes the STFT and mel on the torch device (`TorchMel`), a batch of
clips at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

from dcue_cli.audio.clip import DEFAULT_CHECKS, Outcome, stored_outcome
from dcue_cli.audio.decode import AudioError, ClipChecks
from dcue_cli.audio.logmel import FeatureConfig, TorchMel
from dcue_cli.audio.pool import WorkerSettings, ordered_outcomes


def extract_many(paths, config: FeatureConfig, *, jobs=1, checks: ClipChecks = DEFAULT_CHECKS,
                 device="cpu", batch_size=16, quiet_decoders=True,
                 crash_test_name: str | None = None) -> Iterator[Outcome]:
    """Outcome for each path, in order. jobs: worker processes (0: in this process).

    device 'cpu': all in the workers; otherwise the workers decode and the parent computes the
    STFT and mel on the torch device, `batch_size` clips at a time. quiet_decoders: silence the
    decoders' own chatter on the workers' stderr. crash_test_name: tests only (WorkerSettings).
    """
    settings = WorkerSettings(config, checks, device != "cpu", quiet_decoders, crash_test_name)
    if device == "cpu":
        yield from ordered_outcomes(paths, jobs, settings)
        return
    torch_mel = TorchMel(config, "cpu" if device == "cpu-torch" else device)
    held = []  # outcomes in order, waveforms awaiting the next batch
    waiting = 0
    for outcome in ordered_outcomes(paths, jobs, settings):
        held.append(outcome)
        waiting += outcome.mel is not None
        if waiting >= batch_size:
            yield from _features_of(held, torch_mel, config)
            held, waiting = [], 0
    yield from _features_of(held, torch_mel, config)


def _features_of(held: list, torch_mel: TorchMel, config: FeatureConfig) -> list:
    """The outcomes `held` (waveforms, or failures) with each waveform replaced by its features."""
    done = list(held)
    indices = [k for k, o in enumerate(done) if o.mel is not None]
    mels = torch_mel([done[k].mel for k in indices])
    for k, mel in zip(indices, mels):
        try:
            done[k] = stored_outcome(mel, done[k].seconds, config)
        except AudioError as exc:
            done[k] = Outcome(None, done[k].seconds, str(exc))
    return done
