"""`dcue melspec` end to end: real and synthetic audio, bad inputs, ids and id maps, path lists,
adding to an output, shards and merge, the torch path. Hostile files: test_melspec_hostile.py;
kill -9, signals and a second writer: test_melspec_interrupts.py; the library's parts:
test_audio.py; the file format: test_io_mels.py."""

import filecmp
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio_files import (
    SR,
    assert_float16_close,
    librosa_logmel,
    make_folder,
    make_wav,
    read_items,
    tone,
)
from conftest import REPO, disk_full_line, error_line, fails, invoke, shared_data

from dcue_cli.audio.logmel import FeatureConfig
from dcue_cli.io.mels import MelsFile

# --- the command on real and synthetic audio ----------------------------------------------------

def test_command_on_real_recordings_and_jobs_do_not_matter(tmp_path):
    folder = shared_data("librosa_music")
    result = invoke(["melspec", folder, "-o", tmp_path / "a.h5", "-j", "2"])
    assert "melspec: 16 written, 0 skipped (already present), 0 failed" in result.stderr
    assert result.stdout == ""
    invoke(["melspec", folder, "-o", tmp_path / "b.h5", "-j", "0"])
    assert filecmp.cmp(tmp_path / "a.h5", tmp_path / "b.h5", shallow=False)  # same bytes

    items, attrs = read_items(tmp_path / "a.h5")
    for name in ("Kevin_MacLeod_-_Vibe_Ace.hq", "sorohanro_-_solo-trumpet-06"):
        assert_float16_close(items[name], librosa_logmel(folder / f"{name}.ogg"))
    assert attrs["sr"] == 22050 and attrs["n_fft"] == 1024 and attrs["hop_length"] == 512
    assert attrs["n_mels"] == 128 and attrs["dtype"] == "float16" and attrs["max_seconds"] == 30.0
    assert attrs["compression"] == "log10(1+10*mel)" and attrs["dcue_version"]
    with MelsFile(tmp_path / "a.h5") as m:
        values = m.read_all().astype(np.float64)
        assert m.read_all().dtype == np.float16 and list(m.ids) == sorted(m.ids)
        assert attrs["mean"] == pytest.approx(values.mean(), rel=1e-9)
        assert attrs["std"] == pytest.approx(values.std(), rel=1e-9)

    # a rerun has nothing to do
    result = invoke(["melspec", folder, "-o", tmp_path / "a.h5", "-j", "0"])
    assert "melspec: 0 written, 16 skipped (already present), 0 failed" in result.stderr

def test_float32_output_matches_librosa(tmp_path):
    make_folder(tmp_path / "audio", 3)
    invoke(["melspec", tmp_path / "audio", "-o", tmp_path / "m.h5", "-j", "0", "--dtype", "float32"])
    items, attrs = read_items(tmp_path / "m.h5")
    assert sorted(items) == ["TR0000", "TR0001", "TR0002"] and attrs["dtype"] == "float32"
    reference = librosa_logmel(tmp_path / "audio" / "sub1" / "TR0001.wav")
    assert np.abs(items["TR0001"] - reference).max() < 1e-4

def test_contradicting_settings_are_a_usage_error(tmp_path):
    make_wav(tmp_path / "a.wav")
    result = invoke(["melspec", tmp_path, "-o", tmp_path / "m.h5", "--fmin", "9000", "--fmax", "100"], expect=2)
    assert result.stderr.strip().endswith("Error: --fmin 9000 / --fmax 100: need fmin < fmax <= sr/2 (11025).")
    assert not (tmp_path / "m.h5.partial").exists()

def test_bad_inputs_are_listed_not_fatal(tmp_path):
    audio = tmp_path / "audio"
    make_wav(audio / "good1.wav")
    make_wav(audio / "good2.flac", freq=300)
    (audio / "zero.wav").write_bytes(b"")
    (audio / "text.mp3").write_text("not audio at all\n" * 100)
    (audio / "noise.ogg").write_bytes(np.random.default_rng(0).bytes(5000))
    sf.write(audio / "short.wav", tone(0.5), SR)
    sf.write(audio / "silent.wav", np.zeros((SR * 2, 2), np.float32), SR)
    sf.write(audio / "nan.wav", np.full(SR * 2, np.nan, np.float32), SR, subtype="FLOAT")
    (audio / "._good1.wav").write_bytes(b"macOS metadata")  # hidden: not an input
    out = tmp_path / "m.h5"
    result = invoke(["melspec", audio, "-o", out, "-j", "0"])
    assert "melspec: 2 written, 0 skipped (already present), 6 failed" in result.stderr
    assert f"see {out}.failures.tsv" in result.stderr
    items, _ = read_items(out)
    assert sorted(items) == ["good1", "good2"]
    rows = dict(line.split("\t") for line in Path(f"{out}.failures.tsv").read_text().splitlines())
    assert rows == {
        str(audio / "nan.wav"): "non-finite samples (NaN or infinity)",
        str(audio / "noise.ogg"): "cannot decode: Format not recognised",
        str(audio / "short.wav"): "too short: 0.50 s < --min-seconds 1",
        str(audio / "silent.wav"): "silent: peak -inf dBFS < --silence-db -60",
        str(audio / "text.mp3"): "cannot decode: not audio data libsndfile recognises",
        str(audio / "zero.wav"): "empty file (0 bytes)",
    }
    # fixing the inputs and rerunning removes the stale failures list
    for name in ("nan.wav", "noise.ogg", "short.wav", "silent.wav", "text.mp3", "zero.wav"):
        (audio / name).unlink()
    invoke(["melspec", audio, "-o", out, "-j", "0"])
    assert not Path(f"{out}.failures.tsv").exists()

def test_strict_stops_at_first_failure(tmp_path):
    make_wav(tmp_path / "a.wav")
    (tmp_path / "b.wav").write_bytes(b"")
    result = invoke(["melspec", tmp_path, "-o", tmp_path / "m.h5", "-j", "0", "--strict"], expect=1)
    assert result.stderr.strip().endswith(
        f"Error: {tmp_path / 'b.wav'}: empty file (0 bytes) (--strict stops at the first failure).")
    assert not (tmp_path / "m.h5").exists()
    assert (tmp_path / "m.h5.partial").is_dir()  # a.wav is kept for a rerun
    result = invoke(["melspec", tmp_path / "a.wav", "-o", tmp_path / "m.h5", "-j", "0"])
    assert "resuming: 1 items kept" in result.stderr and "0 written, 1 skipped" in result.stderr

def test_everything_failing_is_an_error(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    result = invoke(["melspec", tmp_path, "-o", tmp_path / "m.h5", "-j", "0"], expect=1)
    assert f"Error: no input could be used (1 failed, see {tmp_path / 'm.h5'}.failures.tsv)" in result.stderr
    assert not (tmp_path / "m.h5").exists() and not (tmp_path / "m.h5.partial").exists()

def test_empty_folder_and_missing_list_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke(["melspec", tmp_path / "empty", "-o", tmp_path / "m.h5"], expect=1)
    assert f"Error: {tmp_path / 'empty'} holds no audio files" in result.stderr
    result = invoke(["melspec", tmp_path / "nope.txt", "-o", tmp_path / "m.h5"], expect=1)
    assert f"Error: {tmp_path / 'nope.txt'} does not exist: give an audio folder" in result.stderr

def test_duplicate_ids_name_both_paths(tmp_path):
    make_wav(tmp_path / "a" / "TR1.wav")
    make_wav(tmp_path / "b" / "TR1.flac")
    result = invoke(["melspec", tmp_path, "-o", tmp_path / "m.h5", "-j", "0"], expect=1)
    assert "Error: two inputs have the same id 'TR1': " in result.stderr
    assert str(tmp_path / "a" / "TR1.wav") in result.stderr and str(tmp_path / "b" / "TR1.flac") in result.stderr

def test_id_map_names_items_by_song(tmp_path):
    audio = tmp_path / "audio"
    make_wav(audio / "A" / "TRAAA.wav")
    make_wav(audio / "B" / "TRBBB.wav", freq=300)
    make_wav(audio / "B" / "TRCCC.wav", freq=350)
    id_map = tmp_path / "unique_tracks.txt"
    id_map.write_text("TRAAA<SEP>SOAAA<SEP>Artist A<SEP>Song A\nTRBBB<SEP>SOBBB<SEP>Artist B<SEP>Song B\n")
    out = tmp_path / "m.h5"
    result = invoke(["melspec", audio, "-o", out, "-j", "0", "--id-map", id_map])
    assert "2 written, 0 skipped (already present), 1 failed" in result.stderr
    items, _ = read_items(out)
    assert sorted(items) == ["SOAAA", "SOBBB"]
    assert Path(f"{out}.failures.tsv").read_text() == (
        f"{audio / 'B' / 'TRCCC.wav'}\tTRCCC is not a track id in unique_tracks.txt\n")

def test_several_tracks_of_one_song_keep_the_first_that_can_be_used(tmp_path):
    """unique_tracks.txt sends some songs' re-releases to one song id: that stopped melspec."""
    audio = tmp_path / "audio"
    make_wav(audio / "B" / "TRAAA.wav")
    make_wav(audio / "A" / "TRBBB.wav", freq=300)
    make_wav(audio / "C" / "TRCCC.wav", freq=350)
    id_map = tmp_path / "unique_tracks.txt"
    id_map.write_text("TRAAA<SEP>SOAAA<SEP>a<SEP>a\nTRBBB<SEP>SOAAA<SEP>b<SEP>b\nTRCCC<SEP>SOCCC<SEP>c<SEP>c\n")
    invoke(["melspec", audio / "B" / "TRAAA.wav", audio / "C", "-o", tmp_path / "ref.h5", "-j", "0",
            "--id-map", id_map])
    out = tmp_path / "m.h5"
    result = invoke(["melspec", audio, "-o", out, "-j", "0", "--id-map", id_map])
    assert (f"melspec: 2 written, 0 skipped (already present), 0 failed, 1 left out (one track per song; "
            f"see {out}.failures.tsv)") in result.stderr
    assert filecmp.cmp(out, tmp_path / "ref.h5", shallow=False)  # the first track id, not the first path
    assert Path(f"{out}.failures.tsv").read_text() == (
        f"{audio / 'A' / 'TRBBB.wav'}\tanother track of song SOAAA is used (one track per song: the first in "
        "track-id order that can be used)\n")
    # the first track's file cannot be used: the next one is
    (audio / "B" / "TRAAA.wav").write_bytes(b"")
    invoke(["melspec", audio / "A", audio / "C", "-o", tmp_path / "ref2.h5", "-j", "0", "--id-map", id_map])
    result = invoke(["melspec", audio, "-o", tmp_path / "n.h5", "-j", "0", "--id-map", id_map])
    assert "melspec: 2 written, 0 skipped (already present), 1 failed (see " in result.stderr
    assert filecmp.cmp(tmp_path / "n.h5", tmp_path / "ref2.h5", shallow=False)
    assert Path(f"{tmp_path / 'n.h5'}.failures.tsv").read_text() == f"{audio / 'B' / 'TRAAA.wav'}\tempty file (0 bytes)\n"
    # --strict: today's error, naming both files, nothing written
    result = invoke(["melspec", audio, "-o", tmp_path / "s.h5", "-j", "0", "--id-map", id_map, "--strict"], expect=1)
    assert error_line(result) == (
        f"two inputs have the same id 'SOAAA' (through unique_tracks.txt): {audio / 'A' / 'TRBBB.wav'} and "
        f"{audio / 'B' / 'TRAAA.wav'}: leave one of them out of the input.")
    assert not (tmp_path / "s.h5").exists() and not Path(f"{tmp_path / 's.h5'}.partial").exists()

def test_a_file_whose_id_would_break_a_tsv_is_a_counted_failure(tmp_path):
    """A newline in a file name became an id that broke every TSV output (and the failures list)."""
    make_wav(tmp_path / "a" / "good.wav")
    make_wav(tmp_path / "a" / "two\nlines.wav", freq=300)
    make_wav(tmp_path / "a" / "tab\there.wav", freq=350)
    out = tmp_path / "m.h5"
    result = invoke(["melspec", tmp_path / "a", "-o", out, "-j", "0"])
    assert "1 written, 0 skipped (already present), 2 failed" in result.stderr
    items, _ = read_items(out)
    assert list(items) == ["good"]
    folder = str(tmp_path / "a")
    assert Path(f"{out}.failures.tsv").read_text() == (
        f"{folder}/tab\\there.wav\tits id 'tab\\there' holds a tab, newline or carriage return, which no TSV "
        "output could hold: rename the file\n"
        f"{folder}/two\\nlines.wav\tits id 'two\\nlines' holds a tab, newline or carriage return, which no TSV "
        "output could hold: rename the file\n")
    result = invoke(["melspec", tmp_path / "a", "-o", tmp_path / "s.h5", "-j", "0", "--strict"], expect=1)
    assert error_line(result) == (f"{folder}/tab\\there.wav: its id 'tab\\there' holds a tab, newline or "
                                  "carriage return, which no TSV output could hold: rename the file "
                                  "(--strict stops at the first failure).")

def test_path_list_on_stdin_equals_folder(tmp_path):
    audio = make_folder(tmp_path / "audio", 4)
    invoke(["melspec", audio, "-o", tmp_path / "folder.h5", "-j", "0"])
    listing = "\n".join(str(p) for p in sorted(audio.rglob("*.wav"), reverse=True)) + "\n\n"
    invoke(["melspec", "-", "-o", tmp_path / "stdin.h5", "-j", "0"], input=listing)
    assert filecmp.cmp(tmp_path / "folder.h5", tmp_path / "stdin.h5", shallow=False)
    (tmp_path / "list.txt").write_text(listing)
    invoke(["melspec", tmp_path / "list.txt", "-o", tmp_path / "list.h5", "-j", "0"])
    assert filecmp.cmp(tmp_path / "folder.h5", tmp_path / "list.h5", shallow=False)

def test_missing_file_in_list_is_a_failure(tmp_path):
    make_wav(tmp_path / "a.wav")
    listing = f"{tmp_path / 'a.wav'}\n{tmp_path / 'gone.wav'}\n"
    result = invoke(["melspec", "-", "-o", tmp_path / "m.h5", "-j", "0"], input=listing)
    assert "1 written, 0 skipped (already present), 1 failed" in result.stderr
    assert Path(f"{tmp_path / 'm.h5'}.failures.tsv").read_text() == f"{tmp_path / 'gone.wav'}\tno such file\n"

# --- adding to an output, shards ------------------------------------------------------------------

def test_adding_files_equals_one_run_and_settings_must_match(tmp_path):
    audio = make_folder(tmp_path / "audio", 5)
    first = sorted(audio.rglob("*.wav"))[:3]
    out = tmp_path / "m.h5"
    invoke(["melspec", "-", "-o", out, "-j", "0"], input="\n".join(map(str, first)))
    result = invoke(["melspec", audio, "-o", out, "-j", "0"])
    assert "2 written, 3 skipped (already present)" in result.stderr and "holds 5 items" in result.stderr
    invoke(["melspec", audio, "-o", tmp_path / "one.h5", "-j", "0"])
    assert filecmp.cmp(out, tmp_path / "one.h5", shallow=False)

    result = invoke(["melspec", audio, "-o", out, "-j", "0", "--n-mels", "64"], expect=1)
    assert (f"Error: {out} was made with other feature settings (n_mels=128 vs 64, file vs now): "
            "give the same options to add to it, or --overwrite to replace it.") in result.stderr
    invoke(["melspec", audio, "-o", out, "-j", "0", "--n-mels", "64", "--overwrite"])
    with MelsFile(out) as m:
        assert m.n_mels == 64 and len(m) == 5

def test_shards_merged_equal_one_run(tmp_path):
    audio = make_folder(tmp_path / "audio", 7)
    invoke(["melspec", audio, "-o", tmp_path / "one.h5", "-j", "0"])
    sizes = []
    for k in (1, 2, 3):
        invoke(["melspec", audio, "-o", tmp_path / f"s{k}.h5", "-j", "0", "--shard", f"{k}/3"])
        sizes.append(len(MelsFile(tmp_path / f"s{k}.h5")))
    assert sum(sizes) == 7
    shards = [tmp_path / f"s{k}.h5" for k in (3, 1, 2)]
    invoke(["melspec", "--merge", *shards, "-o", tmp_path / "all.h5"])
    assert filecmp.cmp(tmp_path / "one.h5", tmp_path / "all.h5", shallow=False)

    result = invoke(["melspec", "--merge", *shards, "-o", tmp_path / "all.h5"], expect=1)
    assert f"Error: {tmp_path / 'all.h5'} exists: add --overwrite" in result.stderr
    result = invoke(["melspec", "--merge", shards[0], tmp_path / "one.h5", "-o", tmp_path / "x.h5"], expect=1)
    assert "is in both" in result.stderr and "shards must not overlap" in result.stderr
    invoke(["melspec", audio, "-o", tmp_path / "m64.h5", "-j", "0", "--n-mels", "64", "--shard", "1/3"])
    result = invoke(["melspec", "--merge", shards[0], tmp_path / "m64.h5", "-o", tmp_path / "y.h5"], expect=1)
    assert (f"Error: {tmp_path / 'm64.h5'} was made with other feature settings than {shards[0]} "
            "(n_mels=64 vs 128): merge only shards made with the same options.") in result.stderr
    result = invoke(["melspec", audio, "-o", tmp_path / "z.h5", "--shard", "0/3"], expect=2)
    assert "shards are numbered 1..N" in result.stderr

# --- a full disk ----------------------------------------------------------------------------------

def test_a_full_disk_is_one_line_keeping_the_items_done_and_the_rerun_resumes(tmp_path, monkeypatch):
    from conftest import fill_the_disk, leftovers

    audio = make_folder(tmp_path / "audio", 8, seconds=3.0)
    invoke(["melspec", audio, "-o", tmp_path / "ref.h5", "-j", "0"])
    out, partial = tmp_path / "out" / "m.h5", tmp_path / "out" / "m.h5.partial"
    command = ["melspec", audio, "-o", out, "-j", "0", "--checkpoint-every", "0"]  # a segment per item
    with monkeypatch.context() as patch:
        fill_the_disk(patch, room=600_000)  # room for a few segments (~140 kB each)
        result = invoke(command, expect=1)
    kept = sum(len(MelsFile(p)) for p in partial.glob("seg-*.h5"))
    assert 0 < kept < 8
    assert error_line(result) == disk_full_line(out).replace(
        "free some space", f"free some space and rerun the same command (it resumes from the {kept} items kept "
                           f"in {partial})")
    assert not out.exists() and leftovers(out.parent) == [] and not list(partial.glob("*.tmp"))
    result = invoke(command)  # space freed: the same command resumes
    assert f"resuming: {kept} items kept from an interrupted run" in result.stderr
    assert filecmp.cmp(out, tmp_path / "ref.h5", shallow=False) and not partial.exists()


def test_a_full_disk_before_any_item_is_kept_and_in_a_merge_leaves_nothing(tmp_path, monkeypatch):
    from conftest import fill_the_disk, leftovers

    audio = make_folder(tmp_path / "audio", 4)
    files = sorted(map(str, audio.rglob("*.wav")))
    for k, part in ((1, files[:2]), (2, files[2:])):
        invoke(["melspec", "-", "-o", tmp_path / f"s{k}.h5", "-j", "0"], input="\n".join(part))
    out = tmp_path / "out" / "m.h5"
    with monkeypatch.context() as patch:
        fill_the_disk(patch)
        fails(["melspec", "--merge", tmp_path / "s1.h5", tmp_path / "s2.h5", "-o", out], disk_full_line(out))
    assert not out.exists() and leftovers(out.parent) == []
    fill_the_disk(monkeypatch, room=2000)  # the partial folder's manifest fits, no mels file does
    fails(["melspec", audio, "-o", out, "-j", "0"], disk_full_line(out))
    assert not out.exists() and leftovers(out.parent) == []
    assert sorted(p.name for p in Path(f"{out}.partial").iterdir()) == ["lock", "manifest.json"]


def test_a_real_full_disk_exits_1_without_a_crash_at_exit(tmp_path):
    """The same on a real 200 kB file system (a tmpfs in private user and mount namespaces): one
    line and exit 1, not h5py's traceback and then a segfault at interpreter exit (exit 139)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True,
                                                         check=False).returncode:
        pytest.skip("needs `unshare -rm` (user and mount namespaces) to mount a small tmpfs")
    audio = make_folder(tmp_path / "audio", 4, seconds=3.0)
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "m.h5"
    script = (f"mount -t tmpfs -o size=200k tmpfs {shlex.quote(str(disk))} && exec {shlex.quote(sys.executable)} "
              f"-m dcue_cli melspec {shlex.quote(str(audio))} -o {shlex.quote(str(out))} -j 0")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), check=False)
    if "mount:" in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "Error: " + disk_full_line(out)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


@pytest.mark.parametrize("name,kind", [("mels.h5", "an HDF5 file (mels or embeddings?)"),
                                       ("model.pt", "a torch file (a model checkpoint?)")])
def test_a_binary_file_given_as_audio_is_named_not_read_as_a_path_list(tmp_path, name, kind):
    # a mels file given as AUDIO was read as a list of paths: "two inputs have the same id '\\x01' ..."
    path = tmp_path / name
    path.write_bytes((b"\x89HDF\r\n\x1a\n" if name.endswith(".h5") else b"PK\x03\x04") + bytes(range(256)) * 4)
    result = invoke(["melspec", path, "-o", tmp_path / "out.h5", "-j", "0"], expect=1)
    assert error_line(result) == (f"AUDIO {path} is {kind}, not audio nor a list of audio paths: give an audio "
                                  "folder, audio files, or a text file listing audio paths one a line ('-' for "
                                  "stdin).")
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("option,value,bounds", [("--n-fft", 10**8, "16<=x<=65536"),
                                                 ("--sr", 10**9, "1000<=x<=384000"),
                                                 ("--n-mels", 10**6, "1<=x<=1024")])
def test_feature_settings_beyond_any_use_are_a_misuse(tmp_path, option, value, bounds):
    # --n-fft 100000000 was a 48 GiB MemoryError traceback building the filterbank
    result = invoke(["melspec", tmp_path, "-o", tmp_path / "out.h5", option, value], expect=2)
    assert f"Error: Invalid value for '{option}': {value} is not in the range {bounds}." in result.stderr


# --- the library without the command, the torch path, help, chaining ------------------------------

def test_library_runs_without_the_command(tmp_path):
    from dcue_cli.audio.inputs import assign_ids, gather_inputs
    from dcue_cli.audio.melspec import run_melspec

    audio = make_folder(tmp_path / "audio", 3)
    inputs = assign_ids(gather_inputs([audio]))
    assert inputs.ids == ["TR0000", "TR0001", "TR0002"] and not inputs.failures
    report = run_melspec([audio], tmp_path / "m.h5", FeatureConfig(), jobs=0)
    assert (report.written, report.present, report.failed, report.n_items) == (3, 0, 0, 3)
    assert report.line(tmp_path / "m.h5").startswith("melspec: 3 written, 0 skipped (already present), 0 failed; ")

def test_torch_device_on_cpu_through_the_command(tmp_path):
    audio = make_folder(tmp_path / "audio", 3)
    (audio / "zero.wav").write_bytes(b"")
    args = ["melspec", audio, "-j", "0", "--dtype", "float32", "--batch-size", "2"]
    invoke([*args, "-o", tmp_path / "np.h5"])
    result = invoke([*args, "-o", tmp_path / "torch.h5", "--device", "cpu-torch"])
    assert "3 written, 0 skipped (already present), 1 failed" in result.stderr
    ours, _attrs = read_items(tmp_path / "torch.h5")
    numpy_path, _ = read_items(tmp_path / "np.h5")
    assert sorted(ours) == sorted(numpy_path)
    assert max(np.abs(ours[k] - numpy_path[k]).max() for k in ours) < 1e-3

def test_help_has_example():
    out = invoke(["melspec", "--help"]).stdout
    assert "Example:" in out and "--id-map" in out and "--merge" in out

def test_chains_after_dcue_synth(tmp_path):
    from dcue_cli.cli import cli

    if cli.get_command(None, "synth") is None:
        pytest.skip("dcue synth is not available")
    invoke(["synth", tmp_path / "data", "--songs", "6", "--users", "5", "--seconds", "2", "-j", "1"])
    data = tmp_path / "data"
    invoke(["melspec", data / "audio", "-o", tmp_path / "mels.h5", "--id-map", data / "unique_tracks.txt", "-j", "0"])
    songs = {line.split("<SEP>")[1] for line in (data / "unique_tracks.txt").read_text().splitlines()}
    with MelsFile(tmp_path / "mels.h5") as m:
        assert set(m.ids) == songs and m.attrs["std"] > 0
