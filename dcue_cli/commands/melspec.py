"""`dcue melspec`: audio files to a log-mel HDF5 (the mels contract), fast, resumable, robust.

The importable pieces (`gather_inputs`, `assign_ids`, `run_melspec`) do the work; `cli` only
parses options. Features: `dcue_cli.features`; the file and its crash safety: `dcue_cli.io.mels`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import click

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.options import default_jobs, output_option


# ---------------------------------------------------------------------------------------------
# Inputs

def _extensions():
    from dcue_cli.features import AUDIO_EXTENSIONS

    return AUDIO_EXTENSIONS


def is_audio_name(path) -> bool:
    return Path(path).suffix.lower().lstrip(".") in _extensions()


def gather_inputs(sources) -> list:
    """Audio paths from folders (searched recursively), audio files, path lists and '-' (stdin).

    Hidden files and folders (names starting with '.', e.g. macOS '._x.mp3') are left out of
    folder scans. Relative paths in a list are taken relative to the working directory, as
    `find` prints them. The same path given twice counts once.
    """
    from dcue_cli.io.text import open_text

    paths, seen = [], set()

    def add(path):
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            paths.append(path)

    for source in sources:
        source = str(source)
        if source != "-" and os.path.isdir(source):
            found = 0
            for root, dirs, files in os.walk(source, followlinks=True):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in files:
                    if not name.startswith(".") and is_audio_name(name):
                        add(os.path.join(root, name))
                        found += 1
            if not found:
                raise DcueError(f"{source} holds no audio files (looked for "
                                f"{', '.join('.' + e for e in sorted(['mp3', 'ogg', 'opus', 'flac', 'wav']))} "
                                f"and other formats libsndfile reads): check the folder.")
        elif source != "-" and is_audio_name(source):
            add(source)  # a single audio file; if it is missing it is listed as failed
        else:
            if source != "-" and not os.path.exists(source):
                raise DcueError(f"{source} does not exist: give an audio folder, an audio file, "
                                f"or a file listing audio paths one a line ('-' for stdin).")
            with open_text(source) as stream:
                for line in stream:
                    line = line.strip()
                    if line:
                        add(line)
    return paths


def parse_shard(text: Optional[str]):
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


def in_shard(item_id: str, shard) -> bool:
    """A stable hash of the id, so every machine agrees whatever paths its files have."""
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(item_id.encode("utf-8", "surrogateescape")) % n == k - 1


@dataclass
class Inputs:
    ids: list  # sorted
    paths: dict  # id -> path
    failures: list = field(default_factory=list)  # (path, reason) decided without decoding


def assign_ids(paths, id_map: Optional[dict] = None, id_map_name: str = "", shard=None) -> Inputs:
    """Id of each path (its stem, or the stem's song id through `id_map`), checked and sorted.

    Two paths with the same id are a DcueError naming both. Processing and output order is the
    sorted ids, so nothing depends on folder order, -j or the machine.
    """
    by_id, failures = {}, []
    for path in sorted(paths):  # sorted: the same error names the same two files every time
        stem = Path(path).stem
        item_id = stem
        if id_map is not None:
            entry = id_map.get(stem)
            if entry is None:
                failures.append((path, f"{stem} is not a track id in {id_map_name}"))
                continue
            item_id = entry[0]
        try:
            item_id.encode("utf-8")
        except UnicodeEncodeError:
            failures.append((path, "the file name is not valid UTF-8"))
            continue
        if not item_id:
            failures.append((path, "empty id (the file name has no stem)"))
            continue
        if item_id in by_id:
            via = f" (through {id_map_name})" if id_map is not None else ""
            raise DcueError(f"two inputs have the same id {item_id!r}{via}: {by_id[item_id]} and {path}: "
                            f"leave one of them out of the input.")
        by_id[item_id] = path
    ids = sorted(i for i in by_id if in_shard(i, shard))
    return Inputs(ids=ids, paths={i: by_id[i] for i in ids}, failures=failures)


# ---------------------------------------------------------------------------------------------
# The run

@dataclass
class Report:
    written: int = 0
    present: int = 0  # skipped: already in the output or in an interrupted run's segments
    failed: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    n_items: int = 0  # in the output now
    failures_path: Optional[str] = None
    summary: dict = field(default_factory=dict)

    def line(self, output) -> str:
        rate = self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0
        failed = f"{self.failed} failed" + (f" (see {self.failures_path})" if self.failed else "")
        return (f"melspec: {self.written} written, {self.present} skipped (already present), {failed}; "
                f"{self.audio_seconds / 3600:.2f} audio hours in {self.wall_seconds:.1f} s "
                f"({rate:.0f}x realtime); {output} holds {self.n_items} items.")


def failures_path_for(output) -> str:
    return f"{output}.failures.tsv"


def write_failures(output, failures) -> Optional[str]:
    """path<TAB>reason beside the output; a stale file from an earlier run is removed."""
    from dcue_cli.io.atomic import open_text_output

    path = failures_path_for(output)
    if not failures:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return None
    with open_text_output(path) as stream:
        for source, reason in sorted(failures):
            clean = " ".join(str(reason).split())
            stream.write(f"{source}\t{clean}\n")
    return path


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM ends the run like Ctrl-C: the items done so far are committed first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_melspec(sources, output, config, *, checks=None, id_map_path=None, jobs=1, device="cpu",
                shard=None, overwrite=False, strict=False, checkpoint_seconds=30.0, batch_size=16) -> Report:
    """Compute the mels of every input not yet in `output` and write it (see `dcue melspec -h`)."""
    from dcue_cli.features import ClipChecks, extract_many, resolve_device
    from dcue_cli.io.mels import MelsWriter
    from dcue_cli.io.tsv import read_id_map

    start = time.perf_counter()
    checks = checks or ClipChecks()
    device = resolve_device(device)
    id_map = read_id_map(id_map_path) if id_map_path else None
    inputs = assign_ids(gather_inputs(sources), id_map, os.path.basename(str(id_map_path or "")), shard)
    if not inputs.ids and not inputs.failures:
        raise DcueError("no input files" + (f" in shard {shard[0]}/{shard[1]}" if shard else "")
                        + ": give an audio folder, audio files or a path list.")
    if strict and inputs.failures:
        path, reason = inputs.failures[0]
        raise DcueError(f"{path}: {reason} (--strict stops at the first failure).")

    report = Report()
    failures = list(inputs.failures)
    with _sigterm_as_interrupt(), MelsWriter(output, config.to_attrs(), checkpoint_seconds=checkpoint_seconds,
                                             overwrite=overwrite) as writer:
        todo = [i for i in inputs.ids if i not in writer.present]
        report.present = len(inputs.ids) - len(todo)
        if writer.resumed_items:
            log.info(f"resuming: {writer.resumed_items} items kept from an interrupted run in {writer.partial}")
        ready = time.perf_counter()
        bar = log.progress(total=len(todo), desc="melspec", unit="file")
        shown = 0.0
        try:
            outcomes = contextlib.closing(extract_many([inputs.paths[i] for i in todo], config, jobs=jobs,
                                                       checks=checks, device=device, batch_size=batch_size,
                                                       quiet_decoders=not log.logger.isEnabledFor(logging.DEBUG)))
            with outcomes as stream:
                for item_id, outcome in zip(todo, stream):
                    if outcome.mel is not None:
                        writer.append(item_id, outcome.mel)
                        report.written += 1
                        report.audio_seconds += outcome.seconds
                    else:
                        failures.append((inputs.paths[item_id], outcome.reason))
                        if strict:
                            raise DcueError(f"{inputs.paths[item_id]}: {outcome.reason} "
                                            f"(--strict stops at the first failure).")
                    bar.update(1)
                    now = time.perf_counter()
                    if now - shown > 0.5:
                        shown = now
                        rate = report.audio_seconds / max(now - start, 1e-9)
                        bar.set_postfix_str(f"{report.audio_seconds / 3600:.2f} h audio, {rate:.0f}x realtime",
                                            refresh=False)
        except KeyboardInterrupt:
            bar.close()
            writer.commit()
            log.warning(f"interrupted: the {writer.appended} items computed are kept in {writer.partial}; "
                        f"rerun the same command to finish.")
            raise
        finally:
            bar.close()
        report.failed = len(failures)
        if not writer.present:
            writer.abandon()
            report.failures_path = write_failures(output, failures)
            raise DcueError(f"no input could be used ({report.failed} failed"
                            + (f", see {report.failures_path}" if report.failures_path else "")
                            + f"): {output} not written.")
        log.debug(f"melspec: inputs and workers ready after {ready - start:.2f} s, computing took "
                  f"{time.perf_counter() - ready:.2f} s")
        finishing = time.perf_counter()
        report.summary = writer.finish()
        log.debug(f"melspec: assembling {output} took {time.perf_counter() - finishing:.2f} s")
    report.n_items = report.summary["n_items"]
    report.failures_path = write_failures(output, failures)
    report.wall_seconds = time.perf_counter() - start
    return report


# ---------------------------------------------------------------------------------------------
# The command

@click.command("melspec")
@click.argument("audio", nargs=-1, required=True, type=click.Path(allow_dash=True))
@output_option("The mels HDF5 to write; if it exists, the items already in it are kept and "
               "only new inputs are computed.")
@click.option("--id-map", type=click.Path(exists=True, dir_okay=False),
              help="MSD unique_tracks.txt: store each file (named by its track id) under its song id.")
@click.option("--sr", "sample_rate", type=click.IntRange(min=1000), default=22050, show_default=True,
              help="Sample rate (Hz) the audio is resampled to (mono, soxr HQ).")
@click.option("--n-fft", type=click.IntRange(min=16), default=1024, show_default=True,
              help="STFT size (and periodic Hann window length) in samples.")
@click.option("--hop-length", type=click.IntRange(min=1), default=512, show_default=True,
              help="STFT hop in samples.")
@click.option("--n-mels", type=click.IntRange(min=1), default=128, show_default=True,
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
                   "(the old file is replaced only when the new one is complete).")
@click.option("--strict", is_flag=True, help="Stop at the first file that cannot be used.")
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
    the output are skipped, and a killed run (even kill -9) restarts from its last checkpoint.
    Files that cannot be used are listed in OUTPUT.failures.tsv (path, reason), never fatal
    unless --strict.

    \b
    Example:
      dcue melspec data/audio -o mels.h5 --id-map data/unique_tracks.txt
      find /previews -name '*.mp3' | dcue melspec - -o mels.h5 -j 8
      dcue melspec audio/ -o part1.h5 --shard 1/2     # on machine 1; 2/2 on machine 2
      dcue melspec --merge part1.h5 part2.h5 -o mels.h5
    """
    from dcue_cli.features import ClipChecks, FeatureConfig

    if merge:
        from dcue_cli.io.mels import merge_mels

        for name in ("id_map", "shard", "strict"):
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
                raise click.UsageError(f"--{name.replace('_', '-')} does not apply to --merge.")
        start = time.perf_counter()
        summary = merge_mels(audio, output, overwrite=overwrite)
        log.info(f"melspec --merge: {summary['n_items']} items from {len(audio)} files in "
                 f"{time.perf_counter() - start:.1f} s -> {output}")
        return
    if str(output) == "-":
        raise click.UsageError("-o/--output must be a file: HDF5 cannot be written to stdout.")
    if "-" in audio and audio.count("-") > 1:
        raise click.UsageError("'-' (stdin) can be given only once.")
    try:
        config = FeatureConfig(sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, fmin=fmin,
                               fmax=fmax, max_seconds=max_seconds, offset=offset, dtype=dtype)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if config.top_hz <= fmin or config.top_hz > sample_rate / 2:
        raise click.UsageError(f"--fmin {fmin:g} / --fmax {fmax:g}: need fmin < fmax <= sr/2 ({sample_rate / 2:g}).")
    if hop_length > n_fft:
        raise click.UsageError(f"--hop-length {hop_length} is larger than --n-fft {n_fft}: frames would skip audio.")
    from dcue_cli.io.atomic import check_output_path

    check_output_path(output, "mels file")
    report = run_melspec(audio, output, config, checks=ClipChecks(min_seconds=min_seconds, silence_db=silence_db),
                         id_map_path=id_map, jobs=default_jobs(jobs) if jobs is None else jobs, device=device,
                         shard=parse_shard(shard), overwrite=overwrite, strict=strict,
                         checkpoint_seconds=checkpoint_every, batch_size=batch_size)
    log.info(report.line(output))
    if report.failed:
        log.warning(f"{report.failed} inputs could not be used: see {report.failures_path}")

