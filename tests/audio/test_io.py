"""Reading real-world audio: the format matrix of seven decades of recordings, and audio_facts."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf

from mammalnet.audio.io import AudioError, audio_facts, audio_info, read_audio

RATE = 8000


def ramp_tone(n: int = RATE, channels: int = 1) -> np.ndarray:
    """A tone that never reaches full scale, one phase offset per channel: [n] or [n, channels]."""
    t = np.arange(n) / RATE
    x = np.stack([0.6 * np.sin(2 * np.pi * 440 * t + c) for c in range(channels)], axis=1)
    return (x[:, 0] if channels == 1 else x).astype(np.float32)


def pcm16(x: np.ndarray) -> np.ndarray:
    """Integer samples, so every writer stores the same PCM (float -> int scaling differs by format)."""
    return np.round(x * 32767).astype(np.int16)


def chunk(tag: bytes, payload: bytes) -> bytes:
    """One RIFF chunk; odd payloads get the pad byte RIFF requires."""
    return tag + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) % 2 else b"")


def riff_wav(samples: np.ndarray, *, before_fmt=(), before_data=(), after_data=(),
             data_size: int | None = None) -> bytes:
    """A 16-bit mono WAV built by hand, with extra chunks where archives put them."""
    samples = samples.astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, RATE, RATE * 2, 2, 16)
    data = b"data" + struct.pack("<I", len(samples) if data_size is None else data_size) + samples
    body = b"WAVE" + b"".join(before_fmt) + chunk(b"fmt ", fmt) + b"".join(before_data) + data + b"".join(after_data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


JUNK = chunk(b"JUNK", b"\0" * 28)
LIST = chunk(b"LIST", b"INFO" + chunk(b"ICMT", b"hydrophone 3, 1967 tape\0"))
# bext (EBU Tech 3285): 602 bytes minimum; description, originator, date and time at the front.
BEXT = chunk(b"bext", b"Watkins cut".ljust(256, b"\0") + b"WHOI".ljust(32, b"\0") + b"\0" * 32
             + b"1967-03-01" + b"12:00:00" + b"\0" * (602 - 256 - 32 - 32 - 18))
ODD = chunk(b"note", b"odd")  # a 3-byte chunk: the reader must honour the pad byte


@pytest.mark.parametrize("subtype,bits", [
    ("PCM_U8", 8), ("PCM_16", 16), ("PCM_24", 24), ("PCM_32", 32), ("FLOAT", 32), ("DOUBLE", 64)])
def test_wav_bit_depths(tmp_path, subtype, bits):
    x = ramp_tone()
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, x, RATE, subtype=subtype)
    info = audio_info(path)
    assert (info.sample_rate_hz, info.frames, info.channels) == (RATE, RATE, 1)
    assert (info.subtype, info.bit_depth) == (subtype, bits)
    y, rate = read_audio(path)
    assert rate == RATE and y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=2.0 ** -(min(bits, 24) - 1))


@pytest.mark.parametrize("chunks", [
    {"before_fmt": [JUNK]},
    {"before_fmt": [JUNK], "before_data": [LIST, BEXT]},
    {"before_data": [BEXT, ODD], "after_data": [LIST]},
    {"before_fmt": [BEXT], "after_data": [JUNK, LIST]},
], ids=["junk", "junk+list+bext", "bext+odd+list-after", "bext-first+after"])
def test_wav_with_extra_chunks_reads_and_hashes_like_plain(tmp_path, chunks):
    x = pcm16(ramp_tone())
    plain = tmp_path / "plain.wav"
    sf.write(plain, x, RATE, subtype="PCM_16")
    archived = tmp_path / "archived.wav"
    archived.write_bytes(riff_wav(x, **chunks))
    info = audio_info(archived)
    assert (info.sample_rate_hz, info.frames, info.bit_depth) == (RATE, RATE, 16)
    np.testing.assert_array_equal(read_audio(archived)[0], read_audio(plain)[0])
    assert audio_facts(archived).content_hash == audio_facts(plain).content_hash


@pytest.mark.parametrize("fmt,subtype,ext,bits,magic", [
    ("AIFF", "PCM_16", ".aiff", 16, b"AIFF"),
    ("AIFF", "PCM_S8", ".aif", 8, b"AIFF"),
    ("AIFF", "PCM_24", ".aif", 24, b"AIFF"),
    # libsndfile writes an AIFC (AIFF-C) container for float samples.
    ("AIFF", "FLOAT", ".aifc", 32, b"AIFC"),
    ("FLAC", "PCM_16", ".flac", 16, b"fLaC"),
    ("FLAC", "PCM_24", ".flac", 24, b"fLaC"),
])
def test_lossless_containers(tmp_path, fmt, subtype, ext, bits, magic):
    x = ramp_tone()
    path = tmp_path / f"clip{ext}"
    sf.write(path, x, RATE, format=fmt, subtype=subtype)
    assert magic in path.read_bytes()[:12]
    info = audio_info(path)
    assert (info.format, info.sample_rate_hz, info.frames, info.bit_depth) == (fmt, RATE, RATE, bits)
    np.testing.assert_allclose(read_audio(path)[0], x, atol=2.0 ** -(bits - 1))


def test_same_pcm_hashes_the_same_in_any_lossless_container(tmp_path):
    x = pcm16(ramp_tone())
    hashes = set()
    for fmt, ext in (("WAV", ".wav"), ("AIFF", ".aiff"), ("FLAC", ".flac"), ("WAVEX", ".wav")):
        path = tmp_path / f"{fmt}{ext}"
        sf.write(path, x, RATE, format=fmt, subtype="PCM_16")
        hashes.add(audio_facts(path).content_hash)
    assert len(hashes) == 1
    other = tmp_path / "other.wav"
    sf.write(other, x // 2, RATE, subtype="PCM_16")
    assert audio_facts(other).content_hash not in hashes


@pytest.mark.parametrize("fmt,subtype,ext", [("OGG", "VORBIS", ".ogg"), ("MP3", "MPEG_LAYER_III", ".mp3")])
def test_lossy_formats_keep_rate_and_length(tmp_path, fmt, subtype, ext):
    path = tmp_path / f"clip{ext}"
    sf.write(path, ramp_tone(), RATE, format=fmt, subtype=subtype)
    info = audio_info(path)
    assert info.format == fmt and info.sample_rate_hz == RATE and info.bit_depth is None
    assert abs(info.frames - RATE) <= 1152  # at most one MP3 frame of encoder padding
    y, rate = read_audio(path)
    assert rate == RATE and len(y) == info.frames and np.isfinite(y).all()
    assert audio_facts(path).frames == info.frames


def test_six_channels_choose_and_mix_down(tmp_path):
    x = ramp_tone(channels=6)
    path = tmp_path / "array.wav"
    sf.write(path, x, RATE, subtype="FLOAT")
    assert audio_info(path).channels == 6
    np.testing.assert_allclose(read_audio(path, channel=4)[0], x[:, 4], atol=1e-7)
    np.testing.assert_allclose(read_audio(path)[0], x.mean(axis=1), atol=1e-6)
    with pytest.raises(AudioError, match="has 6 channel"):
        read_audio(path, channel=6)
    assert audio_facts(path).channels == 6


@pytest.mark.parametrize("rate", [500, 384000])
def test_extreme_sample_rates(tmp_path, rate):
    n = rate // 10
    x = (0.3 * np.sin(np.arange(n) * 0.05)).astype(np.float32)
    path = tmp_path / f"r{rate}.wav"
    sf.write(path, x, rate, subtype="PCM_24")
    info = audio_info(path)
    assert (info.sample_rate_hz, info.frames, info.bit_depth) == (rate, n, 24)
    y, got = read_audio(path, start_s=0.05, duration_s=0.02)
    assert got == rate and len(y) == int(round(0.02 * rate))
    np.testing.assert_allclose(y, x[n // 2: n // 2 + len(y)], atol=2 ** -23)


def test_upper_case_extension(tmp_path):
    path = tmp_path / "TAPE_1967.WAV"
    sf.write(path, ramp_tone(), RATE, format="WAV", subtype="PCM_16")
    assert audio_info(path).frames == RATE
    assert read_audio(path)[1] == RATE


def test_audio_facts_levels_and_block_independence(tmp_path):
    x = ramp_tone(channels=2)
    path = tmp_path / "st.wav"
    sf.write(path, x, RATE, subtype="FLOAT")
    whole = audio_facts(path)
    blocks = audio_facts(path, block_frames=7)
    assert whole == blocks
    assert whole.peak == pytest.approx(np.abs(x).max())
    assert whole.rms == pytest.approx(np.sqrt(np.mean(np.square(x, dtype=np.float64))), rel=1e-6)
    assert whole.peak_dbfs == pytest.approx(20 * np.log10(np.abs(x).max()))
    assert not whole.nonfinite and not whole.silent
    with pytest.raises(ValueError, match="block_frames"):
        audio_facts(path, block_frames=0)


def test_audio_facts_finds_nan_and_silence(tmp_path):
    x = ramp_tone()
    x[100] = np.nan
    x[200] = np.inf
    nan_path = tmp_path / "nan.wav"
    sf.write(nan_path, x, RATE, subtype="FLOAT")
    facts = audio_facts(nan_path, block_frames=64)
    assert facts.nonfinite and not facts.silent and np.isfinite(facts.peak)
    silent_path = tmp_path / "zero.wav"
    sf.write(silent_path, np.zeros(RATE, np.float32), RATE, subtype="PCM_16")
    facts = audio_facts(silent_path)
    assert facts.silent and facts.peak == 0 and facts.peak_dbfs == -np.inf


def test_truncated_wav_and_aiff_name_header_and_content_frames(tmp_path):
    x = pcm16(ramp_tone())
    wav = tmp_path / "cut.wav"
    wav.write_bytes(riff_wav(x)[:44 + 2 * 6000])
    for call in (audio_info, audio_facts, read_audio):
        with pytest.raises(AudioError, match="truncated: header says 8000 frames, file holds 6000") as err:
            call(wav)
        assert err.value.path == str(wav)
    full = tmp_path / "full.aiff"
    sf.write(full, x, RATE, format="AIFF", subtype="PCM_16")
    cut = tmp_path / "cut.aiff"
    cut.write_bytes(full.read_bytes()[:-4000])
    with pytest.raises(AudioError, match="truncated: header says 8000 frames, file holds 6000"):
        audio_facts(cut)


def test_truncated_flac_is_an_audio_error(tmp_path):
    full = tmp_path / "full.flac"
    sf.write(full, np.random.default_rng(0).uniform(-0.5, 0.5, 4 * RATE).astype(np.float32), RATE,
             format="FLAC", subtype="PCM_16")
    cut = tmp_path / "cut.flac"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(AudioError, match=r"cut\.flac: (decoding failed|truncated)"):
        audio_facts(cut)


def test_unrecorded_stream_length_is_not_truncation(tmp_path):
    x = pcm16(ramp_tone())
    path = tmp_path / "stream.wav"
    path.write_bytes(riff_wav(x, data_size=0xFFFFFFFF))
    facts = audio_facts(path)
    assert facts.frames == RATE


@pytest.mark.parametrize("content,reason", [
    (b"", "not a readable audio file"),
    (b"RIFF\x00\x00\x00\x00WAVEnonsense", "not a readable audio file"),
    (b"ID3 this is not really an mp3", "not a readable audio file"),
])
def test_unreadable_files(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=reason):
        audio_facts(path)
    with pytest.raises(AudioError, match="no such file"):
        audio_facts(tmp_path / "missing.wav")
