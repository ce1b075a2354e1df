"""Encoding a rendered signal into audio file bytes (wav, flac, ogg, mp3) that are the same
for the same song: libsndfile's random Ogg serial number is set from the track id."""

import zlib

import numpy as np


def _fix_ogg_serial(data: bytes, serial: int) -> bytes:
    """libsndfile gives each Ogg stream a random serial number; set it (and each page's CRC)
    so that the same song gives the same bytes."""
    out = bytearray(data)
    pos = 0
    serial_bytes = (serial & 0xFFFFFFFF).to_bytes(4, "little")
    while pos + 27 <= len(out) and out[pos:pos + 4] == b"OggS":
        n_segments = out[pos + 26]
        size = 27 + n_segments + sum(out[pos + 27:pos + 27 + n_segments])
        out[pos + 14:pos + 18] = serial_bytes
        out[pos + 22:pos + 26] = b"\0\0\0\0"
        out[pos + 22:pos + 26] = _ogg_crc(bytes(out[pos:pos + size])).to_bytes(4, "little")
        pos += size
    if pos != len(out):
        raise RuntimeError("unexpected Ogg page layout from libsndfile")
    return bytes(out)


_BIT_REVERSE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, init 0) through zlib's reflected
    CRC: reflect the input bytes, start from 0, reflect the 32-bit result."""
    raw = zlib.crc32(page.translate(_BIT_REVERSE), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{raw:032b}"[::-1], 2)


def encode_audio(signal: np.ndarray, sample_rate: int, audio_format: str, serial: int = 0) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    subtype = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}[audio_format]
    sf.write(buf, signal, int(sample_rate), format=audio_format.upper(), subtype=subtype)
    data = buf.getvalue()
    return _fix_ogg_serial(data, serial) if audio_format == "ogg" else data
