"""Outputs that cannot be written (under a file, in a read-only folder, a folder), through every command
that writes one: a one-line error before any work, nothing left under the real name."""

import os

import pytest
from conftest import PERMISSIONS_IGNORED as ROOT
from conftest import TAGGER, cold, error_line, invoke, invoke_any

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
