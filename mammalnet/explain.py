"""Grad-CAM explanation of one window of an audio file with an exported model folder.

    python -m mammalnet.explain MODEL_DIR AUDIO [--out DIR] [--top-k 3]
        [--window-index N | --offset-s S] [--layer NAME] [--analyze-features] [-q | -v]

Writes <stem>_gradcam.png (the log-mel with the heat map over it, seconds and Hz on the axes, the
top-k in the title) and <stem>_gradcam.json (top-k, the class explained, time span, band and peak
of the heat) to --out (default: the current folder) and prints a short summary. The default window
is the one of the file's windows (hop = window) with the highest top-1 probability.
Exit codes: 0 ok, 1 the audio cannot be read, 2 a bad model folder or bad arguments.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: keep stdout/stderr readable

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from mammalnet import files
from mammalnet.audio.io import AudioError, audio_info, read_audio
from mammalnet.audio.reader import DEFAULT_BLOCK_WINDOWS, BlockReader
from mammalnet.card import ModelCard
from mammalnet.cli import add_verbosity_arguments, non_negative_float, non_negative_int, positive_int, setup_logging
from mammalnet.detector import Detector

log = logging.getLogger("mammalnet.explain")


def read_window(path, card: ModelCard, offset_s: float) -> np.ndarray:
    """The one window of `path` starting at offset_s, at the model rate: [1, window_samples].

    Raises:
        AudioError: unreadable file, or an offset past its end.
    """
    from mammalnet.audio import dsp
    from mammalnet.audio.resample import resample

    target, window = card.sample_rate_hz, card.window_samples
    info = audio_info(path)
    if offset_s >= info.duration_s:
        raise AudioError(path, f"offset {offset_s:g} s is past the end ({info.duration_s:g} s)")
    waveform, rate = read_audio(path, start_s=offset_s, duration_s=min(window / target, info.duration_s - offset_s))
    if rate != target:
        waveform = resample(waveform, rate, target)
    return np.asarray(dsp.frame_windows(waveform, window, window, pad_mode=card.pad_mode, seed=(0, 0)))[:1]


def most_confident_window(detector: Detector, path) -> tuple[np.ndarray, float]:
    """The window (hop = window) with the highest top-1 probability, read block by block.

    Returns:
        (window [1, window_samples], its start in the file, s).
    """
    card = detector.card
    target, window = card.sample_rate_hz, card.window_samples
    best, best_p, best_start = None, -1.0, 0.0
    for first, windows in BlockReader.for_card(card, window).windows(path):
        top = detector(windows).max(axis=1)
        i = int(np.argmax(top))
        if top[i] > best_p:
            best, best_p, best_start = windows[i:i + 1], float(top[i]), (first + i * window) / target
    return best, best_start


def explain_file(model_dir, path, *, out_dir=".", top_k: int = 3, window_index: int | None = None,
                 offset_s: float | None = None, layer_name: str | None = None,
                 analyze_features: bool = False) -> dict:
    """Grad-CAM of one window of `path`; writes the PNG and JSON and returns the JSON's dict.

    Raises:
        ModelDirError: MODEL_DIR is not a usable export.
        AudioError: the audio cannot be read (the message names the file).
        ValueError: the model has no conv layer to explain, or an unknown layer_name.
    """
    from mammalnet.report import gradcam

    detector = Detector(model_dir, batch_windows=DEFAULT_BLOCK_WINDOWS, threads=1)
    model, card = detector.model, detector.card
    rate, window = card.sample_rate_hz, card.window_samples
    if window_index is not None:
        offset_s = window_index * window / rate
    if offset_s is None:
        windows, start_s = most_confident_window(detector, path)
    else:
        windows, start_s = read_window(path, card, offset_s), float(offset_s)
    heat, logmel, probs = gradcam.grad_cam(model, windows[0], layer_name=layer_name)
    logmel_config = model.get_layer("frontend").get_layer("logmel").get_config()
    freqs = gradcam.mel_frequencies_hz(logmel_config)
    hop = int(logmel_config["hop_length"])
    summary = gradcam.cam_summary(heat, sample_rate_hz=rate, hop_length=hop, mel_frequencies_hz=freqs)
    for key in ("start_s", "end_s", "peak_time_s"):  # times in the file, not in the window
        if summary[key] is not None:
            summary[key] = round(summary[key] + start_s, 4)
    names = list(card.class_names)
    order = np.argsort(probs)[::-1][:top_k]
    best = int(order[0])
    result = {
        "file": str(path), "window_start_s": round(start_s, 4), "window_s": window / rate,
        "layer": layer_name or gradcam.conv_layer_names(model)[-1],
        "top_k": [{"label": names[i], "probability": round(float(probs[i]), 6)} for i in order],
        "explained_class": names[best], **summary,
    }
    if analyze_features:
        importance = gradcam.layer_importance(model, windows[0], class_index=best)
        result["layer_importance"] = {k: float(f"{v:.6g}") for k, v in importance.items()}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(path).stem
    result["png"] = str(out_dir / f"{stem}_gradcam.png")
    result["json"] = str(out_dir / f"{stem}_gradcam.json")
    fig = plot_gradcam(logmel, heat, start_s=start_s, hop_s=hop / rate, mel_frequencies_hz=freqs,
                       title=" · ".join(f"{t['label']} {t['probability']:.2f}" for t in result["top_k"]),
                       peak=(summary["peak_time_s"], summary["peak_frequency_hz"]))
    fig.savefig(result["png"], dpi=110)
    files.write_text(result["json"], json.dumps(result, indent=2))
    return result


def plot_gradcam(logmel, heatmap, *, start_s: float, hop_s: float, mel_frequencies_hz, title: str,
                 peak=(None, None)):
    """Log-mel (grey) with the heat map (translucent) over it; time in s, frequency in Hz (mel bands).

    Args:
        logmel, heatmap: [frames, bins].
        start_s: time of the first frame in the file.
        hop_s: seconds between frames.
        mel_frequencies_hz: [bins] band centres, used as the y tick labels.
        title: figure title (the top-k predictions).
        peak: (time s, frequency Hz) to mark, or Nones.

    Returns:
        matplotlib Figure.
    """
    from mammalnet.report.plots import new_figure

    frames, bins = np.shape(logmel)
    fig = new_figure(7.0, 3.6)
    ax = fig.subplots()
    extent = (start_s - hop_s / 2, start_s + (frames - 0.5) * hop_s, -0.5, bins - 0.5)
    ax.imshow(np.asarray(logmel).T, origin="lower", aspect="auto", cmap="gray", extent=extent,
              interpolation="nearest")
    image = ax.imshow(np.asarray(heatmap).T, origin="lower", aspect="auto", cmap="jet", alpha=0.45,
                      vmin=0.0, vmax=1.0, extent=extent, interpolation="bilinear")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="Grad-CAM")
    freqs = np.asarray(mel_frequencies_hz)
    ticks = np.unique(np.linspace(0, bins - 1, min(bins, 6)).round().astype(int))
    ax.set_yticks(ticks, [f"{freqs[i]:.0f}" for i in ticks])
    if peak[0] is not None:
        ax.plot(peak[0], int(np.argmin(np.abs(freqs - peak[1]))), marker="+", color="white", markersize=12)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz, mel bands)")
    ax.set_title(title, fontsize=9)
    return fig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mammalnet.explain",
        description="Grad-CAM: where in time and frequency an exported mammalnet model looks for "
                    "its top class in one window of an audio file.")
    parser.add_argument("model_dir", metavar="MODEL_DIR",
                        help="export folder holding model.keras and its model card (audio.json)")
    parser.add_argument("audio", metavar="AUDIO", help="audio file (any rate)")
    parser.add_argument("--out", default=".", help="folder for the PNG and JSON (default: .)")
    parser.add_argument("--top-k", type=positive_int, default=3, help="predictions in the title/JSON")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--window-index", type=non_negative_int, default=None,
                       help="explain window N (hop = window); default: the most confident window")
    where.add_argument("--offset-s", type=non_negative_float, default=None,
                       help="explain the window starting S seconds into the file")
    parser.add_argument("--layer", default=None, help="backbone conv layer (default: the last one)")
    parser.add_argument("--analyze-features", action="store_true",
                        help="also report mean |gradient x activation| of every conv layer")
    add_verbosity_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        r = explain_file(args.model_dir, args.audio, out_dir=args.out, top_k=args.top_k,
                         window_index=args.window_index, offset_s=args.offset_s,
                         layer_name=args.layer, analyze_features=args.analyze_features)
    except AudioError as err:
        log.error("mammalnet.explain: %s", err)
        return 1
    except ValueError as err:  # ModelDirError, a model without conv layers, an unknown layer
        log.error("mammalnet.explain: %s", err)
        return 2
    top = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top_k"])
    print(f"{r['file']} window at {r['window_start_s']:g} s: {top}")
    if r["peak_time_s"] is None:
        print(f"no positive Grad-CAM evidence for {r['explained_class']} at layer {r['layer']}")
    else:
        print(f"{r['explained_class']} ({r['layer']}): {r['start_s']:g}-{r['end_s']:g} s, "
              f"{r['low_hz']:.0f}-{r['high_hz']:.0f} Hz, peak {r['peak_time_s']:g} s / "
              f"{r['peak_frequency_hz']:.0f} Hz")
    for name, value in r.get("layer_importance", {}).items():
        print(f"  {name:<16} mean |grad x act| = {value:.4g}")
    print(f"wrote {r['png']} and {r['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
