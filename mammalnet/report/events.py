"""Event-level evaluation: detections matched to truth events; precision, recall, F1, false positives/hour.

Matching. A detection and a truth event match when they have the same label, lie in the same
recording and overlap in time with

    overlap / min(detection duration, truth duration) >= min_overlap   (and overlap > 0),

so a short call fully inside a long detection counts as found whatever the detection's length. A
zero-length truth event (a point annotation) matches a detection that contains the point. Matching
is one-to-one and greedy by score: detections are taken from the highest score down, each taking
the unmatched truth event it overlaps most (ties: the earliest). A matched detection is a true
positive; an unmatched detection a false positive; an unmatched truth event a false negative.
(Hand-written: sklearn scores labelled items, not intervals in time.)

Metrics per class and overall (micro: counts summed over classes): precision = TP / (TP + FP),
recall = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN), undefined (NaN) when the denominator is
0; false positives per hour of the audio evaluated.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from mammalnet.report.plots import new_figure

OVERALL = "overall"
METRIC_COLUMNS = ("threshold", "class", "detections", "truth", "tp", "fp", "fn", "precision", "recall", "f1",
                  "fp_per_hour")
EVENT_COLUMNS = ("recording", "label", "begin_s", "end_s")


def overlap_ratios(begin_s: float, end_s: float, truth_begin: np.ndarray, truth_end: np.ndarray) -> np.ndarray:
    """overlap / min(duration) of one interval against many; 0 where they do not overlap.

    A zero-length interval inside (or at the edge of) the other gives 1.
    """
    overlap = np.minimum(end_s, truth_end) - np.maximum(begin_s, truth_begin)
    shortest = np.minimum(end_s - begin_s, truth_end - truth_begin)
    point = (shortest <= 0) & (overlap >= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(overlap > 0, overlap / np.where(shortest > 0, shortest, 1.0), 0.0)
    return np.where(point, 1.0, ratio)


def match_events(detections: pd.DataFrame, truth: pd.DataFrame, *, min_overlap: float = 0.1) -> tuple[np.ndarray,
                                                                                                        np.ndarray]:
    """One-to-one greedy matching by score (see the module docstring).

    Args:
        detections: rows with recording, label, begin_s, end_s, score.
        truth: rows with recording, label, begin_s, end_s.
        min_overlap: in [0, 1].

    Returns:
        (matched [len(detections)] bool, truth_matched [len(truth)] bool), in the frames' row order.

    Raises:
        ValueError: min_overlap outside [0, 1], or missing columns.
    """
    if not 0.0 <= min_overlap <= 1.0:
        raise ValueError(f"min_overlap must be in [0, 1]. Received: min_overlap={min_overlap}")
    for name, frame, columns in (("detections", detections, (*EVENT_COLUMNS, "score")),
                                 ("truth", truth, EVENT_COLUMNS)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks columns {missing}. Received columns: {list(frame.columns)}")
    matched = np.zeros(len(detections), bool)
    truth_matched = np.zeros(len(truth), bool)
    t_begin, t_end = truth["begin_s"].to_numpy(float), truth["end_s"].to_numpy(float)
    # in time order, so that of equally overlapped truth events the earliest is taken
    truth_groups = {key: rows[np.argsort(t_begin[rows], kind="stable")]
                    for key, rows in truth.groupby(["recording", "label"], sort=False).indices.items()}
    d_begin, d_end = detections["begin_s"].to_numpy(float), detections["end_s"].to_numpy(float)
    score = detections["score"].to_numpy(float)
    for key, rows in detections.groupby(["recording", "label"], sort=False).indices.items():
        candidates = truth_groups.get(key)
        if candidates is None:
            continue
        taken = np.zeros(len(candidates), bool)
        # highest score first; equal scores: the earlier detection first
        for row in sorted(rows, key=lambda r: (-score[r], d_begin[r])):
            ratio = overlap_ratios(d_begin[row], d_end[row], t_begin[candidates], t_end[candidates])
            ratio[taken] = -1.0
            best = int(np.argmax(ratio))
            if ratio[best] > 0 and ratio[best] >= min_overlap:
                taken[best] = True
                matched[row] = True
        truth_matched[candidates[taken]] = True
    return matched, truth_matched


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def event_metrics(detections: pd.DataFrame, truth: pd.DataFrame, classes: Sequence[str], hours: float, *,
                  min_overlap: float = 0.1) -> pd.DataFrame:
    """Precision, recall, F1 and false positives per hour, per class and overall, at one operating point.

    Args:
        detections, truth: as `match_events`.
        classes: the classes to report (rows in this order, then "overall" over them); detections
            and truth of other labels are left out.
        hours: audio evaluated, hours (> 0).

    Returns:
        One row per class and one "overall": METRIC_COLUMNS without "threshold".

    Raises:
        ValueError: hours not positive, or as `match_events`.
    """
    if not hours > 0:
        raise ValueError(f"hours of audio evaluated must be positive. Received: hours={hours}")
    detections = detections[detections["label"].isin(classes)].reset_index(drop=True)
    truth = truth[truth["label"].isin(classes)].reset_index(drop=True)
    matched, truth_matched = match_events(detections, truth, min_overlap=min_overlap)
    rows = []
    for name in [*classes, OVERALL]:
        det = np.ones(len(detections), bool) if name == OVERALL else (detections["label"] == name).to_numpy()
        tru = np.ones(len(truth), bool) if name == OVERALL else (truth["label"] == name).to_numpy()
        tp = int(matched[det].sum())
        fp, fn = int(det.sum()) - tp, int(tru.sum()) - int(truth_matched[tru].sum())
        rows.append({"class": name, "detections": int(det.sum()), "truth": int(tru.sum()), "tp": tp, "fp": fp, "fn": fn,
                     "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
                     "f1": _ratio(2 * tp, 2 * tp + fp + fn), "fp_per_hour": fp / hours})
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS[1:]))


def best_f1(table: pd.DataFrame, name: str = OVERALL) -> dict | None:
    """The row of `table` (METRIC_COLUMNS) with the highest F1 for class `name`, among numeric
    thresholds (the lowest threshold on ties); None when no F1 is defined."""
    rows = table[(table["class"] == name) & table["threshold"].map(lambda t: isinstance(t, float))]
    rows = rows[rows["f1"].notna()]
    if rows.empty:
        return None
    return rows.sort_values(["f1", "threshold"], ascending=[False, True], kind="stable").iloc[0].to_dict()


def plot_pr_curves(table: pd.DataFrame, classes: Sequence[str], *, title: str = "Event precision-recall"):
    """Precision against recall over the thresholds, one line per class and a bold overall line; the
    best-F1 point of the overall curve is marked. Operating points without a defined precision
    (no detections) are left out.

    Returns:
        matplotlib Figure.
    """
    fig = new_figure(6.5, 5.0)
    ax = fig.add_subplot()
    numeric = table[table["threshold"].map(lambda t: isinstance(t, float))]
    for name in [*classes, OVERALL]:
        rows = numeric[(numeric["class"] == name) & numeric["precision"].notna()].sort_values("threshold")
        if rows.empty:
            continue
        style = {"linewidth": 2.5, "color": "black"} if name == OVERALL else {"linewidth": 1.2, "alpha": 0.8}
        ax.plot(rows["recall"], rows["precision"], marker="o", markersize=3, label=name, **style)
    best = best_f1(table)
    if best is not None and not math.isnan(best["precision"]):
        ax.plot([best["recall"]], [best["precision"]], marker="*", markersize=14, color="tab:red", linestyle="none",
                label=f"best F1 {best['f1']:.3f} at {best['threshold']:.2f}")
    scan_rows = table[(table["threshold"] == "scan") & (table["class"] == OVERALL) & table["precision"].notna()]
    if not scan_rows.empty:
        ax.plot(scan_rows["recall"], scan_rows["precision"], marker="s", markersize=8, color="tab:blue",
                linestyle="none", label="scan's own thresholds")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("recall (truth events found)")
    ax.set_ylabel("precision (detections that are calls)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return fig


__all__ = ["EVENT_COLUMNS", "METRIC_COLUMNS", "OVERALL", "best_f1", "event_metrics", "match_events",
           "overlap_ratios", "plot_pr_curves"]
