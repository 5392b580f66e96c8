"""Species prediction for audio files with an exported model folder.

    python -m mammalnet.predict MODEL_DIR AUDIO... [--top-k 3] [--format table|json] [--hop-s S] [-q | -v]

Each file is read in blocks of windows by offset (mono mixdown; memory bounded whatever the file's
length), resampled to the model rate and cut into windows at the hop (default: one window) over the
whole file, the last window's tail padded as the model card's `pad_mode` says (`audio.reader`),
scored by the model folder's `Detector`; the window probabilities are averaged. A file that fails is reported on stderr and the others still
run; the exit code is 1 if any failed.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: keep stdout/stderr readable

import argparse
import json
import logging
import sys

import numpy as np

from mammalnet.audio.io import AudioError
from mammalnet.audio.reader import DEFAULT_BLOCK_WINDOWS, BlockReader
from mammalnet.card import ModelDirError
from mammalnet.cli import add_verbosity_arguments, positive_float, positive_int, setup_logging
from mammalnet.detector import Detector
from mammalnet.report.calibration import apply_temperature

log = logging.getLogger("mammalnet.predict")

UNKNOWN = "unknown"  # the prediction for a file under the export's calibrated unknown_threshold


def _predict_file(detector: Detector, reader: BlockReader, path):
    """Mean window probabilities of one file, read block by block. Returns (probs [C], windows)."""
    prob_sum, count = 0.0, 0
    for _, windows in reader.windows(path):
        probs = detector(windows).astype(np.float64)
        prob_sum, count = prob_sum + probs.sum(axis=0), count + len(probs)
    return prob_sum / count, count


def predict_files(model_dir, paths, *, top_k: int = 3, hop_s: float | None = None,
                  block_windows: int = DEFAULT_BLOCK_WINDOWS) -> list[dict]:
    """Predicts the top-k species of each audio file.

    Args:
        model_dir: an export folder (model.keras + its model card, audio.json).
        paths: audio files, any format and rate libsndfile reads.
        top_k: species to report per file (clipped to the number of classes).
        hop_s: seconds between window starts; None means one window (no overlap).
        block_windows: windows read and run at a time: bounds memory; the result does not depend
            on it, except for the level of `noise` padding (estimated on the last block).

    Returns:
        One dict per path, in order: {'file', 'num_windows', 'top_k': [{'label', 'probability'}],
        'prediction', 'confidence', 'error'}. top_k holds the mean window probabilities.
        'prediction' is the top class, or "unknown" when its calibrated probability
        ('confidence': the mean probabilities at the card's calibration temperature) is under
        the calibration's unknown_threshold (exports without a calibration: T = 1, no unknown).
        'error' is None on success, else a message naming the file (then num_windows is 0, top_k
        is empty and prediction is None).

    Raises:
        ValueError: bad top_k, hop_s or block_windows. ModelDirError: unusable model folder.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer. Received: top_k={top_k!r}")
    if isinstance(block_windows, bool) or not isinstance(block_windows, int) or block_windows < 1:
        raise ValueError(f"block_windows must be a positive integer. Received: block_windows={block_windows!r}")
    if hop_s is not None and not hop_s > 0:
        raise ValueError(f"hop_s must be positive. Received: hop_s={hop_s}")
    detector = Detector(model_dir, batch_windows=block_windows, threads=1)
    card = detector.card
    reader = BlockReader.for_card(card, card.hop_samples(hop_s), block_windows)
    names = list(card.class_names)
    k = min(top_k, len(names))
    calibration = card.calibration

    results = []
    for path in paths:
        path = os.fspath(path)
        try:
            mean_probs, num_windows = _predict_file(detector, reader, path)
        except AudioError as err:
            results.append({"file": path, "num_windows": 0, "top_k": [], "prediction": None, "error": str(err)})
            continue
        except Exception as err:  # a batch job reports the file and goes on
            results.append({"file": path, "num_windows": 0, "top_k": [], "prediction": None,
                            "error": f"{path}: {type(err).__name__}: {err}"})
            continue
        order = np.argsort(-mean_probs, kind="stable")[:k]
        calibrated = apply_temperature(mean_probs[None, :], calibration["temperature"])[0]
        confidence = float(calibrated.max())
        results.append({
            "file": path,
            "num_windows": int(num_windows),
            "top_k": [{"label": names[i], "probability": float(mean_probs[i])} for i in order],
            "prediction": (names[int(calibrated.argmax())] if confidence >= calibration["unknown_threshold"]
                           else UNKNOWN),
            "confidence": confidence,
            "error": None,
        })
    return results


def format_table(results: list[dict]) -> str:
    """Table with one row per (file, rank): file, rank, species, probability; the first row of a
    file also gives its prediction (the top species, or "unknown") and calibrated confidence."""
    rows = [(r["file"], str(rank), item["label"], f"{item['probability']:.4f}",
             f"{r['prediction']} ({r['confidence']:.2f})" if rank == 1 else "")
            for r in results if r["error"] is None
            for rank, item in enumerate(r["top_k"], start=1)]
    header = ("file", "rank", "species", "probability", "prediction")
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)


def format_json(results: list[dict]) -> str:
    """JSON list of {file, num_windows, top_k: [{label, probability}], prediction, confidence} for the
    files that ran."""
    ok = [{k: r[k] for k in ("file", "num_windows", "top_k", "prediction", "confidence")}
          for r in results if r["error"] is None]
    return json.dumps(ok, indent=2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mammalnet.predict",
        description="Predict the species in audio files with an exported mammalnet model. "
                    "Window probabilities are averaged per file.")
    parser.add_argument("model_dir", metavar="MODEL_DIR",
                        help="export folder holding model.keras and its model card (audio.json)")
    parser.add_argument("audio", metavar="AUDIO", nargs="+", help="audio files (any rate)")
    parser.add_argument("--top-k", type=positive_int, default=3,
                        help="species to report per file (default: 3)")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="output format on stdout (default: table)")
    parser.add_argument("--hop-s", type=positive_float, default=None,
                        help="seconds between window starts (default: one window, no overlap)")
    add_verbosity_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        results = predict_files(args.model_dir, args.audio, top_k=args.top_k, hop_s=args.hop_s)
    except ModelDirError as err:
        log.error("error: %s", err)
        return 2
    failed = [r for r in results if r["error"] is not None]
    for r in failed:
        log.error("error: %s", r["error"])
    print(format_json(results) if args.format == "json" else format_table(results))
    if failed:
        log.error("%d of %d file(s) failed", len(failed), len(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
