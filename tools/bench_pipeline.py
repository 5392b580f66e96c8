"""Benchmark: clips/s of mammalnet's feature path against a librosa reference, same files, same run.

mammalnet: tf.data [decode (soundfile) -> resample (tf) -> window] -> Bandpass -> LogMel -> SpecAugment,
           with the frontend layers mapped inside the tf.data graph (parallel calls, as in training).
librosa:   librosa.load(sr=...) (soxr resampling) -> scipy Butterworth band-pass (sosfilt)
           -> librosa.feature.melspectrogram -> power_to_db -> the same time/frequency masks in numpy.

Prints clips/s, audio-seconds/s and the ratio. Run:
    python tools/bench_pipeline.py --data ../shared/datasets/watkins10
    python tools/bench_pipeline.py            # the synthetic ocean, if no real data is around
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="folder-per-class tree (default: ../shared/datasets/watkins10, else the "
                                       "synthetic ocean)")
    parser.add_argument("--limit", type=int, default=400, help="clips to time (default 400)")
    parser.add_argument("--sample-rate", type=int, default=22050)
    parser.add_argument("--window-s", type=float, default=1.0)
    parser.add_argument("--n-fft", type=int, default=1024)
    parser.add_argument("--hop", type=int, default=256)
    parser.add_argument("--n-mels", type=int, default=96)
    parser.add_argument("--low-hz", type=float, default=50.0)
    parser.add_argument("--high-hz", type=float, default=10000.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes of each path; the best is kept")
    return parser.parse_args(argv)


def librosa_features(path: str, args) -> np.ndarray:
    import librosa
    import scipy.signal

    warnings.filterwarnings("ignore", message="n_fft=.* is too large")  # clips shorter than n_fft: expected
    y, sr = librosa.load(path, sr=args.sample_rate, mono=True)
    sos = scipy.signal.butter(8, [args.low_hz, args.high_hz], btype="bandpass", fs=sr, output="sos")
    y = scipy.signal.sosfilt(sos, y).astype(np.float32)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=args.n_fft, hop_length=args.hop, n_mels=args.n_mels,
                                         fmin=args.low_hz, fmax=args.high_hz)
    db = librosa.power_to_db(mel, top_db=80.0)
    rng = np.random.default_rng(0)
    f0 = rng.integers(0, max(1, args.n_mels - 8))
    t0 = rng.integers(0, max(1, db.shape[1] - 10))
    db[f0:f0 + 8, :] = db.mean()
    db[:, t0:t0 + 10] = db.mean()
    return db


def _librosa_worker(job):
    path, args = job
    return librosa_features(path, args).shape


def time_librosa(paths, args) -> float:
    start = time.perf_counter()
    for path in paths:
        librosa_features(path, args)
    return time.perf_counter() - start


def time_librosa_pool(pool, paths, args) -> float:
    """Two worker processes, already started and warmed up (imports, numba) before the clock starts."""
    start = time.perf_counter()
    pool.map(_librosa_worker, [(p, args) for p in paths], chunksize=8)
    return time.perf_counter() - start


def build_mammalnet(manifest, args):
    import tensorflow as tf

    from mammalnet.data.pipeline import WindowSpec, build_dataset
    from mammalnet.layers import Bandpass, LogMel, SpecAugment

    window = int(round(args.window_s * args.sample_rate))
    spec = WindowSpec(args.sample_rate, window, window, max_windows_per_clip=1000)
    bandpass = Bandpass(args.low_hz, args.high_hz, args.sample_rate)
    logmel = LogMel(args.sample_rate, n_fft=args.n_fft, hop_length=args.hop, n_mels=args.n_mels,
                    low_hz=args.low_hz, high_hz=args.high_hz, top_db=80.0)
    augment = SpecAugment(8, 10, num_freq_masks=1, num_time_masks=1, seed=0)
    names = sorted(manifest["label"].unique())
    ds = build_dataset(manifest, names, spec, batch_size=args.batch_size, training=False, cache=False)

    def features(waveform, label):
        return augment(logmel(bandpass(waveform)), training=True), label

    return ds.map(features, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def time_mammalnet(ds) -> tuple[float, int]:
    start = time.perf_counter()
    windows = 0
    for x, _ in ds:
        windows += int(x.shape[0])
    return time.perf_counter() - start, windows


def main(argv=None) -> int:
    args = parse_args(argv)
    from mammalnet.data.sources import read_folder

    data = args.data
    default_real = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                                "datasets", "watkins10")
    if data is None and os.path.isdir(default_real):
        data = default_real
    if data is None:
        from mammalnet.data.synthetic import ensure_ocean
        from mammalnet.data.sources import read_labels_csv

        root = ensure_ocean()
        manifest = read_labels_csv(os.path.join(root, "labels.csv"), label_column="species")
    else:
        manifest = read_folder(data)
    manifest = manifest.sample(n=min(args.limit, len(manifest)), random_state=0).reset_index(drop=True)
    paths = list(manifest["path"])
    audio_s = float(manifest["duration_s"].sum())
    rates = manifest["sample_rate_hz"]
    print(f"{len(paths)} clips, {audio_s:.1f} s of audio, {rates.nunique()} source rates "
          f"({rates.min()}-{rates.max()} Hz), target {args.sample_rate} Hz, "
          f"{args.n_mels} mel, n_fft {args.n_fft}, hop {args.hop}")

    ds = build_mammalnet(manifest.head(32), args)
    time_mammalnet(ds)  # trace and warm up
    ds = build_mammalnet(manifest, args)
    mammalnet_s, windows = min(time_mammalnet(ds) for _ in range(args.repeats))
    librosa_features(paths[0], args)  # import and warm up
    librosa_1 = min(time_librosa(paths, args) for _ in range(args.repeats))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_librosa_worker, [(p, args) for p in paths[:16]], chunksize=8)  # warm up both workers
        librosa_2 = min(time_librosa_pool(pool, paths, args) for _ in range(args.repeats))

    n = len(paths)
    rows = [("mammalnet tf.data", mammalnet_s), ("librosa, 1 process", librosa_1), ("librosa, 2 processes", librosa_2)]
    print(f"{'path':24s} {'seconds':>8s} {'clips/s':>9s} {'audio s/s':>10s}")
    for name, seconds in rows:
        print(f"{name:24s} {seconds:8.2f} {n / seconds:9.1f} {audio_s / seconds:10.1f}")
    print(f"mammalnet windows computed: {windows} ({args.window_s} s each)")
    print(f"ratio mammalnet / librosa (1 process):  {librosa_1 / mammalnet_s:.1f}x")
    print(f"ratio mammalnet / librosa (2 processes): {librosa_2 / mammalnet_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
