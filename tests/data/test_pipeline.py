import numpy as np
import pytest
import soundfile as sf

from mammalnet.audio.io import read_audio
from mammalnet.data.pipeline import WindowSpec, build_dataset, collect
from mammalnet.data.sources import read_folder
from tests.helpers.audio import tone_clip


def _spec(**kw):
    values = dict(sample_rate_hz=8000, window_samples=4000, hop_samples=4000, max_windows_per_clip=8)
    values.update(kw)
    return WindowSpec(**values)


def test_windows_labels_and_clip_index(tone_folder):
    manifest = read_folder(tone_folder)
    names = sorted(manifest["label"].unique())
    x, y, clip = collect(build_dataset(manifest, names, _spec(), batch_size=7, training=False,
                                       with_clip_index=True))
    assert x.shape[1] == 4000 and x.dtype == np.float32
    # durations 0.6/1.0/1.4/1.8 s at 0.5-s windows: ceil((d - 0.5) / 0.5) + 1 windows each
    expected = {0.6: 2, 1.0: 2, 1.4: 3, 1.8: 4}
    counts = np.bincount(clip, minlength=len(manifest))
    for i, row in manifest.iterrows():
        assert counts[i] == expected[round(row["duration_s"], 1)], row["path"]
        assert (y[clip == i] == names.index(row["label"])).all()


def test_resampled_to_pipeline_rate_keeps_the_tone(tmp_path):
    root = tmp_path / "d"
    (root / "a").mkdir(parents=True)
    sf.write(root / "a" / "x.wav", tone_clip(1000.0, 44100, 1.0, noise=0.0), 44100)
    manifest = read_folder(root)
    (x, y) = collect(build_dataset(manifest, ["a"], _spec(window_samples=8000, hop_samples=8000), batch_size=4,
                                   training=False))
    assert x.shape == (1, 8000)
    spectrum = np.abs(np.fft.rfft(x[0, 500:-500] * np.hanning(7000)))
    peak_hz = np.argmax(spectrum) * 8000 / 7000
    assert peak_hz == pytest.approx(1000.0, abs=3)
    assert np.max(np.abs(x[0, 500:-500])) == pytest.approx(0.5, rel=0.02)


def test_max_windows_and_training_shuffle(tone_folder):
    manifest = read_folder(tone_folder)
    names = sorted(manifest["label"].unique())
    spec = _spec(max_windows_per_clip=1)
    x, y = collect(build_dataset(manifest, names, spec, batch_size=5, training=True, seed=1))
    assert x.shape[0] == len(manifest)
    x_eval, y_eval = collect(build_dataset(manifest, names, spec, batch_size=5, training=False))
    assert sorted(y) == sorted(y_eval)
    assert not np.array_equal(y, y_eval)  # training order is shuffled


def test_unknown_label_is_an_error(tone_folder):
    manifest = read_folder(tone_folder)
    with pytest.raises(ValueError, match="not among the model's classes"):
        build_dataset(manifest, ["low", "mid"], _spec(), batch_size=4, training=False)


# --- long clips read by offset, spans, padding --------------------------------------------------

def _manifest(rows):
    from mammalnet.data.manifest import make_manifest

    return make_manifest(dict(label="a", **row) for row in rows)


def _file(path, samples, rate):
    sf.write(path, samples, rate, subtype="FLOAT")
    return dict(path=str(path), sample_rate_hz=rate, duration_s=len(samples) / rate)


@pytest.fixture
def record_reads(monkeypatch):
    """Wraps the pipeline's read_audio; records (start frame, frames decoded) of every read."""
    import mammalnet.data.pipeline as pipeline

    reads = []

    def recording(path, *, start_s=0.0, duration_s=None, channel=None):
        x, sr = read_audio(path, start_s=start_s, duration_s=duration_s, channel=channel)
        reads.append((int(round(start_s * sr)), len(x)))
        return x, sr

    monkeypatch.setattr(pipeline, "read_audio", recording)
    return reads


def _ramp(seconds, rate):
    """Content that encodes time: sample value = its time in hours (exact in float32 to ~1e-10)."""
    return (np.arange(int(seconds * rate)) / rate / 3600.0).astype(np.float32)


def test_long_clip_gives_windows_spread_over_it_each_read_by_offset(tmp_path, record_reads):
    rate, seconds = 2000, 300
    x = _ramp(seconds, rate)
    manifest = _manifest([_file(tmp_path / "long.wav", x, rate)])
    spec = WindowSpec(rate, window_samples=2000, hop_samples=1000, max_windows_per_clip=8)
    windows, y, clip = collect(build_dataset(manifest, ["a"], spec, batch_size=3, training=False,
                                             with_clip_index=True))
    assert windows.shape == (8, 2000) and (clip == 0).all() and (y == 0).all()
    # Same rate: no filter context, the reads are the windows themselves.
    assert sum(frames for _, frames in record_reads) == 8 * 2000
    starts = np.rint(windows[:, 0] * 3600 * rate).astype(int)
    np.testing.assert_array_equal(starts, np.linspace(0, len(x) - 2000, 8).astype(int))
    for start, w in zip(starts, windows):
        np.testing.assert_array_equal(w, x[start:start + 2000])


def test_long_clip_windows_equal_the_whole_file_resampled(tmp_path, record_reads):
    from mammalnet.audio.resample import resample

    rate, target, seconds = 3000, 2000, 120
    t = np.arange(seconds * rate) / rate
    x = (0.5 * np.sin(2 * np.pi * (50 + 3 * t) * t)).astype(np.float32)  # 50 Hz rising 6 Hz/s
    manifest = _manifest([_file(tmp_path / "chirp.wav", x, rate)])
    spec = WindowSpec(target, window_samples=1000, hop_samples=1000, max_windows_per_clip=4)
    windows, _ = collect(build_dataset(manifest, ["a"], spec, batch_size=8, training=False))
    whole = resample(x, rate, target).numpy()
    starts = np.linspace(0, len(whole) - 1000, 4).astype(int)
    for start, w in zip(starts, windows):
        np.testing.assert_allclose(w, whole[start:start + 1000], atol=1e-5)
    # Each read is one window (1500 frames) plus filter context and grid alignment: ~2 %.
    assert len(record_reads) == 4
    assert sum(frames for _, frames in record_reads) <= 4 * (1500 + 2 * 96 + 3)


def test_clip_span_short_one_window_and_clamped_end(tmp_path, record_reads):
    rate = 16000
    x = _ramp(10, rate)
    info = _file(tmp_path / "f.wav", x, rate)
    spec = _spec(max_windows_per_clip=1)  # 8 kHz, 0.5-s windows
    rows = [dict(info, start_s=2.0, end_s=2.5),    # exactly one window: one read, one window
            dict(info, start_s=9.0, end_s=60.0),   # end past the file: clamped to 10 s
            dict(info, start_s=4.0, end_s=4.2)]    # shorter than a window: one read, zero-padded
    windows, _, clip = collect(build_dataset(_manifest(rows), ["a"], spec, batch_size=8, training=False,
                                             with_clip_index=True))
    reads = sorted(record_reads)  # parallel map: decodes run in any order
    assert list(clip) == [0, 1, 2] and len(reads) == 3
    assert reads[0] == (32000, 8000) and reads[1] == (64000, 3200)
    # Read by time from the middle of the window (its edges carry the resampler's transient).
    start_s = windows[:, 1000] * 3600 - 1000 / 8000
    assert start_s[0] == pytest.approx(2.0, abs=1e-4)
    assert start_s[1] == pytest.approx(9.25, abs=1e-4)  # one window of 9..10 s: centred
    assert reads[2][0] + reads[2][1] <= len(x)
    assert start_s[2] == pytest.approx(4.0, abs=1e-4) and not windows[2, 1600:].any()


def test_short_clips_context_reads_the_audio_around_the_clip(tmp_path, record_reads):
    rate = 8000
    x = _ramp(10, rate)
    info = _file(tmp_path / "f.wav", x, rate)
    spec = WindowSpec(rate, window_samples=4000, hop_samples=2000, max_windows_per_clip=3,
                      short_clips="context")  # the windows cover 1 s
    rows = [dict(info, start_s=4.0, end_s=4.2),    # centred 1-s stretch around it: 3.6 .. 4.6 s
            dict(info, start_s=0.1, end_s=0.3),    # near the file's start: clamped to 0 .. 1 s
            dict(info, start_s=9.9, end_s=10.0)]   # at the end: 9 .. 10 s
    windows, _, clip = collect(build_dataset(_manifest(rows), ["a"], spec, batch_size=8, training=False,
                                             with_clip_index=True))
    assert sorted(record_reads) == [(0, 8000), (28800, 8000), (72000, 8000)]
    assert list(clip) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    starts = (windows[:, 0] * 3600).reshape(3, 3)  # the ramp's value is its time in hours
    np.testing.assert_allclose(starts, [[3.6, 3.85, 4.1], [0.0, 0.25, 0.5], [9.0, 9.25, 9.5]], atol=1e-4)
    assert (windows[:, 1:] > 0).all()  # no padding anywhere: every sample is the file's own audio
    with pytest.raises(ValueError, match="short_clips"):
        WindowSpec(rate, 4000, 2000, short_clips="stretch")


def test_short_clips_read_once_and_hop_longer_than_window(tmp_path, record_reads):
    rate = 8000
    info = _file(tmp_path / "f.wav", _ramp(16100 / rate, rate), rate)
    spec = WindowSpec(rate, window_samples=1000, hop_samples=3000, max_windows_per_clip=8)
    windows, _ = collect(build_dataset(_manifest([info]), ["a"], spec, batch_size=8, training=False))
    # Starts 0, 3000, ..., 15000; the samples after 16000 fall in a gap: no 7th, all-padding window.
    assert record_reads == [(0, 16100)]
    np.testing.assert_allclose(windows[:, 0] * 3600 * rate, np.arange(6) * 3000, atol=0.01)
    assert windows[-1, -1] * 3600 * rate == pytest.approx(15999, abs=0.01)


def test_bad_spans_are_clear_errors(tmp_path):
    info = _file(tmp_path / "f.wav", _ramp(1, 8000), 8000)
    for row, match in [(dict(info, duration_s=np.nan), "duration_s must be positive and finite"),
                       (dict(info, duration_s=0.0), "Received: duration_s=0.0"),
                       (dict(info, start_s=0.5, end_s=0.5), "end_s must be after start_s"),
                       (dict(info, start_s=3.0), "start_s outside the file")]:
        manifest = _manifest([dict(info, start_s=0.0)])  # valid, then broken past the validator
        for key, value in row.items():
            manifest.loc[0, key] = value
        with pytest.raises(ValueError, match=match):
            build_dataset(manifest, ["a"], _spec(), batch_size=2, training=False)
    with pytest.raises(ValueError, match="Received: pad_mode='mirror'"):
        _spec(pad_mode="mirror")
    with pytest.raises(ValueError, match="Received: max_windows_per_clip=0"):
        _spec(max_windows_per_clip=0)


@pytest.mark.parametrize("pad_mode", ["zero", "repeat", "noise"])
def test_pad_modes_fill_short_clips(tmp_path, pad_mode):
    rate = 8000
    rng = np.random.default_rng(0)
    call = np.zeros(1200)
    call[300:900] = 0.3 * np.sin(np.arange(600) * 0.2)  # loud in the middle: the floor stays 0.01
    clips = [(0.01 * rng.standard_normal(1200) + call).astype(np.float32),
             (0.01 * rng.standard_normal(1500)).astype(np.float32)]
    rows = [_file(tmp_path / f"c{i}.wav", c, rate) for i, c in enumerate(clips)]
    spec = _spec(pad_mode=pad_mode)

    def build():
        return collect(build_dataset(_manifest(rows), ["a"], spec, batch_size=8, training=False))[0]

    windows = build()
    assert windows.shape == (2, 4000)
    for w, c in zip(windows, clips):
        np.testing.assert_array_equal(w[:len(c)], c)
        tail = w[len(c):]
        if pad_mode == "zero":
            assert not tail.any()
        elif pad_mode == "repeat":
            np.testing.assert_array_equal(w, np.resize(c, 4000))
        else:
            assert np.sqrt(np.mean(tail ** 2)) == pytest.approx(0.01, rel=0.2)
    if pad_mode == "noise":
        np.testing.assert_array_equal(build(), windows)  # seeded by clip: the same on every build
        assert not np.allclose(windows[0, 1500:], windows[1, 1500:])
