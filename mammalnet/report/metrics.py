"""Evaluation metrics (scikit-learn) and the report folder of the artifacts contract.

``write_report`` leaves ``metrics.json, confusion_matrix.png, roc.png, curves.png,
classification_report.txt, errors.csv`` in one folder (see docs/architecture.md, "Artifacts contract").
"""

from __future__ import annotations

import json
import math
import os
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, classification_report,
                             confusion_matrix, f1_score, precision_recall_fscore_support,
                             roc_auc_score)
from sklearn.preprocessing import label_binarize

from mammalnet import files
from mammalnet.report import plots

REPORT_FILES = ("metrics.json", "confusion_matrix.png", "roc.png", "curves.png",
                "classification_report.txt", "errors.csv")


def aggregate_windows(window_probs: np.ndarray, clip_ids: Sequence) -> tuple[np.ndarray, list]:
    """Averages window probabilities per clip.

    Args:
        window_probs: float [n_windows, C].
        clip_ids: n_windows ids (any hashable: path, int); windows of one clip need not be adjacent.

    Returns:
        ``(clip_probs [n_clips, C], ids)``: ``ids`` are the unique clip ids in first-seen order and
        ``clip_probs[i]`` is the mean over the windows of ``ids[i]``.

    Raises:
        ValueError: ``window_probs`` is not 2-D or its length differs from ``clip_ids``.
    """
    window_probs = np.asarray(window_probs, dtype=np.float64)
    ids = list(clip_ids)
    if window_probs.ndim != 2 or window_probs.shape[0] != len(ids):
        raise ValueError("window_probs must be [n_windows, C] with one clip id per window. "
                         f"Received: window_probs.shape={window_probs.shape}, len(clip_ids)={len(ids)}")
    codes, uniques = pd.factorize(pd.Series(ids, dtype=object), sort=False)
    n_clips = len(uniques)
    sums = np.zeros((n_clips, window_probs.shape[1]), dtype=np.float64)
    np.add.at(sums, codes, window_probs)
    counts = np.bincount(codes, minlength=n_clips)[:, None]
    return (sums / counts).astype(np.float32), list(uniques)


def _check_inputs(y_true, y_prob, class_names) -> tuple[np.ndarray, np.ndarray, list[str]]:
    y_true = np.asarray(y_true)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    names = [str(n) for n in class_names]
    if y_true.ndim != 1 or y_prob.ndim != 2 or y_prob.shape != (y_true.shape[0], len(names)):
        raise ValueError("y_true must be [N] class indices and y_prob [N, C] with C = len(class_names). "
                         f"Received: y_true.shape={y_true.shape}, y_prob.shape={y_prob.shape}, "
                         f"len(class_names)={len(names)}")
    if y_true.shape[0] == 0:
        raise ValueError("no examples to evaluate. Received: y_true.shape=(0,)")
    if not np.issubdtype(y_true.dtype, np.integer):
        if not np.all(np.equal(np.mod(y_true, 1), 0)):
            raise ValueError(f"y_true must hold integer class indices. Received: y_true[:5]={y_true[:5]}")
        y_true = y_true.astype(np.int64)
    bad = (y_true < 0) | (y_true >= len(names))
    if bad.any():
        raise ValueError(f"y_true holds indices outside [0, {len(names)}). "
                         f"Received: y_true values={sorted(set(y_true[bad].tolist()))}")
    if not np.all(np.isfinite(y_prob)):
        raise ValueError(f"y_prob holds {int((~np.isfinite(y_prob)).sum())} non-finite values (NaN/inf)")
    return y_true.astype(np.int64), y_prob, names


def _roc_auc_ovr(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[float | None, str | None, list[int]]:
    """Macro one-vs-rest AUC over the classes present in y_true: (auc, reason-if-null, classes used)."""
    present = np.unique(y_true)
    if len(present) < 2:
        return None, (f"roc_auc_ovr needs at least 2 classes in y_true; found {len(present)}"), \
            present.tolist()
    # sklearn's multi_class="ovr" path requires every class column and rows summing to 1; binarising
    # and keeping only present columns gives the same macro one-vs-rest average without that.
    indicator = label_binarize(y_true, classes=np.arange(y_prob.shape[1]))
    if y_prob.shape[1] == 2:  # label_binarize returns one column for two classes
        indicator = np.column_stack([1 - indicator[:, 0], indicator[:, 0]])
    auc = roc_auc_score(indicator[:, present], y_prob[:, present], average="macro")
    return float(auc), None, present.tolist()


def minority_recall(per_class: dict, train_counts: dict[str, int] | None) -> dict:
    """Mean recall of the rarest classes: the quarter (at least one) of the evaluated classes with the
    fewest training clips (ties broken by name).

    Args:
        per_class: {name: {"recall", "support", ...}}; a class is evaluated when its support > 0.
        train_counts: training clips per class name; None ranks by evaluated support instead.

    Returns:
        {"minority_recall": float or None, "minority_classes": [names], "minority_basis": str}.
    """
    evaluated = sorted(name for name, values in per_class.items() if values.get("support", 0) > 0)
    basis = "training clips" if train_counts is not None else "evaluated clips (no training counts given)"
    counts = train_counts if train_counts is not None else {n: per_class[n]["support"] for n in evaluated}
    if not evaluated:
        return {"minority_recall": None, "minority_classes": [], "minority_basis": basis}
    rarest = sorted(evaluated, key=lambda n: (counts.get(n, 0), n))[:max(1, math.ceil(len(evaluated) / 4))]
    return {"minority_recall": float(np.mean([per_class[n]["recall"] for n in rarest])),
            "minority_classes": rarest, "minority_basis": basis}


def compute_metrics(y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str], *,
                    split_protocol: dict, train_counts: dict[str, int] | None = None) -> dict:
    """Classification metrics with scikit-learn; the prediction is ``argmax(y_prob)``.

    Classes absent from ``y_true`` keep a ``per_class`` entry with support 0. ``macro_f1`` averages
    over the classes in ``y_true`` or predicted (sklearn's default label set), so a class that is
    neither present nor predicted does not count as an F1 of 0. ``balanced_accuracy`` is the mean
    recall over classes in ``y_true``.

    Args:
        y_true: int class indices [N].
        y_prob: probabilities (or scores) [N, C].
        class_names: C names in class-index order.
        split_protocol: how the evaluated split was made; stored as given.
        train_counts: training clips per class name, which ranks the classes for minority_recall.

    Returns:
        A JSON-serialisable dict: accuracy, balanced_accuracy, macro_f1, per_class
        {name: {precision, recall, f1, support}}, minority_recall / minority_classes (see
        `minority_recall`), roc_auc_ovr (null + roc_auc_ovr_reason when
        < 2 classes are present), roc_auc_ovr_classes, absent_classes, confusion_matrix,
        num_examples, split_protocol, class_names.

    Raises:
        ValueError: shapes disagree, indices are out of range, or probabilities are not finite.
    """
    y_true, y_prob, names = _check_inputs(y_true, y_prob, class_names)
    y_pred = y_prob.argmax(axis=1)
    all_labels = np.arange(len(names))
    evaluated = np.union1d(y_true, y_pred)

    with warnings.catch_warnings():
        # Undefined precision/recall are reported as 0 (zero_division=0); balanced accuracy warns
        # when a predicted class is absent from y_true, which is expected on small splits.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=all_labels, zero_division=0)
        balanced = balanced_accuracy_score(y_true, y_pred)
        macro_f1 = f1_score(y_true, y_pred, labels=evaluated, average="macro", zero_division=0)
    auc, auc_reason, auc_classes = _roc_auc_ovr(y_true, y_prob)

    metrics = {
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy": balanced,
        "macro_f1": macro_f1,
        "per_class": {
            name: {"precision": precision[k], "recall": recall[k], "f1": f1[k], "support": support[k]}
            for k, name in enumerate(names)
        },
        **minority_recall({name: {"recall": recall[k], "support": support[k]} for k, name in enumerate(names)},
                          train_counts),
        "roc_auc_ovr": auc,
        "roc_auc_ovr_classes": [names[k] for k in auc_classes],
        "absent_classes": [names[k] for k in all_labels if support[k] == 0],
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=all_labels),
        "num_examples": len(y_true),
        "split_protocol": split_protocol,
        "class_names": names,
    }
    if auc_reason is not None:
        metrics["roc_auc_ovr_reason"] = auc_reason
    return to_jsonable(metrics)


def to_jsonable(value: Any) -> Any:
    """numpy scalars/arrays -> Python types, NaN/inf -> None, tuples -> lists, recursively."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Writes `value` as strict JSON (numpy types converted, NaN/inf as null), atomically (`files.write_json`)."""
    files.write_json(path, to_jsonable(value))


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in `path`, or None when the file is missing, unreadable or not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _save(fig, path: str) -> None:
    fig.savefig(path, dpi=110)


def write_report(report_dir: str | os.PathLike, *, y_true: np.ndarray, y_prob: np.ndarray,
                 class_names: Sequence[str], clip_paths: Sequence[str], split_protocol: dict,
                 history: dict | None = None, extra: dict | None = None,
                 train_counts: dict[str, int] | None = None) -> dict:
    """Writes the report folder of the artifacts contract.

    Files: ``metrics.json`` (``compute_metrics`` + ``extra``), ``confusion_matrix.png``, ``roc.png``,
    ``curves.png`` (says "no training history" when ``history`` is None/empty),
    ``classification_report.txt`` and ``errors.csv`` (one row per misclassified clip: path,
    true_label, pred_label, p_true, p_pred, prob_<class> columns; sorted by p_pred descending).

    Args:
        report_dir: folder to write; created if missing.
        y_true: int class indices [N].
        y_prob: probabilities [N, C].
        class_names: C names.
        clip_paths: N clip paths (or ids), aligned with ``y_true``.
        split_protocol: stored in metrics.json as given.
        history: ``keras.callbacks.History.history`` (a History object also works).
        extra: keys merged into metrics.json (e.g. TFLite parity, timings); they override.
        train_counts: training clips per class name (for minority_recall).

    Returns:
        The metrics dict as written to metrics.json.

    Raises:
        ValueError: inputs disagree in length (see ``compute_metrics``).
    """
    metrics = compute_metrics(y_true, y_prob, class_names, split_protocol=split_protocol, train_counts=train_counts)
    y_true, y_prob, names = _check_inputs(y_true, y_prob, class_names)
    paths = [os.fspath(p) if isinstance(p, os.PathLike) else str(p) for p in clip_paths]
    if len(paths) != len(y_true):
        raise ValueError("clip_paths must have one entry per example. "
                         f"Received: len(clip_paths)={len(paths)}, len(y_true)={len(y_true)}")
    if extra:
        metrics.update(to_jsonable(dict(extra)))

    report_dir = os.fspath(report_dir)
    os.makedirs(report_dir, exist_ok=True)
    write_json(os.path.join(report_dir, "metrics.json"), metrics)

    _save(plots.plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), names,
                                      title=f"confusion matrix — {len(y_true)} examples"),
          os.path.join(report_dir, "confusion_matrix.png"))
    _save(plots.plot_roc(y_true, y_prob, names), os.path.join(report_dir, "roc.png"))
    _save(plots.plot_curves(history), os.path.join(report_dir, "curves.png"))

    y_pred = y_prob.argmax(axis=1)
    # Same label set as metrics.json macro_f1, so the "macro avg" line agrees with it.
    evaluated = np.union1d(y_true, y_pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        text = classification_report(y_true, y_pred, labels=evaluated,
                                     target_names=[names[k] for k in evaluated], digits=4,
                                     zero_division=0)
    unseen = [names[k] for k in range(len(names)) if k not in set(evaluated.tolist())]
    if unseen:
        text += f"\nclasses neither in y_true nor predicted (support 0, not averaged): {', '.join(unseen)}\n"
    with open(os.path.join(report_dir, "classification_report.txt"), "w", encoding="utf-8") as f:
        f.write(text)

    rows = np.flatnonzero(y_pred != y_true)
    errors = pd.DataFrame({
        "path": [paths[i] for i in rows],
        "true_label": [names[y_true[i]] for i in rows],
        "pred_label": [names[y_pred[i]] for i in rows],
        "p_true": y_prob[rows, y_true[rows]],
        "p_pred": y_prob[rows, y_pred[rows]],
    })
    for k, name in enumerate(names):
        errors[f"prob_{name}"] = y_prob[rows, k]
    errors = errors.sort_values("p_pred", ascending=False, kind="stable")
    errors.to_csv(os.path.join(report_dir, "errors.csv"), index=False, float_format="%.6g")
    return metrics
