"""Hostile inputs through the real commands: every case ends in a one-line error or a counted skip.

For every command but train/embed (see docs/reliability.md for the table): bad TSVs (field
counts, counts, blank lines, BOM, CRLF, Latin-1, odd ids, duplicates, headers), HDF5 files
from other tools, older layouts, truncated or damaged, read-only; outputs that cannot be written;
unknown ids. Bad audio and the interruptions of `melspec` (SIGKILL, SIGINT, SIGTERM, a second
writer) are in test_melspec.py. Each case checks the exit code, the exact message, that no
traceback escaped (`invoke` raises on one) and that nothing half-written is left under the real
output name."""

import filecmp
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import error_line, invoke

from dcue_cli.io.embeddings import Embeddings, read_embeddings, write_embeddings
from dcue_cli.io.mels import MelsFile

SR = 22050
PLAYS_FIX = (" (expected user_id<TAB>item_id<TAB>count; use --columns to pick fields, --skip-bad to skip "
             "bad lines)")
EMB_HINT = "was it written by `dcue embed` or `dcue wmf`?"


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


ROOT = _permissions_are_ignored()


# ----------------------------------------------------------------------------- helpers


def invoke_any(args, input=None):
    """Run `dcue ARGS` whatever its exit code; still no traceback may escape."""
    from click.testing import CliRunner

    from dcue_cli.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    return result


def ids_of(path) -> list:
    with MelsFile(path) as m:
        return m.ids.tolist()


def fails(args, message, expect=1, input=None):
    """Run, expect exit `expect` and exactly this one-line message."""
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


# ----------------------------------------------------------------------------- shared inputs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small plays file (40 users x 30 songs), its splits, tags, and a WMF-like embeddings file."""
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


def cold(world):
    return ["--plays", world / "plays.tsv", "--splits", world / "splits.tsv", "--bootstrap", 100]


TAGGER = ["--epochs", 1, "--hidden", 8, "--device", "cpu"]


# ============================================================================= odd ids through every command


def test_odd_ids_survive_byte_for_byte_through_subset_wmf_score_and_autotag(tmp_path):
    """Latin-1 bytes, spaces, non-ASCII letters, quotes and trailing spaces are all part of an id."""
    songs = [b"caf\xe9", b"na\xefve song", "Мой трек".encode(), b'"quoted', b"tail ", b"\xe6\x9b\xb2"]
    users = [b"user one", b"J\xfcrgen", b"u3", b"u4", b"u5", b"u6"]
    lines = [u + b"\t" + s + b"\t" + str(1 + (j + k) % 4).encode() + b"\n"  # 4 of the 6 songs each
             for k, u in enumerate(users) for j, s in enumerate(songs) if (j + k) % 3]
    (tmp_path / "plays.tsv").write_bytes(b"".join(lines))
    invoke(["subset", tmp_path / "plays.tsv", "-o", tmp_path / "sub", "--songs", 0, "--users", 0,
            "--split", "0,0,1"])  # every song a test song: every user has a positive and a negative
    written = (tmp_path / "sub" / "plays.tsv").read_bytes()
    assert sorted(written.splitlines(keepends=True)) == sorted(lines)
    invoke(["wmf", tmp_path / "sub" / "plays.tsv", "-o", tmp_path / "w.h5", "--factors", 2, "--iterations", 2])
    emb = read_embeddings(tmp_path / "w.h5")
    assert {s.encode("utf-8", "surrogateescape") for s in emb.item_ids} == set(songs)
    result = invoke(["score", tmp_path / "w.h5", "--user", b"J\xfcrgen".decode("utf-8", "surrogateescape"),
                     "-k", 10])
    assert {line.split(b"\t")[1] for line in result.stdout_bytes.splitlines()[1:]} <= set(songs)
    invoke(["score", tmp_path / "w.h5", "--plays", tmp_path / "sub" / "plays.tsv",
            "--splits", tmp_path / "sub" / "splits.tsv", "--bootstrap", 100, "--per-user", tmp_path / "pu.tsv"])
    assert b"J\xfcrgen" in (tmp_path / "pu.tsv").read_bytes()
    (tmp_path / "tags.tsv").write_bytes(b"".join(s + b"\t" + (b"r\xf6ck" if k % 2 else b"jazz") + b"\n"
                                                 for k, s in enumerate(songs)))
    invoke(["autotag", tmp_path / "w.h5", tmp_path / "tags.tsv", "--split", "0.34,0.33,0.33", *TAGGER,
            "--predict", tmp_path / "pred.tsv"])
    predicted = (tmp_path / "pred.tsv").read_bytes()
    assert b"caf\xe9\t" in predicted and b"r\xf6ck" in predicted




# ============================================================================= HDF5 files


def _foreign(path):
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros((3, 3))
        f.attrs["creator"] = "another tool"
    return path


def _truncated(source, path):
    data = Path(source).read_bytes()
    Path(path).write_bytes(data[:len(data) // 2])
    return path


@pytest.fixture(scope="module")
def mels(hostile_audio):
    """A good mels file (three items) for the HDF5 cases."""
    out = hostile_audio / "three.h5"
    a = hostile_audio / "audio"
    invoke(["melspec", a / "ch1.wav", a / "ch2.wav", a / "sr8000.wav", "-o", out, "-j", "0"])
    return out


def test_hdf5_from_another_tool(world, mels, tmp_path):
    other = _foreign(tmp_path / "other.h5")
    for args in (["score", other, *cold(world)], ["score", other, "--user", "u01"],
                 ["autotag", other, world / "tags.tsv", *TAGGER]):
        fails(args, f"{other} has no /items/ids: {EMB_HINT}")
    fails(["score", mels, *cold(world)], f"{mels} has no /items/ids: {EMB_HINT}")  # a mels file is not embeddings
    fails(["melspec", "--merge", mels, other, "-o", tmp_path / "all.h5"],
          f"{other} has no /ids: was it written by `dcue melspec`?")
    fails(["melspec", "--merge", mels, world / "emb.h5", "-o", tmp_path / "all.h5"],
          f"{world / 'emb.h5'} has no /ids: was it written by `dcue melspec`?")
    fails(["subset", world / "plays.tsv", "-o", tmp_path / "sub", "--songs-with", other],
          f"{other} has no /ids list: was it written by `dcue melspec`?")
    assert_absent(tmp_path / "all.h5", tmp_path / "sub" / "plays.tsv")


def test_an_existing_output_from_another_tool_is_never_touched(mels, hostile_audio, tmp_path):
    out = _foreign(tmp_path / "m.h5")
    before = out.read_bytes()
    fails(["melspec", hostile_audio / "audio" / "ch1.wav", "-o", out, "-j", "0"],
          f"{out} exists but is not a complete mels file ({out} has no /ids: was it written by `dcue melspec`?); "
          f"add --overwrite to replace it.")
    assert out.read_bytes() == before and not Path(f"{out}.partial").exists()
    invoke(["melspec", hostile_audio / "audio" / "ch1.wav", "-o", out, "-j", "0", "--overwrite"])
    with MelsFile(out) as m:
        assert list(m.ids) == ["ch1"]


def test_older_or_foreign_layouts(world, mels, hostile_audio, tmp_path):
    # A mels file without the settings attributes (an older writer): not mixed with new items.
    old = tmp_path / "old.h5"
    with h5py.File(old, "w") as f:
        f["ids"] = np.array([b"a0", b"a1"])
        f["offsets"] = np.array([0, 2, 4])
        f["mel"] = np.zeros((4, 128), np.float32)
    with MelsFile(old) as m:  # still readable
        assert list(m.ids) == ["a0", "a1"] and m.item_stats is None
    fails(["melspec", hostile_audio / "audio" / "ch1.wav", "-o", old, "-j", "0"],
          f"{old} was made with other feature settings (center=<unset> vs True, file vs now): give the same "
          f"options to add to it, or --overwrite to replace it.")
    fails(["melspec", "--merge", mels, old, "-o", tmp_path / "all.h5"],
          f"{old} was made with other feature settings than {mels} (center=<unset> vs True): merge only shards "
          f"made with the same options.")
    # Embeddings with fixed-length byte ids and float64 vectors: read as they are.
    src = read_embeddings(world / "emb.h5", need_users=True)
    legacy = tmp_path / "legacy.h5"
    with h5py.File(legacy, "w") as f:
        f["items/ids"] = np.array(src.item_ids.astype(str), dtype="S")
        f["items/vectors"] = src.item_vectors.astype(np.float64)
        f["users/ids"] = np.array(src.user_ids.astype(str), dtype="S")
        f["users/vectors"] = src.user_vectors.astype(np.float64)
    import json

    a = json.loads(invoke(["score", legacy, *cold(world), "--json"]).stdout)["models"][0]["metrics"]
    b = json.loads(invoke(["score", world / "emb.h5", *cold(world), "--json"]).stdout)["models"][0]["metrics"]
    assert a == b
    # Layouts that cannot be embeddings.
    cases = {
        "transposed": ({"items/vectors": src.item_vectors.T.copy()},
                       ("{p}: /items/vectors has shape (4, 30) but there are 30 /items/ids: the file is damaged; "
                       "write it again.")),
        "ids as a group": ({"items/ids/x": src.item_ids.astype(str).astype("S")},
                           "{p} has no /items/ids: " + EMB_HINT),
        "complex vectors": ({"items/vectors": src.item_vectors.astype(np.complex64)},
                            "{p}: /items/vectors holds complex64 values, not real numbers: " + EMB_HINT),
        "text vectors": ({"items/vectors": src.item_ids.astype(str).astype("S")},
                         "{p}: /items/vectors holds |S3 values, not real numbers: " + EMB_HINT),
        "no items": ({"items/ids": np.array([], "S1"), "items/vectors": np.zeros((0, 4), np.float32)},
                     "{p} holds no item vectors: write it again (" + EMB_HINT + ")"),
        "user dimension": ({"users/vectors": src.user_vectors[:, :2]},
                           ("{p}: /users/vectors has shape (40, 2), which does not fit 40 users of dimension 4: "
                           "write it again.")),
    }
    for name, (override, message) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.h5"
        with h5py.File(path, "w") as f:
            data = {"items/ids": src.item_ids.astype(str).astype("S"), "items/vectors": src.item_vectors,
                    "users/ids": src.user_ids.astype(str).astype("S"), "users/vectors": src.user_vectors}
            if "items/ids/x" in override:
                del data["items/ids"]
            data.update(override)
            for key, value in data.items():
                f[key] = value
        fails(["score", path, *cold(world)], message.format(p=path))
        fails(["autotag", path, world / "tags.tsv", *TAGGER], message.format(p=path))


def test_truncated_hdf5_files(world, mels, tmp_path):
    emb = _truncated(world / "emb.h5", tmp_path / "emb.h5")
    m = _truncated(mels, tmp_path / "mels.h5")
    for args in (["score", emb, *cold(world)], ["autotag", emb, world / "tags.tsv", *TAGGER]):
        text = error_line(invoke(args, expect=1))
        assert text.startswith(f"{emb} is not a readable HDF5 file (Unable to synchronously open file (truncated "
                               f"file: eof = ") and text.endswith(f"): {EMB_HINT}")
    text = error_line(invoke(["melspec", "--merge", m, "-o", tmp_path / "all.h5"], expect=1))
    assert text.startswith(f"{m} is not a readable HDF5 file (") and text.endswith(
        "give a mels file written by `dcue melspec`.")
    text = error_line(invoke(["subset", world / "plays.tsv", "-o", tmp_path / "sub", "--songs-with", m], expect=1))
    assert text.startswith(f"{m} is not a readable HDF5 file (") and text.endswith(
        "give the mels file written by `dcue melspec` (or an id list) to --songs-with.")
    before = m.read_bytes()  # a truncated existing output: refused, kept, replaced only on request
    text = error_line(invoke(["melspec", mels.parent / "audio" / "ch1.wav", "-o", m, "-j", "0"], expect=1))
    assert text.startswith(f"{m} exists but is not a complete mels file (") and text.endswith(
        "add --overwrite to replace it.")
    assert m.read_bytes() == before
    assert_absent(tmp_path / "all.h5", tmp_path / "sub" / "plays.tsv")


def _damaged_copies(source, tmp_path, n=24):
    """Copies of `source` with 48 bytes flipped at offsets spread over its first 2 KB (HDF5 metadata)."""
    data = Path(source).read_bytes()
    out = []
    for k, offset in enumerate(np.linspace(96, min(2048, len(data) - 48), n).astype(int)):
        damaged = bytearray(data)
        for j in range(offset, offset + 48):
            damaged[j] ^= 0xA5
        path = tmp_path / f"damaged{k}_{Path(source).name}"
        path.write_bytes(bytes(damaged))
        out.append(path)
    return out


def test_damaged_hdf5_metadata_is_a_one_line_error_never_a_traceback(world, mels, tmp_path):
    outcomes = {"ok": 0, "error": 0}
    for path in _damaged_copies(world / "emb.h5", tmp_path):
        result = invoke_any(["score", path, *cold(world)])
        if result.exit_code == 0:
            outcomes["ok"] += 1
        else:
            assert result.exit_code == 1
            text = error_line(result)
            assert text.startswith(str(path)), text
            outcomes["error"] += 1
    for path in _damaged_copies(mels, tmp_path):
        out = tmp_path / f"merged_{path.name}"
        result = invoke_any(["melspec", "--merge", path, "-o", out])
        if result.exit_code == 0:
            outcomes["ok"] += 1
        else:
            assert result.exit_code == 1 and error_line(result).startswith(str(path))
            assert_absent(out)
            outcomes["error"] += 1
    assert outcomes["error"] >= 4, outcomes  # the sweep did hit the metadata


def test_read_only_inputs_are_read(world, mels, tmp_path):
    for source in (world / "emb.h5", mels, world / "plays.tsv", world / "splits.tsv"):
        shutil.copy(source, tmp_path / source.name)
        os.chmod(tmp_path / source.name, 0o444)
    invoke(["score", tmp_path / "emb.h5", "--plays", tmp_path / "plays.tsv", "--splits", tmp_path / "splits.tsv",
            "--bootstrap", 100])
    invoke(["melspec", "--merge", tmp_path / mels.name, "-o", tmp_path / "copy.h5"])
    assert filecmp.cmp(tmp_path / "copy.h5", mels, shallow=False)
    invoke(["subset", tmp_path / "plays.tsv", "-o", tmp_path / "sub", "--songs", 0, "--users", 0])
    # a read-only output that melspec adds to is replaced whole, never modified in place
    shutil.copy(mels, tmp_path / "grow.h5")
    os.chmod(tmp_path / "grow.h5", 0o444)
    invoke(["melspec", mels.parent / "audio" / "ch3.wav", "-o", tmp_path / "grow.h5", "-j", "0"])
    with MelsFile(tmp_path / "grow.h5") as m:
        assert len(m) == 4


# ============================================================================= outputs that cannot be written

OUTPUT_CASES = ["synth", "subset", "wmf", "melspec", "melspec --merge", "score --per-user", "autotag --predict"]


def _output_args(command, world, mels, hostile_audio, target):
    return {
        "synth": ["synth", target, "--songs", 2, "--users", 2, "--seconds", 1, "-j", 1],
        "subset": ["subset", world / "plays.tsv", "-o", target],
        "wmf": ["wmf", world / "plays.tsv", "-o", target, "--factors", 2, "--iterations", 1],
        "melspec": ["melspec", hostile_audio / "audio" / "ch1.wav", "-o", target, "-j", "0"],
        "melspec --merge": ["melspec", "--merge", mels, "-o", target],
        "score --per-user": ["score", world / "emb.h5", *cold(world), "--per-user", target],
        "autotag --predict": ["autotag", world / "emb.h5", world / "tags.tsv", *TAGGER, "--predict", target],
    }[command]


@pytest.mark.parametrize("command", OUTPUT_CASES)
def test_an_output_under_a_file_is_a_one_line_error(world, mels, hostile_audio, tmp_path, command):
    (tmp_path / "a_file").write_text("in the way")
    target = tmp_path / "a_file" / "out"
    result = invoke(_output_args(command, world, mels, hostile_audio, target), expect=1)
    text = error_line(result)
    assert text in ((f"cannot create the folder {target if command in ('synth', 'subset') else target.parent} "
                    "(a file is in the way): give another path."),) or (
        text.startswith(f"cannot write {target}") and f"{tmp_path / 'a_file'} is a file, not a folder" in text)
    assert (tmp_path / "a_file").read_text() == "in the way"


@pytest.mark.skipif(ROOT, reason="root writes anywhere")
@pytest.mark.parametrize("command", OUTPUT_CASES)
def test_an_output_in_a_read_only_folder_is_a_one_line_error(world, mels, hostile_audio, tmp_path, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    try:
        result = invoke(_output_args(command, world, mels, hostile_audio, locked / "out"), expect=1)
    finally:
        os.chmod(locked, 0o755)
    text = error_line(result)
    assert text.startswith("cannot ") and str(locked) in text, text
    assert ("no permission to write in" in text or "(Permission denied)" in text) and list(locked.iterdir()) == []


def test_an_output_that_is_a_folder_is_refused(world, mels, tmp_path):
    (tmp_path / "dir.h5").mkdir()
    for args in (["wmf", world / "plays.tsv", "-o", tmp_path / "dir.h5"],
                 ["melspec", "--merge", mels, "-o", tmp_path / "dir.h5", "--overwrite"]):
        result = invoke_any(args)
        assert result.exit_code in (1, 2)
        assert "dir.h5" in result.stderr and (tmp_path / "dir.h5").is_dir()


# ============================================================================= unknown ids and bad vectors


def test_unknown_user_and_item_ids(world, tmp_path):
    fails(["score", world / "emb.h5", "--user", "nobody"],
          f"user 'nobody' is not in {world / 'emb.h5'} (40 users, e.g. 'u00', 'u01', 'u02'): check the id.")
    fails(["score", world / "emb.h5", "--item", "nothing"],
          f"item 'nothing' is not in {world / 'emb.h5'} (30 items, e.g. 's00', 's01', 's02'): check the id.")
    (tmp_path / "plays.tsv").write_text("someone\ts01\t1\n")
    result = invoke(["score", world / "emb.h5", "--user", "u01", "--exclude-played", tmp_path / "plays.tsv"])
    assert f"Warning: user 'u01' has no play in {tmp_path / 'plays.tsv'}: nothing excluded" in result.stderr
    # plays of users and songs the embeddings never saw: counted, and ranked last or dropped
    extra = (world / "plays.tsv").read_text() + "stranger\ts25\t3\nstranger\ts26\t1\nu01\tnew_song\t2\n"
    (tmp_path / "more.tsv").write_text(extra)
    (tmp_path / "splits.tsv").write_text((world / "splits.tsv").read_text() + "new_song\ttest\n")
    result = invoke(["score", world / "emb.h5", "--plays", tmp_path / "more.tsv", "--splits", tmp_path / "splits.tsv",
                     "--bootstrap", 100])
    assert (f"Warning: {world / 'emb.h5'} has no vector for 1 of the 7 songs to rank and 1 of the 34 users: such items "
            "rank below every other item (tied) and such users rank every item as a tie; --missing drop evaluates "
            "only what every file has instead") in result.stderr


@pytest.mark.parametrize("bad", ["nan item", "inf user", "huge"])
def test_nan_infinite_or_overflowing_vectors_are_refused(world, tmp_path, bad):
    emb = read_embeddings(world / "emb.h5", need_users=True)
    items, users = emb.item_vectors.copy(), emb.user_vectors.copy()
    if bad == "nan item":
        items[25, 1] = np.nan
    elif bad == "inf user":
        users[3, 0] = np.inf
    else:
        items[25], users[3] = 3e19, 3e19
    path = tmp_path / "bad.h5"
    write_embeddings(path, Embeddings(emb.item_ids, items, emb.user_ids, users, source="wmf"))
    message = {"nan item": f"{path}: 1 item vectors hold NaN or infinity (e.g. item 's25'): write the file again "
                           "(a diverged run gives such vectors).",
               "inf user": f"{path}: 1 user vectors hold NaN or infinity (e.g. user 'u03'): write the file again "
                           "(a diverged run gives such vectors).",
               "huge": f"{path}: vector values as large as 3.0e+19 make the scores overflow float32: write the file "
                       "again (a diverged run gives such vectors)."}[bad]
    fails(["score", path, *cold(world)], message)
    query = ["score", path, "--user", "u03"] if bad != "nan item" else ["score", path, "--item", "s00"]
    text = error_line(invoke(query, expect=1))
    assert text.startswith(f"{path}: ") and "scores are NaN or infinite" in text
    if bad == "nan item":  # autotag reads item vectors only, and standardises them
        assert error_line(invoke(["autotag", path, world / "tags.tsv", *TAGGER], expect=1)).startswith(f"{path}: ")


# ============================================================================= ids are never paths or commands


def test_ids_that_look_like_paths_or_commands_stay_ids(tmp_path, monkeypatch):
    """Ids from data files never name a file to write or a command to run: only the outputs asked for appear."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    hostile = ["../../escaped", "/tmp/dcue-absolute-id", "$(touch pwned)", "`touch pwned2`", "a;touch pwned3",
               "..", "~", "-o", "--help"]
    rows = [f"{u}\t{s}\t{1 + (i + j) % 3}\n" for i, u in enumerate(hostile) for j, s in enumerate(hostile)
            if (i + j) % 3]
    (work / "plays.tsv").write_text("".join(rows))
    (work / "tags.tsv").write_text("".join(f"{s}\t{'x' if k % 2 else 'y'}\n" for k, s in enumerate(hostile)))
    before = set(tmp_path.rglob("*"))
    invoke(["subset", "plays.tsv", "-o", "sub", "--songs", 0, "--users", 0, "--split", "0,0,1"])
    invoke(["wmf", "sub/plays.tsv", "-o", "w.h5", "--factors", 2, "--iterations", 1])
    invoke(["score", "w.h5", "--plays", "sub/plays.tsv", "--splits", "sub/splits.tsv", "--bootstrap", 100,
            "--per-user", "per_user.tsv"])
    invoke(["score", "w.h5", "--user", "$(touch pwned)", "-k", 3])
    invoke(["autotag", "w.h5", "tags.tsv", "--split", "0.34,0.33,0.33", *TAGGER, "--predict", "pred.tsv"])
    created = {p.relative_to(tmp_path).as_posix() for p in set(tmp_path.rglob("*")) - before}
    assert created == {"work/sub", "work/sub/plays.tsv", "work/sub/splits.tsv", "work/w.h5", "work/per_user.tsv",
                       "work/pred.tsv"}
    assert not Path("/tmp/dcue-absolute-id").exists()
