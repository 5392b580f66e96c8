import json

import numpy as np
import pytest
from scipy.special import softmax

from mammalnet.report.calibration import (apply_temperature, expected_calibration_error, fit_temperature,
                                          open_set_metrics, predict_with_unknown)

# Four clips of three classes: confidences 0.8, 0.5, 0.7, 0.9; clip 2 is wrong (predicts 1, is 2).
PROBS = np.array([[0.8, 0.1, 0.1],
                  [0.5, 0.3, 0.2],
                  [0.1, 0.7, 0.2],
                  [0.05, 0.05, 0.9]])
LABELS = np.array([0, 0, 2, 2])
NAMES = ["humpback", "orca", "sperm"]


def _overconfident(n, temperature, seed=0, classes=5):
    """Labels drawn from softmax(logits); predictions softmax(logits * temperature) (over-confident)."""
    rng = np.random.default_rng(seed)
    logits = 1.5 * rng.normal(size=(n, classes))
    true_probs = softmax(logits, axis=1)
    labels = (rng.random((n, 1)) > np.cumsum(true_probs, axis=1)).sum(axis=1)
    return softmax(logits * temperature, axis=1), np.minimum(labels, classes - 1)


def test_fit_temperature_recovers_a_known_temperature():
    probs, labels = _overconfident(5000, 3.0)
    temperature = fit_temperature(probs, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    ece_before = expected_calibration_error(probs, labels)
    ece_after = expected_calibration_error(apply_temperature(probs, temperature), labels)
    assert ece_after < 0.5 * ece_before


def test_fit_temperature_of_a_calibrated_model_is_about_one():
    probs, labels = _overconfident(3000, 1.0, seed=1)
    assert fit_temperature(probs, labels) == pytest.approx(1.0, rel=0.1)


def test_apply_temperature_one_is_identity_and_keeps_argmax():
    probs = softmax(np.random.default_rng(2).normal(size=(20, 4)), axis=1)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, rtol=1e-12, atol=1e-12)
    softened = apply_temperature(probs, 4.0)
    np.testing.assert_allclose(softened.sum(axis=1), 1.0)
    np.testing.assert_array_equal(softened.argmax(axis=1), probs.argmax(axis=1))
    assert np.all(softened.max(axis=1) < probs.max(axis=1))


def test_expected_calibration_error_by_hand():
    # Each confidence in its own bin: ECE = mean |correct - confidence|.
    assert expected_calibration_error(PROBS, LABELS) == pytest.approx((0.2 + 0.5 + 0.7 + 0.1) / 4)
    # One bin: |accuracy 3/4 - mean confidence 0.725|.
    assert expected_calibration_error(PROBS, LABELS, n_bins=1) == pytest.approx(0.025)


def test_open_set_metrics_by_hand():
    result = open_set_metrics(LABELS, PROBS, threshold=0.6, class_names=NAMES)
    json.dumps(result)  # JSON-serialisable as is
    assert result.pop("per_class_unknown_rate") == {"humpback": 0.5, "orca": None, "sperm": 0.0}
    assert result == pytest.approx({
        "temperature": 1.0, "threshold": 0.6, "num_clips": 4,
        "accuracy": 0.75, "unknown_rate": 0.25, "accepted": 3,
        "accuracy_accepted": 2 / 3, "accuracy_with_unknown": 0.5, "ece": 0.375,
    })
    by_index = open_set_metrics(LABELS, PROBS, threshold=0.6)
    assert by_index["per_class_unknown_rate"] == {"0": 0.5, "1": None, "2": 0.0}


def test_open_set_metrics_applies_the_temperature():
    # At T=3 the confidences drop to 0.5, 0.385, 0.459, 0.567: only clip 3 stays over 0.55.
    result = open_set_metrics(LABELS, PROBS, threshold=0.55, temperature=3.0)
    assert result["temperature"] == 3.0
    assert result["accepted"] == 1 and result["accuracy_accepted"] == 1.0
    assert result["accuracy"] == 0.75  # the argmax does not change


def test_open_set_metrics_threshold_extremes():
    none_unknown = open_set_metrics(LABELS, PROBS, threshold=0.0)
    assert none_unknown["unknown_rate"] == 0.0 and none_unknown["accepted"] == 4
    assert none_unknown["accuracy_accepted"] == none_unknown["accuracy"] == none_unknown["accuracy_with_unknown"]
    all_unknown = open_set_metrics(LABELS, PROBS, threshold=1.0)
    assert all_unknown["unknown_rate"] == 1.0 and all_unknown["accepted"] == 0
    assert all_unknown["accuracy_accepted"] is None and all_unknown["accuracy_with_unknown"] == 0.0
    json.dumps(all_unknown)


def test_predict_with_unknown():
    assert predict_with_unknown(PROBS, threshold=0.6, class_names=NAMES) == ["humpback", "unknown", "orca", "sperm"]
    calibrated = predict_with_unknown(PROBS, threshold=0.55, temperature=3.0, class_names=NAMES)
    assert calibrated == ["unknown"] * 3 + ["sperm"]
    assert predict_with_unknown(PROBS, threshold=0.0, class_names=NAMES, unknown_label="?") == [
        "humpback", "humpback", "orca", "sperm"]


@pytest.mark.parametrize("probs, labels, match", [
    (PROBS[:1], LABELS[:1], "at least 2 examples"),
    (PROBS[:, 0], LABELS, "probs must be"),
    (np.log(PROBS), LABELS, r"\[0, 1\]"),
    (PROBS * 2, LABELS, "probabilities"),
    (PROBS * 0.5, LABELS, "sum to 1"),
    (np.where(PROBS == 0.8, np.nan, PROBS), LABELS, "finite"),
    (PROBS, LABELS[:3], "one label per row"),
    (PROBS, LABELS + 1, r"in \[0, 3\)"),
    (PROBS, LABELS - 1, r"in \[0, 3\)"),
    (PROBS, LABELS.astype(float), "integer"),
])
def test_fit_temperature_rejects_bad_inputs(probs, labels, match):
    with pytest.raises(ValueError, match=match):
        fit_temperature(probs, labels)


def test_bad_arguments_raise():
    for temperature in (0.0, -1.0, float("nan"), None):
        with pytest.raises(ValueError, match="temperature"):
            apply_temperature(PROBS, temperature)
    for threshold in (-0.1, 1.5, None):
        with pytest.raises(ValueError, match="threshold"):
            open_set_metrics(LABELS, PROBS, threshold=threshold)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(PROBS, LABELS, n_bins=0)
    with pytest.raises(ValueError, match="class_names"):
        open_set_metrics(LABELS, PROBS, threshold=0.5, class_names=NAMES[:2])
    with pytest.raises(ValueError, match="class_names"):
        predict_with_unknown(PROBS, threshold=0.5, class_names=["humpback", "unknown", "sperm"])
    with pytest.raises(ValueError, match="class_names"):
        predict_with_unknown(PROBS, threshold=0.5, class_names=None)
    with pytest.raises(ValueError, match="at least 1"):
        open_set_metrics(np.zeros(0, int), np.zeros((0, 3)), threshold=0.5)
