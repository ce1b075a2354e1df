"""`dcue melspec` and the mels HDF5 contract: features against an independent librosa computation,
bad inputs, ids, resume after kill -9, shards and merge, the torch path, the reader's errors."""

import filecmp
import functools
import os
import pickle
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
from conftest import REPO, invoke, shared_data

from dcue_cli.errors import DcueError
from dcue_cli.audio.clip import compute
from dcue_cli.audio.decode import decode
from dcue_cli.audio.logmel import FeatureConfig, TorchMel, log_mel, mel_filterbank
from dcue_cli.audio.stored import float32_to_float16, to_stored
from dcue_cli.io.mels import MelsFile
from dcue_cli.io.mels_writer import MelsWriter

SR = 22050


# --- helpers ----------------------------------------------------------------------------------

def tone(seconds=2.0, sr=SR, channels=1, freq=440.0, seed=0):
    """A decaying chord with a little noise: non-silent, different per freq/seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    cols = []
    for c in range(channels):
        f = freq * (1 + 0.25 * c)
        x = 0.4 * np.sin(2 * np.pi * f * t) * np.exp(-t / 3) + 0.2 * np.sin(2 * np.pi * 2.5 * f * t)
        cols.append(x + 0.01 * rng.standard_normal(t.size))
    return np.stack(cols, axis=1).astype(np.float32)


def make_wav(path, seconds=2.0, sr=SR, channels=1, subtype="PCM_16", freq=440.0, seed=0):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, sr, channels, freq, seed), sr, subtype=subtype)
    return path


def make_folder(folder, n, seconds=2.0):
    for k in range(n):
        make_wav(Path(folder) / f"sub{k % 3}" / f"TR{k:04d}.wav", seconds=seconds, freq=200.0 + 37 * k, seed=k)
    return Path(folder)


def librosa_logmel(path, offset=0.0, duration=30.0):
    """The design's features, computed directly with librosa (independent of dcue_cli.audio)."""
    import librosa

    y, _ = librosa.load(str(path), sr=SR, mono=True, offset=offset, duration=duration)
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=512, n_mels=128, power=1.0)
    return np.log10(1.0 + 10.0 * mel).T


def read_items(path):
    with MelsFile(path) as m:
        return {item: m.item(i) for i, item in enumerate(m.ids)}, m.attrs


def assert_float16_close(stored, reference):
    """float16 storage rounds to 11 significant bits."""
    np.testing.assert_allclose(stored.astype(np.float32), reference, rtol=2 ** -10, atol=1e-4)


# --- features ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(22050, 1024, 128, 0, 0), (16000, 512, 64, 50, 7000),
                                                        (44100, 2048, 96, 0, 0)])
def test_filterbank_is_librosas(sr, n_fft, n_mels, fmin, fmax):
    import librosa

    ours = mel_filterbank(FeatureConfig(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax))
    theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax or None)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-8)


def test_real_recordings_match_librosa():
    folder = shared_data("librosa_music")
    files = sorted(folder.glob("*.ogg"))
    assert len(files) == 16  # 22.05 kHz mono .ogg and 44.1 kHz stereo .hq.ogg
    for path in files:
        ours, reference = compute(path), librosa_logmel(path)
        assert ours.shape == reference.shape, path.name
        assert np.abs(ours - reference).max() < 1e-4, path.name
    assert compute(folder / "Kevin_MacLeod_-_Vibe_Ace.ogg").shape == (1292, 128)  # 30 s


@pytest.mark.parametrize("sr,channels,subtype", [
    (SR, 1, "PCM_16"), (SR, 6, "PCM_16"), (SR, 1, "PCM_U8"), (SR, 2, "PCM_24"), (SR, 1, "FLOAT"),
    (8000, 1, "PCM_16"), (48000, 2, "PCM_16"), (44100, 1, "DOUBLE")])
def test_wav_variants_match_librosa(tmp_path, sr, channels, subtype):
    path = make_wav(tmp_path / "x.wav", seconds=3.0, sr=sr, channels=channels, subtype=subtype)
    ours, reference = compute(path), librosa_logmel(path)
    assert ours.shape == reference.shape == (1 + 3 * SR // 512, 128)
    assert np.abs(ours - reference).max() < 1e-4


def test_offset_and_max_seconds_match_librosa(tmp_path):
    path = make_wav(tmp_path / "x.wav", seconds=6.0, sr=44100, channels=2)
    config = FeatureConfig(offset=1.5, max_seconds=2.0)
    ours, reference = compute(path, config), librosa_logmel(path, offset=1.5, duration=2.0)
    assert ours.shape == reference.shape == (1 + 2 * SR // 512, 128)
    assert np.abs(ours - reference).max() < 1e-4


def test_float16_cast_is_numpys_bit_for_bit():
    # Every float32 in [0, 65504] was checked once (1.2e9 values, ~80 s); here the edges: zero,
    # the subnormals, the normal/subnormal boundary, ties to even, the largest float16.
    rng = np.random.default_rng(0)
    edges = np.array([0.0, 2.0 ** -25, 2.0 ** -24, 1.5 * 2.0 ** -24, 2.5 * 2.0 ** -24, 2.0 ** -14 * (1 - 2.0 ** -11),
                      2.0 ** -14, 1.0, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 2047.5, 65504.0], dtype=np.float32)
    bits = rng.integers(0, int(np.float32(65504.0).view(np.uint32)) + 1, 1 << 20, dtype=np.uint32)
    values = np.concatenate([edges, bits.view(np.float32), np.nextafter(edges, np.float32(np.inf))[:-1]])
    assert np.array_equal(float32_to_float16(values).view(np.uint16), values.astype(np.float16).view(np.uint16))
    block = values[:4096].reshape(64, 64)[:, ::3]  # 2-D, not contiguous
    assert float32_to_float16(block).shape == block.shape
    assert np.array_equal(float32_to_float16(block).view(np.uint16), block.astype(np.float16).view(np.uint16))
    stored = to_stored(np.array([[-0.5, 1.0]], np.float32), FeatureConfig())  # negatives: numpy's cast
    assert stored.dtype == np.float16 and stored.tolist() == [[-0.5, 1.0]]


def test_torch_path_agrees_with_numpy_path(tmp_path):
    config = FeatureConfig()
    clips = [decode(make_wav(tmp_path / f"{k}.wav", seconds=s, freq=300 + 50 * k), config)[0]
             for k, s in enumerate([3.0, 1.2, 2.5])]
    for ours, clip in zip(TorchMel(config, "cpu")(clips), clips):
        reference = log_mel(clip, config)
        assert ours.shape == reference.shape
        assert np.abs(ours - reference).max() < 1e-3


@pytest.mark.gpu
def test_cuda_path_agrees_with_numpy_path(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    config = FeatureConfig()
    clips = [decode(make_wav(tmp_path / f"{k}.wav", seconds=s, freq=300 + 50 * k), config)[0]
             for k, s in enumerate([30.0, 1.2, 2.5])]
    for ours, clip in zip(TorchMel(config, "cuda")(clips), clips):
        assert np.abs(ours - log_mel(clip, config)).max() < 1e-3
    out = tmp_path / "gpu.h5"
    invoke(["melspec", tmp_path, "-o", out, "--device", "cuda", "-j", "1", "--dtype", "float32"])
    invoke(["melspec", tmp_path, "-o", tmp_path / "cpu.h5", "-j", "0", "--dtype", "float32"])
    gpu, _ = read_items(out)
    cpu, _ = read_items(tmp_path / "cpu.h5")
    assert all(np.abs(gpu[k] - cpu[k]).max() < 1e-3 for k in cpu)


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
    # two tracks of one song: an error naming both files
    id_map.write_text("TRAAA<SEP>SOAAA<SEP>a<SEP>a\nTRBBB<SEP>SOAAA<SEP>b<SEP>b\nTRCCC<SEP>SOCCC<SEP>c<SEP>c\n")
    result = invoke(["melspec", audio, "-o", tmp_path / "n.h5", "-j", "0", "--id-map", id_map], expect=1)
    assert ("Error: two inputs have the same id 'SOAAA' (through unique_tracks.txt): "
            f"{audio / 'A' / 'TRAAA.wav'} and {audio / 'B' / 'TRBBB.wav'}: leave one of them out") in result.stderr


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


# --- resume, kill -9, shards ----------------------------------------------------------------------

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


def _segments(partial):
    return sorted(Path(partial).glob("seg-*.h5"))


def test_kill_9_at_any_moment_then_rerun_equals_uninterrupted(tmp_path):
    audio = make_folder(tmp_path / "audio", 40, seconds=3.0)
    invoke(["melspec", audio, "-o", tmp_path / "ref.h5", "-j", "0"])
    reference, _ = read_items(tmp_path / "ref.h5")

    out = tmp_path / "out.h5"
    partial = Path(f"{out}.partial")
    # an existing output that the run adds to: it must survive every kill untouched
    invoke(["melspec", "-", "-o", out, "-j", "0"], input="\n".join(map(str, sorted(audio.rglob("*.wav"))[:5])))
    before = out.read_bytes()
    command = [sys.executable, "-m", "dcue_cli", "-q", "melspec", str(audio), "-o", str(out), "-j", "1",
               "--checkpoint-every", "0"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for kill_after in (3, 12):  # segments committed before the kill
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.monotonic() + 60
        while len(_segments(partial)) < kill_after and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, "finished before it could be killed: " + proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        for _ in range(100):  # the workers notice and exit too
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("worker processes outlived the killed parent")
        assert out.read_bytes() == before
        segments = _segments(partial)
        assert len(segments) >= kill_after
        for segment in segments:  # every committed segment opens and holds complete items
            items, _ = read_items(segment)
            assert items and all(np.array_equal(mel, reference[k]) for k, mel in items.items())

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert filecmp.cmp(out, tmp_path / "ref.h5", shallow=False)  # bit for bit
    assert not partial.exists()


def test_kill_during_finish_is_recovered(tmp_path):
    config = FeatureConfig()
    mels = {f"id{k}": np.full((3 + k, 128), k, np.float16) for k in range(6)}
    out = tmp_path / "m.h5"

    def run(ids):
        with MelsWriter(out, config.to_attrs()) as writer:
            for item in ids:
                if item not in writer.present:
                    writer.append(item, mels[item])
                    writer.commit()
            return writer.finish()

    run(["id0", "id1"])
    reference = tmp_path / "ref.h5"
    with MelsWriter(reference, config.to_attrs()) as writer:
        for item in sorted(mels):
            writer.append(item, mels[item])
        writer.finish()

    # killed after the new output was renamed into place, before the partial folder went away
    partial = Path(f"{out}.partial")
    with MelsWriter(out, config.to_attrs()) as writer:
        for item in ("id2", "id3"):
            writer.append(item, mels[item])
        writer.commit()
        shutil.copytree(partial, tmp_path / "saved")
        writer.finish()
    shutil.copytree(tmp_path / "saved", partial)
    (partial / "output.h5.tmp").write_bytes(b"half a file")  # and a killed final write's leftover
    (partial / "seg-000099.h5.tmp").write_bytes(b"half a segment")
    summary = run(sorted(mels))
    assert summary["n_items"] == 6
    assert filecmp.cmp(out, reference, shallow=False)
    assert not partial.exists()


def test_ctrl_c_commits_what_is_done(tmp_path, monkeypatch):
    from dcue_cli.audio import extract
    from dcue_cli.audio.melspec import run_melspec

    audio = make_folder(tmp_path / "audio", 6)
    real = extract.extract_many

    def interrupted(*args, **kwargs):  # Ctrl-C (or SIGTERM, mapped to it) after three files
        for k, outcome in enumerate(real(*args, **kwargs)):
            if k == 3:
                raise KeyboardInterrupt
            yield outcome

    monkeypatch.setattr(extract, "extract_many", interrupted)
    out = tmp_path / "m.h5"
    with pytest.raises(KeyboardInterrupt):
        run_melspec([audio], out, FeatureConfig(), jobs=0, checkpoint_seconds=1000)
    (segment,) = _segments(f"{out}.partial")
    assert len(MelsFile(segment)) == 3 and not out.exists()
    monkeypatch.setattr(extract, "extract_many", real)
    result = invoke(["melspec", audio, "-o", out, "-j", "0"])
    assert "resuming: 3 items kept" in result.stderr and "3 written, 3 skipped" in result.stderr
    invoke(["melspec", audio, "-o", tmp_path / "ref.h5", "-j", "0"])
    assert filecmp.cmp(out, tmp_path / "ref.h5", shallow=False)


def test_interrupted_overwrite_still_replaces_when_resumed(tmp_path):
    attrs = FeatureConfig().to_attrs()
    out = tmp_path / "m.h5"
    with MelsWriter(out, attrs) as writer:
        writer.append("old", np.ones((4, 128), np.float16))
        writer.finish()
    with pytest.raises(KeyboardInterrupt), MelsWriter(out, attrs, overwrite=True) as writer:
        writer.append("new1", np.ones((5, 128), np.float16))
        raise KeyboardInterrupt
    with MelsFile(out) as m:  # the old output is untouched until the new one is complete
        assert list(m.ids) == ["old"]
    with MelsWriter(out, attrs) as writer:  # a plain rerun finishes the --overwrite run
        assert writer.present == {"new1"}
        writer.append("new2", np.ones((6, 128), np.float16))
        writer.finish()
    with MelsFile(out) as m:
        assert list(m.ids) == ["new1", "new2"] and m.attrs["mean"] == 1.0 and m.attrs["std"] == 0.0


def test_one_writer_at_a_time(tmp_path):
    attrs = FeatureConfig().to_attrs()
    with (MelsWriter(tmp_path / "m.h5", attrs),
          pytest.raises(DcueError, match=r"is being written by another `dcue melspec` right now")):
        MelsWriter(tmp_path / "m.h5", attrs).open()


def crash_on(monkeypatch, name):
    """The command's worker that is given the file `name` kills itself, as a decoder crash would."""
    from dcue_cli.audio import extract

    monkeypatch.setattr(extract, "extract_many", functools.partial(extract.extract_many, crash_test_name=name))


def test_crashing_decoder_is_one_failure(tmp_path, monkeypatch):
    audio = make_folder(tmp_path / "audio", 4)
    crash_on(monkeypatch, "TR0002.wav")
    result = invoke(["melspec", audio, "-o", tmp_path / "m.h5", "-j", "1"])
    assert "3 written, 0 skipped (already present), 1 failed" in result.stderr
    assert Path(f"{tmp_path / 'm.h5'}.failures.tsv").read_text() == (
        f"{audio / 'sub2' / 'TR0002.wav'}\tthe decoder crashed on it (worker process died)\n")


def test_crash_inside_a_batch_fails_only_that_file(tmp_path, monkeypatch):
    # 16 files on one worker go 4 to a task: the crash takes down a task of 4 and whatever else
    # was in flight; every other file is computed again and equals an uninterrupted run.
    audio = make_folder(tmp_path / "audio", 16, seconds=1.5)
    invoke(["melspec", audio, "-o", tmp_path / "ref.h5", "-j", "0"])
    crash_on(monkeypatch, "TR0006.wav")
    result = invoke(["melspec", audio, "-o", tmp_path / "m.h5", "-j", "1"])
    assert "15 written, 0 skipped (already present), 1 failed" in result.stderr
    crashed, _ = read_items(tmp_path / "m.h5")
    reference, _ = read_items(tmp_path / "ref.h5")
    assert sorted(crashed) == sorted(set(reference) - {"TR0006"})
    assert all(np.array_equal(crashed[k], reference[k]) for k in crashed)


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


# --- the reader ---------------------------------------------------------------------------------

def test_mels_file_api(tmp_path):
    make_folder(tmp_path / "audio", 3)
    out = tmp_path / "m.h5"
    invoke(["melspec", tmp_path / "audio", "-o", out, "-j", "0"])
    with MelsFile(out) as m:
        assert len(m) == 3 and m.n_mels == 128 and m.dtype == np.float16
        assert m.ids.dtype == object and isinstance(m.ids[0], str)
        assert m.offsets.dtype == np.int64 and len(m.offsets) == 4 and m.offsets[-1] == m.total_frames
        assert m.index() == {"TR0000": 0, "TR0001": 1, "TR0002": 2}
        assert m.item(1).dtype == np.float32 and m.item(1).shape == (m.lengths[1], 128)
        assert np.array_equal(m.item(-1), m.read_all()[m.offsets[2]:].astype(np.float32))
        copy = pickle.loads(pickle.dumps(m))  # e.g. into a DataLoader worker
        assert np.array_equal(copy.item(0), m.item(0))
        copy.close()


def test_mels_file_schema_errors(tmp_path):
    bad = tmp_path / "x.h5"
    with h5py.File(bad, "w") as f:
        f["ids"] = np.array([b"a"])
        f["mel"] = np.zeros((3, 4), np.float16)
    with pytest.raises(DcueError) as info:
        MelsFile(bad)
    assert info.value.message == f"{bad} has no /offsets: was it written by `dcue melspec`?"
    with h5py.File(bad, "a") as f:
        f["offsets"] = np.array([0, 2], np.int64)
    with pytest.raises(DcueError, match=r"/offsets does not index /mel"):
        MelsFile(bad)
    text = tmp_path / "y.h5"
    text.write_text("not hdf5")
    with pytest.raises(DcueError, match=r"is not a readable HDF5 file .*: give a mels file written by"):
        MelsFile(text)
    with pytest.raises(DcueError, match=r"does not exist: check the path"):
        MelsFile(tmp_path / "nope.h5")


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
