"""`dcue melspec` on every kind of audio file a crawl of the web turns up (the `hostile_audio`
fixture, conftest.py): each unusable file is listed with its exact reason, the rest written."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio_files import SR, sine
from conftest import error_line, invoke

from dcue_cli.io.mels import MelsFile

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
    result = invoke(["melspec", a / "zero_mp3.mp3", a / "text_wav.wav", a / "silence.wav", "-o", out, "-j", "0"],
                    expect=1)
    assert error_line(result) == f"no input could be used (3 failed, see {out}.failures.tsv): {out} not written."
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert not Path(f"{out}.partial").exists()

def test_an_unreadable_file_is_a_counted_failure(tmp_path):
    sf.write(tmp_path / "ok.wav", sine(1.5), SR)
    sf.write(tmp_path / "locked.wav", sine(1.5), SR)
    os.chmod(tmp_path / "locked.wav", 0)
    if os.access(tmp_path / "locked.wav", os.R_OK):
        os.chmod(tmp_path / "locked.wav", 0o644)
        pytest.skip("this user reads any file (root)")
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


def test_a_float_file_of_huge_amplitude_is_a_counted_failure_and_leaves_the_statistics_alone(tmp_path):
    """A float WAV of 1e30 amplitude was accepted and shifted the dataset's mean and std."""
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "ok.wav", sine(1.5), SR, subtype="FLOAT")
    sf.write(audio / "loud.wav", 2000.0 * sine(1.5), SR, subtype="FLOAT")  # 0.3 * 2000 = 600: kept
    sf.write(audio / "huge.wav", 1e30 * sine(1.5), SR, subtype="FLOAT")
    invoke(["melspec", audio / "ok.wav", audio / "loud.wav", "-o", tmp_path / "ref.h5", "-j", "0"])
    out = tmp_path / "m.h5"
    result = invoke(["melspec", audio, "-o", out, "-j", "0"])
    assert "2 written, 0 skipped (already present), 1 failed" in result.stderr
    assert Path(f"{out}.failures.tsv").read_text() == (
        f"{audio / 'huge.wav'}\tamplitude 3e+29 out of range (samples beyond +-1000, 60 dB over full scale: "
        "a float file with unscaled samples)\n")
    with MelsFile(out) as m, MelsFile(tmp_path / "ref.h5") as ref:
        assert list(m.ids) == ["loud", "ok"]
        assert (m.attrs["mean"], m.attrs["std"]) == (ref.attrs["mean"], ref.attrs["std"])
