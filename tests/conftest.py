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


# ----------------------------------------------------------------------------- hostile-input helpers
# (appended by helper DATA: shared by the adversarial cases that moved beside the code they attack)


def fails(args, message, expect=1, input=None):
    """Run `dcue ARGS`, expect exit `expect` and exactly this one-line message."""
    result = invoke(args, input=input, expect=expect)
    assert error_line(result) == message
    return result


def assert_absent(*targets):
    """Nothing under the real name, and no temporary file of ours left beside it."""
    for target in map(Path, targets):
        assert not target.exists(), f"{target} was written"
        if target.parent.exists():
            leftovers = [p.name for p in target.parent.iterdir()
                         if p.name.startswith(f".{target.name}.") and p.name.endswith(".tmp")]
            assert not leftovers, leftovers


def tsv_ids():
    """A hypothesis strategy for ids in a TSV: any text without the separators (tab, newline), not
    empty; surrogate escapes stand for undecodable bytes (a Latin-1 file read as UTF-8) and must
    survive a round trip as bytes."""
    from hypothesis import strategies as st

    chars = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\t\n\r\x0b\x0c\x1c\x1d\x1e\x85"
                          "\u2028\u2029\ufeff")
    return st.one_of(
        st.text(chars, min_size=1, max_size=12),
        st.binary(min_size=1, max_size=8).map(lambda b: b.replace(b"\t", b"_").replace(b"\n", b"_")
                                              .replace(b"\r", b"_").decode("utf-8", "surrogateescape")),
    ).filter(lambda s: s.strip() != "" and not s.startswith(("\ufeff", "\x1f")))  # not a BOM, nor gzip's magic


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small plays file (40 users x 30 songs), its splits, tags, and a WMF-like embeddings file."""
    import numpy as np

    from dcue_cli.io.embeddings import Embeddings, write_embeddings

    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        for i in rng.choice(30, size=8, replace=False):
            rows.append(f"u{u:02d}\ts{i:02d}\t{rng.integers(1, 9)}\n")
    (root / "plays.tsv").write_text("".join(rows))
    split = {i: ("train" if i < 20 else "valid" if i < 24 else "test") for i in range(30)}
    (root / "splits.tsv").write_text("".join(f"s{i:02d}\t{s}\n" for i, s in split.items()))
    (root / "tags.tsv").write_text("".join(f"s{i:02d}\t{'rock' if i % 2 else 'jazz'}\t{50 + i}\n"
                                           for i in range(30)))
    items = np.array([f"s{i:02d}" for i in range(30)], dtype=object)
    users = np.array([f"u{u:02d}" for u in range(40)], dtype=object)
    write_embeddings(root / "emb.h5", Embeddings(items, rng.normal(size=(30, 4)), users, rng.normal(size=(40, 4)),
                                                 source="wmf", similarity="dot", attrs={"name": "WMF"}))
    return root
