"""Window scores -> detection events, one window at a time. numpy only: the buoy runtime imports it.

A window covers [start_s, start_s + window_s). A class is active in a window when its probability is
at or above the class threshold. Active windows of one class whose spans touch, overlap or lie at most
`merge_gap_s` apart form one event from the first window's start to the last window's end; its score
is the largest window probability and `mean_score` their mean. Classes are merged independently, so
two classes may be detected over the same stretch; ignored classes (a background class) never are.

The same merger serves the scan (block after block), the event evaluation (every threshold on saved
scores) and the buoy (window after window): pushing the windows in any grouping gives the same events.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Mapping, Sequence

import numpy as np

from mammalnet.card import ModelCard
from mammalnet.cli import non_negative_float, positive_float


@dataclasses.dataclass(frozen=True)
class Event:
    """One detection: `label` from begin_s to end_s (seconds from the start of the recording)."""

    label: str
    begin_s: float
    end_s: float
    score: float
    mean_score: float
    windows: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_thresholds(class_names: Sequence[str], thresholds, default: float = 0.5) -> np.ndarray:
    """Per-class thresholds as float64 [C].

    Args:
        class_names: class names in output order.
        thresholds: None (every class at `default`), one number for all classes, or a mapping
            {class_name: threshold}; classes it leaves out get `default`.
        default: the threshold of classes not given one.

    Raises:
        ValueError: a threshold outside [0, 1], or a mapping naming a class that is not in class_names.
    """
    names = list(class_names)
    if thresholds is None:
        values = {}
    elif isinstance(thresholds, Mapping):
        unknown = sorted(set(thresholds) - set(names))
        if unknown:
            raise ValueError(f"thresholds name classes the model does not have: {unknown}; its classes: "
                             f"{names}. Received: thresholds={dict(thresholds)}")
        values = dict(thresholds)
    else:
        values = dict.fromkeys(names, thresholds)
    out = np.array([float(values.get(name, default)) for name in names], np.float64)
    bad = [(n, v) for n, v in zip(names, out) if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"thresholds must lie in [0, 1]. Received: {dict(bad)}")
    return out


def threshold_arg(text: str) -> tuple[str | None, float]:
    """argparse type of --threshold: "P" -> (None, P), "CLASS=P" -> (CLASS, P); P in [0, 1]."""
    name, _, value = text.rpartition("=")
    try:
        p = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be P or CLASS=P with P a number in [0, 1]. Received: {text}") from None
    if not 0.0 <= p <= 1.0 or (text.count("=") and not name):
        raise argparse.ArgumentTypeError(f"must be P or CLASS=P with P in [0, 1]. Received: {text}")
    return (name or None), p


def add_event_arguments(parser: argparse.ArgumentParser, *, hop_help: str) -> None:
    """The flags that turn window scores into events, the same for the scan and the buoy:
    --hop-s, --threshold (repeatable), --merge-gap-s, --ignore-class (repeatable)."""
    parser.add_argument("--hop-s", type=positive_float, default=None, help=hop_help)
    parser.add_argument("--threshold", type=threshold_arg, action="append", default=[], metavar="P|CLASS=P",
                        help="detection threshold for every class (P) or one class (CLASS=P); repeatable "
                             "(default: audio.json thresholds, else 0.5)")
    parser.add_argument("--merge-gap-s", type=non_negative_float, default=0.0,
                        help="detections of a class at most this far apart join one event (default: 0)")
    parser.add_argument("--ignore-class", action="append", default=None, metavar="NAME",
                        help="class never reported; repeatable (default: audio.json background_classes, "
                             "else 'background' if the model has it)")


def detection_thresholds(card: ModelCard, threshold: float | None = None,
                         class_thresholds: Mapping | None = None) -> dict:
    """{class: threshold} for a model: the card's `thresholds` (0.5 for classes it leaves out), all
    replaced by `threshold` when given, then `class_thresholds` {class: p} over them.

    Raises:
        ValueError: a threshold outside [0, 1] or naming a class the model does not have.
    """
    names = list(card.class_names)
    base = {name: card.threshold(name) if threshold is None else float(threshold) for name in names}
    base.update(class_thresholds or {})
    return dict(zip(names, resolve_thresholds(names, base).tolist()))


def default_ignored(card: ModelCard) -> list[str]:
    """The classes a detector never reports: the card's `background_classes`, else a class named
    `background` when the model has one, else none."""
    if card.background_classes is None:
        return ["background"] if "background" in card.class_names else []
    return list(card.background_classes)


class EventMerger:
    """Merges per-window class probabilities into events as the windows stream in.

    Args:
        class_names: class names in output order.
        window_s: window length in seconds (> 0).
        thresholds: see `resolve_thresholds`.
        merge_gap_s: active windows at most this far apart (end of one to start of the next) join one
            event; 0 joins windows that touch or overlap.
        ignore: class names never reported (e.g. a background class).

    Raises:
        ValueError: window_s <= 0, merge_gap_s < 0, an ignored or thresholded name not in class_names.
    """

    def __init__(self, class_names: Sequence[str], window_s: float, thresholds=None, *,
                 merge_gap_s: float = 0.0, ignore: Sequence[str] = ()):
        self.class_names = list(class_names)
        if not window_s > 0:
            raise ValueError(f"window_s must be positive. Received: window_s={window_s}")
        if not merge_gap_s >= 0:
            raise ValueError(f"merge_gap_s must be >= 0. Received: merge_gap_s={merge_gap_s}")
        unknown = sorted(set(ignore) - set(self.class_names))
        if unknown:
            raise ValueError(f"ignore names classes the model does not have: {unknown}; its classes: "
                             f"{self.class_names}")
        self.window_s = float(window_s)
        self.merge_gap_s = float(merge_gap_s)
        self.thresholds = resolve_thresholds(self.class_names, thresholds)
        self._watched = [i for i, name in enumerate(self.class_names) if name not in set(ignore)]
        self._open: dict[int, list] = {}  # class index -> [begin, end, max, sum, count]
        self._last_start = -np.inf

    def push(self, starts_s, probs) -> list[Event]:
        """Adds windows (in increasing start order) and returns the events they finished.

        Args:
            starts_s: window starts in seconds, [n].
            probs: class probabilities, [n, C].

        Raises:
            ValueError: shapes that do not match, or a start earlier than one already pushed.
        """
        starts = np.asarray(starts_s, np.float64).reshape(-1)
        probs = np.asarray(probs)
        if probs.ndim != 2 or probs.shape != (starts.size, len(self.class_names)):
            raise ValueError(f"probs must be [n={starts.size}, classes={len(self.class_names)}]. "
                             f"Received: probs shape={probs.shape}")
        if starts.size and (starts[0] < self._last_start or np.any(np.diff(starts) < 0)):
            raise ValueError(f"window starts must not decrease. Received: {starts[0]} after {self._last_start}")
        done = []
        if not starts.size:
            return done
        self._last_start = float(starts[-1])
        active = probs[:, self._watched] >= self.thresholds[self._watched]
        for row in np.flatnonzero(active.any(axis=1)):  # windows with nothing active extend nothing
            start = float(starts[row])
            for col, c in enumerate(self._watched):
                event = self._open.get(c)
                if event is not None and start > event[1] + self.merge_gap_s:
                    done.append(self._close(c))
                    event = None
                if active[row, col]:
                    p = float(probs[row, c])
                    if event is None:
                        self._open[c] = [start, start + self.window_s, p, p, 1]
                    else:
                        event[1], event[2] = start + self.window_s, max(event[2], p)
                        event[3], event[4] = event[3] + p, event[4] + 1
        # an open event no later window can reach is finished now, not at the next push
        for c in [c for c, event in self._open.items() if self._last_start > event[1] + self.merge_gap_s]:
            done.append(self._close(c))
        return sorted(done, key=lambda e: (e.begin_s, e.label))

    def flush(self) -> list[Event]:
        """Ends the stream: the events still open."""
        return sorted((self._close(c) for c in list(self._open)), key=lambda e: (e.begin_s, e.label))

    def _close(self, c: int) -> Event:
        begin, end, peak, total, count = self._open.pop(c)
        return Event(self.class_names[c], begin, end, peak, total / count, count)


def merge_events(starts_s, probs, class_names, window_s: float, thresholds=None, *, merge_gap_s: float = 0.0,
                 ignore: Sequence[str] = ()) -> list[Event]:
    """All events of one recording's window scores (an EventMerger pushed once and flushed)."""
    merger = EventMerger(class_names, window_s, thresholds, merge_gap_s=merge_gap_s, ignore=ignore)
    return sorted(merger.push(starts_s, probs) + merger.flush(), key=lambda e: (e.begin_s, e.label))
