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

    from dcue_cli.io.mels_writer import MelsWriter
    from dcue_cli.io.plays import Plays, write_plays
    from dcue_cli.io.splits import write_splits

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


# The toy tests' recipe: one pass over the plays per epoch, Nesterov SGD at 0.05 with the plateau
# drop (what they were written for); the default recipe is run by the demo test and the schedule's.
TOY_RECIPE = ["--steps-per-epoch", "0", "--optimizer", "sgd", "--lr", "0.05", "--schedule", "keras",
              "--plateau-factor", "0.2", "--weight-decay", "0"]


def toy_args(d, out, *extra):
    return ["train", d / "mels.h5", d / "plays.tsv", "--splits", d / "splits.tsv", "-o", out, *SMALL,
            "--batch-size", "16", "--negatives", "5", *TOY_RECIPE, *extra]


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


@pytest.fixture(scope="module")
def hostile_audio(tmp_path_factory):
    """A folder of every kind of audio file a crawl turns up, good and bad (tests/audio_files.py):
    the hostile-audio cases of test_melspec_hostile and the HDF5 and output cases of test_io_hdf5
    and test_io_atomic use it."""
    from audio_files import write_hostile_audio

    return write_hostile_audio(tmp_path_factory.mktemp("audio"))


def _permissions_are_ignored() -> bool:
    """True for root (or anyone with CAP_DAC_OVERRIDE): a read-only folder does not stop it."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o555)
        try:
            open(os.path.join(folder, "probe"), "w").close()
            return True
        except PermissionError:
            return False
        finally:
            os.chmod(folder, 0o755)


PERMISSIONS_IGNORED = _permissions_are_ignored()
# a tagger small enough for a CPU test
TAGGER = ["--epochs", 1, "--hidden", 8, "--device", "cpu"]


def cold(world):
    """The cold-start protocol's options over the `world` fixture's plays and splits."""
    return ["--plays", world / "plays.tsv", "--splits", world / "splits.tsv", "--bootstrap", 100]


def invoke_any(args, input=None):
    """Run `dcue ARGS` whatever its exit code; still no traceback may escape."""
    from dcue_cli.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def three_mels(hostile_audio):
    """A good mels file of three items, for the cases that damage or misuse one."""
    out = hostile_audio / "three.h5"
    a = hostile_audio / "audio"
    invoke(["melspec", a / "ch1.wav", a / "ch2.wav", a / "sr8000.wav", "-o", out, "-j", "0"])
    return out


# ----------------------------------------------------------------------------- a full disk
# (appended by helper REL-SIGNALS)


def fill_the_disk(monkeypatch, room=0):
    """Every file that dcue_cli.io.atomic opens for writing (HDF5 mels files too, through its
    GuardedFile) takes a few bytes, then fails with ENOSPC as on a full disk (no real full disk
    needed). `room`: bytes that still fit, all files together, before the disk is full."""
    import builtins
    import errno

    from dcue_cli.io import atomic

    real_open = builtins.open
    left = [room]

    class Full:
        def __init__(self, stream):
            self.stream = stream

        def write(self, data):
            if len(data) <= left[0]:
                left[0] -= len(data)
                return self.stream.write(data)
            self.stream.write(data[:left[0] or 3])
            left[0] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

        def __getattr__(self, name):
            return getattr(self.stream, name)

    def full_open(file, mode="r", *args, **kwargs):
        stream = real_open(file, mode, *args, **kwargs)
        return Full(stream) if any(c in mode for c in "wax") else stream

    monkeypatch.setattr(atomic, "open", full_open, raising=False)


def disk_full_line(target) -> str:
    return (f"cannot write {target}: the disk is full (no space left on device): free some space, or write the "
            "output to another disk (another -o or folder).")


def leftovers(folder) -> list:
    """Temporary files of an atomic write left in `folder` (there must be none)."""
    return sorted(p.name for p in Path(folder).rglob(".*.tmp"))
