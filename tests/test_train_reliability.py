"""`dcue train` and `dcue embed` under abuse: damaged checkpoints, signals, SIGKILL loops, two
runs on one output, outputs that cannot be written."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, error_line, invoke, popen_with_sigint, toy_args


@pytest.fixture(scope="module")
def model(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model.pt"
    invoke(toy_args(toy, out, "--epochs", "1", "--steps-per-epoch", "2", "--patience", "0"))
    return out


class _Touch:
    """A pickle that would create a file if it were ever unpickled with code allowed."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.path),))


def _damaged(kind, model, toy, tmp_path):
    """A file that `embed` and `train --resume` must refuse, and the words the error must hold."""
    import torch

    bad = tmp_path / f"{kind}.pt"
    if kind == "truncated":
        data = model.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
        return bad, "is not a dcue model checkpoint (truncated, damaged or not a torch file: "
    if kind == "empty":
        bad.write_bytes(b"")
        return bad, "is empty, not a dcue model checkpoint"
    if kind == "code":
        torch.save({"format": "dcue-checkpoint", "model": _Touch(tmp_path / "pwned")}, bad)
        return bad, ("is not a dcue model checkpoint (it holds Python objects, not only tensors and plain "
                     "values: refused, as loading it could run code)")
    if kind == "mels":
        shutil.copy(toy / "mels.h5", bad)
        return bad, "is an HDF5 file (mels or embeddings?), not a dcue model checkpoint"
    ckpt = torch.load(model, weights_only=True)
    if kind == "other-size":  # the weights of one size under the config of another
        ckpt["model_config"]["conv_channels"] = [c * 2 for c in ckpt["model_config"]["conv_channels"]]
        words = "do not fit the model it describes (size mismatch for audio."
    elif kind == "bad-config":
        ckpt["model_config"]["pool_sizes"] = [64, 64, 64]
        words = "has an unusable model_config"
    elif kind == "missing-keys":
        del ckpt["model"], ckpt["normalisation"]
        words = "is a damaged dcue checkpoint (no model, normalisation)"
    torch.save(ckpt, bad)
    return bad, words


KINDS = ["truncated", "empty", "code", "mels", "other-size", "bad-config", "missing-keys"]


@pytest.mark.parametrize("kind", KINDS)
def test_embed_refuses_a_damaged_checkpoint_in_one_line(kind, model, toy, tmp_path):
    bad, words = _damaged(kind, model, toy, tmp_path)
    out = tmp_path / "out.h5"
    text = error_line(invoke(["embed", bad, toy / "mels.h5", "-o", out], expect=1))
    assert text.startswith(str(bad)) and words in text, text
    assert "dcue train" in text  # says how to fix it
    assert not out.exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_resume_refuses_a_damaged_state_in_one_line(kind, model, toy, tmp_path):
    bad, words = _damaged(kind, model, toy, tmp_path)
    out = tmp_path / "run" / "m.pt"
    out.parent.mkdir()
    shutil.copy(bad, out.with_name("m.last.pt"))
    text = error_line(invoke(toy_args(toy, out, "--resume"), expect=1))
    assert text.startswith(str(out.with_name("m.last.pt"))) and words in text, text
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.last.pt"]  # nothing written, no lock left
    assert not (tmp_path / "pwned").exists()


def test_an_unwritable_output_is_refused_before_any_training(toy, tmp_path):
    (tmp_path / "a_file").write_text("in the way")
    for target in (tmp_path / "a_file" / "m.pt", tmp_path / "a_file" / "deeper" / "m.pt"):
        r = invoke(toy_args(toy, target), expect=1)
        assert error_line(r).startswith(f"cannot write {target}: {tmp_path / 'a_file'} is a file, not a folder")
        assert "model:" not in r.stderr  # refused before the model was built
        r = invoke(["embed", toy / "mels.h5", toy / "mels.h5", "-o", target.with_suffix(".h5")], expect=1)
        assert error_line(r).startswith(f"cannot write {target.with_suffix('.h5')}")
    (tmp_path / "m.log.tsv").mkdir()  # a folder where the log goes
    r = invoke(toy_args(toy, tmp_path / "m.pt"), expect=1)
    assert error_line(r) == f"{tmp_path / 'm.log.tsv'} is a folder: give a file name for the log (-o names it)."
    assert (tmp_path / "a_file").read_text() == "in the way"


def test_a_second_train_on_the_same_output_is_refused(toy, tmp_path):
    from dcue_cli.io.lock import OutputLock

    out = tmp_path / "m.pt"
    with OutputLock(tmp_path / "m.lock", "held by the test"):  # what a running `dcue train` holds
        r = invoke(toy_args(toy, out, "--epochs", "1", "--steps-per-epoch", "1"), expect=1)
    assert error_line(r) == (f"{out} is being trained by another `dcue train` right now (it holds "
                             f"{tmp_path / 'm.lock'}): wait for it, or give another -o.")
    assert not out.exists() and not out.with_name("m.last.pt").exists()
    invoke(toy_args(toy, out, "--epochs", "1", "--steps-per-epoch", "1"))  # free again
    assert out.exists() and not (tmp_path / "m.lock").exists()  # and the lock file is gone


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_save_and_exit_cleanly(toy, tmp_path, sig):
    out = tmp_path / "model.pt"
    args = [str(a) for a in toy_args(toy, out, "--epochs", "1000", "--patience", "0", "--log-every", "1")]
    proc = popen_with_sigint([sys.executable, "-m", "dcue_cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    log_file = out.with_name("model.log.tsv")
    deadline = time.time() + 120
    while time.time() < deadline and not (log_file.exists() and len(log_file.read_text().splitlines()) > 3):
        time.sleep(0.2)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "continue with the same command and --resume" in stderr
    assert stdout == ""
    assert out.with_name("model.last.pt").exists() and not out.with_name("model.lock").exists()
    r = invoke(toy_args(toy, out, "--epochs", "2", "--patience", "0", "--resume"))  # and it resumes
    assert "resuming" in r.stderr


def _last_step(out) -> int:
    try:
        lines = out.with_name("m.log.tsv").read_text().splitlines()[1:]
    except OSError:
        return 0
    return max((int(line.split("\t")[1]) for line in lines if line.count("\t") > 2), default=0)


def _weights(path):
    import torch

    return torch.load(path, weights_only=True)["model"]


def test_sigkill_then_resume_equals_an_uninterrupted_run(toy, tmp_path):
    """One SIGKILL mid-epoch and `--resume`: the uninterrupted run's weights, bit for bit."""
    _kill_and_resume(toy, tmp_path, random.Random(3), n_kills=1)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(toy, tmp_path):
    """SIGKILL at random moments (bounded: once while starting up, then after random steps),
    `--resume` after each; the final weights and the best checkpoint are the uninterrupted run's."""
    _kill_and_resume(toy, tmp_path, random.Random(5), n_kills=6)


def _kill_and_resume(toy, tmp_path, rng, n_kills):
    import torch

    settings = ["--epochs", "5", "--steps-per-epoch", "4", "--patience", "0", "--device", "cpu"]
    full = tmp_path / "full" / "m.pt"
    invoke(toy_args(toy, full, *settings))

    cut = tmp_path / "cut" / "m.pt"
    args = [str(a) for a in toy_args(toy, cut, *settings, "--log-every", "1")]
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    # with several kills: once while starting up, then just after random steps (the log's step column)
    targets = ([0] if n_kills > 1 else []) + sorted(rng.sample(range(1, 20), n_kills - (n_kills > 1)))
    kills = 0
    for attempt in range(len(targets) + 1):
        resume = ["--resume"] if cut.with_name("m.last.pt").exists() else []
        proc = subprocess.Popen([sys.executable, "-m", "dcue_cli", "-q", *args, *resume], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if attempt < len(targets):
            deadline = time.time() + 120
            if targets[attempt] == 0:
                time.sleep(rng.uniform(0.3, 2.0))
            while proc.poll() is None and _last_step(cut) < targets[attempt] and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.3))
            if proc.poll() is None:
                proc.kill()
                kills += 1
        _, stderr = proc.communicate(timeout=300)
        assert "Traceback" not in stderr, stderr
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, stderr
    assert proc.returncode == 0 and kills >= max(1, n_kills - 2)  # it was really interrupted, then it finished
    for name in ("m.last.pt", "m.pt"):
        a, b = _weights(full.with_name(name)), _weights(cut.with_name(name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    best_full = torch.load(full, weights_only=True)["best"]
    best_cut = torch.load(cut, weights_only=True)["best"]
    assert best_full == best_cut


def test_stop_signals_record_the_first_signal_and_raise_on_the_second():
    import os

    from dcue_cli.interrupts import StopSignals

    calls = []
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals(on_request=lambda: calls.append(1)) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # handlers run in the main thread between bytecodes
        assert stop.requested and calls == [1]
        with pytest.raises(KeyboardInterrupt):
            stop.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
    assert signal.getsignal(signal.SIGTERM) is before  # restored


# ----------------------------------------------------------------------------- training resources, messages
# and defaults (second round, helper REL-TRAIN)


def _inputs_unchanged(toy):
    return {name: (toy / name).read_bytes() for name in ("mels.h5", "plays.tsv", "splits.tsv")}


def test_a_step_too_large_for_memory_is_refused_before_training(toy, tmp_path):
    """batch x crops x crop_frames x n_mels past the free memory: one line naming what to lower."""
    before = _inputs_unchanged(toy)
    out = tmp_path / "m.pt"
    r = invoke(toy_args(toy, out, "--crop-frames", "10000000"), expect=1)
    text = error_line(r)
    assert text.startswith("a training step needs about ") and "--crop-frames 10000000 x 16 mels" in text, text
    assert text.endswith("free in host memory: lower --crop-frames, --batch-size or --negatives."), text
    assert "epoch 1" not in r.stderr and not list(tmp_path.iterdir())
    assert _inputs_unchanged(toy) == before


def test_more_negatives_than_training_songs_is_refused(toy, tmp_path):
    out = tmp_path / "m.pt"
    r = invoke(toy_args(toy, out, "--negatives", "100000"), expect=1)
    assert error_line(r) == ("--negatives 100000: there are only 36 training songs to draw negatives from: "
                             "give --negatives 36 or fewer.")
    assert not list(tmp_path.iterdir())
    invoke(toy_args(toy, out, "--negatives", "36", "--epochs", "1", "--steps-per-epoch", "1"))  # the most is fine


def test_splits_without_a_training_song_say_how_to_split(toy, tmp_path):
    splits = tmp_path / "all_test.tsv"
    splits.write_text("".join(f"{line.split()[0]}\ttest\n" for line in (toy / "splits.tsv").read_text().splitlines()))
    args = toy_args(toy, tmp_path / "m.pt")
    args[args.index("--splits") + 1] = splits
    assert error_line(invoke(args, expect=1)) == (
        f"{splits} has no training song (its 60 songs are all valid or test): split the songs again with a "
        "train share, e.g. `dcue subset --split 0.7,0.1,0.2`.")


def test_plays_of_held_out_songs_only_are_named(toy, tmp_path):
    held = {line.split()[0] for line in (toy / "splits.tsv").read_text().splitlines() if not line.endswith("train")}
    plays = tmp_path / "held_out.tsv"
    plays.write_text("".join(line + "\n" for line in (toy / "plays.tsv").read_text().splitlines()
                             if line.split("\t")[1] in held))
    args = toy_args(toy, tmp_path / "m.pt")
    args[args.index(toy / "plays.tsv")] = plays
    text = error_line(invoke(args, expect=1))
    assert text.startswith(f"none of the 24 songs of {plays} is a training song of {toy / 'splits.tsv'} "
                           "(all are valid or test songs: held-out plays?)"), text


def test_a_text_file_is_not_a_torch_checkpoint_not_code(toy, tmp_path):
    out = tmp_path / "m.pt"
    out.with_name("m.last.pt").write_text("user\titem\t3\n")
    text = error_line(invoke(toy_args(toy, out, "--resume"), expect=1))
    assert text == (f"{out.with_name('m.last.pt')} is not a dcue model checkpoint (a text file, not a torch "
                    "checkpoint): write it with `dcue train`.")
    out.with_name("m.last.pt").write_bytes(b"\x00\xff\x13binary")
    assert "(not a torch file, not a torch checkpoint)" in error_line(invoke(toy_args(toy, out, "--resume"), expect=1))


def _unfinished(model, out):
    """MODEL.last.pt of a run that stopped after epoch 1 of 3 (as a kill between epochs leaves it)."""
    import torch

    ckpt = torch.load(model.with_name("model.last.pt"), weights_only=True)
    ckpt["train_config"]["epochs"] = 3
    torch.save(ckpt, out.with_name("m.last.pt"))
    return out.with_name("m.last.pt")


def test_starting_afresh_over_an_unfinished_run_is_refused_unless_fresh(model, toy, tmp_path):
    out = tmp_path / "m.pt"
    last = _unfinished(model, out)
    before = last.read_bytes()
    text = error_line(invoke(toy_args(toy, out, "--epochs", "1", "--steps-per-epoch", "1"), expect=1))
    assert text == (f"{last} holds an unfinished run (stopped at epoch 2, step 0): continue it with --resume, or "
                    "give --fresh to start afresh and replace it (or choose another -o).")
    assert last.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.last.pt"]
    r = invoke(toy_args(toy, out, "--epochs", "1", "--steps-per-epoch", "1", "--resume", "--fresh"), expect=2)
    assert "--resume continues MODEL.last.pt and --fresh replaces it: give one of them." in r.stderr
    assert last.read_bytes() == before
    invoke(toy_args(toy, out, "--epochs", "1", "--steps-per-epoch", "1", "--fresh"))
    assert last.read_bytes() != before and out.exists()
    # a finished run's MODEL.last.pt is replaced as before (the run just written ran its one epoch)
    r = invoke(toy_args(toy, out, "--epochs", "1", "--steps-per-epoch", "1"))
    assert "starting afresh and replacing it" in r.stderr


# ----------------------------------------------------------------------------- REL-SIGNALS: full disk, divergence


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(toy, tmp_path, monkeypatch):
    from conftest import disk_full_line, fill_the_disk, leftovers

    fill_the_disk(monkeypatch)
    out = tmp_path / "model.pt"
    r = invoke(toy_args(toy, out, "--epochs", "1", "--steps-per-epoch", "1"), expect=1)
    assert error_line(r) == disk_full_line(out)
    assert not out.exists() and leftovers(tmp_path) == [] and not out.with_name("model.lock").exists()


def test_a_diverging_run_is_one_line_naming_lr_and_saves_nothing(toy, tmp_path):
    out = tmp_path / "model.pt"
    r = invoke(toy_args(toy, out, "--epochs", "2", "--steps-per-epoch", "3", "--lr", "1e30"), expect=1)
    assert error_line(r) == ("training diverged at step 3 (epoch 1) (the loss is nan, not a finite number): "
                             "lower --lr (it is 1e+30); no non-finite model was saved.")
    assert not out.exists() and not out.with_name("model.last.pt").exists()
    assert not out.with_name("model.lock").exists()


@pytest.mark.parametrize("option", ["--lr", "--margin", "--temperature", "--momentum"])
def test_a_non_finite_setting_is_a_misuse(toy, tmp_path, option):
    out = tmp_path / "model.pt"
    r = invoke(toy_args(toy, out, option, "inf"), expect=2)
    assert f"Error: Invalid value for '{option}': inf is not a finite number: give an ordinary number." in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_divergence_in_a_later_epoch_keeps_the_last_good_checkpoints(toy, tmp_path, monkeypatch):
    import torch

    from dcue_cli.train import objectives

    real, calls = objectives.batch_loss, []

    def nan_from_epoch_two(*args, **kwargs):  # the loss of every step after the first epoch's 3
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) > 3 else loss

    monkeypatch.setattr(objectives, "batch_loss", nan_from_epoch_two)
    out = tmp_path / "model.pt"
    r = invoke(toy_args(toy, out, "--epochs", "3", "--steps-per-epoch", "3", "--patience", "0"), expect=1)
    assert error_line(r).startswith("training diverged at step 6 (epoch 2) (the loss is nan")
    for path in (out, out.with_name("model.last.pt")):
        state = torch.load(path, weights_only=True)
        assert state["position"]["epoch"] == 1
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_network_too_large_for_the_memory_is_one_line_before_it_is_built(toy, tmp_path):
    # --user-embed-dim 1000000000 was torch's allocation traceback
    out = tmp_path / "model.pt"
    r = invoke(toy_args(toy, out, "--user-embed-dim", 10**9, "--epochs", 1), expect=1)
    line = error_line(r)
    assert line.startswith("a network of ") and " GB is free in host memory: lower --user-embed-dim, --user-hidden, "\
        "--embed-dim or --conv-channels." in line
    assert not out.exists() and not out.with_name("model.last.pt").exists()
