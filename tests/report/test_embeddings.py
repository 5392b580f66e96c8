"""TensorBoard projector export: metadata TSV, checkpointed tensor, projector config, plain copies."""

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin, projector
from tensorboard.plugins.projector import projector_plugin
from werkzeug.test import Client

from mammalnet.report.embeddings import write_projector

N, D = 20, 8


def _inputs(n=N, d=D):
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((n, d)).astype(np.float32)
    metadata = pd.DataFrame({
        "path": [f"clips/{i}.wav" for i in range(n)],
        "split": ["train", "val", "test", "train"] * (n // 4),
        "label": [f"species\t{i % 3}" if i == 0 else f"species_{i % 3}" for i in range(n)],
    })
    metadata.loc[1, "path"] = "a path\nwith a newline.wav"
    return embeddings, metadata


def test_writes_a_projector_log_dir(tmp_path):
    embeddings, metadata = _inputs()
    log_dir = tmp_path / "logs" / "embeddings"
    out = write_projector(log_dir, embeddings, metadata)
    assert out["shape"] == (N, D)

    with open(out["metadata_tsv"], encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) == N + 1
    assert lines[0] == "label\tpath\tsplit"  # label moved first (the projector colours by it), the rest kept
    assert all(len(line.split("\t")) == 3 for line in lines)
    assert lines[1].split("\t")[0] == "species 0" and lines[2].split("\t")[1] == "a path with a newline.wav"

    reader = tf.train.load_checkpoint(str(log_dir))
    assert out["tensor_name"] == "clip_embeddings/.ATTRIBUTES/VARIABLE_VALUE"
    np.testing.assert_array_equal(reader.get_tensor(out["tensor_name"]), embeddings)

    config = text_format.Parse(open(out["projector_config"], encoding="utf-8").read(), projector.ProjectorConfig())
    assert [(e.tensor_name, e.metadata_path) for e in config.embeddings] == [(out["tensor_name"], "metadata.tsv")]

    np.testing.assert_array_equal(np.load(out["embeddings_npy"]), embeddings)
    csv = pd.read_csv(out["metadata_csv"])
    assert list(csv.columns) == ["label", "path", "split"] and len(csv) == N
    assert csv.loc[1, "path"] == "a path\nwith a newline.wav"  # the CSV quotes; only the TSV is flattened


def test_a_second_call_overwrites_and_tensor_name_is_the_checkpoint_key(tmp_path):
    embeddings, metadata = _inputs()
    write_projector(tmp_path, embeddings, metadata)
    out = write_projector(tmp_path, 2 * embeddings[:4].astype(np.float64), metadata[["label"]][:4],
                          tensor_name="encoder_output")
    assert out["shape"] == (4, D) and out["checkpoint"].endswith("embedding.ckpt-1")
    reader = tf.train.load_checkpoint(str(tmp_path))
    np.testing.assert_array_equal(reader.get_tensor("encoder_output/.ATTRIBUTES/VARIABLE_VALUE"), 2 * embeddings[:4])
    with open(out["metadata_tsv"], encoding="utf-8") as f:
        assert f.read().splitlines() == ["species 0", "species_1", "species_2", "species_0"]  # 1 column: no header


def test_tensorboard_serves_it_from_the_parent_log_dir(tmp_path):
    """What `tensorboard --logdir runs/<name>/logs` does: the projector plugin's HTTP routes find the
    embeddings folder as a run and serve the tensor and the metadata."""
    embeddings, metadata = _inputs()
    logs = str(tmp_path / "logs")
    out = write_projector(tmp_path / "logs" / "embeddings", embeddings, metadata)
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logs)
    multiplexer.Reload()
    plugin = projector_plugin.ProjectorPlugin(base_plugin.TBContext(
        logdir=logs, multiplexer=multiplexer, data_provider=data_provider.MultiplexerDataProvider(multiplexer, logs)))
    apps = plugin.get_plugin_apps()

    def get(route, query=""):
        response = Client(apps[route]).get(route + query)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data()

    assert json.loads(get("/runs")) == ["embeddings"]
    info = json.loads(get("/info", "?run=embeddings"))["embeddings"]
    assert [(e["tensorName"], e["tensorShape"]) for e in info] == [(out["tensor_name"], [N, D])]
    served = np.frombuffer(get("/tensor", f"?run=embeddings&name={out['tensor_name']}"), dtype=np.float32)
    np.testing.assert_array_equal(served.reshape(N, D), embeddings)
    assert get("/metadata", f"?run=embeddings&name={out['tensor_name']}").decode().startswith("label\tpath\tsplit\n")


@pytest.mark.parametrize("embeddings, rows, kwargs, match", [
    (np.zeros(N), N, {}, r"2-D.*embeddings.shape=\(20,\)"),
    (np.zeros((0, D)), 0, {}, "at least one clip"),
    (np.zeros((N, 0)), N, {}, r"d >= 1"),
    (np.full((N, D), np.nan), N, {}, "finite.*160 non-finite"),
    (np.zeros((N, D)), N - 1, {}, r"embeddings.shape=\(20, 8\), len\(metadata\)=19"),
    ([["a"] * D] * N, N, {}, "numeric"),
    (np.zeros((N, D)), N, {"tensor_name": "bad name"}, "tensor_name='bad name'"),
    (np.zeros((N, D)), N, {"tensor_name": "save_counter"}, "tensor_name='save_counter'"),
])
def test_bad_inputs_raise(tmp_path, embeddings, rows, kwargs, match):
    metadata = pd.DataFrame({"label": ["x"] * rows})
    with pytest.raises(ValueError, match=match):
        write_projector(tmp_path, embeddings, metadata, **kwargs)


def test_metadata_must_be_a_dataframe_with_columns(tmp_path):
    with pytest.raises(ValueError, match="DataFrame.*list"):
        write_projector(tmp_path, np.zeros((2, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="at least one column"):
        write_projector(tmp_path, np.zeros((2, 2)), pd.DataFrame(index=range(2)))
