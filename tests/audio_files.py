"""Audio files for the audio and melspec tests (not a test module): tones, folders of them,
every hostile kind of file, and the independent librosa computation the features are checked
against."""

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from dcue_cli.io.mels import MelsFile

SR = 22050

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

def sine(seconds, sr=SR, channels=1, freq=330.0):
    """A plain sine per channel (each channel 20% higher): what the hostile files hold."""
    t = np.arange(round(seconds * sr)) / sr
    return np.stack([0.3 * np.sin(2 * np.pi * freq * (1 + 0.2 * c) * t) for c in range(channels)],
                    axis=1).astype(np.float32)

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

def write_hostile_audio(root: Path) -> Path:
    """root/audio: every kind of audio file a crawl of the web turns up, good and bad (see the
    `hostile_audio` fixture in conftest.py)."""
    a = root / "audio"
    a.mkdir()
    # Good, odd shapes: 1-8 channels; 8-96 kHz; 8/16/24/32-bit integer, 32/64-bit float; mp3, ogg.
    for ch in range(1, 9):
        sf.write(a / f"ch{ch}.wav", sine(1.5, channels=ch), SR)
    for sr in (8000, 11025, 16000, 22050, 44100, 48000, 88200, 96000):
        sf.write(a / f"sr{sr}.wav", sine(1.5, sr=sr, channels=2), sr)
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"):
        sf.write(a / f"wav_{subtype.lower()}.wav", sine(1.5, channels=2), SR, subtype=subtype)
    sf.write(a / "flac_s8.flac", sine(1.5), SR, subtype="PCM_S8")
    sf.write(a / "flac_24_96k.flac", sine(4.0, sr=96000, channels=2), 96000, subtype="PCM_24")
    sf.write(a / "aiff_32.aiff", sine(1.5), SR, subtype="PCM_32")
    sf.write(a / "good_mp3.mp3", sine(4.0, channels=2), SR, format="MP3")
    sf.write(a / "good_ogg.ogg", sine(4.0, channels=2), SR, format="OGG")
    sf.write(a / "long.flac", sine(180.0), SR)  # three minutes
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
    sf.write(a / "ten_samples.wav", sine(10 / SR), SR)
    os.symlink(root / "nowhere.wav", a / "dangling.wav")
    (a / "folder.wav").mkdir()  # a folder with an audio name: not an input of a folder scan
    (a / "._ch1.wav").write_bytes(b"macOS resource fork")  # hidden: not an input either
    bad_name = os.fsencode(str(a)) + b"/latin1_\xe9.wav"  # a file name that is not UTF-8
    with open(bad_name, "wb") as f:
        f.write((a / "ch1.wav").read_bytes())
    return root
