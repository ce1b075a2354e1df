"""`dcue synth OUT_DIR`: write the built-in synthetic miniature Million Song Dataset."""

import click

from dcue_cli import log
from dcue_cli.options import jobs_option, seed_option
from dcue_cli.runtime import default_jobs
from dcue_cli.synth import FORMATS, SAMPLE_RATES


@click.command("synth")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--songs", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Number of songs (one audio file each).")
@click.option("--users", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Number of users in train_triplets.txt.")
@click.option("--seconds", type=click.FloatRange(min=1.0, max=600.0), default=10.0, show_default=True,
              help="Length of each audio file in seconds (the MSD's 7digital previews are 30 s).")
@click.option("--format", "audio_format", type=click.Choice(FORMATS, case_sensitive=False),
              default="mp3", show_default=True, help="Audio file format.")
@click.option("--sample-rate", type=click.Choice([str(rate) for rate in SAMPLE_RATES]), default="22050",
              show_default=True, help="Audio sample rate in Hz.")
@seed_option()
@jobs_option("Worker processes that render and encode the audio (default: all cores); "
             "the output does not depend on it.")
@click.option("--overwrite", is_flag=True, help="Replace a synthetic dataset already in OUT_DIR.")
@click.pass_context
def cli(ctx, out_dir, songs, users, seconds, audio_format, sample_rate, seed, jobs, overwrite):
    """Write a synthetic miniature Million Song Dataset to OUT_DIR.

    The real MSD audio cannot be shipped, so this writes what a user of the MSD has, in the
    same formats: audio/X/Y/TRXY....mp3 (one file per track, named by an MSD-like track id),
    unique_tracks.txt (track_id<SEP>song_id<SEP>artist<SEP>title), train_triplets.txt
    (user_id<TAB>song_id<TAB>count, no header) and tags.tsv (song_id<TAB>tag<TAB>weight,
    Last.fm-like). Every song has a latent style (tempo, register, brightness,
    percussiveness, mode, note density, timbre, vibrato) that is audible in its audio (the
    mode only in part: a song is major or minor, a coin weighted by its style); users
    play songs by taste x popularity, so audio predicts listeners better than popularity,
    but not perfectly. truth.h5 holds the drawn latents (embeddings format, diagnostics
    only: `dcue score truth.h5 ...` gives the content ceiling). The same --seed gives the
    same bytes. The defaults take under a minute on 2 idle cores (MP3 encoding dominates;
    FLAC is 4x faster). For a set the size of the paper's MSD subset use --songs 10000
    --users 20000 --seconds 30 (about 2 GB of MP3 and 45 CPU-minutes: give -j all cores).
    Ctrl-C or SIGTERM stops after the songs in flight and keeps every song written (exit 130;
    a second one stops at once); the same command again finishes the dataset, with the same
    bytes as an uninterrupted run.

    \b
    Example:
      dcue synth data/
      dcue synth data/ --songs 200 --users 500 --seconds 5 --format flac --seed 7 --overwrite
      dcue melspec data/audio -o mels.h5 --id-map data/unique_tracks.txt
    """
    from dcue_cli.synth.generate import describe, run_synth
    from dcue_cli.synth.world import SynthConfig

    config = SynthConfig(songs=songs, users=users, seconds=seconds, audio_format=audio_format.lower(),
                         sample_rate=int(sample_rate), seed=seed)
    try:
        summary = run_synth(out_dir, config, jobs=default_jobs(jobs), overwrite=overwrite)
    except KeyboardInterrupt:
        ctx.exit(130)  # what was written is kept and said (run_synth); 130 as for melspec and train
    log.info(describe(summary, out_dir))
