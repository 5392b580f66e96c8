"""Species prediction for audio files with an exported model folder.

    python -m mammalnet.predict MODEL_DIR AUDIO... [--top-k 3] [--format table|json] [--hop-s S]

Each file is read in blocks of windows by offset (mono mixdown; memory bounded whatever the file's
length), resampled to the model rate and cut into windows at the hop (default: one window) over the
whole file, the last window's tail padded as audio.json's `pad_mode` says (default zero); the
window probabilities are averaged. A file that fails is reported on stderr and the others still
run; the exit code is 1 if any failed.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: keep stdout/stderr readable

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mammalnet.audio.io import AudioError, audio_info, read_audio
from mammalnet.cli import positive_float, positive_int
from mammalnet.report.calibration import apply_temperature

# Windows decoded, resampled and run through the model at a time: bounds memory on hours-long files.
_BLOCK_WINDOWS = 64
UNKNOWN = "unknown"  # the prediction for a file under the export's calibrated unknown_threshold


class ModelDirError(ValueError):
    """MODEL_DIR is not a usable export (missing or inconsistent model.keras / audio.json)."""


def load_model_dir(model_dir):
    """Loads model.keras and audio.json from an export folder.

    Returns:
        (keras.Model, audio config dict with sample_rate_hz, window_samples, class_names and
        pad_mode, "zero" when audio.json has none).

    Raises:
        ModelDirError: missing files, missing keys, an unknown pad_mode, or a model that does not
            match audio.json.
    """
    import keras

    import mammalnet.layers  # noqa: F401  (registers the custom layers)
    from mammalnet.audio.dsp import PAD_MODES

    model_dir = Path(model_dir)
    model_path, audio_path = model_dir / "model.keras", model_dir / "audio.json"
    for path in (model_path, audio_path):
        if not path.is_file():
            raise ModelDirError(f"{model_dir}: not an exported model folder, missing {path.name}")
    try:
        audio = json.loads(audio_path.read_text())
    except json.JSONDecodeError as err:
        raise ModelDirError(f"{audio_path}: not valid JSON ({err})") from err
    missing = [k for k in ("sample_rate_hz", "window_samples", "class_names") if k not in audio]
    if missing:
        raise ModelDirError(f"{audio_path}: missing keys {missing}")
    audio.setdefault("pad_mode", "zero")
    if audio["pad_mode"] not in PAD_MODES:
        raise ModelDirError(
            f"{audio_path}: pad_mode must be one of {PAD_MODES}. Received: pad_mode={audio['pad_mode']!r}")
    model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    input_shape = tuple(model.inputs[0].shape)
    if input_shape[1:] != (audio["window_samples"],):
        raise ModelDirError(
            f"{model_dir}: model input {input_shape} does not match audio.json "
            f"window_samples={audio['window_samples']}")
    return model, audio


def resampled_length(info, sample_rate_hz: int) -> int:
    """Samples of a whole file (`audio_info`) resampled to sample_rate_hz."""
    return -(-info.frames * int(sample_rate_hz) // info.sample_rate_hz)


def block_step_samples(audio: dict, hop_samples: int, block_windows: int = _BLOCK_WINDOWS) -> int:
    """Model-rate samples from the first sample of one block of `iter_resampled_blocks` to the next's."""
    # With hop > window a block of windows spans mostly gaps; fewer windows keep it bounded.
    block = max(1, min(block_windows, block_windows * int(audio["window_samples"]) // hop_samples))
    return block * hop_samples


def iter_resampled_blocks(path, audio: dict, hop_samples: int, block_windows: int = _BLOCK_WINDOWS, *,
                          timings: dict | None = None, start_sample: int = 0, stop_sample: int | None = None):
    """A file at the model rate, block by block, each block one read by offset.

    Block b covers model-rate samples [b * step, b * step + span) of the whole file resampled,
    step = block * hop (`block_step_samples`), span = (block - 1) * hop + window_samples, block =
    windows per block (`block_windows`, fewer when hop > window); the last block is cut at the
    file's end. Framing a block at the hop gives the windows of framing the whole file; memory is
    bounded by `block_windows` whatever the file's length.

    Args:
        timings: when given, seconds spent decoding and resampling are added to its "decode_s" and
            "resample_s" entries.
        start_sample, stop_sample: only the blocks whose first sample lies in [start_sample,
            stop_sample) (None: to the file's end), so that parts of a file can be read apart
            and give the blocks of reading it whole. start_sample must be a multiple of step.

    Yields:
        (index of the block's first sample at the model rate, waveform float32 [<= span],
        samples of the whole file at the model rate).

    Raises:
        AudioError: the file cannot be read. ValueError: a start_sample off the block grid.
    """
    from mammalnet.audio import dsp
    from mammalnet.data.pipeline import plan_read

    step = block_step_samples(audio, hop_samples, block_windows)
    if start_sample < 0 or start_sample % step:
        raise ValueError(f"start_sample must be a non-negative multiple of the block step {step}. "
                         f"Received: start_sample={start_sample}")
    info = audio_info(path)
    target, window = int(audio["sample_rate_hz"]), int(audio["window_samples"])
    total = resampled_length(info, target)
    span = step - hop_samples + window
    clock = time.perf_counter
    for first in range(start_sample, total if stop_sample is None else min(total, stop_sample), step):
        stop = min(total, first + span)
        start, frames, skip = plan_read(first, stop, info.sample_rate_hz, target, info.frames)
        began = clock()
        waveform, rate = read_audio(path, start_s=start / info.sample_rate_hz,
                                    duration_s=frames / info.sample_rate_hz)
        decoded = clock()
        if rate != target:
            waveform = np.asarray(dsp.resample(waveform, rate, target))
        if timings is not None:
            timings["decode_s"] = timings.get("decode_s", 0.0) + decoded - began
            timings["resample_s"] = timings.get("resample_s", 0.0) + clock() - decoded
        yield first, waveform[skip:skip + stop - first], total


def frame_block(waveform: np.ndarray, audio: dict, hop_samples: int, total: int) -> np.ndarray:
    """The windows of one block of `iter_resampled_blocks` (`total`: its third item).

    Windows that end exactly at the block's end need no padding: a read-only strided view, no
    copy (every block of a file but, usually, its last). Otherwise `frame_windows` pads the tail as
    training did.
    """
    from mammalnet.audio import dsp

    window = int(audio["window_samples"])
    if len(waveform) >= window and (len(waveform) - window) % hop_samples == 0:
        return np.lib.stride_tricks.sliding_window_view(waveform, window)[::hop_samples]
    return np.asarray(dsp.frame_windows(waveform, window, hop_samples, pad_mode=audio["pad_mode"], seed=(0, total)))


def iter_window_blocks(path, audio: dict, hop_samples: int, block_windows: int = _BLOCK_WINDOWS):
    """The windows of a file at the model rate, block by block, each block one read by offset.

    The windows are those of resampling the whole file and framing it (frame_windows) with
    `hop_samples`; memory is bounded by `block_windows` whatever the file's length. Only the last
    block is padded; `noise` padding takes its level from that block.

    Yields:
        (index of the block's first sample at the model rate, windows float32 [k, window_samples],
        read-only: see `frame_block`).
    """
    for first, waveform, total in iter_resampled_blocks(path, audio, hop_samples, block_windows):
        yield first, frame_block(waveform, audio, hop_samples, total)


def _predict_file(model, path, audio, hop_samples, block_windows):
    """Mean window probabilities of one file, read block by block. Returns (probs [C], windows)."""
    prob_sum, count = 0.0, 0
    for _, windows in iter_window_blocks(path, audio, hop_samples, block_windows):
        probs = np.asarray(model(windows, training=False), np.float64)
        prob_sum, count = prob_sum + probs.sum(axis=0), count + len(probs)
    return prob_sum / count, count


def predict_files(model_dir, paths, *, top_k: int = 3, hop_s: float | None = None,
                  block_windows: int = _BLOCK_WINDOWS) -> list[dict]:
    """Predicts the top-k species of each audio file.

    Args:
        model_dir: an export folder (model.keras + audio.json).
        paths: audio files, any format and rate libsndfile reads.
        top_k: species to report per file (clipped to the number of classes).
        hop_s: seconds between window starts; None means one window (no overlap).
        block_windows: windows read and run at a time: bounds memory; the result does not depend
            on it, except for the level of `noise` padding (estimated on the last block).

    Returns:
        One dict per path, in order: {'file', 'num_windows', 'top_k': [{'label', 'probability'}],
        'prediction', 'confidence', 'error'}. top_k holds the mean window probabilities.
        'prediction' is the top class, or "unknown" when its calibrated probability
        ('confidence': the mean probabilities at audio.json's calibration temperature) is under
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
    model, audio = load_model_dir(model_dir)
    rate = int(audio["sample_rate_hz"])
    hop_samples = int(audio["window_samples"]) if hop_s is None else max(1, round(hop_s * rate))
    names = list(audio["class_names"])
    k = min(top_k, len(names))
    calibration = audio.get("calibration") or {"temperature": 1.0, "unknown_threshold": 0.0}

    results = []
    for path in paths:
        path = os.fspath(path)
        try:
            mean_probs, num_windows = _predict_file(model, path, audio, hop_samples, block_windows)
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
                        help="export folder holding model.keras and audio.json")
    parser.add_argument("audio", metavar="AUDIO", nargs="+", help="audio files (any rate)")
    parser.add_argument("--top-k", type=positive_int, default=3,
                        help="species to report per file (default: 3)")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="output format on stdout (default: table)")
    parser.add_argument("--hop-s", type=positive_float, default=None,
                        help="seconds between window starts (default: one window, no overlap)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = predict_files(args.model_dir, args.audio, top_k=args.top_k, hop_s=args.hop_s)
    except ModelDirError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = [r for r in results if r["error"] is not None]
    for r in failed:
        print(f"error: {r['error']}", file=sys.stderr)
    print(format_json(results) if args.format == "json" else format_table(results))
    if failed:
        print(f"{len(failed)} of {len(results)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
