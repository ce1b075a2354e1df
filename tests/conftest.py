"""Shared test helpers: the real-data folder beside the checkout, and a CliRunner wrapper."""

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


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The learnable toy world of test_train.make_toy (mels, plays, splits), one per test module."""
    from test_train import make_toy

    return Path(make_toy(tmp_path_factory.mktemp("toy")))


@pytest.fixture
def cli_invoke():
    return invoke


@pytest.fixture(scope="module")
def hostile_audio(tmp_path_factory):
    """A folder of every kind of audio file a crawl turns up, good and bad (tests/audio_files.py):
    test_melspec's hostile-input cases and test_adversarial's HDF5 and output cases use it."""
    from audio_files import write_hostile_audio

    return write_hostile_audio(tmp_path_factory.mktemp("audio"))
