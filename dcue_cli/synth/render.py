"""Rendering: one song's style vector -> a float32 mono signal in [-1, 1].

Each style dimension drives one musical attribute through a monotone map (`style_parameters`);
the song's own random stream adds the melody, chords, rhythm details and drum noise. A song
is a melody (a motif on a major or minor scale, with vibrato and tremolo) over chords, plus
drums whose level is the percussiveness; benchmarks compare across versions, so every draw
and every float operation here is kept in order.
"""

import numpy as np

from dcue_cli.synth.world import STYLE_DIMS


def sigmoid_cdf(z):
    """A monotone map from N(0, 1) to (0, 1), close to the normal CDF (so roughly uniform)."""
    return 1.0 / (1.0 + np.exp(-1.702 * np.asarray(z, dtype=np.float64)))


def style_parameters(style_row) -> dict:
    """The musical parameters one song's style vector sets (each monotone in one dimension)."""
    p = dict(zip(STYLE_DIMS, sigmoid_cdf(style_row)))
    return {
        "bpm": 70.0 + 110.0 * p["tempo"],
        "centre_midi": 43.0 + 33.0 * p["register"],  # G2 (98 Hz) .. E5 (659 Hz)
        "rolloff": 2.6 - 2.1 * p["brightness"],  # harmonic h has amplitude h^-rolloff
        "drums": p["percussiveness"],
        "major_probability": p["mode"],
        "notes_per_beat": 2.0 ** (-1.0 + 3.0 * p["density"]),  # 0.5 .. 4
        "odd_harmonics": p["timbre"],  # 0: saw-like, 1: square/clarinet-like (even harmonics gone)
        "modulation": p["modulation"],  # vibrato and tremolo depth
    }


_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
_PROGRESSIONS = np.array([[0, 3, 4, 0], [0, 5, 3, 4], [0, 4, 5, 3], [5, 3, 0, 4], [0, 3, 0, 4]])
_N_HARMONICS = 16


def _scale_midi(scale, degrees, centre):
    degrees = np.asarray(degrees)
    return centre + scale[degrees % 7] + 12 * (degrees // 7)


def _midi_hz(midi):
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _segments(seconds_per_segment: float, n: int, sr: int):
    """Split n samples into segments of (rounded) equal length: (count, lengths, starts)."""
    count = int(np.ceil(n / (seconds_per_segment * sr))) + 1
    bounds = np.minimum(np.round(np.arange(count + 1) * seconds_per_segment * sr).astype(np.int64), n)
    return count, np.diff(bounds), bounds[:-1]


def _time_in_segment(lengths, starts, n, sr) -> np.ndarray:
    return ((np.arange(n) - np.repeat(starts, lengths)) * (1.0 / sr)).astype(np.float32)


def _note_envelope(t_in, length, attack, decay, sustain, release):
    """Attack, exponential decay to a sustain level, release before `length` (float32)."""
    env = np.minimum(np.float32(1.0), t_in * np.float32(1.0 / attack))
    env *= np.float32(sustain) + np.float32(1.0 - sustain) * np.exp(t_in * np.float32(-1.0 / decay))
    env *= np.clip((np.float32(length) - t_in) * np.float32(1.0 / release), 0.0, 1.0)
    return env


def _cycles_to_phase(cycles):
    """2*pi times the fractional part: float32 phases stay exact and float32 sines are fast
    (numpy's float64 sine is ~50x slower on large arguments)."""
    cycles = cycles.astype(np.float32, copy=False)
    return (cycles - np.floor(cycles)) * np.float32(2 * np.pi)


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-9


def render_song(style_row, sample_rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Render one song (float32 mono in [-1, 1]) from its style vector; `rng` adds the song's
    own melody, chords, rhythm details and drum noise.

    Every note (and chord) starts its phase afresh under an attack envelope, so each phase is
    frequency x time-in-note: exact in float32 and cheap, with no running phase sum.
    """
    P = style_parameters(style_row)
    sr = int(sample_rate)
    n = round(seconds * sr)
    t = np.arange(n, dtype=np.float32) * np.float32(1.0 / sr)
    beat = 60.0 / P["bpm"]
    is_major = rng.random() < P["major_probability"]
    scale = _MAJOR if is_major else _MINOR
    centre = round(P["centre_midi"])

    melody = _melody(P, scale, centre, beat, t, sr, rng)
    pad = _chords(scale, centre, beat, n, sr, rng)
    voice = melody * np.float32(1.0 / _rms(melody)) + pad * np.float32(0.3 / _rms(pad))
    drums = _drums(beat, seconds, n, sr, rng)
    mix = voice + drums * np.float32(2.0 * P["drums"] ** 1.5 / _rms(drums))

    gain = min(0.1 / _rms(mix), 0.98 / (float(np.max(np.abs(mix))) + 1e-9))
    return (mix * np.float32(gain)).astype(np.float32)


def _melody(P: dict, scale, centre: int, beat: float, t: np.ndarray, sr: int, rng) -> np.ndarray:
    """The melody: a two-bar motif on the scale, repeated with mutations, some rests; with
    vibrato, harmonics by the style's rolloff and timbre, note envelopes and tremolo."""
    n = len(t)
    m = P["modulation"]
    note_len = beat / P["notes_per_beat"]
    n_notes, lengths, starts = _segments(note_len, n, sr)
    motif_len = max(2, round(8 * beat / note_len))
    motif = np.clip(np.cumsum(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3], size=motif_len)), -5, 8)
    degrees = np.resize(motif, n_notes)
    mutate = rng.random(n_notes) < 0.2
    degrees[mutate] = np.clip(degrees[mutate] + rng.integers(-2, 3, size=mutate.sum()), -5, 8)
    velocity = rng.uniform(0.6, 1.0, n_notes) * (rng.random(n_notes) > 0.1)
    note_hz = _midi_hz(_scale_midi(scale, degrees, centre))

    t_in = _time_in_segment(lengths, starts, n, sr)
    # Vibrato as phase modulation: peak deviation 0.6*m semitones at a 4.5-6.5 Hz rate.
    vib_rate = rng.uniform(4.5, 6.5)
    vib_index = np.repeat((note_hz * (2.0 ** (0.6 * m / 12.0) - 1.0) / vib_rate).astype(np.float32), lengths)
    phase = _cycles_to_phase(np.repeat(note_hz.astype(np.float32), lengths) * t_in)
    phase += vib_index * np.sin(_cycles_to_phase(t * np.float32(vib_rate)))
    melody = _harmonics(phase, note_hz * 2.0 ** (0.6 * m / 12.0), lengths, P, 0.45 * sr)
    gain = np.repeat(velocity.astype(np.float32), lengths)
    melody *= gain * _note_envelope(t_in, note_len, 0.008, max(0.04, 0.5 * note_len), 0.2, min(0.04, 0.3 * note_len))
    tremolo_rate = np.float32(rng.uniform(3.0, 7.0))
    melody *= 1.0 - 0.35 * m * (1.0 + np.sin(_cycles_to_phase(t * tremolo_rate)))
    return melody


def _harmonics(phase: np.ndarray, top_hz: np.ndarray, lengths, P: dict, limit: float) -> np.ndarray:
    """The sum of the harmonics of each note (amplitude h^-rolloff, even ones damped by the
    timbre), by the Chebyshev recurrence sin((h+1)x) = 2cos(x)sin(hx) - sin((h-1)x): one
    multiply-add per harmonic instead of a sine; partials above `limit` Hz (at the vibrato's
    highest pitch `top_hz`) are left out."""
    n = len(phase)
    cos2 = np.float32(2.0) * np.cos(phase)
    prev, cur = np.zeros(n, np.float32), np.sin(phase)
    melody = np.zeros(n, np.float32)
    for h in range(1, _N_HARMONICS + 1):
        amp = h ** -P["rolloff"] * ((1.0 - 0.95 * P["odd_harmonics"]) if h % 2 == 0 else 1.0)
        audible = top_hz * h < limit
        if audible.all():
            melody += np.float32(amp) * cur
        elif audible.any():
            melody += np.repeat((amp * audible).astype(np.float32), lengths) * cur
        else:
            break
        prev, cur = cur, cos2 * cur - prev
    return melody


def _chords(scale, centre: int, beat: float, n: int, sr: int, rng) -> np.ndarray:
    """Chords: one triad per bar, an octave below the melody, soft sines with one overtone."""
    bar = 4 * beat
    n_bars, bar_lengths, bar_starts = _segments(bar, n, sr)
    roots = np.resize(_PROGRESSIONS[rng.integers(len(_PROGRESSIONS))], n_bars)
    t_bar = _time_in_segment(bar_lengths, bar_starts, n, sr)
    pad = np.zeros(n, np.float32)
    for offset in (0, 2, 4):
        hz = np.repeat(_midi_hz(_scale_midi(scale, roots + offset, centre - 12)).astype(np.float32), bar_lengths)
        ph = _cycles_to_phase(hz * t_bar)
        pad += np.sin(ph) + np.float32(0.3) * np.sin(ph + ph)
    pad *= _note_envelope(t_bar, bar, 0.05, 10.0, 1.0, 0.05)
    return pad


def _drums(beat: float, seconds: float, n: int, sr: int, rng) -> np.ndarray:
    """Drums: kick on every beat, snare on 2 and 4, hi-hats on eighths (level set by the caller)."""
    drums = np.zeros(n, np.float32)
    kt = np.arange(int(0.25 * sr)) / sr
    kick_phase = np.cumsum(45.0 + 90.0 * np.exp(-kt / 0.03)) * (2 * np.pi / sr)
    kick = (np.sin(kick_phase) * np.exp(-kt / 0.12)).astype(np.float32)
    snare_len, hat_len = int(0.2 * sr), int(0.06 * sr)
    snare_env = np.exp(-np.arange(snare_len) / (0.07 * sr)).astype(np.float32)
    hat_env = np.exp(-np.arange(hat_len) / (0.015 * sr)).astype(np.float32)
    noise = rng.standard_normal(n + snare_len + 1, dtype=np.float32)
    bright_noise = np.diff(noise)  # a first difference tilts white noise towards the highs
    swing = rng.uniform(0.0, 0.08)
    for k in range(int(np.ceil(seconds / (beat / 2)))):
        start = round((k * beat / 2 + (swing * beat if k % 2 else 0.0)) * sr)
        if start >= n:
            break
        if k % 2 == 0:
            seg = kick[: n - start]
            drums[start:start + len(seg)] += seg
            if (k // 2) % 2 == 1:
                seg = snare_env[: n - start]
                drums[start:start + len(seg)] += 0.6 * noise[start:start + len(seg)] * seg
        seg = hat_env[: n - start]
        drums[start:start + len(seg)] += 0.35 * bright_noise[start:start + len(seg)] * seg
    return drums
