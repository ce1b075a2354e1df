"""The world dcue synth draws before rendering: the config, songs' latent styles and
popularity, users' tastes and activity, and the plays (Gumbel top-k over the play logits).

Each component draws from its own `numpy` stream (`random_stream(seed, STREAM_...)`).
"""

from dataclasses import dataclass

import numpy as np

from dcue_cli.synth.names import artist_names, msd_like_ids, song_titles, user_like_ids

STYLE_DIMS = ("tempo", "register", "brightness", "percussiveness", "mode", "density", "timbre", "modulation")

# Independent random streams, so e.g. --users never changes the songs' styles or audio.
STREAM_SONGS, STREAM_USERS, STREAM_PLAYS, STREAM_TAGS, STREAM_NAMES, STREAM_AUDIO = range(6)


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


def random_stream(seed: int, stream: int, *more: int) -> np.random.Generator:
    """The generator of one component (`stream`, and e.g. a song index) for `seed`."""
    seed = int(seed) % 2**64  # any int, negative too, as two 32-bit words
    return np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, stream, *more])


def make_world(config: SynthConfig) -> World:
    """Draw ids, names, latent styles, popularity and users (no audio, no plays yet)."""
    S, U, D, H = config.songs, config.users, len(STYLE_DIMS), config.hidden_dims
    rng = random_stream(config.seed, STREAM_SONGS)
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

    urng = random_stream(config.seed, STREAM_USERS)
    taste = urng.standard_normal((U, D)) * (config.style_weight / np.sqrt(D))
    hidden_taste = urng.standard_normal((U, H)) * (config.hidden_weight / np.sqrt(H))
    lo, hi = min(5, S), max(1, S // 4)
    activity = np.exp(np.log(config.activity_median) + config.activity_sigma * urng.standard_normal(U))
    activity = np.clip(np.round(activity), lo, max(lo, hi)).astype(np.int64)
    replay = np.exp(np.log(1.2) + 0.8 * urng.standard_normal(U))

    nrng = random_stream(config.seed, STREAM_NAMES)
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
    rng = random_stream(cfg.seed, STREAM_PLAYS)
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
