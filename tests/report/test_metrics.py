import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from mammalnet.report.metrics import (REPORT_FILES, aggregate_windows, compute_metrics, to_jsonable,
                                      write_report)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPLIT = {"method": "group", "seed": 0, "val_fraction": 0.2}


def _probs_for(y_pred, num_classes, confidence):
    """One row per prediction: `confidence` on the predicted class, the rest spread evenly."""
    probs = np.full((len(y_pred), num_classes), 0.0)
    for i, (k, c) in enumerate(zip(y_pred, confidence)):
        probs[i] = (1.0 - c) / (num_classes - 1)
        probs[i, k] = c
    return probs


# y_true 0 0 0 1 1 2, y_pred 0 0 1 1 1 0:
#   recall    c0 2/3, c1 2/2, c2 0/1   -> balanced accuracy 5/9
#   precision c0 2/3, c1 2/3, c2 0 (never predicted)
#   f1        c0 2/3, c1 0.8, c2 0     -> macro 22/45
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 1, 0])
CONF = [0.9, 0.8, 0.6, 0.7, 0.95, 0.5]
NAMES = ["blue", "fin", "humpback"]


def test_compute_metrics_hand_values_and_sklearn():
    y_prob = _probs_for(Y_PRED, 3, CONF)
    m = compute_metrics(Y_TRUE, y_prob, NAMES, split_protocol=SPLIT)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx(5 / 9)
    assert m["macro_f1"] == pytest.approx(22 / 45)
    assert m["accuracy"] == pytest.approx(accuracy_score(Y_TRUE, Y_PRED))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y_TRUE, Y_PRED))
    assert m["macro_f1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro", zero_division=0))

    pc = m["per_class"]
    assert [pc[n]["support"] for n in NAMES] == [3, 2, 1]
    assert pc["blue"]["precision"] == pytest.approx(2 / 3)
    assert pc["blue"]["recall"] == pytest.approx(2 / 3)
    assert pc["fin"]["f1"] == pytest.approx(0.8)
    assert pc["humpback"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["num_examples"] == 6
    assert m["class_names"] == NAMES
    assert m["split_protocol"] == SPLIT
    assert m["roc_auc_ovr"] == pytest.approx(roc_auc_score(Y_TRUE, y_prob, multi_class="ovr"))
    assert "roc_auc_ovr_reason" not in m
    json.dumps(m, allow_nan=False)  # serialisable as is


def test_class_absent_from_y_true():
    names = NAMES + ["sei"]
    y_prob = np.column_stack([_probs_for(Y_PRED, 3, CONF) * 0.9, np.full(6, 0.1)])
    m = compute_metrics(Y_TRUE, y_prob, names, split_protocol=SPLIT)
    assert m["per_class"]["sei"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["absent_classes"] == ["sei"]
    # A class neither present nor predicted does not drag the macro averages down.
    assert m["macro_f1"] == pytest.approx(22 / 45)
    assert m["balanced_accuracy"] == pytest.approx(5 / 9)
    expected_auc = np.mean([roc_auc_score(Y_TRUE == k, y_prob[:, k]) for k in range(3)])
    assert m["roc_auc_ovr"] == pytest.approx(expected_auc)
    assert m["roc_auc_ovr_classes"] == NAMES
    assert np.array(m["confusion_matrix"]).shape == (4, 4)


def test_predicted_class_absent_from_y_true_counts_as_zero_f1():
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 2, 1, 1])
    m = compute_metrics(y_true, _probs_for(y_pred, 3, [0.9] * 4), ["a", "b", "c"], split_protocol={})
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert m["per_class"]["c"]["support"] == 0
    assert m["roc_auc_ovr_classes"] == ["a", "b"]


def test_single_class_y_true_has_null_auc_with_reason():
    y_true = np.array([1, 1, 1])
    y_prob = np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    m = compute_metrics(y_true, y_prob, ["noise", "call"], split_protocol=SPLIT)
    assert m["roc_auc_ovr"] is None
    assert "at least 2 classes" in m["roc_auc_ovr_reason"]
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["per_class"]["noise"]["support"] == 0
    json.loads(json.dumps(m, allow_nan=False))


def test_binary_auc():
    y_true = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.6, 0.4, 0.9])
    m = compute_metrics(y_true, np.column_stack([1 - p1, p1]), ["noise", "call"], split_protocol={})
    assert m["roc_auc_ovr"] == pytest.approx(roc_auc_score(y_true, p1))


def test_compute_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="y_prob.shape"):
        compute_metrics([0, 1], np.ones((3, 2)) / 2, ["a", "b"], split_protocol={})
    with pytest.raises(ValueError, match="outside"):
        compute_metrics([0, 2], np.ones((2, 2)) / 2, ["a", "b"], split_protocol={})
    with pytest.raises(ValueError, match="non-finite"):
        compute_metrics([0, 1], np.array([[np.nan, 1.0], [0.5, 0.5]]), ["a", "b"], split_protocol={})


def test_aggregate_windows_mean_per_clip_first_seen_order():
    probs = np.array([[0.2, 0.8], [1.0, 0.0], [0.4, 0.6], [0.0, 1.0], [0.6, 0.4]])
    clip_probs, ids = aggregate_windows(probs, ["b.wav", "a.wav", "b.wav", "c.wav", "a.wav"])
    assert ids == ["b.wav", "a.wav", "c.wav"]
    np.testing.assert_allclose(clip_probs, [[0.3, 0.7], [0.8, 0.2], [0.0, 1.0]], atol=1e-6)
    with pytest.raises(ValueError, match="clip_ids"):
        aggregate_windows(probs, ["a"] * 4)


def test_to_jsonable_converts_numpy_and_nan():
    out = to_jsonable({"a": np.float32(0.5), "b": np.int64(3), "c": np.array([1.0, np.nan]),
                       "d": (np.bool_(True), float("inf"))})
    assert out == {"a": 0.5, "b": 3, "c": [1.0, None], "d": [True, None]}
    assert type(out["b"]) is int


def test_write_report_writes_contract(tmp_path):
    y_prob = _probs_for(Y_PRED, 3, CONF)
    paths = [f"clips/{i}.wav" for i in range(6)]
    history = {"loss": [1.0, 0.7, 0.5], "accuracy": [0.4, 0.6, 0.7],
               "val_loss": [1.1, 0.8, 0.7], "val_accuracy": [0.3, 0.5, 0.6]}
    m = write_report(tmp_path / "report", y_true=Y_TRUE, y_prob=y_prob, class_names=NAMES,
                     clip_paths=paths, split_protocol=SPLIT, history=history,
                     extra={"tflite_parity_max_abs_diff": np.float32(1e-6), "timing_s": float("nan")})
    report = tmp_path / "report"
    for name in REPORT_FILES:
        assert (report / name).is_file(), name
        assert (report / name).stat().st_size > 0, name
    for name in ("confusion_matrix.png", "roc.png", "curves.png"):
        assert (report / name).read_bytes()[:8] == PNG_MAGIC

    text = (report / "metrics.json").read_text()
    assert "NaN" not in text
    loaded = json.loads(text)
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_class", "roc_auc_ovr",
                "confusion_matrix", "num_examples", "split_protocol", "class_names"):
        assert key in loaded
    assert loaded == m
    assert loaded["tflite_parity_max_abs_diff"] == pytest.approx(1e-6)
    assert loaded["timing_s"] is None
    assert set(loaded["per_class"]["fin"]) == {"precision", "recall", "f1", "support"}

    errors = pd.read_csv(report / "errors.csv")
    assert len(errors) == int((Y_PRED != Y_TRUE).sum()) == 2
    assert list(errors.columns) == ["path", "true_label", "pred_label", "p_true", "p_pred",
                                    "prob_blue", "prob_fin", "prob_humpback"]
    assert errors["p_pred"].is_monotonic_decreasing
    # Rows 2 (blue -> fin, 0.6) and 5 (humpback -> blue, 0.5).
    assert errors["path"].tolist() == ["clips/2.wav", "clips/5.wav"]
    assert errors["true_label"].tolist() == ["blue", "humpback"]
    assert errors["pred_label"].tolist() == ["fin", "blue"]
    np.testing.assert_allclose(errors["p_pred"], [0.6, 0.5])
    np.testing.assert_allclose(errors["p_true"], [0.2, 0.25])
    np.testing.assert_allclose(errors[["prob_blue", "prob_fin", "prob_humpback"]].sum(axis=1), 1.0)

    report_txt = (report / "classification_report.txt").read_text()
    for name in NAMES:
        assert name in report_txt
    assert "macro avg" in report_txt
    assert "0.4889" in report_txt  # macro F1 agrees with metrics.json


def test_write_report_without_history_and_with_one_class(tmp_path):
    y_true = np.zeros(4, dtype=int)
    y_prob = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.3, 0.7, 0.0], [0.6, 0.4, 0.0]])
    m = write_report(tmp_path, y_true=y_true, y_prob=y_prob, class_names=["a", "b", "c"],
                     clip_paths=["w", "x", "y", "z"], split_protocol={}, history=None)
    for name in REPORT_FILES:
        assert (tmp_path / name).is_file()
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "roc.png").read_bytes()[:8] == PNG_MAGIC
    assert m["roc_auc_ovr"] is None
    assert len(pd.read_csv(tmp_path / "errors.csv")) == 1
    assert (tmp_path / "classification_report.txt").read_text().rstrip().endswith("not averaged): c")
    assert not math.isnan(json.loads((tmp_path / "metrics.json").read_text())["accuracy"])


def test_write_report_no_errors_writes_header_only_csv(tmp_path):
    y_true = np.array([0, 1])
    write_report(tmp_path, y_true=y_true, y_prob=np.eye(2), class_names=["a", "b"],
                 clip_paths=["p0", "p1"], split_protocol={}, history={})
    errors = pd.read_csv(tmp_path / "errors.csv")
    assert len(errors) == 0
    assert "prob_b" in errors.columns


def test_write_report_rejects_misaligned_paths(tmp_path):
    with pytest.raises(ValueError, match="clip_paths"):
        write_report(tmp_path, y_true=[0, 1], y_prob=np.eye(2), class_names=["a", "b"],
                     clip_paths=["only-one"], split_protocol={})


def test_minority_recall_is_the_mean_over_the_rarest_quarter_of_evaluated_classes():
    from mammalnet.report.metrics import minority_recall

    per_class = {"blue": {"recall": 0.9, "support": 5}, "fin": {"recall": 0.5, "support": 2},
                 "humpback": {"recall": 0.25, "support": 4}, "minke": {"recall": 0.0, "support": 0},
                 "sei": {"recall": 1.0, "support": 3}, "sperm": {"recall": 0.75, "support": 3}}
    counts = {"blue": 10, "fin": 3, "humpback": 3, "minke": 1, "sei": 8, "sperm": 2}
    # minke has the fewest training clips but no evaluated clip; 5 evaluated -> the rarest 2: sperm, fin
    found = minority_recall(per_class, counts)
    assert found["minority_classes"] == ["sperm", "fin"] and found["minority_recall"] == pytest.approx(0.625)
    assert minority_recall(per_class, None)["minority_classes"] == ["fin", "sei"]  # by evaluated support
    assert minority_recall({"a": {"recall": 1.0, "support": 0}}, {"a": 1})["minority_recall"] is None
    y_true, probs = np.array([0, 0, 1, 2]), np.eye(3)[[0, 1, 1, 2]]
    metrics = compute_metrics(y_true, probs, ["a", "b", "c"], split_protocol={}, train_counts={"a": 5, "b": 9, "c": 7})
    assert metrics["minority_classes"] == ["a"] and metrics["minority_recall"] == pytest.approx(0.5)
