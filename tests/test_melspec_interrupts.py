"""`dcue melspec` interrupted: kill -9 (at fixed checkpoints with worker processes; at random
moments, slow), Ctrl-C and SIGTERM (exit 130, what is done kept), SIGINT ignored in the background,
a second writer on the same output; each rerun ends bit for bit equal to an uninterrupted run."""

import filecmp
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio_files import SR, make_folder, read_items, sine
from conftest import REPO, error_line, invoke, popen_with_sigint

from dcue_cli.audio.logmel import FeatureConfig
from dcue_cli.io.mels import MelsFile
from dcue_cli.io.mels_writer import MelsWriter


def _segments(partial):
    return sorted(Path(partial).glob("seg-*.h5"))

def test_kill_9_at_any_moment_then_rerun_equals_uninterrupted(tmp_path):
    audio = make_folder(tmp_path / "audio", 40, seconds=3.0)
    invoke(["melspec", audio, "-o", tmp_path / "ref.h5", "-j", "0"])
    reference, _ = read_items(tmp_path / "ref.h5")

    out = tmp_path / "out.h5"
    partial = Path(f"{out}.partial")
    # an existing output that the run adds to: it must survive every kill untouched
    invoke(["melspec", "-", "-o", out, "-j", "0"], input="\n".join(map(str, sorted(audio.rglob("*.wav"))[:5])))
    before = out.read_bytes()
    command = [sys.executable, "-m", "dcue_cli", "-q", "melspec", str(audio), "-o", str(out), "-j", "1",
               "--checkpoint-every", "0"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for kill_after in (3, 12):  # segments committed before the kill
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.monotonic() + 60
        while len(_segments(partial)) < kill_after and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, "finished before it could be killed: " + proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        for _ in range(100):  # the workers notice and exit too
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("worker processes outlived the killed parent")
        assert out.read_bytes() == before
        segments = _segments(partial)
        assert len(segments) >= kill_after
        for segment in segments:  # every committed segment opens and holds complete items
            items, _ = read_items(segment)
            assert items and all(np.array_equal(mel, reference[k]) for k, mel in items.items())

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert filecmp.cmp(out, tmp_path / "ref.h5", shallow=False)  # bit for bit
    assert not partial.exists()

def ids_of(path) -> list:
    with MelsFile(path) as m:
        return m.ids.tolist()


def _melspec_command(audio, out, *extra):
    return [sys.executable, "-m", "dcue_cli", "-q", "melspec", str(audio), "-o", str(out), "-j", "0",
            "--checkpoint-every", "0", *map(str, extra)]

def _env():
    return dict(os.environ, PYTHONPATH=str(REPO))

def _tones(root, n, *, first_hz, step_hz):
    """root/audio/TR000.wav ...: n three-second tones, each at its own pitch."""
    (root / "audio").mkdir()
    for k in range(n):
        sf.write(root / "audio" / f"TR{k:03d}.wav", sine(3.0, freq=first_hz + step_hz * k), SR)
    return root

@pytest.fixture(scope="module")
def kill_audio(tmp_path_factory):
    root = _tones(tmp_path_factory.mktemp("kill"), 16, first_hz=150.0, step_hz=40.0)
    base = root / "base.h5"  # an existing output the runs add to: finishing is then a copy, a wider window
    files = sorted((root / "audio").glob("*.wav"))
    invoke(["melspec", *files[:4], "-o", base, "-j", "0"])
    reference = root / "reference.h5"
    invoke(["melspec", root / "audio", "-o", reference, "-j", "0"])
    return root, base, reference

@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_equals_an_uninterrupted_run(kill_audio, tmp_path):
    """Five kill -9 at seeded random moments (start-up, mid-run, while finishing), then one rerun.

    The default suite's kill -9 case is test_kill_9_at_any_moment_then_rerun_equals_uninterrupted."""
    root, base, reference = kill_audio
    out = tmp_path / "out.h5"
    shutil.copy(base, out)
    before = out.read_bytes()
    command = _melspec_command(root / "audio", out)
    start = time.monotonic()
    probe = subprocess.run(_melspec_command(root / "audio", tmp_path / "timing.h5"), env=_env(), capture_output=True, check=False)
    assert probe.returncode == 0, probe.stderr
    full = time.monotonic() - start
    rng = random.Random(8)
    kills = 0
    for _ in range(5):
        proc = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 1.1) * full)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if not Path(f"{out}.partial").exists():  # finished before the kill, or killed before it began
            if filecmp.cmp(out, reference, shallow=False):
                shutil.copy(base, out)  # start the next round afresh
            else:
                assert out.read_bytes() == before
        else:
            assert ids_of(out) in (ids_of(base), ids_of(reference))  # the old output or the new one, never a mix
    assert kills >= 2
    rerun = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert filecmp.cmp(out, reference, shallow=False)  # bit for bit
    assert not Path(f"{out}.partial").exists() and out.read_bytes() != before

@pytest.fixture(scope="module")
def many_audio(tmp_path_factory):
    """80 short files: enough work left after the first segments for a signal to land mid-run."""
    root = _tones(tmp_path_factory.mktemp("many"), 80, first_hz=110.0, step_hz=9.0)
    reference = root / "reference.h5"
    invoke(["melspec", root / "audio", "-o", reference, "-j", "0"])
    return root, reference

def _signal_after_three_segments(command, out, sig, *, ignored=False):
    """Start melspec, send `sig` once three segments are committed: (proc, stdout, stderr)."""
    proc = popen_with_sigint(command, ignored=ignored, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    partial = Path(f"{out}.partial")
    deadline = time.monotonic() + 60
    while len(list(partial.glob("seg-*.h5"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "finished before the signal"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return proc, stdout, stderr

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_keep_what_is_done_and_exit_cleanly(many_audio, tmp_path, sig):
    root, reference = many_audio
    out = tmp_path / "out.h5"
    partial = Path(f"{out}.partial")
    command = _melspec_command(root / "audio", out)
    command.remove("-q")
    proc, stdout, stderr = _signal_after_three_segments(command, out, sig)
    assert proc.returncode == 130 and stdout == "" and "Traceback" not in stderr
    assert stderr.rstrip().endswith(f"items computed are kept in {partial}; rerun the same command to finish.")
    assert not out.exists() and len(list(partial.glob("seg-*.h5"))) >= 3
    rerun = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0 and "resuming: " in rerun.stderr
    assert filecmp.cmp(out, reference, shallow=False)

def test_a_run_started_with_sigint_ignored_leaves_ctrl_c_alone(many_audio, tmp_path):
    """Started in the background by a non-interactive shell (`cmd &`), as Unix tools do."""
    root, reference = many_audio
    out = tmp_path / "out.h5"
    proc, _, stderr = _signal_after_three_segments(_melspec_command(root / "audio", out), out, signal.SIGINT,
                                                   ignored=True)
    assert proc.returncode == 0, stderr
    assert filecmp.cmp(out, reference, shallow=False)

def test_ctrl_c_commits_what_is_done(tmp_path, monkeypatch):
    from dcue_cli.audio import extract
    from dcue_cli.audio.melspec import run_melspec

    audio = make_folder(tmp_path / "audio", 6)
    real = extract.extract_many

    def interrupted(*args, **kwargs):  # Ctrl-C (or SIGTERM, mapped to it) after three files
        for k, outcome in enumerate(real(*args, **kwargs)):
            if k == 3:
                raise KeyboardInterrupt
            yield outcome

    monkeypatch.setattr(extract, "extract_many", interrupted)
    out = tmp_path / "m.h5"
    with pytest.raises(KeyboardInterrupt):
        run_melspec([audio], out, FeatureConfig(), jobs=0, checkpoint_seconds=1000)
    (segment,) = _segments(f"{out}.partial")
    assert len(MelsFile(segment)) == 3 and not out.exists()
    monkeypatch.setattr(extract, "extract_many", real)
    result = invoke(["melspec", audio, "-o", out, "-j", "0"])
    assert "resuming: 3 items kept" in result.stderr and "3 written, 3 skipped" in result.stderr
    invoke(["melspec", audio, "-o", tmp_path / "ref.h5", "-j", "0"])
    assert filecmp.cmp(out, tmp_path / "ref.h5", shallow=False)

def test_a_second_melspec_on_the_same_output_is_refused(kill_audio, tmp_path):
    root, base, _ = kill_audio
    out = tmp_path / "out.h5"
    shutil.copy(base, out)
    with MelsWriter(out, FeatureConfig().to_attrs()) as first:  # another run, holding the output
        result = invoke(["melspec", root / "audio", "-o", out, "-j", "0"], expect=1)
        assert error_line(result) == (f"{out} is being written by another `dcue melspec` right now "
                                      f"(it holds {out}.partial/lock): wait for it to finish.")
        assert first.present == set(ids_of(base))
    assert out.read_bytes() == base.read_bytes()


def test_an_interrupted_overwrite_is_finished_by_a_plain_rerun(tmp_path, monkeypatch):
    """The partial folder remembers --overwrite: the rerun without it ends as an uninterrupted
    --overwrite run would (the old items dropped), and the interrupt says to rerun without it
    (with it, the work done would be thrown away)."""
    from dcue_cli.audio import extract

    old = make_folder(tmp_path / "old", 5)
    new = tmp_path / "new"
    for name in ("TR0001", "TR0002", "TR0003"):
        shutil.copytree(old / f"sub{int(name[2:]) % 3}", new / f"sub{int(name[2:]) % 3}", dirs_exist_ok=True)
    for path in new.rglob("*.wav"):
        if path.stem not in ("TR0001", "TR0002", "TR0003"):
            path.unlink()
    out, partial = tmp_path / "m.h5", Path(f"{tmp_path / 'm.h5'}.partial")
    invoke(["melspec", old, "-o", out, "-j", "0"])
    before = out.read_bytes()
    real = extract.extract_many

    def interrupted(*args, **kwargs):  # Ctrl-C after two files
        for k, outcome in enumerate(real(*args, **kwargs)):
            if k == 2:
                raise KeyboardInterrupt
            yield outcome

    monkeypatch.setattr(extract, "extract_many", interrupted)
    result = invoke(["melspec", new, "-o", out, "-j", "0", "--overwrite", "--checkpoint-every", 0], expect=130)
    assert result.stderr.rstrip().endswith(
        f"items computed are kept in {partial}; rerun the same command without --overwrite to finish (it still "
        f"replaces {out}; with --overwrite it starts afresh).")
    assert out.read_bytes() == before and len(_segments(partial)) == 2
    monkeypatch.setattr(extract, "extract_many", real)
    result = invoke(["melspec", new, "-o", out, "-j", "0"])
    assert "resuming: 2 items kept" in result.stderr and "1 written, 2 skipped" in result.stderr
    assert f"finishing an interrupted --overwrite run: the items of {out} are replaced" in result.stderr
    invoke(["melspec", new, "-o", tmp_path / "ref.h5", "-j", "0"])
    assert filecmp.cmp(out, tmp_path / "ref.h5", shallow=False) and not partial.exists()
