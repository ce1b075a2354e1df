"""Real recordings, simulated listeners: does DCUE's cold-start gain come from what it hears?

`dcue synth` renders its audio from the very style vectors its listeners like, so a model
could in principle exploit a quirk of the renderer. Here the audio is real music (the
librosa example recordings in ../shared/data/librosa_music, or any folder of audio files),
cut into short excerpts that are varied in pitch, speed and level; each excerpt's *audio
descriptors* (spectral centroid, spectral flatness, onset rate, RMS level, zero-crossing
rate, low-band energy share), computed from the waveform and never shown to the model,
define what listeners like. Plays are drawn by `dcue synth`'s own sampler with its default
settings, the descriptors standing in for its style vector: a user's distinct songs with
probability proportional to exp(taste . descriptors + hidden taste . hidden - 0.7
log(popularity rank)), synth's activity and replay counts.

Writes OUT/audio/*.wav, OUT/train_triplets.txt and OUT/truth.h5 (descriptors as item
vectors, tastes as user vectors, similarity dot: scoring it gives the content ceiling).
Then run the usual chain (what the README's figures come from):

    python benchmarks/real_listeners.py OUT
    dcue melspec OUT/audio -o OUT/mels.h5
    dcue subset OUT/train_triplets.txt -o OUT/sub --songs 0 --users 0
    dcue wmf OUT/sub/plays.tsv --splits OUT/sub/splits.tsv --fit-on all -o OUT/wmf.h5
    dcue wmf OUT/sub/plays.tsv --splits OUT/sub/splits.tsv --fit-on train -o OUT/wmf-train.h5
    dcue train OUT/mels.h5 OUT/sub/plays.tsv --splits OUT/sub/splits.tsv -o OUT/dcue.pt
    dcue train OUT/mels.h5 OUT/sub/plays.tsv --splits OUT/sub/splits.tsv -o OUT/regress.pt \
        --objective regress --target OUT/wmf-train.h5 --steps-per-epoch 30 --epochs 30
    dcue embed OUT/dcue.pt OUT/mels.h5 -o OUT/dcue.h5
    dcue refit OUT/dcue.h5 OUT/sub/plays.tsv --splits OUT/sub/splits.tsv -o OUT/dcue_refit.h5
    dcue embed OUT/regress.pt OUT/mels.h5 -o OUT/wmf_regression.h5
    python benchmarks/reachable_ceiling.py OUT/truth.h5 OUT/sub/plays.tsv OUT/sub/splits.tsv -o OUT/fitted.h5
    dcue score OUT/dcue.h5 OUT/dcue_refit.h5 OUT/wmf_regression.h5 OUT/wmf.h5 OUT/truth.h5 OUT/fitted.h5 \
        --popularity --plays OUT/sub/plays.tsv --splits OUT/sub/splits.tsv --json > OUT/recommendation.json
    python benchmarks/cold_start_efficiency.py OUT/recommendation.json
"""

import argparse
import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

DESCRIPTORS = ("centroid", "flatness", "onset_rate", "rms_db", "zcr", "low_share")


def descriptors(y, sr):
    import librosa

    S = np.abs(librosa.stft(y, n_fft=1024, hop_length=512))
    freqs = librosa.fft_frequencies(sr=sr, n_fft=1024)
    power = S ** 2
    onset = librosa.onset.onset_detect(y=y, sr=sr, hop_length=512)
    return np.array([
        np.log(librosa.feature.spectral_centroid(S=S, sr=sr).mean() + 1e-6),
        np.log(librosa.feature.spectral_flatness(S=S).mean() + 1e-9),
        len(onset) / (len(y) / sr),
        10 * np.log10(np.mean(y ** 2) + 1e-10),
        librosa.feature.zero_crossing_rate(y, hop_length=512).mean(),
        power[freqs < 300].sum() / (power.sum() + 1e-12),
    ])


def draw_plays(style, users, seed, style_weight, hidden_weight):
    """`dcue synth`'s own listeners on these songs: its world (popularity, hidden part, tastes,
    activity, replays) with the standardised descriptors as the songs' style. Returns the world
    and synth.world.sample_plays' (user, song, count) arrays."""
    import dataclasses

    from dcue_cli.synth.world import STYLE_DIMS, SynthConfig, make_world, sample_plays

    config = SynthConfig(songs=len(style), users=users, seed=seed, style_weight=style_weight,
                         hidden_weight=hidden_weight)
    world = make_world(config)
    dims = style.shape[1]
    # synth's tastes have 8 dimensions scaled by style_weight / sqrt(8): keep the scale for `dims`.
    taste = world.taste[:, :dims] * np.sqrt(len(STYLE_DIMS) / dims)
    world = dataclasses.replace(world, style=style, taste=taste)
    return world, sample_plays(world)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--audio", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                   "shared", "data", "librosa_music"))
    p.add_argument("--songs", type=int, default=2000, help="excerpts")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--style-weight", type=float, default=2.5, help="as dcue synth's (its default)")
    p.add_argument("--hidden-weight", type=float, default=1.5, help="as dcue synth's (its default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import librosa
    import soundfile as sf

    from dcue_cli.io.embeddings import Embeddings, write_embeddings

    rng = np.random.default_rng(args.seed)
    files = sorted(f for f in glob.glob(os.path.join(args.audio, "*.ogg")) if not f.endswith(".hq.ogg"))
    if not files:
        sys.exit(f"no .ogg recordings in {args.audio}")
    sr = 22050
    sources = [librosa.load(f, sr=sr, mono=True)[0] for f in files]
    os.makedirs(os.path.join(args.out, "audio"), exist_ok=True)
    n = int(args.seconds * sr)
    ids, feats = [], []
    for k in range(args.songs):
        y = sources[rng.integers(len(sources))]
        rate = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
        need = int(n * rate) + 1
        start = int(rng.integers(0, max(1, len(y) - need)))
        clip = np.resize(y[start:start + need], need)  # a short recording is repeated
        clip = librosa.effects.time_stretch(clip, rate=rate)[:n]
        clip = librosa.effects.pitch_shift(clip, sr=sr, n_steps=float(rng.uniform(-4, 4)))
        clip = clip / (np.max(np.abs(clip)) + 1e-9) * float(10 ** rng.uniform(-1.2, 0))
        song = f"REAL{k:05d}"
        sf.write(os.path.join(args.out, "audio", song + ".wav"), clip.astype(np.float32), sr)
        ids.append(song)
        feats.append(descriptors(clip.astype(np.float32), sr))
    feats = np.array(feats)
    style = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)

    world, (users, songs, counts) = draw_plays(style, args.users, args.seed, args.style_weight, args.hidden_weight)
    listeners = [f"LISTENER{u:05d}" for u in range(args.users)]
    with open(os.path.join(args.out, "train_triplets.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{listeners[u]}\t{ids[i]}\t{c}\n" for u, i, c in zip(users, songs, counts))
    write_embeddings(os.path.join(args.out, "truth.h5"), Embeddings(
        np.array(ids, dtype=object), style.astype(np.float32), np.array(listeners, dtype=object),
        world.taste.astype(np.float32), source="descriptor-truth", similarity="dot",
        attrs={"name": "truth (audio descriptors)", "descriptors": ",".join(DESCRIPTORS),
               "recordings": len(files)}))
    print(f"{args.songs} excerpts of {len(files)} recordings, {args.users} listeners -> {args.out}")


if __name__ == "__main__":
    main()
