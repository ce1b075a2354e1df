"""Outputs that cannot be written (under a file, in a read-only folder, a folder), through every command
that writes one: a one-line error before any work, nothing left under the real name."""

import os

import pytest
from conftest import PERMISSIONS_IGNORED as ROOT
from conftest import TAGGER, assert_absent, cold, error_line, fails, invoke, invoke_any

EMB_HINT = "was it written by `dcue embed` or `dcue wmf`?"




OUTPUT_CASES = ["synth", "subset", "wmf", "melspec", "melspec --merge", "score --per-user", "autotag --predict"]


def _output_args(command, world, three_mels, hostile_audio, target):
    return {
        "synth": ["synth", target, "--songs", 2, "--users", 2, "--seconds", 1, "-j", 1],
        "subset": ["subset", world / "plays.tsv", "-o", target],
        "wmf": ["wmf", world / "plays.tsv", "-o", target, "--factors", 2, "--iterations", 1],
        "melspec": ["melspec", hostile_audio / "audio" / "ch1.wav", "-o", target, "-j", "0"],
        "melspec --merge": ["melspec", "--merge", three_mels, "-o", target],
        "score --per-user": ["score", world / "emb.h5", *cold(world), "--per-user", target],
        "autotag --predict": ["autotag", world / "emb.h5", world / "tags.tsv", *TAGGER, "--predict", target],
    }[command]


@pytest.mark.parametrize("command", OUTPUT_CASES)
def test_an_output_under_a_file_is_a_one_line_error(world, three_mels, hostile_audio, tmp_path, command):
    (tmp_path / "a_file").write_text("in the way")
    target = tmp_path / "a_file" / "out"
    result = invoke(_output_args(command, world, three_mels, hostile_audio, target), expect=1)
    text = error_line(result)
    assert text in ((f"cannot create the folder {target if command in ('synth', 'subset') else target.parent} "
                    "(a file is in the way): give another path."),) or (
        text.startswith(f"cannot write {target}") and f"{tmp_path / 'a_file'} is a file, not a folder" in text)
    assert (tmp_path / "a_file").read_text() == "in the way"


@pytest.mark.skipif(ROOT, reason="root writes anywhere")
@pytest.mark.parametrize("command", OUTPUT_CASES)
def test_an_output_in_a_read_only_folder_is_a_one_line_error(world, three_mels, hostile_audio, tmp_path, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    try:
        result = invoke(_output_args(command, world, three_mels, hostile_audio, locked / "out"), expect=1)
    finally:
        os.chmod(locked, 0o755)
    text = error_line(result)
    assert text.startswith("cannot ") and str(locked) in text, text
    assert ("no permission to write in" in text or "(Permission denied)" in text) and list(locked.iterdir()) == []


def test_an_output_that_is_a_folder_is_refused(world, three_mels, tmp_path):
    (tmp_path / "dir.h5").mkdir()
    for args in (["wmf", world / "plays.tsv", "-o", tmp_path / "dir.h5"],
                 ["melspec", "--merge", three_mels, "-o", tmp_path / "dir.h5", "--overwrite"]):
        result = invoke_any(args)
        assert result.exit_code in (1, 2)
        assert "dir.h5" in result.stderr and (tmp_path / "dir.h5").is_dir()


# ----------------------------------------------------------------------------- an output that is an input
# (helper REL-IO, issue 15: every command refused to overwrite one of its own inputs only in melspec --merge)


def _copy_world(world, tmp_path):
    """The world's files in a fresh folder (the cases overwrite-test them), and a dummy model."""
    import shutil

    for name in ("plays.tsv", "splits.tsv", "tags.tsv", "emb.h5"):
        shutil.copy(world / name, tmp_path / name)
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint: never opened")
    return tmp_path


INPUT_AS_OUTPUT = {
    # name: (args, the output as named, the input's option, the input's path as named ("" when the same))
    "wmf -o PLAYS": (["wmf", "plays.tsv", "-o", "plays.tsv"], "-o plays.tsv", "PLAYS", ""),
    "wmf -o --splits": (["wmf", "plays.tsv", "--splits", "splits.tsv", "--fit-on", "all", "-o", "splits.tsv"],
                        "-o splits.tsv", "--splits", ""),
    "wmf through a link": (["wmf", "link.tsv", "-o", "plays.tsv"], "-o plays.tsv", "PLAYS", " link.tsv"),
    "wmf through a hard link": (["wmf", "hard.tsv", "-o", "plays.tsv"], "-o plays.tsv", "PLAYS", " hard.tsv"),
    "embed -o MELS": (["embed", "model.pt", "emb.h5", "-o", "emb.h5"], "-o emb.h5", "MELS", ""),
    "embed -o MODEL": (["embed", "model.pt", "emb.h5", "-o", "model.pt"], "-o model.pt", "MODEL", ""),
    "autotag --predict TAGS": (["autotag", "emb.h5", "tags.tsv", *TAGGER, "--predict", "tags.tsv"],
                               "--predict tags.tsv", "TAGS", ""),
    "autotag --per-tag EMB": (["autotag", "emb.h5", "tags.tsv", *TAGGER, "--per-tag", "emb.h5"],
                              "--per-tag emb.h5", "EMB", ""),
    "subset -o the folder of PLAYS": (["subset", "d/plays.tsv", "-o", "d"], "-o d/plays.tsv", "PLAYS", ""),
    "subset -o the folder of --exclude": (["subset", "plays.tsv", "--exclude", "d/splits.tsv", "-o", "d"],
                                          "-o d/splits.tsv", "--exclude", ""),
    "score --per-user --plays": (["score", "emb.h5", "--plays", "plays.tsv", "--splits", "splits.tsv",
                                  "--per-user", "plays.tsv"], "--per-user plays.tsv", "--plays", ""),
    "score --plot --splits": (["score", "emb.h5", "--plays", "plays.tsv", "--splits", "splits.svg",
                               "--plot", "splits.svg"], "--plot splits.svg", "--splits", ""),
    "recommend -o EMBEDDINGS": (["recommend", "emb.h5", "-o", "emb.h5"], "-o emb.h5", "EMBEDDINGS", ""),
    "recommend -o --exclude-played": (["recommend", "emb.h5", "--exclude-played", "plays.tsv", "-o", "plays.tsv"],
                                      "-o plays.tsv", "--exclude-played", ""),
    "train -o PLAYS": (["train", "emb.h5", "plays.tsv", "--splits", "splits.tsv", "-o", "plays.tsv"],
                       "-o plays.tsv", "PLAYS", ""),
    "train -o --splits": (["train", "emb.h5", "plays.tsv", "--splits", "splits.tsv", "-o", "splits.tsv"],
                          "-o splits.tsv", "--splits", ""),
    "melspec -o AUDIO": (["melspec", "a.wav", "-o", "a.wav", "-j", "0"], "-o a.wav", "AUDIO", ""),
    "melspec -o AUDIO inside a folder": (["melspec", "audio", "-o", "audio/ch1.wav", "-j", "0"],
                                         "-o audio/ch1.wav", "AUDIO", ""),
    "melspec -o --id-map": (["melspec", "a.wav", "--id-map", "splits.tsv", "-o", "splits.tsv", "-j", "0"],
                            "-o splits.tsv", "--id-map", ""),
    "melspec --merge -o a shard": (["melspec", "--merge", "emb.h5", "plays.tsv", "-o", "emb.h5"], "-o emb.h5",
                                   "SHARD", ""),
    "melspec --merge -o a shard through a link": (["melspec", "--merge", "link.tsv", "-o", "plays.tsv"],
                                                  "-o plays.tsv", "SHARD", " link.tsv"),
}


@pytest.mark.parametrize("case", INPUT_AS_OUTPUT)
def test_an_output_that_is_an_input_is_refused_before_any_work(world, hostile_audio, tmp_path, monkeypatch, case):
    import shutil

    d = _copy_world(world, tmp_path)
    monkeypatch.chdir(d)
    (d / "d").mkdir()
    shutil.copy(d / "plays.tsv", d / "d" / "plays.tsv")
    shutil.copy(d / "splits.tsv", d / "d" / "splits.tsv")
    shutil.copy(d / "splits.tsv", d / "splits.svg")
    os.symlink("plays.tsv", d / "link.tsv")
    os.link(d / "plays.tsv", d / "hard.tsv")
    shutil.copy(hostile_audio / "audio" / "ch1.wav", d / "a.wav")
    (d / "audio").mkdir()
    shutil.copy(hostile_audio / "audio" / "ch1.wav", d / "audio" / "ch1.wav")
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file() and not p.is_symlink()}
    args, output, option, named = INPUT_AS_OUTPUT[case]
    result = invoke(args, expect=1)
    assert error_line(result) == (f"{output} is also the input {option}{named}: writing it would destroy the "
                                  f"input; give {output.split()[0]} another file name.")
    after = {p: p.read_bytes() for p in d.rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == before  # every input byte for byte, and nothing new (no temporary file, no lock)


@pytest.mark.parametrize("command", ["wmf", "embed"])
def test_an_embeddings_output_never_replaces_a_file_of_another_kind(world, three_mels, tmp_path, command):
    import shutil

    d = _copy_world(world, tmp_path)
    shutil.copy(three_mels, d / "mels.h5")
    for target in (d / "mels.h5", d / "splits.tsv"):
        kept = target.read_bytes()
        args = (["wmf", d / "plays.tsv", "-o", target] if command == "wmf" else
                ["embed", d / "model.pt", three_mels, "-o", target])
        fails(args, f"{target} exists and is not an embeddings file: remove it first or give another output name.")
        assert target.read_bytes() == kept
    if command == "wmf":  # an embeddings file of its own kind is still replaced, as before
        invoke(["-q", "wmf", d / "plays.tsv", "-o", d / "emb.h5", "--factors", 2, "--iterations", 1])
        assert read_embeddings_source(d / "emb.h5") == "wmf"


def read_embeddings_source(path):
    from dcue_cli.io.embeddings import read_embeddings

    return read_embeddings(path).source


def test_subset_never_replaces_a_binary_file_with_its_tsvs(world, tmp_path):
    import shutil

    (tmp_path / "out").mkdir()
    shutil.copy(world / "emb.h5", tmp_path / "out" / "splits.tsv")
    kept = (tmp_path / "out" / "splits.tsv").read_bytes()
    fails(["subset", world / "plays.tsv", "-o", tmp_path / "out"],
          f"{tmp_path / 'out' / 'splits.tsv'} exists and is not a TSV: remove it first or give another output name.")
    assert (tmp_path / "out" / "splits.tsv").read_bytes() == kept
    assert_absent(tmp_path / "out" / "plays.tsv")
    (tmp_path / "out" / "splits.tsv").write_text("an old split\n")  # a text file of its kind: replaced
    invoke(["subset", world / "plays.tsv", "-o", tmp_path / "out"])
    assert (tmp_path / "out" / "plays.tsv").exists()


@pytest.mark.parametrize("command", ["recommend", "score", "autotag", "train"])
def test_no_tsv_output_replaces_a_binary_file(world, toy, tmp_path, command):
    # `recommend -o mels.h5`, `score --per-user model.pt`, `autotag --predict emb.h5` replaced the
    # binary file with a TSV, exit 0 (subset's own check, now every TSV output's, before the work)
    import shutil

    from conftest import toy_args

    victim = tmp_path / "victim.h5"
    shutil.copy(world / "emb.h5", victim)
    kept = victim.read_bytes()
    args = {"recommend": ["recommend", world / "emb.h5", "-o", victim],
            "score": ["score", world / "emb.h5", *cold(world), "--per-user", victim],
            "autotag": ["autotag", world / "emb.h5", world / "tags.tsv", *TAGGER, "--predict", victim],
            "train": toy_args(toy, tmp_path / "victim.pt")}[command]
    if command == "train":  # its log beside -o
        victim = tmp_path / "victim.log.tsv"
        shutil.copy(world / "emb.h5", victim)
    fails(args, f"{victim} exists and is not a TSV: remove it first or give another output name.")
    assert victim.read_bytes() == kept


# ----------------------------------------------------------------------------- a full disk (REL-SIGNALS)


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(monkeypatch, tmp_path):
    from conftest import disk_full_line, fill_the_disk, leftovers

    from dcue_cli.errors import DcueError
    from dcue_cli.io.atomic import open_text_output, write_bytes_atomically

    def text(target):
        with open_text_output(target) as stream:
            stream.write("a\tb\n")

    (tmp_path / "kept.bin").write_bytes(b"complete")
    fill_the_disk(monkeypatch)
    for write in (lambda target: write_bytes_atomically(target, b"0123456789"), text):
        with pytest.raises(DcueError) as caught:
            write(tmp_path / "kept.bin")
        assert caught.value.message == disk_full_line(tmp_path / "kept.bin")
    assert (tmp_path / "kept.bin").read_bytes() == b"complete" and leftovers(tmp_path) == []


def test_an_error_reading_an_input_inside_the_block_is_not_called_a_write_error(tmp_path):
    from dcue_cli.io.atomic import atomic_path

    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "out.txt"):
        (tmp_path / "absent.txt").read_text()
    assert list(tmp_path.iterdir()) == []
