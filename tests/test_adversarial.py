"""Hostile inputs through the real commands: every case ends in a one-line error or a counted skip.

For every command but train/embed (see docs/reliability.md for the table): bad audio (truncated,
corrupt, empty, not audio, 1-8 channels, 8-96 kHz, 8-64 bit, minutes long, silent, NaN), bad TSVs
(field counts, counts, blank lines, BOM, CRLF, Latin-1, odd ids, duplicates, headers), HDF5 files
from other tools, older layouts, truncated or damaged, read-only; outputs that cannot be written;
unknown ids; and interruptions of `melspec` (SIGKILL at random moments, SIGINT, SIGTERM, a second
writer). Each case checks the exit code, the exact message, that no traceback escaped (`invoke`
raises on one) and that nothing half-written is left under the real output name.
"""

import filecmp
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, error_line, invoke, popen_with_sigint

from dcue_cli.io.embeddings import Embeddings, read_embeddings, write_embeddings
from dcue_cli.io.mels import MelsFile, MelsWriter

SR = 22050
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


def tone(seconds, sr=SR, channels=1, freq=330.0):
    t = np.arange(round(seconds * sr)) / sr
    return np.stack([0.3 * np.sin(2 * np.pi * freq * (1 + 0.2 * c) * t) for c in range(channels)],
                    axis=1).astype(np.float32)


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


# ============================================================================= audio (melspec)

@pytest.fixture(scope="module")
def hostile_audio(tmp_path_factory):
    """Every kind of audio file a crawl of the web turns up, good and bad, in one folder."""
    root = tmp_path_factory.mktemp("audio")
    a = root / "audio"
    a.mkdir()
    # Good, odd shapes: 1-8 channels; 8-96 kHz; 8/16/24/32-bit integer, 32/64-bit float; mp3, ogg.
    for ch in range(1, 9):
        sf.write(a / f"ch{ch}.wav", tone(1.5, channels=ch), SR)
    for sr in (8000, 11025, 16000, 22050, 44100, 48000, 88200, 96000):
        sf.write(a / f"sr{sr}.wav", tone(1.5, sr=sr, channels=2), sr)
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"):
        sf.write(a / f"wav_{subtype.lower()}.wav", tone(1.5, channels=2), SR, subtype=subtype)
    sf.write(a / "flac_s8.flac", tone(1.5), SR, subtype="PCM_S8")
    sf.write(a / "flac_24_96k.flac", tone(4.0, sr=96000, channels=2), 96000, subtype="PCM_24")
    sf.write(a / "aiff_32.aiff", tone(1.5), SR, subtype="PCM_32")
    sf.write(a / "good_mp3.mp3", tone(4.0, channels=2), SR, format="MP3")
    sf.write(a / "good_ogg.ogg", tone(4.0, channels=2), SR, format="OGG")
    sf.write(a / "long.flac", tone(180.0), SR)  # three minutes
    sf.write(a / "loud_dc.wav", np.full(SR * 2, 0.5, np.float32), SR)  # a constant: not silent
    # Truncated: half a file (decodes as far as the data goes), or only its first 40 bytes.
    for name in ("flac_24_96k.flac", "good_mp3.mp3", "good_ogg.ogg", "wav_pcm_16.wav"):
        data = (a / name).read_bytes()
        stem, ext = name.rsplit(".", 1)
        (a / f"half_{stem}.{ext}").write_bytes(data[:len(data) // 2])
        (a / f"head_{stem}.{ext}").write_bytes(data[:40])
        flipped = bytearray(data)  # corrupt: 200 random bytes changed past the header
        rng = np.random.default_rng(len(data))
        for pos in rng.integers(100, len(data), 200):
            flipped[pos] = rng.integers(0, 256)
        (a / f"corrupt_{stem}.{ext}").write_bytes(bytes(flipped))
    # Not audio at all, under audio names.
    for ext in ("mp3", "wav", "flac", "ogg", "aiff", "opus"):
        (a / f"zero_{ext}.{ext}").write_bytes(b"")
        (a / f"text_{ext}.{ext}").write_text("hello, this is not audio\n" * 100)
        (a / f"random_{ext}.{ext}").write_bytes(np.random.default_rng(7).bytes(4000))
    (a / "png.mp3").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    (a / "id3_only.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(1000))
    # Decodes, but unusable.
    sf.write(a / "silence.wav", np.zeros((SR * 2, 2), np.float32), SR)
    sf.write(a / "nan.wav", np.full(SR * 2, np.nan, np.float32), SR, subtype="FLOAT")
    sf.write(a / "inf.wav", np.full(SR * 2, np.inf, np.float32), SR, subtype="FLOAT")
    sf.write(a / "ten_samples.wav", tone(10 / SR), SR)
    os.symlink(root / "nowhere.wav", a / "dangling.wav")
    (a / "folder.wav").mkdir()  # a folder with an audio name: not an input of a folder scan
    (a / "._ch1.wav").write_bytes(b"macOS resource fork")  # hidden: not an input either
    bad_name = os.fsencode(str(a)) + b"/latin1_\xe9.wav"  # a file name that is not UTF-8
    with open(bad_name, "wb") as f:
        f.write((a / "ch1.wav").read_bytes())
    return root


EXACT_REASONS = {
    **{f"zero_{ext}.{ext}": "empty file (0 bytes)" for ext in ("mp3", "wav", "flac", "ogg", "aiff", "opus")},
    **{f"text_{ext}.{ext}": "cannot decode: Format not recognised" for ext in ("wav", "flac", "ogg", "aiff", "opus")},
    **{f"random_{ext}.{ext}": "cannot decode: Format not recognised" for ext in ("wav", "flac", "ogg", "aiff", "opus")},
    "text_mp3.mp3": "cannot decode: not audio data libsndfile recognises",
    "random_mp3.mp3": "cannot decode: not audio data libsndfile recognises",
    "png.mp3": "cannot decode: not audio data libsndfile recognises",
    "id3_only.mp3": "cannot decode: not audio data libsndfile recognises",
    "silence.wav": "silent: peak -inf dBFS < --silence-db -60",
    "nan.wav": "non-finite samples (NaN or infinity)",
    "inf.wav": "non-finite samples (NaN or infinity)",
    "ten_samples.wav": "too short: 0.00 s < --min-seconds 1",
    "dangling.wav": "no such file",
    "latin1_\udce9.wav": "the file name is not valid UTF-8",
    "head_wav_pcm_16.wav": "cannot decode: Error in WAV file. No 'data' chunk marker",
    "head_good_mp3.mp3": "cannot decode: not audio data libsndfile recognises",
}


@pytest.fixture(scope="module")
def hostile_run(hostile_audio):
    out = hostile_audio / "mels.h5"
    result = invoke(["melspec", hostile_audio / "audio", "-o", out, "-j", "0"])
    text = Path(f"{out}.failures.tsv").read_text(errors="surrogateescape")  # one path is not UTF-8
    failures = dict(line.split("\t") for line in text.splitlines())
    failures = {os.path.basename(path): reason for path, reason in failures.items()}
    with MelsFile(out) as m:
        items = {item: m.item(i) for i, item in enumerate(m.ids)}
    return result, failures, items


def test_every_hostile_file_is_listed_with_its_reason_and_the_rest_is_written(hostile_run, hostile_audio):
    result, failures, items = hostile_run
    for name, reason in EXACT_REASONS.items():
        assert failures.get(name) == reason, name
    # Truncated or corrupt compressed files: decoded as far as the data goes, or listed as failed.
    for name in os.listdir(hostile_audio / "audio"):
        stem = name.rsplit(".", 1)[0]
        if name.startswith(("half_", "head_", "corrupt_")):
            assert (stem in items) != (name in failures), name
            if name in failures:
                assert failures[name].startswith(("cannot decode: ", "too short: ", "no audio samples")), failures[name]
    # Every file written: every channel count, rate and sample format, the constant, the long file.
    expected = {f"ch{c}" for c in range(1, 9)} | {f"sr{r}" for r in (8000, 11025, 16000, 22050, 44100, 48000,
                                                                      88200, 96000)}
    expected |= {f"wav_{s}" for s in ("pcm_u8", "pcm_16", "pcm_24", "pcm_32", "float", "double", "ulaw", "alaw")}
    expected |= {"flac_s8", "flac_24_96k", "aiff_32", "good_mp3", "good_ogg", "long", "loud_dc"}
    assert expected <= set(items)
    assert set(items) | {n.rsplit(".", 1)[0] for n in failures} == {
        n.rsplit(".", 1)[0] for n in os.listdir(hostile_audio / "audio") if not n.startswith(".") and n != "folder.wav"}
    for item, mel in items.items():
        assert mel.shape[1] == 128 and np.isfinite(mel).all(), item
    assert items["ch8"].shape[0] == items["sr96000"].shape[0] == items["wav_pcm_u8"].shape[0] == 65  # 1.5 s
    assert items["long"].shape[0] == 1292  # the first 30 s (--max-seconds)
    n_failed = len(failures)
    assert (f"melspec: {len(items)} written, 0 skipped (already present), {n_failed} failed "
            f"(see {hostile_audio / 'mels.h5'}.failures.tsv)") in result.stderr
    assert result.stdout == ""


def test_a_minutes_long_file_is_read_whole_with_max_seconds_0(hostile_audio, tmp_path):
    out = tmp_path / "long.h5"
    invoke(["melspec", hostile_audio / "audio" / "long.flac", "-o", out, "-j", "0", "--max-seconds", 0])
    with MelsFile(out) as m:
        assert list(m.ids) == ["long"] and m.lengths[0] == 1 + 180 * SR // 512


def test_silence_is_kept_when_asked(hostile_audio, tmp_path):
    out = tmp_path / "s.h5"
    invoke(["melspec", hostile_audio / "audio" / "silence.wav", "-o", out, "-j", "0", "--silence-db", "-inf"])
    with MelsFile(out) as m:
        assert np.all(m.item(0) == 0)


def test_a_path_list_naming_folders_and_missing_files_counts_them(hostile_audio, tmp_path):
    a = hostile_audio / "audio"
    listing = f"{a / 'ch1.wav'}\n{a / 'folder.wav'}\n{tmp_path / 'gone.mp3'}\n\n"
    result = invoke(["melspec", "-", "-o", tmp_path / "m.h5", "-j", "0"], input=listing)
    assert "1 written, 0 skipped (already present), 2 failed" in result.stderr
    rows = dict(line.split("\t") for line in Path(f"{tmp_path / 'm.h5'}.failures.tsv").read_text().splitlines())
    assert rows == {str(a / "folder.wav"): "is a folder, not an audio file", str(tmp_path / "gone.mp3"): "no such file"}


def test_nothing_usable_writes_nothing(hostile_audio, tmp_path):
    a = hostile_audio / "audio"
    out = tmp_path / "m.h5"
    fails(["melspec", a / "zero_mp3.mp3", a / "text_wav.wav", a / "silence.wav", "-o", out, "-j", "0"],
          f"no input could be used (3 failed, see {out}.failures.tsv): {out} not written.")
    assert_absent(out)
    assert not Path(f"{out}.partial").exists()


@pytest.mark.skipif(ROOT, reason="root reads any file")
def test_an_unreadable_file_is_a_counted_failure(tmp_path):
    sf.write(tmp_path / "ok.wav", tone(1.5), SR)
    sf.write(tmp_path / "locked.wav", tone(1.5), SR)
    os.chmod(tmp_path / "locked.wav", 0)
    try:
        result = invoke(["melspec", tmp_path, "-o", tmp_path / "m.h5", "-j", "0"])
    finally:
        os.chmod(tmp_path / "locked.wav", 0o644)
    assert "1 written, 0 skipped (already present), 1 failed" in result.stderr
    assert Path(f"{tmp_path / 'm.h5'}.failures.tsv").read_text() == (
        f"{tmp_path / 'locked.wav'}\tcannot read: permission denied\n")


def test_id_map_that_does_not_know_a_file_counts_it(hostile_audio, tmp_path):
    a = hostile_audio / "audio"
    (tmp_path / "unique_tracks.txt").write_text("ch1<SEP>SOCH1<SEP>artist<SEP>title\n")
    result = invoke(["melspec", a / "ch1.wav", a / "ch2.wav", "-o", tmp_path / "m.h5", "-j", "0",
                     "--id-map", tmp_path / "unique_tracks.txt"])
    assert "1 written, 0 skipped (already present), 1 failed" in result.stderr
    with MelsFile(tmp_path / "m.h5") as m:
        assert list(m.ids) == ["SOCH1"]
    assert Path(f"{tmp_path / 'm.h5'}.failures.tsv").read_text() == (
        f"{a / 'ch2.wav'}\tch2 is not a track id in unique_tracks.txt\n")


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


# ============================================================================= melspec interrupted


def _melspec_command(audio, out, *extra):
    return [sys.executable, "-m", "dcue_cli", "-q", "melspec", str(audio), "-o", str(out), "-j", "0",
            "--checkpoint-every", "0", *map(str, extra)]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO))


def _tones(root, n, *, first_hz, step_hz):
    """root/audio/TR000.wav ...: n three-second tones, each at its own pitch."""
    (root / "audio").mkdir()
    for k in range(n):
        sf.write(root / "audio" / f"TR{k:03d}.wav", tone(3.0, freq=first_hz + step_hz * k), SR)
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


def test_sigkill_at_random_moments_then_rerun_equals_an_uninterrupted_run(kill_audio, tmp_path):
    """Five kill -9 at seeded random moments (start-up, mid-run, while finishing), then one rerun."""
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


def test_a_second_melspec_on_the_same_output_is_refused(kill_audio, tmp_path):
    root, base, _ = kill_audio
    out = tmp_path / "out.h5"
    shutil.copy(base, out)
    from dcue_cli.features import FeatureConfig

    with MelsWriter(out, FeatureConfig().to_attrs()) as first:  # another run, holding the output
        fails(["melspec", root / "audio", "-o", out, "-j", "0"],
              f"{out} is being written by another `dcue melspec` right now (it holds {out}.partial/lock): "
              "wait for it to finish.")
        assert first.present == set(ids_of(base))
    assert out.read_bytes() == base.read_bytes()


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
