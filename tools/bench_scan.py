"""Benchmark: scan real-time factor on N hours of 2 kHz audio with the 2 kHz student, against a per-window loop.

Run: python tools/bench_scan.py [--hours 24] [--files 24] [--model DIR] [--data DIR] [--naive-minutes 5]
                                [--batch-windows 256] [--block-s 600] [--backends keras tflite] [--threads 1 2]
                                [--hop-s S]

Audio: --files recordings of --hours / --files hours at 2 kHz from the long-recording generator
(mammalnet/data/synthetic/longrec.py, cached under the mammalnet cache); --data DIR scans the audio
files already in DIR instead. Model: --model DIR, else an untrained student of pipelines/buoy.yaml
(speed does not depend on the weights). The scan runs at --hop-s, default half a window.

Printed, from one run on this machine: the work (samples, windows, model FLOPs per window from
mammalnet.flops.count_flops), the model alone on random windows (windows/s: the ceiling of any scan), each
backend's full scan at each --threads (wall and CPU seconds, real-time factor, seconds in decode / resample / framing
/ inference / merging / writing) and the reference: one model call per window over the first
--naive-minutes of the first file, extrapolated to all windows, and the ratio of the two.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mammalnet.audio.io import audio_info, read_audio  # noqa: E402
from mammalnet.detector import BACKENDS, DEFAULT_BATCH_WINDOWS, DEFAULT_THREADS, Detector  # noqa: E402
from mammalnet.scan.local import find_recordings, scan_paths  # noqa: E402
from mammalnet.scan.settings import DEFAULT_BLOCK_S, resolve_settings  # noqa: E402

RATE_HZ = 2000
PIPELINE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipelines", "buoy.yaml")
STAGES = ("decode_s", "resample_s", "frame_s", "infer_s", "merge_s", "write_s")


def audio_folder(args):
    """The folder to scan and a description of what is in it."""
    if args.data:
        return args.data, f"the audio files in {args.data}"
    from mammalnet.config import LongRecordingConfig
    from mammalnet.data.synthetic.longrec import ensure_long_archive

    settings = LongRecordingConfig(files=args.files, hours_per_file=args.hours / args.files, sample_rate_hz=RATE_HZ)
    return str(ensure_long_archive(settings)), "the long-recording generator (cached)"


def student_model(out_dir):
    """An untrained student of pipelines/buoy.yaml, exported (model.keras, model.tflite, audio.json)."""
    from mammalnet import config as config_lib
    from mammalnet.export import export_model
    from mammalnet.models.classifier import build_classifier

    config = config_lib.load(PIPELINE)
    names = ["background", "right_whale"]
    model = build_classifier(config, len(names))
    rng = np.random.default_rng(0)
    export_model(model, out_dir, class_names=names, sample_rate_hz=config.audio.sample_rate_hz,
                 window_samples=config.window_samples,
                 parity_waveforms=(0.1 * rng.standard_normal((4, config.window_samples))).astype(np.float32))
    return out_dir


def ceiling(model_dir, backend, batch_windows, threads, window_samples, reps=3):
    """Windows per second of the model alone on random windows (best of `reps` passes of 8 batches)."""
    scorer = Detector(model_dir, batch_windows=batch_windows, backend=backend, threads=threads)
    windows = (0.1 * np.random.default_rng(0).standard_normal((8 * batch_windows, window_samples))).astype(np.float32)
    scorer(windows[:batch_windows])
    best = np.inf
    for _ in range(reps):
        start = time.perf_counter()
        scorer(windows)
        best = min(best, time.perf_counter() - start)
    return len(windows) / best


def naive(model_dir, path, minutes, hop_s):
    """Seconds per window of one model call per window, over the first `minutes` of `path`."""
    from mammalnet.audio.dsp import frame_windows
    from mammalnet.detector import load_keras_model

    model, card = load_keras_model(model_dir)
    rate, window = card.sample_rate_hz, card.window_samples
    waveform, file_rate = read_audio(path, duration_s=minutes * 60)
    if file_rate != rate:
        from mammalnet.audio.resample import resample

        waveform = resample(waveform, file_rate, rate)
    windows = np.asarray(frame_windows(waveform, window, round(hop_s * rate)))
    model(windows[:1], training=False)
    start = time.perf_counter()
    for w in windows:
        np.asarray(model(w[None], training=False))
    return (time.perf_counter() - start) / len(windows), len(windows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--files", type=int, default=24, help="recordings the hours are split into")
    parser.add_argument("--data", default=None, help="scan the audio in this folder instead of generating it")
    parser.add_argument("--model", default=None, help="export folder (default: an untrained 2 kHz student)")
    parser.add_argument("--naive-minutes", type=float, default=5.0)
    parser.add_argument("--batch-windows", type=int, default=DEFAULT_BATCH_WINDOWS)
    parser.add_argument("--block-s", type=float, default=DEFAULT_BLOCK_S)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--hop-s", type=float, default=None, help="seconds between windows (default: half a window)")
    parser.add_argument("--threads", nargs="+", type=int, default=sorted({1, DEFAULT_THREADS}),
                        help="batches scored at once; one scan per value (default: %(default)s)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder, what = audio_folder(args)
        files = find_recordings([folder])[0]
        infos = [audio_info(f) for f in files]
        model_dir = args.model or student_model(os.path.join(tmp, "student"))
        from mammalnet.detector import load_keras_model

        model, card = load_keras_model(model_dir)
        settings = resolve_settings(card, hop_s=args.hop_s)
        rate, window = card.sample_rate_hz, card.window_samples
        hours = sum(i.duration_s for i in infos) / 3600
        windows = sum(int(np.ceil(max(i.duration_s * rate - window, 0) / (settings.hop_s * rate))) + 1 for i in infos)
        from mammalnet.flops import count_flops

        flops = count_flops(lambda x: model(x, training=False), window)["flops"]
        samples = sum(i.frames for i in infos)
        print(f"audio    : {len(files)} file(s), {hours:.2f} h from {what}; {samples:,} samples at "
              f"{sorted({i.sample_rate_hz for i in infos})} Hz")
        print(f"model    : {model_dir}: {rate} Hz, window {window / rate:g} s, hop {settings.hop_s:g} s -> {windows:,} "
              f"windows" + (f"; {flops / 1e6:.1f} MFLOP per window, {flops * windows / 1e12:.2f} TFLOP in all"
                            if flops else ""))
        print(f"machine  : {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the start")

        results = {}
        for backend, threads in ((b, t) for b in args.backends for t in args.threads):
            top = ceiling(model_dir, backend, args.batch_windows, threads, window)
            timings = {}
            out = os.path.join(tmp, f"out_{backend}_{threads}")
            cpu0, wall0 = time.process_time(), time.perf_counter()
            summary = scan_paths(model_dir, [folder], out, hop_s=args.hop_s, batch_windows=args.batch_windows,
                                      block_s=args.block_s, backend=backend, threads=threads, resume=False,
                                      progress=False, timings=timings)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            key = f"{backend}, threads {threads}"
            results[key] = wall
            staged = sum(timings.get(k, 0.0) for k in STAGES)
            print(f"\nscan [{key}, batch {args.batch_windows}, block {args.block_s:g} s]: {wall:.1f} s wall, "
                  f"{cpu:.1f} s CPU, real-time factor {hours * 3600 / wall:,.0f}x "
                  f"({summary['recordings']['done']} recordings, {windows / wall:,.0f} windows/s)")
            print(f"  model alone on random windows: {top:,.0f} windows/s -> at best {windows / top:.1f} s, "
                  f"{hours * 3600 / (windows / top):,.0f}x")
            print("  " + ", ".join(f"{k[:-2]} {timings.get(k, 0.0):.2f} s" for k in STAGES)
                  + f", other (load, trace, tables) {wall - staged:.2f} s")

        per_window, counted = naive(model_dir, files[0], args.naive_minutes, settings.hop_s)
        reference = per_window * windows
        best = min(results, key=results.get)
        print(f"\nnaive    : one model call per window, {counted} windows timed, {per_window * 1e3:.2f} ms each -> "
              f"{reference:,.0f} s for all ({hours * 3600 / reference:,.0f}x real time)")
        print(f"ratio    : naive / scan [{best}] = {reference / results[best]:.1f}x; target >= 10,000x real time "
              f"({hours * 3600 / 10000:.1f} s for {hours:g} h): reached {hours * 3600 / results[best]:,.0f}x")


if __name__ == "__main__":
    main()
