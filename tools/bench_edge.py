"""Benchmark: the float32 / float16 / int8 TFLite files of an export, as the buoy runs them.

Run: python tools/bench_edge.py MODEL_DIR [--run-dir runs/<name>] [--pipeline YAML] [--data DIR]
                                [--set key=value ...] [--split test] [--max-windows 2000]
                                [--runs 500] [--warmup 50] [--rounds 3] [--threads 1] [--out FILE.json]

For each .tflite of MODEL_DIR (the model card's `tflite_models`, else the files present):
- size (KB);
- LiteRT latency per window on --threads threads: the buoy's own detector (`edge.buoy.open_detector`:
  one window per invoke, XNNPACK delegate unless the model needs LiteRT's builtin kernels), warm, median and p90 over
  --runs invokes on real windows, in a fresh process per model and round (--rounds rounds, the
  models interleaved so the machine's load hits them alike; the median of the round medians is
  reported);
- peak memory: the high-water mark of that process's RSS (VmHWM, else ru_maxrss) after loading and
  running the model minus the same before loading it (the process imports only numpy, ai_edge_litert
  and the buoy runtime);
- top-1 agreement with the float Keras model (model.keras), per window and per clip, and accuracy on
  the held-out labelled windows: the `--split` rows of the run's manifest.csv (runs/<name>/, where
  fit wrote it, with its pipeline.yaml; --pipeline / --data / --set override), windows cut as fit
  cuts them. Window accuracy, clip accuracy (mean window probability per clip, as fit reports), and
  the window accuracy drop against Keras in points. Without a run, only size, latency and memory are
  measured (on noise windows);
- with --recordings FILE_OR_DIR ...: top-1 agreement with Keras on every window of unlabelled long
  recordings, cut at --hop-s as the scan cuts them (the hard cases a held-out split may lack: quiet
  calls, ship noise, transients), capped at --max-recording-windows.
Ratios are against model.tflite (float32) in the same run. Prints a table, writes JSON (default
MODEL_DIR/bench_edge.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KINDS = ("float32", "float16", "int8")
DEFAULT_FILES = {"float32": "model.tflite", "float16": "model_float16.tflite", "int8": "model_int8.tflite"}

# The measuring process: only numpy, the standard library and the buoy runtime (LiteRT).
CHILD = r"""
import json, resource, sys, time
import numpy as np
from mammalnet.edge.buoy import open_detector, read_card

model_path, windows_path = sys.argv[1], sys.argv[2]
threads, warmup, runs = map(int, sys.argv[3:6])


def peak_kb():
    # Linux carries the parent's (TensorFlow-sized) high-water mark into ru_maxrss across fork + exec;
    # VmHWM is this process's own.
    try:
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("VmHWM")).split()[1])
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


windows = np.load(windows_path)  # allocated once: no freed temporaries to hide the model under the high-water mark
before_kb = peak_kb()
model = open_detector(model_path, read_card(model_path), threads=threads)
for i in range(warmup):
    model(windows[i % len(windows)][None, :])
times = np.empty(runs)
for i in range(runs):
    t = time.perf_counter()
    model(windows[i % len(windows)][None, :])
    times[i] = time.perf_counter() - t
after_kb = peak_kb()
pcm = np.round(windows * 32767).astype(np.int16)
convert = np.empty(runs)
for i in range(runs):  # what a float32 input costs a buoy that records int16
    t = time.perf_counter()
    pcm[i % len(pcm)].astype(np.float32) / 32768.0
    convert[i] = time.perf_counter() - t
print(json.dumps({"median_ms": 1e3 * float(np.median(times)), "p90_ms": 1e3 * float(np.percentile(times, 90)),
                  "peak_rss_mb": (after_kb - before_kb) / 1024, "xnnpack": model.xnnpack,
                  "pcm_to_float_us": 1e6 * float(np.median(convert)),
                  "tensorflow_imported": any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)}))
"""


def model_files(model_dir: str, card) -> dict:
    files = card.tflite_models or DEFAULT_FILES
    return {kind: os.path.join(model_dir, files[kind]) for kind in KINDS
            if kind in files and os.path.isfile(os.path.join(model_dir, files[kind]))}


def held_out_windows(args, card):
    """(windows float32 [n, window], labels [n], clip ids [n]) of the run's held-out split, or None."""
    import pandas as pd

    from mammalnet import config as config_lib
    from mammalnet.data.pipeline import build_dataset, collect
    from mammalnet.training.prepare import window_spec

    run_dir = args.run_dir or os.path.join("runs", os.path.basename(os.path.normpath(args.model_dir)))
    manifest_path = os.path.join(run_dir, "manifest.csv")
    pipeline = args.pipeline or os.path.join(run_dir, "pipeline.yaml")
    if not (os.path.isfile(manifest_path) and os.path.isfile(pipeline)):
        print(f"bench_edge: no {manifest_path} or {pipeline}: no held-out windows, agreement and accuracy "
              "are not measured", flush=True)
        return None
    config = config_lib.load(pipeline)
    if args.data:
        config.data.root = args.data
    config = config_lib.apply_overrides(config, args.overrides)
    if (config.audio.sample_rate_hz, config.window_samples) != (card.sample_rate_hz, card.window_samples):
        raise ValueError(f"{pipeline} windows ({config.window_samples} samples at {config.audio.sample_rate_hz} Hz) "
                         f"differ from the model card's ({card.window_samples} at {card.sample_rate_hz})")
    manifest = pd.read_csv(manifest_path)
    rows = manifest[manifest["split"] == args.split]
    if rows.empty:
        raise ValueError(f"{manifest_path} has no {args.split!r} rows. Received: --split {args.split}")
    ds = build_dataset(rows, list(card.class_names), window_spec(config), batch_size=64, training=False,
                       with_clip_index=True, cache=False)
    x, y, clips = collect(ds)
    if args.max_windows and len(x) > args.max_windows:
        keep = np.sort(np.random.default_rng(0).choice(len(x), args.max_windows, replace=False))
        x, y, clips = x[keep], y[keep], clips[keep]
    print(f"bench_edge: {len(x)} {args.split} windows of {rows.shape[0]} clips from {manifest_path}", flush=True)
    return x, y, clips


def quality(probs: np.ndarray, keras_probs: np.ndarray, y: np.ndarray, clips: np.ndarray) -> dict:
    from sklearn.metrics import balanced_accuracy_score

    from mammalnet.report.metrics import aggregate_windows

    clip_probs, ids = aggregate_windows(probs, clips)
    keras_clip_probs, _ = aggregate_windows(keras_probs, clips)
    first = {c: i for i, c in reversed(list(enumerate(clips)))}  # a clip's label is its windows' label
    clip_y = y[[first[c] for c in ids]]
    return {"top1_agreement": float(np.mean(probs.argmax(1) == keras_probs.argmax(1))),
            "clip_top1_agreement": float(np.mean(clip_probs.argmax(1) == keras_clip_probs.argmax(1))),
            "window_accuracy": float(np.mean(probs.argmax(1) == y)),
            "window_balanced_accuracy": float(balanced_accuracy_score(y, probs.argmax(1))),
            "clip_accuracy": float(np.mean(clip_probs.argmax(1) == clip_y)),
            "max_abs_diff": float(np.abs(probs - keras_probs).max())}


def recording_windows(paths, card, hop_s: float, limit: int) -> np.ndarray:
    """float32 [n <= limit, window] windows of the recordings, at hop_s, as the scan cuts them."""
    from mammalnet.audio.reader import BlockReader
    from mammalnet.data.sources.common import DEFAULT_EXTENSIONS
    from mammalnet.scan.local import find_recordings

    files, failures = find_recordings(paths, DEFAULT_EXTENSIONS)
    if failures or not files:
        raise SystemExit(f"bench_edge: --recordings: {failures or 'no audio file found'}")
    reader = BlockReader.for_card(card, card.hop_samples(hop_s))
    parts, count = [], 0
    for path in files:
        for _, windows in reader.windows(path):
            parts.append(windows[: limit - count])
            count += len(parts[-1])
            if count >= limit:
                return np.concatenate(parts)
    return np.concatenate(parts)


def scorers(model_dir: str, files: dict) -> tuple:
    """(the Keras detector, {kind: the LiteRT detector of that file}) of the export, 256 windows a call."""
    from mammalnet.detector import Detector

    keras_detector = Detector(model_dir, batch_windows=256, threads=1)
    return keras_detector, {kind: Detector(model_dir, backend="tflite", tflite_file=os.path.basename(path),
                                           batch_windows=256, threads=1) for kind, path in files.items()}


def measure(files: dict, windows: np.ndarray, args) -> dict:
    """Latency and memory of each file in its own process, interleaved over args.rounds rounds."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    results = {kind: [] for kind in files}
    with tempfile.TemporaryDirectory() as tmp:
        windows_path = os.path.join(tmp, "windows.npy")
        np.save(windows_path, windows.astype(np.float32))
        for _ in range(args.rounds):
            for kind, path in files.items():
                out = subprocess.run([sys.executable, "-c", CHILD, path, windows_path, str(args.threads),
                                      str(args.warmup), str(args.runs)], capture_output=True, text=True, env=env,
                                     check=True)
                results[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = {}
    for kind, rounds in results.items():
        summary[kind] = {key: float(np.median([r[key] for r in rounds]))
                         for key in ("median_ms", "p90_ms", "peak_rss_mb", "pcm_to_float_us")}
        summary[kind]["xnnpack"] = all(r["xnnpack"] for r in rounds)
        summary[kind]["tensorflow_imported"] = any(r["tensorflow_imported"] for r in rounds)
        summary[kind]["round_medians_ms"] = [r["median_ms"] for r in rounds]
    return summary


def table(rows: dict, reference: str) -> str:
    header = ("model", "KB", "x size", "median ms", "p90 ms", "x latency", "peak MB", "agree", "clip agree",
              "win acc", "clip acc", "drop pts")
    lines = [header]
    ref = rows.get(reference, {})
    for kind, r in rows.items():
        def ratio(key):
            return f"{r[key] / ref[key]:.2f}" if r.get(key) is not None and ref.get(key) else "-"

        def fmt(key, spec):
            return format(r[key], spec) if r.get(key) is not None else "-"

        lines.append((kind, fmt("kb", ".1f"), ratio("kb"), fmt("median_ms", ".3f"), fmt("p90_ms", ".3f"),
                      ratio("median_ms"), fmt("peak_rss_mb", ".1f"), fmt("top1_agreement", ".4f"),
                      fmt("clip_top1_agreement", ".4f"), fmt("window_accuracy", ".4f"), fmt("clip_accuracy", ".4f"),
                      fmt("accuracy_drop_points", "+.2f")))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(line, widths)) for line in lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", metavar="MODEL_DIR")
    parser.add_argument("--run-dir", default=None,
                        help="runs/<name> of the training run (default: runs/<MODEL_DIR name>)")
    parser.add_argument("--pipeline", default=None, help="default: RUN_DIR/pipeline.yaml")
    parser.add_argument("--data", default=None, help="override data.root")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-windows", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--recordings", nargs="+", default=None, metavar="FILE_OR_DIR",
                        help="also measure top-1 agreement on every window of these long recordings")
    parser.add_argument("--hop-s", type=float, default=None, help="--recordings hop (default: half a window)")
    parser.add_argument("--max-recording-windows", type=int, default=20000)
    parser.add_argument("--out", default=None, help="default: MODEL_DIR/bench_edge.json")
    args = parser.parse_args(argv)

    from mammalnet.card import ModelCard

    card = ModelCard.from_dir(args.model_dir)
    files = model_files(args.model_dir, card)
    if "float32" not in files:
        raise SystemExit(f"bench_edge: {args.model_dir} has no model.tflite")
    data = held_out_windows(args, card)
    rows = {kind: {"file": os.path.basename(path), "kb": os.path.getsize(path) / 1024} for kind, path in files.items()}
    if data is not None or args.recordings:
        keras_detector, tflite_detectors = scorers(args.model_dir, files)
    if data is not None:
        x, y, clips = data
        keras_probs = keras_detector(x)
        rows = {"keras": {"file": "model.keras", **quality(keras_probs, keras_probs, y, clips)}, **rows}
        for kind, detector in tflite_detectors.items():
            rows[kind].update(quality(detector(x), keras_probs, y, clips))
            drop = rows["keras"]["window_accuracy"] - rows[kind]["window_accuracy"]
            rows[kind]["accuracy_drop_points"] = 100 * drop
        windows = x[: max(1, min(len(x), 256))]
    else:
        windows = (0.05 * np.random.default_rng(0).standard_normal((64, card.window_samples))).astype(np.float32)
    for kind, timing in measure(files, windows, args).items():
        rows[kind].update(timing)
    print(table(rows, "float32"))
    recordings = None
    if args.recordings:
        hop_s = args.hop_s or card.window_s / 2
        x = recording_windows(args.recordings, card, hop_s, args.max_recording_windows)
        keras_top = keras_detector(x).argmax(1)
        recordings = {"windows": int(len(x)), "hop_s": hop_s, "paths": args.recordings,
                      "top1_agreement": {kind: float(np.mean(detector(x).argmax(1) == keras_top))
                                         for kind, detector in tflite_detectors.items()}}
        print(f"bench_edge: top-1 agreement with Keras on {len(x)} windows of {' '.join(args.recordings)} at a "
              f"{hop_s:g}-s hop: " + ", ".join(f"{k} {v:.4f}" for k, v in recordings["top1_agreement"].items()))
    reference = rows["float32"]
    for kind in files:
        rows[kind]["vs_float32"] = {key: rows[kind][key] / reference[key] for key in ("kb", "median_ms", "p90_ms")}
    out = args.out or os.path.join(args.model_dir, "bench_edge.json")
    from mammalnet.report.metrics import write_json

    write_json(out, {"model_dir": os.path.abspath(args.model_dir), "threads": args.threads, "runs": args.runs,
                     "rounds": args.rounds, "split": args.split if data is not None else None,
                     "held_out_windows": None if data is None else int(len(data[0])), "models": rows,
                     "recordings": recordings})
    print(f"bench_edge: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
