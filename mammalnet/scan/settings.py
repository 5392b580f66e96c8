"""How a scan turns a recording into events: its settings, resolved from the flags and the model card.

Thresholds: the card's `thresholds` (classes it leaves out: 0.5); `--threshold P` sets every class,
`--threshold CLASS=P` one class (applied after a plain P). Classes never reported: `--ignore-class`,
else the card's `background_classes`, else a class named `background` if the model has one.
Low/High Freq of every selection: the card's `band_hz` when present, else 0 Hz to the Nyquist
frequency of the model rate (the model sees the whole band, so the table claims no more).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from mammalnet.audio.reader import BlockReader
from mammalnet.card import ModelCard
from mammalnet.detector import BACKENDS, DEFAULT_BATCH_WINDOWS, DEFAULT_THREADS, check_positive_int
from mammalnet.edge.events import default_ignored, detection_thresholds

DEFAULT_BLOCK_S = 600.0


@dataclasses.dataclass(frozen=True)
class ScanSettings:
    """How a scan turns a recording into events (see the module docstring).

    Build one with `resolve_settings`, which fills the defaults from the model card.
    """

    hop_s: float
    thresholds: dict
    merge_gap_s: float
    ignore: tuple
    band_hz: tuple
    batch_windows: int = DEFAULT_BATCH_WINDOWS
    block_s: float = DEFAULT_BLOCK_S
    save_scores: bool = False
    backend: str = "keras"
    threads: int = DEFAULT_THREADS

    def result_key(self) -> dict:
        """The settings that decide the events and scores: what a resumed recording must match."""
        return {"hop_s": self.hop_s, "thresholds": dict(sorted(self.thresholds.items())),
                "merge_gap_s": self.merge_gap_s, "ignore": sorted(self.ignore), "band_hz": list(self.band_hz),
                "backend": self.backend}

    def as_dict(self) -> dict:
        return dict(self.result_key(), batch_windows=self.batch_windows, block_s=self.block_s,
                    save_scores=self.save_scores, threads=self.threads)


def resolve_settings(card: ModelCard, *, hop_s: float | None = None, threshold: float | None = None,
                     class_thresholds: dict | None = None, merge_gap_s: float = 0.0,
                     ignore: Sequence[str] | None = None, batch_windows: int = DEFAULT_BATCH_WINDOWS,
                     block_s: float = DEFAULT_BLOCK_S, save_scores: bool = False,
                     backend: str = "keras", threads: int = DEFAULT_THREADS) -> ScanSettings:
    """ScanSettings from the flags and the model card.

    Args:
        card: the model folder's card.
        hop_s: seconds between window starts; None: half a window.
        threshold: one threshold for every class; None keeps the card's `thresholds`.
        class_thresholds: {class: threshold}, applied over the above.
        merge_gap_s: see EventMerger.
        ignore: classes never reported; None: the card's `background_classes`, else ["background"]
            when the model has that class, else none.
        batch_windows: windows per model call (fixed batch shapes: see `mammalnet.detector`).
        block_s: seconds of audio read and resampled at a time, rounded up to whole batches of
            windows for every thread (memory: about block_s x file rate x channels x 4 bytes, plus a
            batch of windows per thread).
        save_scores: keep every window's probabilities (scores/<name>.npz).
        backend: "keras" (model.keras in a tf.function) or "tflite" (model.tflite with LiteRT).
        threads: batches scored at once (see `mammalnet.detector`); does not change the results.

    Raises:
        ValueError: a non-positive hop, batch, block or thread count, a negative merge gap, an unknown
            backend, a threshold outside [0, 1] or naming a class the model does not have, an unknown
            ignored class.
    """
    names = list(card.class_names)
    rate = card.sample_rate_hz
    if hop_s is None:
        hop_s = card.window_s / 2
    if not hop_s > 0:
        raise ValueError(f"hop_s must be positive. Received: hop_s={hop_s}")
    # The hop is a whole number of samples at the model rate; the settings hold that exact value.
    hop_s = max(1, round(hop_s * rate)) / rate
    if not merge_gap_s >= 0:
        raise ValueError(f"merge_gap_s must be >= 0. Received: merge_gap_s={merge_gap_s}")
    check_positive_int("batch_windows", batch_windows)
    check_positive_int("threads", threads)
    if not block_s > 0:
        raise ValueError(f"block_s must be positive. Received: block_s={block_s}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}. Received: backend={backend!r}")

    thresholds = detection_thresholds(card, threshold, class_thresholds)
    if ignore is None:
        ignore = default_ignored(card)
    unknown = sorted(set(ignore) - set(names))
    if unknown:
        raise ValueError(f"ignored classes the model does not have: {unknown}; its classes: {names}")

    band = card.band
    return ScanSettings(hop_s=float(hop_s), thresholds=thresholds, merge_gap_s=float(merge_gap_s),
                        ignore=tuple(sorted(ignore)), band_hz=(float(band[0]), float(band[1])),
                        batch_windows=batch_windows, block_s=float(block_s), save_scores=bool(save_scores),
                        backend=backend, threads=threads)


def read_plan(card: ModelCard, settings: ScanSettings) -> tuple[int, int]:
    """(hop, windows per read) at the model rate of a scan's reads (`local.score_windows`)."""
    rate = card.sample_rate_hz
    hop = round(settings.hop_s * rate)
    # whole batches per block, as many for every thread: only a file's last block leaves a partial batch
    # or an idle thread
    unit = settings.batch_windows * settings.threads
    return hop, -(-max(1, int(settings.block_s * rate) // hop) // unit) * unit


def read_step_samples(card: ModelCard, settings: ScanSettings) -> int:
    """Model-rate samples from one read of `local.score_windows` to the next: a part of a recording
    scored apart gives the windows and scores of scoring it whole when it starts on this grid."""
    return BlockReader.for_card(card, *read_plan(card, settings)).step_samples
