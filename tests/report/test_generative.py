"""Report figures and quality numbers for the generative models (mammalnet.report.generative)."""

import glob
import json
import re
import sys

import matplotlib
import numpy as np
import pytest
import tensorflow as tf
from matplotlib.figure import Figure
from matplotlib.legend import Legend

from mammalnet.report import generative as gen
from mammalnet.report.plots import figure_to_image

matplotlib.use("Agg")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FRAMES, MELS = 12, 10


def _patches(n, *, channel=True, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, FRAMES, MELS, 1) if channel else (n, FRAMES, MELS)
    return rng.uniform(-1.0, 1.0, shape).astype(np.float32)


def _images(fig):
    return [image for ax in fig.axes for image in ax.images]


def _colourbars(fig):
    # The colour bar is the one axes whose ylabel is the patch scale.
    return [ax for ax in fig.axes if ax.get_ylabel().startswith("log-mel")]


# ---------------------------------------------------------------------------------------------
# patch figures
# ---------------------------------------------------------------------------------------------

def test_patch_grid_panels_scale_and_orientation():
    patches = _patches(10)
    fig = gen.plot_patch_grid(patches, [f"p{i}" for i in range(10)], columns=4, title="samples")
    assert isinstance(fig, Figure)
    images = _images(fig)
    assert len(images) == 10 and len(fig.axes) == 11 and len(_colourbars(fig)) == 1
    assert all(image.get_clim() == (-1.0, 1.0) for image in images)
    assert all(image.origin == "lower" for image in images)
    # time across, mel bins upward
    np.testing.assert_array_equal(images[3].get_array(), patches[3, ..., 0].T)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["p0", "p1", "p2"]
    assert fig.get_suptitle() == "samples"
    # 4 columns: rows of 4, 4, 2
    assert fig.axes[4].get_subplotspec().rowspan.start == 1 and fig.axes[4].get_subplotspec().colspan.start == 0


def test_patch_grid_accepts_no_channel_axis_and_one_patch():
    fig = gen.plot_patch_grid(_patches(3, channel=False))
    assert len(_images(fig)) == 3 and all(ax.get_title() == "" for ax in fig.axes[:3])
    fig = gen.plot_patch_grid(_patches(1, channel=False)[0])
    assert len(_images(fig)) == 1


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 4, 2)), np.zeros((0, FRAMES, MELS)), np.zeros(5),
                                 np.zeros((2, 3, 4, 5, 1))])
def test_patch_grid_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match=r"patches.*Received: patches.shape="):
        gen.plot_patch_grid(bad)


def test_patch_grid_rejects_bad_titles_and_columns():
    with pytest.raises(ValueError, match="len\\(titles\\)=1"):
        gen.plot_patch_grid(_patches(2), ["one"])
    with pytest.raises(ValueError, match="not one string"):
        gen.plot_patch_grid(_patches(2), "ab")
    with pytest.raises(ValueError, match="columns=0"):
        gen.plot_patch_grid(_patches(2), columns=0)


def test_reconstructions_two_rows_same_scale_and_error():
    originals = _patches(10)
    recon = np.clip(originals + 0.1, -1, 1)
    fig = gen.plot_reconstructions(originals, recon, [f"c{i}" for i in range(10)], max_items=3)
    images = _images(fig)
    assert len(images) == 6 and len(fig.axes) == 7
    assert all(image.get_clim() == (-1.0, 1.0) for image in images)
    panels = [ax for ax in fig.axes if ax.images]
    tops = [ax for ax in panels if ax.get_subplotspec().rowspan.start == 0]
    bottoms = [ax for ax in panels if ax.get_subplotspec().rowspan.start == 1]
    assert [ax.get_title() for ax in tops] == ["c0", "c1", "c2"]
    assert tops[0].get_ylabel() == "original" and bottoms[0].get_ylabel() == "reconstruction"
    np.testing.assert_array_equal(bottoms[1].images[0].get_array(), recon[1, ..., 0].T)
    mse = float(np.mean((originals[0] - recon[0]) ** 2))
    assert bottoms[0].get_xlabel() == f"MSE {mse:.3f}"


def test_reconstructions_fewer_than_max_and_errors():
    fig = gen.plot_reconstructions(_patches(2), _patches(2, channel=False, seed=1))  # channel axis optional
    assert len(_images(fig)) == 4
    with pytest.raises(ValueError, match="same shape"):
        gen.plot_reconstructions(_patches(3), _patches(2))
    with pytest.raises(ValueError, match="max_items=0"):
        gen.plot_reconstructions(_patches(2), _patches(2), max_items=0)
    with pytest.raises(ValueError, match="reconstructions.shape="):
        gen.plot_reconstructions(_patches(2), np.zeros((2, 3)))


def test_generated_by_class_rows_and_labels():
    by_class = {"humpback": _patches(3), "orca": _patches(12, seed=1), "minke": _patches(5, channel=False)}
    fig = gen.plot_generated_by_class(by_class, per_class=4)
    images = _images(fig)
    assert len(images) == 3 + 4 + 4 and len(fig.axes) == 12
    assert all(image.get_clim() == (-1.0, 1.0) for image in images)
    row_labels = [ax.get_ylabel() for ax in fig.axes if ax.images and ax.get_subplotspec().colspan.start == 0]
    assert row_labels == ["humpback", "orca", "minke"]
    rows = {ax.get_subplotspec().rowspan.start for ax in fig.axes if ax.images}
    assert rows == {0, 1, 2}


def test_generated_by_class_errors():
    with pytest.raises(ValueError, match="non-empty mapping"):
        gen.plot_generated_by_class({})
    with pytest.raises(ValueError, match="patches_by_class\\['orca'\\]"):
        gen.plot_generated_by_class({"humpback": _patches(2), "orca": np.zeros((0, FRAMES, MELS))})
    with pytest.raises(ValueError, match="per_class=0"):
        gen.plot_generated_by_class({"humpback": _patches(2)}, per_class=0)


# ---------------------------------------------------------------------------------------------
# latent space
# ---------------------------------------------------------------------------------------------

def _two_clusters(n_each=25, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0.0, 1.0, (n_each, d)), rng.normal(6.0, 1.0, (n_each, d))])
    return x, ["a"] * n_each + ["b"] * n_each


def test_tsne_projection_shape_determinism_and_clusters():
    x, labels = _two_clusters()
    first = gen.latent_projection(x, seed=3)
    assert first.shape == (50, 2) and first.dtype == np.float32 and np.all(np.isfinite(first))
    np.testing.assert_array_equal(first, gen.latent_projection(x, seed=3))
    # the two well-separated clusters stay apart: every point is nearer its own cluster's centre
    a, b = first[:25].mean(axis=0), first[25:].mean(axis=0)
    own = np.linalg.norm(first[:25] - a, axis=1).max()
    assert own < np.linalg.norm(a - b)


def test_tsne_small_n_uses_a_valid_perplexity():
    rng = np.random.default_rng(0)
    assert gen.latent_projection(rng.normal(size=(5, 3))).shape == (5, 2)


@pytest.mark.parametrize("vectors, message", [
    (np.zeros((4, 3)), "n >= 5"),
    (np.zeros(10), "2-D"),
    (np.ones((6, 1)), "d >= 2"),
    (np.ones((6, 3)), "all identical"),
    (np.full((6, 3), np.nan), "finite"),
])
def test_projection_rejects_bad_vectors(vectors, message):
    with pytest.raises(ValueError, match=message):
        gen.latent_projection(vectors)


def test_projection_rejects_unknown_method():
    with pytest.raises(ValueError, match="method='pca'"):
        gen.latent_projection(np.eye(6), method="pca")


def test_umap_missing_raises_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # makes `import umap` fail as if not installed
    with pytest.raises(ImportError, match=re.escape(gen.UMAP_MISSING)):
        gen.latent_projection(_two_clusters()[0], method="umap")
    assert gen.UMAP_MISSING == "umap-learn is not installed: pip install umap-learn (optional extra 'umap')"


def test_umap_projection_when_installed():
    pytest.importorskip("umap")
    x, _ = _two_clusters()
    points = gen.latent_projection(x, method="umap", seed=0)
    assert points.shape == (50, 2) and np.all(np.isfinite(points))


def test_latent_space_colours_and_markers():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(40, 2))
    labels = ["orca", "humpback"] * 20
    markers = ["real"] * 20 + ["generated"] * 20
    fig = gen.plot_latent_space(points, labels, title="latents", markers=markers)
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and ax.get_title() == "latents"
    assert len(ax.collections) == 4  # (class, group) pairs
    assert sum(len(c.get_offsets()) for c in ax.collections) == 40
    # two legends: the class legend kept as an artist, the marker legend as the axes' legend
    texts = {t.get_text() for legend in fig.findobj(Legend) for t in legend.get_texts()}
    assert {"orca", "humpback", "real", "generated"} <= texts
    real_paths = {c.get_paths()[0].vertices.tobytes() for c in ax.collections[:2]}
    generated_paths = {c.get_paths()[0].vertices.tobytes() for c in ax.collections[2:]}
    assert real_paths.isdisjoint(generated_paths)  # different marker shapes


def test_latent_space_without_markers_and_many_classes():
    rng = np.random.default_rng(0)
    labels = [f"species_{i % 35}" for i in range(70)]
    fig = gen.plot_latent_space(rng.normal(size=(70, 2)), labels)
    assert len(fig.axes[0].collections) == 35
    colours = {tuple(np.round(c.get_facecolor()[0], 4)) for c in fig.axes[0].collections}
    assert len(colours) == 35


def test_latent_space_errors():
    with pytest.raises(ValueError, match="points_2d.shape=\\(4, 3\\)"):
        gen.plot_latent_space(np.zeros((4, 3)), ["a"] * 4)
    with pytest.raises(ValueError, match="len\\(labels\\)=3"):
        gen.plot_latent_space(np.zeros((4, 2)), ["a"] * 3)
    with pytest.raises(ValueError, match="len\\(markers\\)=2"):
        gen.plot_latent_space(np.zeros((4, 2)), ["a"] * 4, markers=["real"] * 2)


# ---------------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------------

def test_frechet_identical_is_zero_and_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 6))
    b = rng.normal(0.3, 1.5, size=(200, 6))
    assert gen.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert gen.frechet_distance(a, b) == pytest.approx(gen.frechet_distance(b, a), rel=1e-6)
    assert isinstance(gen.frechet_distance(a, b), float)


def test_frechet_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(1)
    n = 20000
    mu_a, var_a = np.array([0.0, 0.0, 0.0]), np.array([1.0, 2.0, 0.5])
    mu_b, var_b = np.array([1.0, -1.0, 0.5]), np.array([2.0, 1.0, 0.5])
    a = mu_a + np.sqrt(var_a) * rng.standard_normal((n, 3))
    b = mu_b + np.sqrt(var_b) * rng.standard_normal((n, 3))
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum(var_a + var_b - 2 * np.sqrt(var_a * var_b))
    assert gen.frechet_distance(a, b) == pytest.approx(expected, rel=0.03)


def test_frechet_grows_with_mean_shift():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(500, 4))
    b = rng.normal(size=(500, 4))
    distances = [gen.frechet_distance(a, b + shift) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert all(x < y for x, y in zip(distances, distances[1:]))
    # for equal covariances the shift term is ||shift||^2 = 4 * shift^2
    assert distances[3] - distances[0] == pytest.approx(4 * 4.0, rel=0.1)


def test_frechet_singular_covariances_stay_finite():
    rng = np.random.default_rng(3)
    small = rng.normal(size=(3, 10))  # n <= d: rank-deficient covariances
    assert gen.frechet_distance(small, small) == pytest.approx(0.0, abs=1e-6)
    other = rng.normal(size=(4, 10))
    assert np.isfinite(gen.frechet_distance(small, other)) and gen.frechet_distance(small, other) > 0
    constant = rng.normal(size=(50, 3))
    constant[:, 1] = 7.0  # a dimension that never varies
    assert gen.frechet_distance(constant, constant) == pytest.approx(0.0, abs=1e-5)
    assert np.isfinite(gen.frechet_distance(constant, rng.normal(size=(50, 3))))


@pytest.mark.parametrize("a, b, message", [
    (np.zeros((1, 3)), np.zeros((5, 3)), "a must be 2-D.*n >= 2"),
    (np.zeros((5, 3)), np.zeros(5), "b must be 2-D"),
    (np.zeros((5, 3)), np.zeros((5, 4)), "same embedding size"),
    (np.full((5, 3), np.inf), np.zeros((5, 3)), "a must be finite"),
])
def test_frechet_rejects_bad_inputs(a, b, message):
    with pytest.raises(ValueError, match=message):
        gen.frechet_distance(a, b)


def test_classifier_score_on_a_hand_made_matrix():
    probs = np.array([
        [0.7, 0.2, 0.1],
        [0.1, 0.8, 0.1],
        [0.5, 0.3, 0.2],
        [0.2, 0.2, 0.6],
    ])
    score = gen.classifier_score(probs, 0)
    assert score == {"n": 4, "accuracy": 0.5, "mean_probability": pytest.approx(0.375),
                     "predicted_counts": {0: 2, 1: 1, 2: 1}}
    assert gen.classifier_score(probs, 1)["accuracy"] == 0.25
    json.dumps(score)  # ready for metrics.json


def test_classifier_score_errors():
    probs = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="class_index=2"):
        gen.classifier_score(probs, 2)
    with pytest.raises(ValueError, match="class_index=True"):
        gen.classifier_score(probs, True)
    with pytest.raises(ValueError, match="softmax"):
        gen.classifier_score(np.array([[3.0, -1.0]]), 0)
    with pytest.raises(ValueError, match="probabilities.shape=\\(3,\\)"):
        gen.classifier_score(np.array([0.1, 0.2, 0.7]), 0)


def test_quality_table_markdown():
    table = gen.quality_table({
        "vae": {"fid": 12.34567, "reconstruction_mse": np.float32(0.0213), "n": 64},
        "diffusion | humpback": gen.classifier_score(np.array([[0.9, 0.1], [0.4, 0.6]]), 0),
        "notes": {"sampler": "ddim", "missing": None},
    })
    lines = table.strip().splitlines()
    assert lines[0] == "| section | metric | value |" and lines[1].startswith("|---")
    assert "| vae | fid | 12.346 |" in lines and "| vae | n | 64 |" in lines
    assert "| vae | reconstruction_mse | 0.021 |" in lines
    assert "| diffusion \\| humpback | predicted_counts | 0: 1, 1: 1 |" in lines
    assert "| notes | missing | — |" in lines
    assert all(line.count(" | ") == 2 for line in lines[2:])


def test_quality_table_errors():
    with pytest.raises(ValueError, match="non-empty mapping"):
        gen.quality_table({})
    with pytest.raises(ValueError, match="quality\\['vae'\\]"):
        gen.quality_table({"vae": 1.0})


# ---------------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------------

def test_write_figure_writes_a_png_and_closes(tmp_path):
    import matplotlib.pyplot as plt

    path = gen.write_figure(gen.plot_patch_grid(_patches(2)), tmp_path / "out" / "grid.png")
    assert path == str(tmp_path / "out" / "grid.png")
    data = open(path, "rb").read()
    assert data[:8] == PNG_MAGIC
    image = tf.io.decode_png(data)
    assert image.shape[0] > 50 and image.shape[1] > 50

    fig = plt.figure()
    gen.write_figure(fig, tmp_path / "pyplot.png")
    assert fig.number not in plt.get_fignums()

    with pytest.raises(ValueError, match="'.png'"):
        gen.write_figure(Figure(), tmp_path / "grid.jpg")
    with pytest.raises(ValueError, match="fig must be a matplotlib Figure"):
        gen.write_figure("not a figure", tmp_path / "x.png")


def _read_images(log_dir):
    found = {}
    for events in glob.glob(str(log_dir / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(events):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    width, height = (int(s) for s in value.tensor.string_val[:2])
                    found[value.tag] = (event.step, width, height, tf.io.decode_png(value.tensor.string_val[2]))
    return found


def test_log_images_writes_tags_with_dimensions(tmp_path):
    png = gen.write_figure(gen.plot_patch_grid(_patches(3)), tmp_path / "grid.png")
    height, width = tf.io.decode_png(open(png, "rb").read()).shape[:2]
    array = np.zeros((20, 30, 3), dtype=np.uint8)
    array[:, :10, 0] = 255
    fig_image = figure_to_image(gen.plot_patch_grid(_patches(1)))  # [1, H, W, 4]

    log_dir = tmp_path / "logs" / "generative"
    gen.log_images(log_dir, {"vae/grid": png, "diffusion/array": array, "figure": fig_image}, step=7)
    found = _read_images(log_dir)
    assert set(found) == {"vae/grid", "diffusion/array", "figure"}
    assert found["vae/grid"][:3] == (7, width, height)
    step, w, h, decoded = found["diffusion/array"]
    assert (w, h) == (30, 20)
    np.testing.assert_array_equal(decoded.numpy(), array)
    assert found["figure"][1:3] == (fig_image.shape[2], fig_image.shape[1])


def test_log_images_rejects_bad_inputs_before_writing(tmp_path):
    log_dir = tmp_path / "logs"
    (tmp_path / "not.png").write_text("hello")
    with pytest.raises(ValueError, match="non-empty mapping"):
        gen.log_images(log_dir, {})
    with pytest.raises(ValueError, match="existing PNG file"):
        gen.log_images(log_dir, {"a": str(tmp_path / "missing.png")})
    with pytest.raises(ValueError, match="is not a PNG"):
        gen.log_images(log_dir, {"a": str(tmp_path / "not.png")})
    with pytest.raises(ValueError, match="uint8"):
        gen.log_images(log_dir, {"ok": np.zeros((4, 4, 3), np.uint8), "bad": np.zeros((4, 4, 3), np.float32)})
    with pytest.raises(ValueError, match="C in \\(1, 3, 4\\)"):
        gen.log_images(log_dir, {"bad": np.zeros((4, 4, 2), np.uint8)})
    with pytest.raises(ValueError, match="step=-1"):
        gen.log_images(log_dir, {"ok": np.zeros((4, 4, 3), np.uint8)}, step=-1)
    assert not log_dir.exists()  # nothing partial
