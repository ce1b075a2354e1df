"""Shared test helpers: the real-data folder beside the checkout, a CliRunner wrapper, the toy world."""

import os
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DCUE_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data(*parts) -> Path:
    """A path under ../shared/data, or skip the test (a user's clone has no ../shared)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (only in the project's workspace)")
    return path


def invoke(args, input=None, expect=0):
    """Run `dcue ARGS` in-process; check the exit code and that no traceback escaped."""
    from dcue_cli.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        raise AssertionError("dcue raised instead of exiting cleanly:\n" + "".join(
            traceback.format_exception(type(result.exception), result.exception, result.exception.__traceback__)))
    assert result.exit_code == expect, (
        f"exit {result.exit_code} != {expect}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def error_line(result) -> str:
    """The message of a failed run: stderr must end in exactly one `Error: ...` line."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert sum(line.startswith("Error: ") for line in lines) == 1, result.stderr
    return lines[-1][len("Error: "):]


def popen_with_sigint(command, *, ignored=False, **kwargs) -> subprocess.Popen:
    """Popen(command) whose child starts with SIGINT as from a terminal (or, with `ignored`, as a
    background job). A run started in the background by a non-interactive shell (a CI job, `cmd &`)
    inherits SIGINT ignored, and dcue, like every Unix tool, then leaves Ctrl-C alone: tests that
    send it must not depend on how pytest itself was started. exec keeps an ignored signal ignored
    and resets a caught one to its default, so the parent sets its own disposition for the spawn."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN if ignored else signal.default_int_handler)
    try:
        return subprocess.Popen(command, **kwargs)
    finally:
        signal.signal(signal.SIGINT, previous)


N_MELS = 16


def make_toy(out, n_songs=60, n_users=40, n_styles=3, frames=(20, 120), seed=0, with_stats=True,
             prefix="S", n_mels=N_MELS):
    """mels.h5, plays.tsv and splits.tsv of a learnable toy world, written by dcue's own writers.

    Songs of `n_styles` styles whose log-mels carry a style-specific spectral shape; users who
    mostly play one style. A small model learns it in seconds on a CPU. `with_stats=False`
    leaves out the mean and std, as a mels file from an older or foreign tool would.
    """
    import numpy as np

    from dcue_cli.io.mels import MelsWriter
    from dcue_cli.io.plays import Plays, write_plays
    from dcue_cli.io.tsv import write_splits

    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    style = rng.integers(n_styles, size=n_songs)
    ids = [f"{prefix}{i:04d}" for i in range(n_songs)]
    pattern = np.random.default_rng(99).normal(size=(n_styles, n_mels))
    attrs = {"sr": 22050, "hop_length": 512, "n_fft": 1024, "n_mels": n_mels, "dtype": "float16"}
    with MelsWriter(out / "mels.h5", attrs, overwrite=True) as writer:
        for i in range(n_songs):
            length = int(rng.integers(*frames))
            writer.append(ids[i], (rng.normal(size=(length, n_mels)) * 0.5 + pattern[style[i]]).astype(np.float16))
        writer.finish()
    if not with_stats:
        import h5py

        with h5py.File(out / "mels.h5", "a") as f:
            del f.attrs["mean"], f.attrs["std"]
    taste = rng.integers(n_styles, size=n_users)
    users, items, counts = [], [], []
    for u in range(n_users):
        for i in range(n_songs):
            if rng.random() < (0.5 if style[i] == taste[u] else 0.03):
                users.append(u)
                items.append(i)
                counts.append(int(rng.integers(1, 5)))
    user_ids = np.array([f"U{u:03d}" for u in range(n_users)], dtype=object)
    write_plays(out / "plays.tsv", Plays(user_ids, np.array(ids, dtype=object), np.array(users, np.int32),
                                         np.array(items, np.int32), np.array(counts, np.int32)))
    order = rng.permutation(n_songs)
    write_splits(out / "splits.tsv", {ids[i]: "train" if k < 0.6 * n_songs else
                                      ("valid" if k < 0.8 * n_songs else "test") for k, i in enumerate(order)})
    return out


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The learnable toy world of `make_toy` (mels, plays, splits), one per test module."""
    return make_toy(tmp_path_factory.mktemp("toy"))


# a model small enough for a CPU test: 3 conv layers, 32-frame crops
SMALL = ["--conv-channels", "16,32,32", "--conv-kernels", "4,4,2", "--pool-sizes", "4,4,2",
         "--crop-frames", "32", "--embed-dim", "32", "--user-embed-dim", "32", "--user-hidden", "32"]


def toy_args(d, out, *extra):
    return ["train", d / "mels.h5", d / "plays.tsv", "--splits", d / "splits.tsv", "-o", out, *SMALL,
            "--batch-size", "16", "--negatives", "5", *extra]
