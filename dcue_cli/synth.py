"""The built-in synthetic dataset: a miniature Million Song Dataset with audible structure.

Every song has a latent *style* vector (8 dims); its audio is rendered from that vector so
the style can be heard in a log-mel spectrogram of any 3 s crop: each dimension drives one
musical attribute through a monotone map (tempo, register, brightness, percussiveness,
note density, timbre, vibrato/tremolo), while the melody, rhythm details and drum noise are
per-song randomness that is not style. The mode is the exception: a song is major or minor,
a coin weighted by its style, so only part of that dimension can be heard (a perfect
listener recovers it with R^2 ~0.3; benchmarks/dcue_decomposition.py measures what this
costs). Every user has a taste vector in the same
space, a hidden taste for a non-audible part of each song (what audio cannot tell: lyrics,
scene, fame) and a long-tailed activity. A user's distinct songs are drawn without
replacement with probability proportional to

    exp(taste . style  +  hidden_taste . hidden  -  exponent * log(popularity rank))

(Gumbel top-k), play counts are a long-tailed geometric mixture that grows with affinity,
and Last.fm-like tags follow the style too (plus popularity-only tags such as "seen live").
So audio predicts who plays a song better than popularity does, but not perfectly, and
collaborative filtering on the plays can do better still.

Outputs (the real MSD's formats): audio/<X>/<Y>/<track_id>.<ext>, unique_tracks.txt,
train_triplets.txt, tags.tsv, and truth.h5 (the drawn latents in the embeddings contract,
for diagnostics only: `dcue score truth.h5 ...` gives the content ceiling).

Everything is a pure function of (config, seed): each component draws from its own
`numpy` stream, each song's audio from a stream seeded by (seed, song index), so the bytes
do not depend on the number of worker processes.
"""

import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcue_cli import log
from dcue_cli.errors import DcueError

FORMATS = ("mp3", "ogg", "flac", "wav")
SAMPLE_RATES = (22050, 44100)
STYLE_DIMS = ("tempo", "register", "brightness", "percussiveness", "mode", "density", "timbre", "modulation")
OUTPUT_FILES = ("unique_tracks.txt", "train_triplets.txt", "tags.tsv", "truth.h5")

# Independent random streams, so e.g. --users never changes the songs' styles or audio.
_STREAM_SONGS, _STREAM_USERS, _STREAM_PLAYS, _STREAM_TAGS, _STREAM_NAMES, _STREAM_AUDIO = range(6)


@dataclass(frozen=True)
class SynthConfig:
    songs: int = 1000
    users: int = 2000
    seconds: float = 10.0
    audio_format: str = "mp3"
    sample_rate: int = 22050
    seed: int = 0
    # The generative model (recorded in truth.h5). Tuned so that at the default size the
    # true style alone ranks each user's songs with a mean AUC near 0.90, popularity near 0.74.
    style_weight: float = 2.5  # scale of taste . style in the play logit (style is N(0, I))
    hidden_dims: int = 4
    hidden_weight: float = 1.5  # scale of the non-audible part of the affinity
    popularity_exponent: float = 0.7  # Zipf: weight of the song of popularity rank r is r^-exponent
    artist_share: float = 0.5  # fraction of a song's style variance shared with its artist
    activity_median: float = 20.0  # distinct songs per user: log-normal, this median ...
    activity_sigma: float = 0.9  # ... and this log-scale spread, clipped to [5, songs/4]
    tags_per_song: float = 4.0  # Poisson mean for a song of median popularity


@dataclass
class World:
    """Everything drawn before rendering: ids, names, latents, popularity, users."""

    config: SynthConfig
    track_ids: list
    song_ids: list
    artists: list
    titles: list
    style: np.ndarray  # (songs, 8) float64, N(0, I) marginally
    hidden: np.ndarray  # (songs, hidden_dims)
    log_popularity: np.ndarray  # (songs,) -exponent * log(rank)
    user_ids: list
    taste: np.ndarray  # (users, 8), scaled so that taste @ style.T is the style part of the logit
    hidden_taste: np.ndarray  # (users, hidden_dims), scaled likewise
    activity: np.ndarray  # (users,) distinct songs per user
    replay: np.ndarray  # (users,) a user's tendency to replay (mean extra plays)


@dataclass
class SynthSummary:
    songs: int = 0
    users: int = 0
    plays: int = 0
    play_count_total: int = 0
    tags: int = 0
    tagged_songs: int = 0
    audio_seconds: float = 0.0
    audio_bytes: int = 0
    wall_seconds: float = 0.0

    @property
    def density(self) -> float:
        return self.plays / max(1, self.songs * self.users)


def _rng(seed: int, stream: int, *more: int) -> np.random.Generator:
    seed = int(seed) % 2**64  # any int, negative too, as two 32-bit words
    return np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, stream, *more])


# ----------------------------------------------------------------------------- ids and names

_LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_ALNUM = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))


def msd_like_ids(rng: np.random.Generator, prefix: str, n: int) -> list:
    """`n` distinct ids like the MSD's (TRAAAAW128F429D538): prefix, 5 letters, 11 alphanumerics."""
    ids, seen = [], set()
    while len(ids) < n:
        k = n - len(ids)
        letters = _LETTERS[rng.integers(0, 26, size=(k, 5))]
        rest = _ALNUM[rng.integers(0, 36, size=(k, 11))]
        for row in np.concatenate([letters, rest], axis=1):
            text = prefix + "".join(row)
            if text not in seen:
                seen.add(text)
                ids.append(text)
    return ids


def user_like_ids(rng: np.random.Generator, n: int) -> list:
    """`n` distinct 40-hex user ids, like the Taste Profile's."""
    ids, seen = [], set()
    while len(ids) < n:
        text = rng.bytes(20).hex()
        if text not in seen:
            seen.add(text)
            ids.append(text)
    return ids


_SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "tor", "sa", "el", "da", "mor", "ni", "zu", "bel", "cor", "an",
              "ri", "us", "ta", "lin", "go", "fa", "re", "shi", "vo", "la", "den", "ox", "py", "qui", "nor")
_WORDS = ("Midnight", "River", "Love", "Electric", "Golden", "Summer", "Shadow", "Fire", "Dream", "Blue",
          "Heart", "City", "Rain", "Silver", "Wild", "Ocean", "Lights", "Echo", "Stone", "Paper", "Winter",
          "Ghost", "Velvet", "Morning", "Neon", "Broken", "Sugar", "Highway", "Moon", "Garden", "Static",
          "Crystal", "Thunder", "Honey", "Northern", "Falling", "Secret", "Lonely", "Dancing", "Radio")
_BAND_NOUNS = ("Wolves", "Lights", "Machines", "Sisters", "Kings", "Rivers", "Echoes", "Satellites",
               "Ghosts", "Tigers", "Strangers", "Saints", "Horses", "Pilots", "Architects", "Comets")


def _word(rng) -> str:
    return "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4)))).capitalize()


def artist_names(rng: np.random.Generator, n: int) -> list:
    names, seen = [], set()
    while len(names) < n:
        kind = rng.random()
        if kind < 0.45:
            name = f"{_word(rng)} {_word(rng)}"
        elif kind < 0.8:
            name = f"The {rng.choice(_WORDS)} {rng.choice(_BAND_NOUNS)}"
        else:
            name = _word(rng)
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def song_titles(rng: np.random.Generator, n: int) -> list:
    out = []
    for _ in range(n):
        words = rng.choice(_WORDS, size=int(rng.integers(1, 4)), replace=False)
        out.append(" ".join(words) if rng.random() < 0.8 else f"{' '.join(words)} ({_word(rng)} Remix)")
    return out


# ----------------------------------------------------------------------------- the world

def make_world(config: SynthConfig) -> World:
    """Draw ids, names, latent styles, popularity and users (no audio, no plays yet)."""
    S, U, D, H = config.songs, config.users, len(STYLE_DIMS), config.hidden_dims
    rng = _rng(config.seed, _STREAM_SONGS)
    # Artists: a long tail of songs per artist; a song's style is partly its artist's.
    n_artists = max(1, round(S / 4))
    artist_weight = 1.0 / np.arange(1, n_artists + 1) ** 0.8
    song_artist = rng.choice(n_artists, size=S, p=artist_weight / artist_weight.sum())
    a = np.sqrt(config.artist_share)
    b = np.sqrt(1.0 - config.artist_share)
    style = a * rng.standard_normal((n_artists, D))[song_artist] + b * rng.standard_normal((S, D))
    hidden = a * rng.standard_normal((n_artists, H))[song_artist] + b * rng.standard_normal((S, H))
    rank = rng.permutation(S) + 1
    log_popularity = -config.popularity_exponent * np.log(rank)

    urng = _rng(config.seed, _STREAM_USERS)
    taste = urng.standard_normal((U, D)) * (config.style_weight / np.sqrt(D))
    hidden_taste = urng.standard_normal((U, H)) * (config.hidden_weight / np.sqrt(H))
    lo, hi = min(5, S), max(1, S // 4)
    activity = np.exp(np.log(config.activity_median) + config.activity_sigma * urng.standard_normal(U))
    activity = np.clip(np.round(activity), lo, max(lo, hi)).astype(np.int64)
    replay = np.exp(np.log(1.2) + 0.8 * urng.standard_normal(U))

    nrng = _rng(config.seed, _STREAM_NAMES)
    track_ids = msd_like_ids(nrng, "TR", S)
    song_ids = msd_like_ids(nrng, "SO", S)
    names = artist_names(nrng, n_artists)
    titles = song_titles(nrng, S)
    user_ids = user_like_ids(nrng, U)
    return World(config, track_ids, song_ids, [names[k] for k in song_artist], titles, style, hidden,
                 log_popularity, user_ids, taste, hidden_taste, activity, replay)


def style_logits(world: World, users=slice(None)) -> np.ndarray:
    """The audible part of the play logit, taste . style: what truth.h5 scores (similarity dot)."""
    return world.taste[users] @ world.style.T


def sample_plays(world: World, block_cells: int = 4_000_000):
    """Each user's distinct songs (Gumbel top-k of the logits) and their play counts.

    Returns (user_index, song_index, count) arrays, rows grouped by user, songs ascending.
    """
    cfg = world.config
    rng = _rng(cfg.seed, _STREAM_PLAYS)
    S, U = cfg.songs, cfg.users
    block = max(1, block_cells // max(1, S))
    out_u, out_s, out_c = [], [], []
    for start in range(0, U, block):
        stop = min(U, start + block)
        logits = style_logits(world, slice(start, stop))
        logits += world.hidden_taste[start:stop] @ world.hidden.T
        logits += world.log_popularity
        keys = logits + rng.gumbel(size=logits.shape)
        for row in range(stop - start):
            u = start + row
            n = int(world.activity[u])
            chosen = np.sort(np.argpartition(-keys[row], n - 1)[:n]) if n < S else np.arange(S)
            # Counts: geometric (>= 1) with a mean that grows with how much the user likes the
            # song; mixed over users' replay tendencies this gives the Taste Profile's long tail.
            aff = logits[row, chosen]
            aff = (aff - aff.mean()) / (aff.std() + 1e-9)
            mean_extra = world.replay[u] * np.exp(0.5 * aff)
            counts = rng.geometric(1.0 / (1.0 + mean_extra))
            out_u.append(np.full(n, u, dtype=np.int64))
            out_s.append(chosen)
            out_c.append(np.minimum(counts, 10_000))
    return np.concatenate(out_u), np.concatenate(out_s), np.concatenate(out_c).astype(np.int64)


# ----------------------------------------------------------------------------- tags

def _tag(name, **dims):
    vec = np.zeros(len(STYLE_DIMS))
    for key, value in dims.items():
        vec[STYLE_DIMS.index(key)] = value
    return name, vec


# Roughly in Last.fm's order of use (the list order sets each tag's popularity, a Zipf law).
# A musical tag is a direction in style space; a zero vector marks a popularity-only tag.
TAG_VOCABULARY = [
    _tag("rock", percussiveness=1.0, brightness=0.7, tempo=0.3),
    _tag("pop", mode=1.0, density=0.3, register=0.3),
    _tag("alternative", brightness=0.5, percussiveness=0.5, mode=-0.4),
    _tag("indie", brightness=0.3, percussiveness=-0.2, modulation=0.5),
    _tag("electronic", percussiveness=0.8, timbre=0.9),
    _tag("female vocalists", register=1.0, modulation=0.5),
    _tag("favorites"),
    _tag("Love"),
    _tag("dance", tempo=1.0, percussiveness=1.0, mode=0.4),
    _tag("00s"),
    _tag("alternative rock", percussiveness=0.8, brightness=0.8, mode=-0.5),
    _tag("jazz", density=0.8, percussiveness=-0.3, modulation=0.6, mode=-0.2),
    _tag("beautiful", modulation=0.5, percussiveness=-0.5, brightness=-0.2),
    _tag("metal", percussiveness=1.0, brightness=1.2, register=-0.5, mode=-0.6, tempo=0.5),
    _tag("chillout", tempo=-0.8, percussiveness=-0.3, brightness=-0.3),
    _tag("male vocalists", register=-0.8),
    _tag("classic rock", percussiveness=0.7, brightness=0.5, timbre=-0.5),
    _tag("soul", mode=-0.3, modulation=0.7, tempo=-0.3),
    _tag("seen live"),
    _tag("80s", timbre=0.8, mode=0.3),
    _tag("ambient", percussiveness=-1.0, density=-1.0, tempo=-0.6, modulation=0.4),
    _tag("experimental", modulation=0.6, density=0.7, timbre=0.4),
    _tag("folk", percussiveness=-0.7, mode=0.5, brightness=-0.3, timbre=-0.6),
    _tag("Mellow", tempo=-0.7, brightness=-0.7, percussiveness=-0.5),
    _tag("punk", tempo=1.2, brightness=1.0, percussiveness=0.8),
    _tag("hip-hop", percussiveness=1.0, register=-0.8, tempo=-0.3),
    _tag("90s"),
    _tag("chill", tempo=-0.7, density=-0.4),
    _tag("instrumental", register=-0.2, density=0.4, modulation=-0.3),
    _tag("hard rock", brightness=1.0, percussiveness=1.0, tempo=0.4),
    _tag("acoustic", percussiveness=-0.6, timbre=-0.8, brightness=-0.4),
    _tag("awesome"),
    _tag("happy", mode=1.2, tempo=0.5),
    _tag("sad", mode=-1.2, tempo=-0.6),
    _tag("british"),
    _tag("blues", mode=-0.6, modulation=0.6, tempo=-0.4),
    _tag("soundtrack", percussiveness=-0.5, modulation=0.3, mode=-0.3),
    _tag("electronica", timbre=0.8, density=0.6),
    _tag("catchy"),
    _tag("american"),
    _tag("funk", percussiveness=0.6, density=0.6, tempo=0.3),
    _tag("piano", modulation=-0.8, percussiveness=-0.4, timbre=-0.3),
    _tag("singer-songwriter", percussiveness=-0.6, density=-0.3),
    _tag("dark", mode=-1.0, register=-0.8, brightness=-0.4),
    _tag("energetic", tempo=1.0, percussiveness=0.8, density=0.5),
    _tag("relaxing", tempo=-0.8, density=-0.6),
    _tag("upbeat", tempo=0.8, mode=0.6),
    _tag("psychedelic", modulation=1.0, timbre=0.3),
    _tag("trance", tempo=0.8, timbre=0.8, percussiveness=0.5),
    _tag("techno", percussiveness=1.0, timbre=0.6, mode=-0.3),
    _tag("melancholy", mode=-0.8, tempo=-0.4),
    _tag("house", percussiveness=0.9, tempo=0.6),
    _tag("country", mode=0.6, timbre=-0.5, brightness=0.2),
    _tag("reggae", tempo=-0.4, percussiveness=0.5, mode=0.4),
    _tag("cool"),
    _tag("downtempo", tempo=-1.0, percussiveness=0.3),
    _tag("post-rock", modulation=0.5, density=-0.3, brightness=0.4),
    _tag("shoegaze", modulation=0.9, brightness=0.6),
    _tag("synthpop", timbre=0.9, mode=0.6),
    _tag("new wave", timbre=0.7, tempo=0.4),
    _tag("lounge", tempo=-0.5, density=0.3, percussiveness=-0.2),
    _tag("progressive rock", density=0.8, brightness=0.5),
    _tag("emo", mode=-0.7, brightness=0.6),
    _tag("classical", percussiveness=-1.2, timbre=-0.5, modulation=0.5),
    _tag("albums I own"),
    _tag("sexy", tempo=-0.4, register=-0.3, modulation=0.4),
    _tag("guitar", brightness=0.4, timbre=-0.3),
    _tag("oldies", timbre=-0.4, brightness=-0.4),
    _tag("minimal", density=-1.0, timbre=0.4),
    _tag("drum and bass", tempo=1.4, percussiveness=1.2),
]


def sample_tags(world: World):
    """Last.fm-like tags: sparse (many songs untagged, more tags on popular songs), noisy,
    a long tail of tag use; weights 0-100 with 100 for each song's strongest tag.

    Returns (song_index, tag, weight) rows, grouped by song, strongest first.
    """
    cfg = world.config
    rng = _rng(cfg.seed, _STREAM_TAGS)
    names = [name for name, _ in TAG_VOCABULARY]
    vectors = np.array([vec for _, vec in TAG_VOCABULARY])
    norms = np.linalg.norm(vectors, axis=1)
    musical = norms > 0
    directions = np.where(musical[:, None], vectors / np.maximum(norms, 1e-12)[:, None], 0.0)
    tag_log_pop = -1.0 * np.log(np.arange(1, len(names) + 1))
    tag_log_pop[~musical] += 1.0  # popularity-only tags compete with the best-fitting genres

    # How many tags a song gets grows with its popularity; a fifth of the songs get none.
    rel_pop = world.log_popularity - np.median(world.log_popularity)
    lam = cfg.tags_per_song * np.exp(0.4 * rel_pop)
    n_tags = np.where(rng.random(cfg.songs) < 0.2, 0, rng.poisson(np.clip(lam, 0.2, 25.0)))
    n_tags = np.minimum(n_tags, len(names))
    fit = 2.0 * world.style @ directions.T + tag_log_pop  # (songs, tags)
    noise = rng.gumbel(size=fit.shape)
    rows = []
    for s in np.flatnonzero(n_tags):
        score = fit[s] + noise[s]
        # Noise: now and then a tag that fits nothing, as people tag at random too.
        if rng.random() < 0.15:
            score[rng.integers(len(names))] += 5.0
        chosen = np.argsort(-score, kind="stable")[: n_tags[s]]
        top = score[chosen[0]]
        for k in chosen:
            weight = 100.0 * np.exp((score[k] - top) / 1.5) + rng.normal(0, 3)
            rows.append((int(s), names[k], int(np.clip(round(weight), 0, 100))))
        rows[-len(chosen)] = rows[-len(chosen)][:2] + (100,)
    return rows


# ----------------------------------------------------------------------------- audio

def _sigmoid_cdf(z):
    """A monotone map from N(0, 1) to (0, 1), close to the normal CDF (so roughly uniform)."""
    return 1.0 / (1.0 + np.exp(-1.702 * np.asarray(z, dtype=np.float64)))


def style_parameters(style_row) -> dict:
    """The musical parameters one song's style vector sets (each monotone in one dimension)."""
    p = dict(zip(STYLE_DIMS, _sigmoid_cdf(style_row)))
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
    limit = 0.45 * sr
    m = P["modulation"]

    # Melody: a two-bar motif on the scale, repeated with mutations; some rests.
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
    # Harmonics by the Chebyshev recurrence sin((h+1)x) = 2cos(x)sin(hx) - sin((h-1)x): one
    # multiply-add per harmonic instead of a sine; partials above 0.45 sr are left out.
    cos2 = np.float32(2.0) * np.cos(phase)
    prev, cur = np.zeros(n, np.float32), np.sin(phase)
    melody = np.zeros(n, np.float32)
    top_hz = note_hz * 2.0 ** (0.6 * m / 12.0)
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
    gain = np.repeat(velocity.astype(np.float32), lengths)
    melody *= gain * _note_envelope(t_in, note_len, 0.008, max(0.04, 0.5 * note_len), 0.2, min(0.04, 0.3 * note_len))
    tremolo_rate = np.float32(rng.uniform(3.0, 7.0))
    melody *= 1.0 - 0.35 * m * (1.0 + np.sin(_cycles_to_phase(t * tremolo_rate)))

    # Chords: one triad per bar, an octave below the melody, soft sines with one overtone.
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

    voice = melody * np.float32(1.0 / _rms(melody)) + pad * np.float32(0.3 / _rms(pad))

    # Drums: kick on every beat, snare on 2 and 4, hi-hats on eighths; level = percussiveness.
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
    mix = voice + drums * np.float32(2.0 * P["drums"] ** 1.5 / _rms(drums))

    gain = min(0.1 / _rms(mix), 0.98 / (float(np.max(np.abs(mix))) + 1e-9))
    return (mix * np.float32(gain)).astype(np.float32)


def _fix_ogg_serial(data: bytes, serial: int) -> bytes:
    """libsndfile gives each Ogg stream a random serial number; set it (and each page's CRC)
    so that the same song gives the same bytes."""
    out = bytearray(data)
    pos = 0
    serial_bytes = (serial & 0xFFFFFFFF).to_bytes(4, "little")
    while pos + 27 <= len(out) and out[pos:pos + 4] == b"OggS":
        n_segments = out[pos + 26]
        size = 27 + n_segments + sum(out[pos + 27:pos + 27 + n_segments])
        out[pos + 14:pos + 18] = serial_bytes
        out[pos + 22:pos + 26] = b"\0\0\0\0"
        out[pos + 22:pos + 26] = _ogg_crc(bytes(out[pos:pos + size])).to_bytes(4, "little")
        pos += size
    if pos != len(out):
        raise RuntimeError("unexpected Ogg page layout from libsndfile")
    return bytes(out)


_BIT_REVERSE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, init 0) through zlib's reflected
    CRC: reflect the input bytes, start from 0, reflect the 32-bit result."""
    raw = zlib.crc32(page.translate(_BIT_REVERSE), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{raw:032b}"[::-1], 2)


def encode_audio(signal: np.ndarray, sample_rate: int, audio_format: str, serial: int = 0) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    subtype = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}[audio_format]
    sf.write(buf, signal, int(sample_rate), format=audio_format.upper(), subtype=subtype)
    data = buf.getvalue()
    return _fix_ogg_serial(data, serial) if audio_format == "ogg" else data


def audio_path(out_dir, track_id: str, audio_format: str) -> Path:
    return Path(out_dir) / "audio" / track_id[2] / track_id[3] / f"{track_id}.{audio_format}"


def _render_task(task) -> int:
    """Worker: render, encode and atomically write one song; returns the bytes written."""
    from dcue_cli.io.atomic import atomic_path

    index, style_row, path, sample_rate, seconds, audio_format, seed = task
    signal = render_song(style_row, sample_rate, seconds, _rng(seed, _STREAM_AUDIO, index))
    data = encode_audio(signal, sample_rate, audio_format, serial=zlib.crc32(Path(path).stem.encode()))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return len(data)


# ----------------------------------------------------------------------------- the dataset

def existing_outputs(out_dir) -> list:
    """What a previous synth run left in `out_dir` (names), empty when nothing."""
    out = Path(out_dir)
    found = [name for name in OUTPUT_FILES if (out / name).exists()]
    audio = out / "audio"
    if audio.is_dir() and any(audio.iterdir()):
        found.append("audio/")
    return found


def _prune_stale_audio(out_dir, keep: set) -> int:
    """After --overwrite: remove track files of an earlier run that this run did not write."""
    audio = Path(out_dir) / "audio"
    removed = 0
    for path in sorted(audio.glob("*/*/TR*.*")):
        if path.suffix.lstrip(".") in FORMATS and path not in keep:
            path.unlink()
            removed += 1
    for folder in sorted(audio.glob("*/*"), reverse=True) + sorted(audio.glob("*"), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def generate(out_dir, config: SynthConfig, *, jobs: int = 1, overwrite: bool = False) -> SynthSummary:
    """Write the whole dataset under `out_dir`; refuse to replace a previous one unless `overwrite`."""
    from dcue_cli.io.atomic import open_text_output
    from dcue_cli.io.embeddings import Embeddings, write_embeddings

    started = time.perf_counter()
    if config.audio_format not in FORMATS:
        raise DcueError(f"audio format {config.audio_format!r} is not one of {', '.join(FORMATS)}.")
    if config.sample_rate not in SAMPLE_RATES:
        raise DcueError(f"sample rate {config.sample_rate} is not one of 22050, 44100.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DcueError(f"{out_dir} is a file, not a folder: give a folder for the dataset.")
    found = existing_outputs(out)
    if found and not overwrite:
        raise DcueError(f"{out_dir} already holds a synthetic dataset ({', '.join(found)}): "
                        "give --overwrite to replace it, or choose another folder.")
    from dcue_cli.io.atomic import make_folder

    make_folder(out)

    world = make_world(config)
    users, songs, counts = sample_plays(world)
    tags = sample_tags(world)

    paths = [audio_path(out, tid, config.audio_format) for tid in world.track_ids]
    for folder in sorted({p.parent for p in paths}):
        folder.mkdir(parents=True, exist_ok=True)
    tasks = [(i, world.style[i], str(paths[i]), config.sample_rate, config.seconds, config.audio_format,
              config.seed) for i in range(config.songs)]
    audio_bytes = 0
    bar = log.progress(total=len(tasks), desc="rendering audio", unit=" songs")
    try:
        if jobs <= 1 or len(tasks) <= 1:
            for task in tasks:
                audio_bytes += _render_task(task)
                bar.update(1)
        else:
            import multiprocessing

            # spawn: no fork of a process that may hold threads (tqdm's monitor, BLAS pools).
            ctx = multiprocessing.get_context("spawn")
            chunk = max(1, min(8, len(tasks) // (jobs * 16)))
            with ctx.Pool(min(jobs, len(tasks))) as pool:
                for size in pool.imap_unordered(_render_task, tasks, chunksize=chunk):
                    audio_bytes += size
                    bar.update(1)
    finally:
        bar.close()

    with open_text_output(out / "unique_tracks.txt") as f:
        for tid, sid, artist, title in zip(world.track_ids, world.song_ids, world.artists, world.titles):
            f.write(f"{tid}<SEP>{sid}<SEP>{artist}<SEP>{title}\n")
    song_ids, user_ids = world.song_ids, world.user_ids
    with open_text_output(out / "train_triplets.txt") as f:
        f.write("".join(f"{user_ids[u]}\t{song_ids[s]}\t{c}\n"
                        for u, s, c in zip(users.tolist(), songs.tolist(), counts.tolist())))
    with open_text_output(out / "tags.tsv") as f:
        f.write("".join(f"{song_ids[s]}\t{tag}\t{w}\n" for s, tag, w in tags))
    write_embeddings(out / "truth.h5", Embeddings(
        item_ids=np.array(song_ids, dtype=object), item_vectors=world.style.astype(np.float32),
        user_ids=np.array(user_ids, dtype=object), user_vectors=world.taste.astype(np.float32),
        source="synth-truth", similarity="dot",
        attrs={
            "name": "truth (audible style)",
            "description": "dcue synth's ground-truth latents, for diagnostics only: item vectors are the "
                           "songs' audible style, user vectors the users' tastes; their dot product is the "
                           "style part of the play logit, so scoring it gives the content ceiling.",
            "style_dims": ",".join(STYLE_DIMS),
            "seed": config.seed, "songs": config.songs, "users": config.users,
            "seconds": float(config.seconds), "audio_format": config.audio_format,
            "sample_rate": config.sample_rate, "style_weight": config.style_weight,
            "hidden_dims": config.hidden_dims, "hidden_weight": config.hidden_weight,
            "popularity_exponent": config.popularity_exponent, "artist_share": config.artist_share,
            "activity_median": config.activity_median, "activity_sigma": config.activity_sigma,
            "tags_per_song": config.tags_per_song,
            "play_logit": "taste.style + hidden_taste.hidden - popularity_exponent*log(popularity_rank)",
        }))
    if overwrite:
        removed = _prune_stale_audio(out, set(paths))
        if removed:
            log.info("removed %d audio file%s of the earlier dataset", removed, "" if removed == 1 else "s")

    return SynthSummary(
        songs=config.songs, users=config.users, plays=len(users), play_count_total=int(counts.sum()),
        tags=len(tags), tagged_songs=len({s for s, _, _ in tags}),
        audio_seconds=config.songs * float(config.seconds), audio_bytes=audio_bytes,
        wall_seconds=time.perf_counter() - started,
    )


def describe(summary: SynthSummary, out_dir) -> str:
    return (f"wrote {out_dir}: {summary.songs:,} songs ({summary.audio_seconds / 60:,.1f} audio minutes, "
            f"{summary.audio_bytes / 2**20:,.1f} MiB), {summary.users:,} users, {summary.plays:,} plays "
            f"({summary.play_count_total:,} listens, density {100 * summary.density:.2f}%), "
            f"{summary.tags:,} tags on {summary.tagged_songs:,} songs, in {summary.wall_seconds:.1f} s")
