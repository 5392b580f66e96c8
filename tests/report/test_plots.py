import io

import numpy as np
import pytest
from matplotlib.figure import Figure

from mammalnet.report import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _png_bytes(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def test_confusion_matrix_row_normalised_with_counts():
    cm = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    fig = plots.plot_confusion_matrix(cm, ["a", "b", "c"])
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(image, [[0.75, 0.25, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    texts = _texts(fig)
    assert "3\n75%" in texts and "1\n25%" in texts and "2\n100%" in texts
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]
    assert _png_bytes(fig)[:8] == PNG_MAGIC


def test_confusion_matrix_counts_and_many_classes():
    rng = np.random.default_rng(0)
    n = 35
    cm = rng.integers(0, 20, size=(n, n))
    fig = plots.plot_confusion_matrix(cm, [f"species_{i}" for i in range(n)], normalize=False,
                                      title="35 classes")
    assert fig.axes[0].get_title() == "35 classes"
    assert fig.axes[0].images[0].get_array().max() == cm.max()
    labels = fig.axes[0].get_xticklabels()
    assert labels[0].get_rotation() == 90
    assert labels[0].get_fontsize() < 10
    assert str(cm[0, 0]) in _texts(fig)
    assert plots.figure_to_image(fig).shape[1] > 1000  # grows with the class count


def test_confusion_matrix_rejects_mismatch():
    with pytest.raises(ValueError, match="class_names"):
        plots.plot_confusion_matrix(np.zeros((3, 3)), ["a", "b"])


def test_roc_one_curve_per_present_class():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_prob = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1],
                       [0.3, 0.4, 0.3], [0.1, 0.2, 0.7], [0.2, 0.2, 0.6]])
    fig = plots.plot_roc(y_true, y_prob, ["a", "b", "c"])
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0] == "chance"
    assert len(legend) == 4
    assert legend[1].startswith("a (AUC")
    assert "macro AUC 1.000" in fig.axes[0].get_title()


def test_roc_skips_absent_classes_and_handles_single_class():
    y_true = np.array([0, 1, 0, 1])
    y_prob = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.4, 0.5, 0.1], [0.5, 0.4, 0.1]])
    fig = plots.plot_roc(y_true, y_prob, ["a", "b", "c"])
    assert len(fig.axes[0].get_legend().get_texts()) == 3  # chance + a + b
    fig = plots.plot_roc(np.zeros(3, dtype=int), np.ones((3, 2)) / 2, ["a", "b"])
    assert any("ROC undefined" in t for t in _texts(fig))
    assert _png_bytes(fig)[:8] == PNG_MAGIC


def test_curves_with_history():
    history = {"loss": [1.0, 0.6], "val_loss": [1.2, 0.9], "accuracy": [0.5, 0.7],
               "val_accuracy": [0.4, 0.6], "learning_rate": [1e-3, 1e-3]}
    fig = plots.plot_curves(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    loss_ax = fig.axes[0]
    assert len(loss_ax.lines) == 2
    np.testing.assert_allclose(loss_ax.lines[0].get_xdata(), [1, 2])
    np.testing.assert_allclose(loss_ax.lines[1].get_ydata(), [1.2, 0.9])
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["train", "validation"]


def test_curves_without_history_says_so():
    for history in (None, {}, {"loss": []}):
        fig = plots.plot_curves(history)
        assert any("no training history" in t for t in _texts(fig))
        assert _png_bytes(fig)[:8] == PNG_MAGIC


def test_spectrogram_grid_origin_lower():
    specs = np.random.default_rng(0).normal(size=(5, 20, 16, 1)).astype(np.float32)
    fig = plots.plot_spectrograms(specs, [f"clip {i}" for i in range(5)], sample_rate_hz=2000)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 5
    assert images[0].origin == "lower"
    assert images[0].get_array().shape == (16, 20)  # bins up, frames across
    assert "1000 Hz" in fig.axes[0].get_ylabel()
    with pytest.raises(ValueError, match="titles"):
        plots.plot_spectrograms(specs, ["one"])


def test_figure_to_image_rgba_batch():
    fig = Figure(figsize=(2, 1), dpi=50)
    fig.add_subplot().plot([0, 1])
    image = plots.figure_to_image(fig)
    assert image.dtype == np.uint8
    assert image.shape == (1, 50, 100, 4)
    assert image[..., 3].max() == 255


def test_figure_to_image_closes_pyplot_figures():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure()
    plots.figure_to_image(fig)
    assert fig.number not in plt.get_fignums()
