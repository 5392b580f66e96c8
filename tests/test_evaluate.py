"""Event evaluation: matching rules, and a hand-made scan whose precision/recall/F1/FP-per-hour are known."""

import json

import numpy as np
import pandas as pd
import pytest

from mammalnet import evaluate
from mammalnet.report.events import event_metrics, match_events, overlap_ratios

CLASSES = ["background", "upcall", "gunshot"]
HOUR_S = 3600.0
TRUTH = [("upcall", 100.0, 102.0), ("upcall", 500.0, 501.0), ("upcall", 1000.0, 1001.0),
         ("gunshot", 2000.0, 2000.5), ("background", 10.0, 20.0)]
# window start -> (class, probability) of the 1-s windows every 1 s of a one-hour recording
PEAKS = {100: ("upcall", 0.92), 101: ("upcall", 0.92), 500: ("upcall", 0.72), 3000: ("upcall", 0.62),
         1000: ("upcall", 0.22), 2000: ("gunshot", 0.83), 2500: ("gunshot", 0.57)}


def _frame(rows, score=False):
    columns = ["recording", "label", "begin_s", "end_s"] + (["score"] if score else [])
    return pd.DataFrame(rows, columns=columns)


def test_overlap_is_relative_to_the_shorter_event():
    ratios = overlap_ratios(0.0, 10.0, np.array([9.5, 10.0, 3.0, 4.0]), np.array([10.5, 11.0, 3.0, 4.5]))
    # half of the 1-s call; touching only; a point inside; a call fully inside
    assert ratios.tolist() == [0.5, 0.0, 1.0, 1.0]


def test_min_overlap_decides_a_match():
    detections = _frame([("r", "a", 0.0, 10.0, 0.9)], score=True)
    truth = _frame([("r", "a", 9.5, 10.5)])
    assert match_events(detections, truth, min_overlap=0.5)[0].tolist() == [True]
    assert match_events(detections, truth, min_overlap=0.6)[0].tolist() == [False]
    # other label or other recording: no match
    assert not match_events(detections, _frame([("r", "b", 9.5, 10.5)]))[0].any()
    assert not match_events(detections, _frame([("q", "a", 9.5, 10.5)]))[0].any()


def test_matching_is_one_to_one_and_greedy_by_score():
    # two detections on one call: the higher score takes it, the other is a false positive
    detections = _frame([("r", "a", 0.0, 2.0, 0.6), ("r", "a", 1.0, 3.0, 0.9)], score=True)
    matched, truth_matched = match_events(detections, _frame([("r", "a", 1.0, 2.0)]))
    assert matched.tolist() == [False, True] and truth_matched.tolist() == [True]
    # one detection over two calls: one found, one missed
    table = event_metrics(_frame([("r", "a", 0.0, 10.0, 0.9)], score=True),
                          _frame([("r", "a", 1.0, 2.0), ("r", "a", 5.0, 6.0)]), ["a"], 1.0)
    overall = table.set_index("class").loc["overall"]
    assert (overall["tp"], overall["fp"], overall["fn"]) == (1, 0, 1)


@pytest.fixture
def scan_dir(tmp_path):
    """A scan folder made by hand: one 1-h recording, its saved scores and its detections at 0.5."""
    out = tmp_path / "scan"
    (out / "scores").mkdir(parents=True)
    recording = str(tmp_path / "audio" / "rec_001.wav")
    starts = np.arange(3600, dtype=np.float64)
    probs = np.zeros((3600, 3), np.float32)
    probs[:, 1:] = 0.01
    for start, (label, p) in PEAKS.items():
        probs[start, CLASSES.index(label)] = p
    probs[:, 0] = 1 - probs[:, 1:].sum(axis=1)
    with open(out / "scores" / "rec_001.npz", "wb") as f:
        np.savez(f, starts_s=starts, probs=probs, class_names=np.array(CLASSES), window_s=np.float64(1.0))
    detections = [(100, 102, "upcall", 0.92), (500, 501, "upcall", 0.72), (2000, 2001, "gunshot", 0.83),
                  (2500, 2501, "gunshot", 0.57), (3000, 3001, "upcall", 0.62)]
    pd.DataFrame([{"file": recording, "begin_s": b, "end_s": e, "low_hz": 0.0, "high_hz": 1000.0, "label": label,
                   "score": s, "mean_score": s, "windows": e - b} for b, e, label, s in detections]
                 ).to_csv(out / "detections.csv", index=False)
    summary = {"model": {"class_names": CLASSES, "window_s": 1.0},
               "settings": {"hop_s": 1.0, "merge_gap_s": 0.0, "ignore": ["background"]},
               "files": [{"file": recording, "name": "rec_001", "duration_s": HOUR_S, "scores": "scores/rec_001.npz"},
                         {"file": str(tmp_path / "audio" / "unannotated.wav"), "name": "unannotated",
                          "duration_s": HOUR_S, "scores": None}]}
    (out / "scan.json").write_text(json.dumps(summary))
    return out


def _write_truth(path, rows, begin_file=None):
    table = pd.DataFrame([{"Selection": i, "View": view, "Channel": 1, "Begin Time (s)": b, "End Time (s)": e,
                           "Species": label} for i, (label, b, e) in enumerate(rows, start=1)
                          for view in ("Waveform 1", "Spectrogram 1")])  # Raven's row per view
    if begin_file:
        table["Begin File"] = begin_file
        table["File Offset (s)"] = table["Begin Time (s)"]
        # a later file of a sequence: Begin/End Time count from the sequence's start, not the file's
        table[["Begin Time (s)", "End Time (s)"]] += 7200.0
    table.to_csv(path, sep="\t", index=False)
    return path


def _row(result, threshold, name="overall"):
    return next(r for r in result["rows"] if r["threshold"] == threshold and r["class"] == name)


@pytest.mark.parametrize("by_begin_file", [False, True])
def test_known_precision_recall_f1_and_false_positives_per_hour(scan_dir, tmp_path, by_begin_file):
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    if by_begin_file:
        _write_truth(truth_dir / "annotations.selections.txt", TRUTH, begin_file="D:\\buoy\\rec_001.wav")
    else:
        _write_truth(truth_dir / "rec_001.Table.1.selections.txt", TRUTH)
    result = evaluate.evaluate_events(scan_dir, [truth_dir], out_dir=tmp_path / "report")
    assert result["swept"] and result["hours"] == 1.0 and result["truth_events"] == 4  # background left out
    assert result["not_evaluated"] == [str(tmp_path / "audio" / "unannotated.wav")]

    # threshold 0.5: upcall 2 found + 1 false (3000 s), 1000 s missed; gunshot 1 found + 1 false (2500 s)
    for point in ("scan", 0.5):
        up, gun, overall = (_row(result, point, name) for name in ("upcall", "gunshot", "overall"))
        assert (up["tp"], up["fp"], up["fn"]) == (2, 1, 1)
        assert (up["precision"], up["recall"], up["f1"], up["fp_per_hour"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3, 1.0))
        assert (gun["precision"], gun["recall"], gun["fp_per_hour"]) == pytest.approx((0.5, 1.0, 1.0))
        assert (overall["precision"], overall["recall"], overall["f1"], overall["fp_per_hour"]) == \
            pytest.approx((0.6, 0.75, 2 / 3, 2.0))
    # 0.65: both false detections gone; 0.15: the 0.22 call found too
    assert _row(result, 0.65)["f1"] == pytest.approx(6 / 7) and _row(result, 0.65)["fp_per_hour"] == 0.0
    assert (_row(result, 0.15)["tp"], _row(result, 0.15)["fp"], _row(result, 0.15)["fn"]) == (4, 2, 0)
    assert _row(result, 0.85)["f1"] == pytest.approx(2 / 5)
    assert result["best"]["overall"]["threshold"] == 0.65 and result["best"]["overall"]["f1"] == pytest.approx(6 / 7)

    report = tmp_path / "report"
    assert (report / "pr_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stored = json.loads((report / "events.json").read_text())
    assert stored["best"]["overall"]["threshold"] == 0.65 and len(stored["rows"]) == len(result["rows"])
    csv = pd.read_csv(report / "events.csv")
    assert len(csv) == (1 + 19) * 3  # scan + the sweep, x (upcall, gunshot, overall)
    assert "**0.857** at threshold 0.65" in (report / "events.md").read_text()


def test_without_saved_scores_only_the_scans_detections_are_scored(scan_dir, tmp_path):
    (scan_dir / "scores" / "rec_001.npz").unlink()
    _write_truth(tmp_path / "rec_001.selections.txt", TRUTH)
    result = evaluate.evaluate_events(scan_dir, [tmp_path / "rec_001.selections.txt"])
    assert not result["swept"] and {r["threshold"] for r in result["rows"]} == {"scan"}
    assert _row(result, "scan")["f1"] == pytest.approx(2 / 3)
    assert (scan_dir / "evaluation" / "pr_curve.png").is_file()


def test_truth_for_unknown_recordings_is_reported_not_counted(scan_dir, tmp_path, capsys):
    _write_truth(tmp_path / "rec_001.selections.txt", TRUTH)
    _write_truth(tmp_path / "other_site.selections.txt", [("upcall", 1.0, 2.0)])
    rc = evaluate.main(["--events", "--truth", str(tmp_path / "rec_001.selections.txt"),
                        str(tmp_path / "other_site.selections.txt"), "--scan", str(scan_dir), "--thresholds", "0.5",
                        "0.65"])
    captured = capsys.readouterr()
    assert rc == 0
    assert "other_site.selections.txt" in captured.err and "best F1 threshold: 0.65" in captured.out
    result = json.loads((scan_dir / "evaluation" / "events.json").read_text())
    assert result["truth_events"] == 4 and result["thresholds"] == [0.5, 0.65]


def test_without_a_mode_the_usage_error_names_the_modes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--scan", "x"])
    assert exit_info.value.code == 2
    assert "--events" in capsys.readouterr().err


def test_a_folder_that_is_not_a_scan_exits_2(tmp_path, capsys):
    _write_truth(tmp_path / "rec_001.selections.txt", TRUTH)
    assert evaluate.main(["--events", "--truth", str(tmp_path), "--scan", str(tmp_path)]) == 2
    assert "scan.json" in capsys.readouterr().err
