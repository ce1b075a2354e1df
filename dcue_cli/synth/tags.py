"""The tag model: a Last.fm-like vocabulary of directions in style space (and
popularity-only tags), and the tags each song gets."""

import numpy as np

from dcue_cli.synth.world import STREAM_TAGS, STYLE_DIMS, World, random_stream


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
    rng = random_stream(cfg.seed, STREAM_TAGS)
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

