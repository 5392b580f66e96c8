import numpy as np
import pytest
import soundfile as sf

from mammalnet.data.pipeline import WindowSpec, build_dataset, collect
from mammalnet.data.sources import read_folder
from tests.conftest import tone_clip


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
