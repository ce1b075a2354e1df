"""The audio library (dcue_cli.audio): the filterbank and log-mel against an independent librosa
computation, decoding of every WAV variant, the float16 conversion, the torch path, the worker
pool surviving a decoder crash. The command end to end: test_melspec.py."""

import numpy as np
import pytest
from audio_files import SR, librosa_logmel, make_folder, make_wav, read_items
from conftest import invoke, shared_data

from dcue_cli.audio.clip import compute
from dcue_cli.audio.decode import decode
from dcue_cli.audio.logmel import FeatureConfig, TorchMel, log_mel, mel_filterbank
from dcue_cli.audio.stored import float32_to_float16, to_stored

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

def test_contradicting_settings_are_refused():
    with pytest.raises(ValueError, match=r"^--fmin 9000 / --fmax 100: need fmin < fmax <= sr/2 \(11025\)\.$"):
        FeatureConfig(fmin=9000, fmax=100)
    with pytest.raises(ValueError, match=r"^--fmin 0 / --fmax 20000: need fmin < fmax"):
        FeatureConfig(fmax=20000)
    with pytest.raises(ValueError, match=r"^--hop-length 2048 is larger than --n-fft 1024: frames would skip audio\.$"):
        FeatureConfig(hop_length=2048)
    with pytest.raises(ValueError, match="dtype must be float16 or float32"):
        FeatureConfig(dtype="int8")

def test_mel_bands_that_cover_no_fft_bin_are_refused_as_misuse(tmp_path):
    """--n-mels 256 --n-fft 64 gave 194 bands that are 0 for every file, with no word said."""
    make_wav(tmp_path / "a.wav")
    out = tmp_path / "m.h5"
    result = invoke(["melspec", tmp_path / "a.wav", "-o", out, "-j", "0", "--n-mels", 256, "--n-fft", 64,
                     "--hop-length", 32], expect=2)
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: --n-mels 256 with --n-fft 64: 194 of the 256 mel bands fall between two FFT bins "
        "(344.531 Hz apart) and would always be 0: lower --n-mels or raise --n-fft.")
    assert not out.exists() and not (tmp_path / "m.h5.partial").exists()
    FeatureConfig(n_mels=128, n_fft=512)  # the paper's bands need no more than this

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

# --- the worker pool ----------------------------------------------------------------------------

def test_a_crashing_decoder_is_one_failure_and_order_is_kept(tmp_path):
    """The pool (one worker): the worker given TR0002.wav dies; only that file fails, in its place."""
    from dcue_cli.audio.extract import extract_many
    from dcue_cli.audio.pool import CRASHED

    paths = sorted(make_folder(tmp_path / "audio", 4).rglob("*.wav"))
    reference = list(extract_many(paths, FeatureConfig(), jobs=0))
    outcomes = list(extract_many(paths, FeatureConfig(), jobs=1, crash_test_name="TR0002.wav"))
    assert {p.name: o.reason for p, o in zip(paths, outcomes) if o.reason} == {"TR0002.wav": CRASHED}
    assert CRASHED == "the decoder crashed on it (worker process died)"
    for got, want in zip(outcomes, reference):
        if got.reason is None:
            assert np.array_equal(got.mel, want.mel) and got.stats == want.stats

def test_crash_inside_a_batch_fails_only_that_file(tmp_path):
    # 16 files on one worker go 4 to a task: the crash takes down a task of 4 and whatever else
    # was in flight; every other file is computed again and equals an uninterrupted run.
    from dcue_cli.audio.extract import extract_many
    from dcue_cli.audio.pool import CRASHED

    paths = sorted(make_folder(tmp_path / "audio", 16, seconds=1.5).rglob("*.wav"))
    reference = list(extract_many(paths, FeatureConfig(), jobs=0))
    outcomes = list(extract_many(paths, FeatureConfig(), jobs=1, crash_test_name="TR0006.wav"))
    assert {p.name: o.reason for p, o in zip(paths, outcomes) if o.reason} == {"TR0006.wav": CRASHED}
    assert all(np.array_equal(o.mel, r.mel) for o, r in zip(outcomes, reference) if o.reason is None)
