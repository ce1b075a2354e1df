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

The package, one module a job: `world` (the config, the latents, users and plays), `names`
(ids, artist names, titles), `tags` (the tag model), `render` (style -> audio signal),
`encode` (signal -> file bytes), `generate` (`run_synth`: the whole dataset, written through
`dcue_cli.io`). This module holds only what `dcue synth`'s options share with the library,
so that the command's choices and the library's check are one list (and --help stays light).
"""

FORMATS = ("mp3", "ogg", "flac", "wav")
SAMPLE_RATES = (22050, 44100)
