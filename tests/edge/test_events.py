"""The window-to-event merger shared by scan, the event evaluation and the buoy."""

from __future__ import annotations

import numpy as np
import pytest

import argparse

from mammalnet.card import ModelCard
from mammalnet.edge.events import (Event, EventMerger, default_ignored, detection_thresholds, merge_events,
                                   resolve_thresholds, threshold_arg)

NAMES = ["background", "upcall", "gunshot"]


def _probs(rows):
    return np.array(rows, np.float32)


def test_consecutive_windows_merge_into_one_event_with_max_and_mean():
    starts = np.arange(6) * 1.0  # 2-s windows every 1 s
    probs = _probs([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.1, 0.6, 0.3], [0.3, 0.7, 0.0], [0.9, 0.1, 0.0],
                    [0.95, 0.05, 0.0]])
    events = merge_events(starts, probs, NAMES, 2.0, 0.5, ignore=["background"])
    assert events == [Event("upcall", 1.0, 5.0, pytest.approx(0.8), pytest.approx(0.7), 3)]


def test_a_gap_splits_events_unless_merge_gap_covers_it():
    starts = np.arange(8) * 2.0  # back-to-back 2-s windows
    up = [0.9 if i in (0, 1, 4) else 0.0 for i in range(8)]
    probs = np.stack([1 - np.array(up), np.array(up), np.zeros(8)], axis=1)
    split = merge_events(starts, probs, NAMES, 2.0, 0.5, ignore=["background"])
    assert [(e.begin_s, e.end_s, e.windows) for e in split] == [(0.0, 4.0, 2), (8.0, 10.0, 1)]
    joined = merge_events(starts, probs, NAMES, 2.0, 0.5, merge_gap_s=4.0, ignore=["background"])
    assert [(e.begin_s, e.end_s, e.windows) for e in joined] == [(0.0, 10.0, 3)]


def test_classes_merge_independently_and_per_class_thresholds_apply():
    starts = np.arange(3) * 1.0
    probs = _probs([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    events = merge_events(starts, probs, NAMES, 1.0, {"upcall": 0.4, "gunshot": 0.6}, ignore=["background"])
    assert [e.label for e in events] == ["upcall"]
    both = merge_events(starts, probs, NAMES, 1.0, 0.5, ignore=["background"])
    assert sorted(e.label for e in both) == ["gunshot", "upcall"]
    assert all((e.begin_s, e.end_s) == (0.0, 2.0) for e in both)


def test_streaming_in_any_grouping_gives_the_same_events():
    rng = np.random.default_rng(3)
    starts = np.arange(400) * 0.5
    probs = rng.dirichlet([0.3, 0.3, 0.3], size=400)
    whole = merge_events(starts, probs, NAMES, 2.0, 0.6, merge_gap_s=0.5, ignore=["background"])
    assert len(whole) > 5
    for sizes in ([1] * 400, [7, 93, 300], [399, 1]):
        merger = EventMerger(NAMES, 2.0, 0.6, merge_gap_s=0.5, ignore=["background"])
        got, at = [], 0
        for size in sizes:
            got += merger.push(starts[at:at + size], probs[at:at + size])
            at += size
        got += merger.flush()
        assert sorted(got, key=lambda e: (e.begin_s, e.label)) == whole


def test_an_event_is_emitted_as_soon_as_no_later_window_can_extend_it():
    merger = EventMerger(NAMES, 2.0, 0.5, ignore=["background"])
    assert merger.push([0.0], _probs([[0.0, 0.9, 0.0]])) == []  # still open: the next window may touch it
    assert merger.push([2.0], _probs([[1.0, 0.0, 0.0]])) == []  # touches the end: could still have joined
    finished = merger.push([2.5], _probs([[1.0, 0.0, 0.0]]))
    assert [(e.label, e.begin_s, e.end_s) for e in finished] == [("upcall", 0.0, 2.0)]
    assert merger.flush() == []


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="window_s"):
        EventMerger(NAMES, 0.0)
    with pytest.raises(ValueError, match="merge_gap_s"):
        EventMerger(NAMES, 1.0, merge_gap_s=-1)
    with pytest.raises(ValueError, match="ignore names classes.*'noise'"):
        EventMerger(NAMES, 1.0, ignore=["noise"])
    with pytest.raises(ValueError, match=r"thresholds name classes.*'whistle'"):
        resolve_thresholds(NAMES, {"whistle": 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        resolve_thresholds(NAMES, 1.5)
    merger = EventMerger(NAMES, 1.0)
    with pytest.raises(ValueError, match="probs must be"):
        merger.push([0.0, 1.0], _probs([[0.1, 0.2, 0.7]]))
    merger.push([5.0], _probs([[0.1, 0.2, 0.7]]))
    with pytest.raises(ValueError, match="must not decrease"):
        merger.push([4.0], _probs([[0.1, 0.2, 0.7]]))


def test_thresholds_default_and_mapping():
    assert resolve_thresholds(NAMES, None).tolist() == [0.5, 0.5, 0.5]
    assert resolve_thresholds(NAMES, {"gunshot": 0.9}, default=0.3).tolist() == [0.3, 0.3, 0.9]


def test_threshold_arguments_over_the_model_card():
    audio = ModelCard.create(sample_rate_hz=1000, window_samples=100, class_names=NAMES, thresholds={"upcall": 0.9})
    assert threshold_arg("0.4") == (None, 0.4) and threshold_arg("upcall=0.8") == ("upcall", 0.8)
    for bad in ("loud", "=0.5", "upcall=1.5", "upcall=high"):
        with pytest.raises(argparse.ArgumentTypeError, match="P or CLASS=P"):
            threshold_arg(bad)
    assert detection_thresholds(audio) == {"background": 0.5, "upcall": 0.9, "gunshot": 0.5}
    assert detection_thresholds(audio, 0.3, {"gunshot": 0.7}) == {"background": 0.3, "upcall": 0.3, "gunshot": 0.7}
    with pytest.raises(ValueError, match="'orca'"):
        detection_thresholds(audio, None, {"orca": 0.5})


def test_default_ignored_classes():
    def card(names, background=None):
        return ModelCard.create(sample_rate_hz=1000, window_samples=100, class_names=names,
                                background_classes=background)

    assert default_ignored(card(NAMES)) == ["background"]
    assert default_ignored(card(["upcall", "gunshot"])) == []
    assert default_ignored(card(NAMES, [])) == []
    assert default_ignored(card(NAMES, ["gunshot"])) == ["gunshot"]
    with pytest.raises(ValueError, match="background_classes"):
        card(NAMES, ["noise"])
