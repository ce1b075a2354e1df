"""Audio files to a mels HDF5 (the mels contract): what `dcue melspec` does, without click.

    from dcue_cli.audio.logmel import FeatureConfig
    from dcue_cli.audio.melspec import run_melspec

    report = run_melspec(["audio/"], "mels.h5", FeatureConfig(), jobs=2)
    print(report.line("mels.h5"))

`run_melspec` computes what the output lacks and writes it, and lists the failures beside it.
Which files and ids: `dcue_cli.audio.inputs`; the features and the worker processes:
`dcue_cli.audio.extract`; the file and its crash safety: `dcue_cli.io.mels_writer`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field

from dcue_cli import log
from dcue_cli.audio.decode import ClipChecks
from dcue_cli.audio.inputs import Inputs, assign_ids, gather_inputs, printable
from dcue_cli.errors import DcueError
from dcue_cli.interrupts import StopSignals
from dcue_cli.runtime import default_jobs, mel_device


@dataclass
class Report:
    written: int = 0
    present: int = 0  # skipped: already in the output or in an interrupted run's segments
    failed: int = 0
    left_out: int = 0  # further tracks of songs that have one (one track per song)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    n_items: int = 0  # in the output now
    failures_path: str | None = None
    summary: dict = field(default_factory=dict)

    def line(self, output) -> str:
        rate = self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0
        failed = f"{self.failed} failed" + (f" (see {self.failures_path})" if self.failed else "")
        if self.left_out:
            failed += (f", {self.left_out} left out (one track per song"
                       + ("" if self.failed else f"; see {self.failures_path}") + ")")
        return (f"melspec: {self.written} written, {self.present} skipped (already present), {failed}; "
                f"{self.audio_seconds / 3600:.2f} audio hours in {self.wall_seconds:.1f} s "
                f"({rate:.0f}x realtime); {output} holds {self.n_items} items.")


def failures_path_for(output) -> str:
    return f"{output}.failures.tsv"


def write_failures(output, failures) -> str | None:
    """path<TAB>reason beside the output (tabs and newlines in a path escaped, `printable`); a stale
    file from an earlier run is removed."""
    from dcue_cli.io.atomic import open_text_output

    path = failures_path_for(output)
    if not failures:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return None
    with open_text_output(path) as stream:
        for source, reason in sorted(failures):
            clean = " ".join(str(reason).split())
            stream.write(f"{printable(source)}\t{clean}\n")
    return path


def _strict_error(path, reason) -> DcueError:
    return DcueError(f"{printable(path)}: {reason} (--strict stops at the first failure).")


def run_melspec(sources, output, config, *, checks=None, id_map_path=None, jobs=None, device="cpu",
                shard=None, overwrite=False, strict=False, checkpoint_seconds=30.0, batch_size=16) -> Report:
    """Compute the mels of every input not yet in `output` and write it (see `dcue melspec -h`).

    sources: folders, audio files, path lists or '-'; config: a FeatureConfig; checks: a
    ClipChecks; jobs: worker processes (0: in this process; None: every usable core);
    shard: (K, N) or None. Ctrl-C/SIGTERM: what is done is kept, then KeyboardInterrupt.
    """
    from dcue_cli.io.atomic import check_output_path, refuse_inputs_as_outputs
    from dcue_cli.io.mels_writer import MelsWriter

    start = time.perf_counter()
    check_output_path(output, "mels file")
    device = mel_device(device)
    refuse_inputs_as_outputs({"-o": output}, {"AUDIO": list(sources), "--id-map": id_map_path})
    inputs = _inputs(sources, id_map_path, shard, strict)
    refuse_inputs_as_outputs({"-o": output}, {"AUDIO": list(inputs.paths.values())})
    run = _Run(inputs, config, checks or ClipChecks(), default_jobs(jobs), device, batch_size, strict, start)
    with StopSignals() as interrupts, MelsWriter(output, config.to_attrs(), checkpoint_seconds=checkpoint_seconds,
                                                 overwrite=overwrite) as writer:
        run.compute(writer, interrupts)
        run.assemble(writer, output)
    report = run.report
    report.n_items = report.summary["n_items"]
    report.failures_path = write_failures(output, run.failures + run.left_out)
    report.wall_seconds = time.perf_counter() - start
    return report


def _inputs(sources, id_map_path, shard, strict) -> Inputs:
    from dcue_cli.io.idmap import read_id_map

    id_map = read_id_map(id_map_path) if id_map_path else None
    inputs = assign_ids(gather_inputs(sources), id_map, os.path.basename(str(id_map_path or "")), shard, strict)
    if not inputs.ids and not inputs.failures:
        raise DcueError("no input files" + (f" in shard {shard[0]}/{shard[1]}" if shard else "")
                        + ": give an audio folder, audio files or a path list.")
    if strict and inputs.failures:
        raise _strict_error(*inputs.failures[0])
    return inputs


class _Run:
    """One run's state: the inputs, the work left, the failures and the report being filled."""

    def __init__(self, inputs: Inputs, config, checks, jobs, device, batch_size, strict, start):
        self.inputs, self.config, self.checks = inputs, config, checks
        self.jobs, self.device, self.batch_size, self.strict = jobs, device, batch_size, strict
        self.start = start
        self.report = Report()
        self.failures = list(inputs.failures)
        self.left_out: list = []  # (path, reason) of the tracks not used, their song has one
        self.todo: list = []
        self.ready = self.ready_cpu = 0.0

    def compute(self, writer, interrupts):
        """Compute and append every input the writer lacks; Ctrl-C commits what is done."""
        self.todo = [i for i in self.inputs.ids if i not in writer.present]
        self.report.present = len(self.inputs.ids) - len(self.todo)
        if writer.resumed_items:
            log.info(f"resuming: {writer.resumed_items} items kept from an interrupted run in {writer.partial}")
        if writer.resumes_overwrite and writer.output.exists():
            log.info(f"finishing an interrupted --overwrite run: the items of {writer.output} are replaced "
                     f"by those of this run when it completes (as --overwrite asked)")
        self.ready, self.ready_cpu = time.perf_counter(), time.process_time()
        bar = log.progress(total=len(self.todo), desc="melspec", unit="file")
        try:
            self._loop(writer, interrupts, bar)
        except KeyboardInterrupt:
            bar.close()
            writer.commit()
            log.warning(f"interrupted: the {writer.appended} items computed are kept in {writer.partial}; "
                        + ("rerun the same command without --overwrite to finish (it still replaces "
                           f"{writer.output}; with --overwrite it starts afresh)." if writer.replacing
                           else "rerun the same command to finish."))
            raise
        finally:
            bar.close()

    def _loop(self, writer, interrupts, bar):
        """Every item to do, then, in rounds, the next track of each song whose file failed."""
        untried = {i: list(paths) for i, paths in self.inputs.alternates.items()}
        work = [(i, self.inputs.paths[i]) for i in self.todo]
        while work:
            retry = []
            # closing: an error here shuts the workers down now, not when the traceback is freed
            with contextlib.closing(self._outcomes(work, interrupts, bar)) as results:
                for item_id, path, outcome in results:
                    if outcome.mel is not None:
                        writer.append(item_id, outcome.mel, outcome.stats)
                        continue
                    self.failures.append((path, outcome.reason))
                    if self.strict:
                        raise _strict_error(path, outcome.reason)
                    if untried.get(item_id):
                        retry.append((item_id, untried[item_id].pop(0)))
            work = retry
            if retry:
                bar.total += len(retry)
        self.left_out = [(path, (f"another track of song {item_id} is used (one track per song: the first in "
                                 "track-id order that can be used)"))
                         for item_id, paths in untried.items() for path in paths]
        self.report.left_out = len(self.left_out)

    def _outcomes(self, work, interrupts, bar):
        """(id, path, Outcome) of each (id, path) of `work`, in order; counts and shows the progress."""
        from dcue_cli.audio import (
            extract,  # extract.extract_many looked up at call time (tests replace it)
        )

        report = self.report
        outcomes = extract.extract_many([path for _, path in work], self.config, jobs=self.jobs,
                                        checks=self.checks, device=self.device, batch_size=self.batch_size,
                                        quiet_decoders=not log.logger.isEnabledFor(logging.DEBUG))
        shown = 0.0
        # The outcomes first: zip then reads them to their end, which shuts the workers down
        # and waits for them, rather than leaving them to exit on their own.
        with contextlib.closing(outcomes) as stream:
            for outcome, (item_id, path) in zip(stream, work):
                yield item_id, path, outcome
                if outcome.mel is not None:
                    report.written += 1
                    report.audio_seconds += outcome.seconds
                bar.update(1)
                interrupts.check()
                now = time.perf_counter()
                if now - shown > 0.5:
                    shown = now
                    rate = report.audio_seconds / max(now - self.start, 1e-9)
                    bar.set_postfix_str(f"{report.audio_seconds / 3600:.2f} h audio, {rate:.0f}x realtime",
                                        refresh=False)

    def assemble(self, writer, output):
        """Write the complete output; nothing usable is a DcueError (the failures listed)."""
        report = self.report
        report.failed = len(self.failures)
        if not writer.present:
            writer.abandon()
            report.failures_path = write_failures(output, self.failures)
            raise DcueError(f"no input could be used ({report.failed} failed"
                            + (f", see {report.failures_path}" if report.failures_path else "")
                            + f"): {output} not written.")
        # This process's own CPU while the workers computed: with -j N on N cores it competes
        # with them, so it bounds the speed-up (benchmarks/melspec_bench.py reads this line).
        loop_cpu = time.process_time() - self.ready_cpu
        log.debug(f"melspec: inputs and workers ready after {self.ready - self.start:.2f} s, computing took "
                  f"{time.perf_counter() - self.ready:.2f} s; this process used {loop_cpu:.2f} s of CPU meanwhile "
                  f"({1000 * loop_cpu / max(len(self.todo), 1):.2f} ms a file)")
        finishing = time.perf_counter()
        report.summary = writer.finish()
        log.debug(f"melspec: assembling {output} took {time.perf_counter() - finishing:.2f} s")
