"""`dcue melspec`: audio files to a log-mel HDF5 (the mels contract), fast, resumable, robust.

This module only parses options; the work is `dcue_cli.audio.melspec.run_melspec` (no click
there), the merge `dcue_cli.io.mels_merge.merge_mels`.
"""

from __future__ import annotations

import time

import click

from dcue_cli import log
from dcue_cli.options import output_option


def parse_shard(text: str | None):
    """'2/8' -> (2, 8); None -> None."""
    if text is None:
        return None
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: give K/N, e.g. 1/4 (the first of four shards).") from None
    if not 1 <= k <= n:
        raise click.BadParameter(f"{text!r}: shards are numbered 1..N, e.g. 1/4 .. 4/4.")
    return k, n


@click.command("melspec")
@click.argument("audio", nargs=-1, required=True, type=click.Path(allow_dash=True))
@output_option("The mels HDF5 to write; if it exists, the items already in it are kept and "
               "only new inputs are computed.")
@click.option("--id-map", type=click.Path(dir_okay=False),
              help="MSD unique_tracks.txt: store each file (named by its track id) under its song id. A song "
                   "with several tracks keeps one: the first in track-id order whose file can be used (the "
                   "others are listed in OUTPUT.failures.tsv).")
@click.option("--sr", "sample_rate", type=click.IntRange(min=1000, max=384000), default=22050, show_default=True,
              help="Sample rate (Hz) the audio is resampled to (mono, soxr HQ).")
@click.option("--n-fft", type=click.IntRange(min=16, max=65536), default=1024, show_default=True,
              help="STFT size (and periodic Hann window length) in samples.")
@click.option("--hop-length", type=click.IntRange(min=1), default=512, show_default=True,
              help="STFT hop in samples.")
@click.option("--n-mels", type=click.IntRange(min=1, max=1024), default=128, show_default=True,
              help="Mel bands (Slaney filterbank, as librosa's).")
@click.option("--fmin", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Lowest mel filter edge (Hz).")
@click.option("--fmax", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Highest mel filter edge (Hz; 0 = half the sample rate).")
@click.option("--max-seconds", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Use at most this many seconds of each file (0 = all; 30 s is a 7digital preview).")
@click.option("--offset", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Start this many seconds into each file.")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True,
              help="Stored precision of the features.")
@click.option("--min-seconds", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Skip (and list as failed) clips shorter than this.")
@click.option("--silence-db", type=float, default=-60.0, show_default=True,
              help="Skip (and list as failed) clips whose peak level is below this (dBFS; -inf: never).")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=None,
              help="Worker processes that decode and compute (default: all cores; 0: in this process).")
@click.option("--device", default="cpu", show_default=True,
              help="cpu (all in the workers), cuda or cuda:N (STFT and mel on the GPU, decoding in "
                   "the workers), cpu-torch (the GPU code on the CPU) or auto.")
@click.option("--shard", help="K/N: compute only the K-th of N disjoint parts of the inputs (by a hash of "
                              "the id), for several machines; join the parts with --merge.")
@click.option("--merge", is_flag=True,
              help="Join mels files instead: AUDIO are shard files made with the same settings.")
@click.option("--overwrite", is_flag=True,
              help="Start afresh: ignore the existing output and any interrupted run's work "
                   "(the old file is replaced only when the new one is complete). An interrupted "
                   "--overwrite run is finished by a rerun without --overwrite, and still replaces the file.")
@click.option("--strict", is_flag=True,
              help="Stop at the first file that cannot be used, and refuse several tracks of one song.")
@click.option("--checkpoint-every", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds between commits of the completed items (what a kill can lose at most).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Clips per STFT batch with --device cuda/cpu-torch.")
@click.pass_context
def cli(ctx, audio, output, id_map, sample_rate, n_fft, hop_length, n_mels, fmin, fmax, max_seconds,
        offset, dtype, min_seconds, silence_db, jobs, device, shard, merge, overwrite, strict,
        checkpoint_every, batch_size):
    """Compute log-mel spectrograms of audio files into one HDF5 file (the mels contract).

    AUDIO is a folder (searched recursively for mp3, ogg, opus, flac, wav, aiff and the other
    formats libsndfile reads), an audio file, or a file listing paths one a line (`-` reads the
    list from stdin). Each file becomes one item, named by its stem (an MSD track id for the
    7digital previews) or by its song id through --id-map. Defaults follow the paper: 22,050 Hz
    mono, STFT 1024 (Hann) hop 512, 128 mel bands, log10(1 + 10 mel), the first 30 s, stored as
    float16 with the mean and std of all values as attributes. Reruns resume: items already in
    the output are skipped, and a killed run (even kill -9) restarts from its last checkpoint;
    Ctrl-C or SIGTERM stops after the file in flight and keeps every item done (exit 130).
    Files that cannot be used are listed in OUTPUT.failures.tsv (path, reason), never fatal
    unless --strict.

    \b
    Example:
      dcue melspec data/audio -o mels.h5 --id-map data/unique_tracks.txt
      find /previews -name '*.mp3' | dcue melspec - -o mels.h5 -j 8
      dcue melspec audio/ -o part1.h5 --shard 1/2     # on machine 1; 2/2 on machine 2
      dcue melspec --merge part1.h5 part2.h5 -o mels.h5
    """
    if merge:
        from dcue_cli.io.mels_merge import merge_mels

        for name in ("id_map", "shard", "strict"):
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
                raise click.UsageError(f"--{name.replace('_', '-')} does not apply to --merge.")
        start = time.perf_counter()
        summary = merge_mels(audio, output, overwrite=overwrite)
        log.info(f"melspec --merge: {summary['n_items']} items from {len(audio)} files in "
                 f"{time.perf_counter() - start:.1f} s -> {output}")
        return
    if "-" in audio and audio.count("-") > 1:
        raise click.UsageError("'-' (stdin) can be given only once.")
    from dcue_cli.audio.decode import ClipChecks
    from dcue_cli.audio.logmel import FeatureConfig
    from dcue_cli.audio.melspec import run_melspec

    try:
        config = FeatureConfig(sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, fmin=fmin,
                               fmax=fmax, max_seconds=max_seconds, offset=offset, dtype=dtype)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        report = run_melspec(audio, output, config,
                             checks=ClipChecks(min_seconds=min_seconds, silence_db=silence_db), id_map_path=id_map,
                             jobs=jobs, device=device, shard=parse_shard(shard), overwrite=overwrite, strict=strict,
                             checkpoint_seconds=checkpoint_every, batch_size=batch_size)
    except KeyboardInterrupt:
        ctx.exit(130)  # what was done is kept and said (run_melspec); 130 as for train, 128 + SIGINT
    log.info(report.line(output))
    if report.failed:
        log.warning(f"{report.failed} inputs could not be used: see {report.failures_path}")
