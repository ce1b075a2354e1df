"""Audio files to a mels HDF5 (the mels contract): what `dcue melspec` does, without click.

    from dcue_cli.features import FeatureConfig
    from dcue_cli.melspec import run_melspec

    report = run_melspec(["audio/"], "mels.h5", FeatureConfig(), jobs=2)
    print(report.line("mels.h5"))

`gather_inputs` finds the audio files, `assign_ids` names and shards them, `run_melspec`
computes what the output lacks and writes it. The features and the worker processes:
`dcue_cli.features`; the file and its crash safety: `dcue_cli.io.mels`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from dcue_cli import log
from dcue_cli.errors import DcueError
from dcue_cli.interrupts import StopSignals
from dcue_cli.runtime import mel_device

# What a folder scan names in its error message (it finds every format libsndfile reads).
MAIN_EXTENSIONS = ("flac", "mp3", "ogg", "opus", "wav")


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
                                f"{', '.join('.' + e for e in MAIN_EXTENSIONS)} "
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


def assign_ids(paths, id_map: dict | None = None, id_map_name: str = "", shard=None) -> Inputs:
    """Id of each path (its stem, or the stem's song id through `id_map`), checked and sorted.

    Two paths with the same id are a DcueError naming both. Processing and output order is the
    sorted ids, so nothing depends on folder order, -j or the machine. shard: (K, N) keeps the
    K-th of N parts (by `in_shard`), None all.
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


def check_config(config) -> None:
    """ValueError naming the options when feature settings contradict each other."""
    if config.top_hz <= config.fmin or config.top_hz > config.sr / 2:
        raise ValueError(f"--fmin {config.fmin:g} / --fmax {config.fmax:g}: need fmin < fmax <= sr/2 "
                         f"({config.sr / 2:g}).")
    if config.hop_length > config.n_fft:
        raise ValueError(f"--hop-length {config.hop_length} is larger than --n-fft {config.n_fft}: "
                         f"frames would skip audio.")


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
    failures_path: str | None = None
    summary: dict = field(default_factory=dict)

    def line(self, output) -> str:
        rate = self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0
        failed = f"{self.failed} failed" + (f" (see {self.failures_path})" if self.failed else "")
        return (f"melspec: {self.written} written, {self.present} skipped (already present), {failed}; "
                f"{self.audio_seconds / 3600:.2f} audio hours in {self.wall_seconds:.1f} s "
                f"({rate:.0f}x realtime); {output} holds {self.n_items} items.")


def failures_path_for(output) -> str:
    return f"{output}.failures.tsv"


def write_failures(output, failures) -> str | None:
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


def _strict_error(path, reason) -> DcueError:
    return DcueError(f"{path}: {reason} (--strict stops at the first failure).")


def run_melspec(sources, output, config, *, checks=None, id_map_path=None, jobs=1, device="cpu",
                shard=None, overwrite=False, strict=False, checkpoint_seconds=30.0, batch_size=16) -> Report:
    """Compute the mels of every input not yet in `output` and write it (see `dcue melspec -h`).

    sources: folders, audio files, path lists or '-'; config: a FeatureConfig; checks: a
    ClipChecks; jobs: worker processes (0: in this process); shard: (K, N) or None.
    """
    from dcue_cli import (
        features,  # features.extract_many looked up at call time (tests replace it)
    )
    from dcue_cli.io.mels import MelsWriter
    from dcue_cli.io.idmap import read_id_map

    start = time.perf_counter()
    checks = checks or features.ClipChecks()
    device = mel_device(device)
    id_map = read_id_map(id_map_path) if id_map_path else None
    inputs = assign_ids(gather_inputs(sources), id_map, os.path.basename(str(id_map_path or "")), shard)
    if not inputs.ids and not inputs.failures:
        raise DcueError("no input files" + (f" in shard {shard[0]}/{shard[1]}" if shard else "")
                        + ": give an audio folder, audio files or a path list.")
    if strict and inputs.failures:
        raise _strict_error(*inputs.failures[0])

    report = Report()
    failures = list(inputs.failures)
    with StopSignals() as interrupts, MelsWriter(output, config.to_attrs(), checkpoint_seconds=checkpoint_seconds,
                                             overwrite=overwrite) as writer:
        todo = [i for i in inputs.ids if i not in writer.present]
        report.present = len(inputs.ids) - len(todo)
        if writer.resumed_items:
            log.info(f"resuming: {writer.resumed_items} items kept from an interrupted run in {writer.partial}")
        ready, ready_cpu = time.perf_counter(), time.process_time()
        bar = log.progress(total=len(todo), desc="melspec", unit="file")
        shown = 0.0
        try:
            outcomes = features.extract_many([inputs.paths[i] for i in todo], config, jobs=jobs, checks=checks,
                                             device=device, batch_size=batch_size,
                                             quiet_decoders=not log.logger.isEnabledFor(logging.DEBUG))
            # The outcomes first: zip then reads them to their end, which shuts the workers down
            # and waits for them, rather than leaving them to exit on their own.
            with contextlib.closing(outcomes) as stream:
                for outcome, item_id in zip(stream, todo):
                    if outcome.mel is not None:
                        writer.append(item_id, outcome.mel, outcome.stats)
                        report.written += 1
                        report.audio_seconds += outcome.seconds
                    else:
                        failures.append((inputs.paths[item_id], outcome.reason))
                        if strict:
                            raise _strict_error(inputs.paths[item_id], outcome.reason)
                    bar.update(1)
                    interrupts.check()
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
        # This process's own CPU while the workers computed: with -j N on N cores it competes
        # with them, so it bounds the speed-up (benchmarks/melspec_bench.py reads this line).
        loop_cpu = time.process_time() - ready_cpu
        log.debug(f"melspec: inputs and workers ready after {ready - start:.2f} s, computing took "
                  f"{time.perf_counter() - ready:.2f} s; this process used {loop_cpu:.2f} s of CPU meanwhile "
                  f"({1000 * loop_cpu / max(len(todo), 1):.2f} ms a file)")
        finishing = time.perf_counter()
        report.summary = writer.finish()
        log.debug(f"melspec: assembling {output} took {time.perf_counter() - finishing:.2f} s")
    report.n_items = report.summary["n_items"]
    report.failures_path = write_failures(output, failures)
    report.wall_seconds = time.perf_counter() - start
    return report
