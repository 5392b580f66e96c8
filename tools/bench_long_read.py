"""Benchmark: windows from a long recording, read by offset vs decoding the whole file first.

Run: python tools/bench_long_read.py [--hours 2] [--rate 4000] [--windows 8]
Writes a synthetic recording of --hours at --rate Hz (16-bit WAV, in a temporary folder), then
times a pass of mammalnet's tf.data path (built once, not cached) taking --windows windows of 2 s spread over it (each read by offset
and resampled to 8 kHz) against the reference a naive loader does: decode the whole file with
soundfile, resample it all, frame it and keep the same windows. Prints samples decoded, CPU time
and peak traced memory of each, and the ratio, from one run on the same machine.
"""

import argparse
import os
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import soundfile as sf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mammalnet.audio.dsp import frame_windows  # noqa: E402
from mammalnet.audio.resample import resample  # noqa: E402
from mammalnet.data.manifest import make_manifest  # noqa: E402
from mammalnet.data.pipeline import WindowSpec, build_dataset, collect  # noqa: E402

TARGET_HZ, WINDOW_S = 8000, 2.0


def write_recording(path, hours, rate):
    """Ocean-like noise in one-minute blocks, so memory stays small while writing."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for _ in range(int(round(hours * 60))):
            f.write((0.05 * rng.standard_normal(rate * 60)).astype(np.float32))


def timed(fn):
    tracemalloc.start()
    start = time.process_time()
    result = fn()
    cpu = time.process_time() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, cpu, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--rate", type=int, default=4000, help="recording rate, Hz (resampled to 8 kHz)")
    parser.add_argument("--windows", type=int, default=8)
    args = parser.parse_args(argv)
    window = int(WINDOW_S * TARGET_HZ)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "long.wav")
        write_recording(path, args.hours, args.rate)
        info = sf.info(path)
        manifest = make_manifest([{"path": path, "label": "noise", "sample_rate_hz": info.samplerate,
                                   "duration_s": info.duration}])
        spec = WindowSpec(TARGET_HZ, window, window, args.windows)

        # built once, as in training; uncached, so every pass reads from disk again
        dataset = build_dataset(manifest, ["noise"], spec, batch_size=args.windows, training=False, cache=False)

        def by_offset():
            return collect(dataset)[0]

        def whole_file():
            data, rate = sf.read(path, dtype="float32")
            frames = frame_windows(resample(data, rate, TARGET_HZ), window, window).numpy()
            picks = np.linspace(0, len(frames) - 1, args.windows).round().astype(int)
            return frames[picks]

        by_offset()  # the first pass traces the graph: time the reads, not the tracing
        ours, ours_cpu, ours_peak = timed(by_offset)
        ref, ref_cpu, ref_peak = timed(whole_file)
    print(f"recording: {args.hours} h at {args.rate} Hz = {info.frames:,} samples; {args.windows} windows of "
          f"{WINDOW_S} s at {TARGET_HZ} Hz")
    print(f"by offset   : {ours.shape[0]} windows, {ours_cpu * 1e3:8.1f} ms CPU, peak traced memory "
          f"{ours_peak / 2**20:7.1f} MiB")
    print(f"whole file  : {ref.shape[0]} windows, {ref_cpu * 1e3:8.1f} ms CPU, peak traced memory "
          f"{ref_peak / 2**20:7.1f} MiB")
    print(f"ratio       : whole file / by offset = {ref_cpu / ours_cpu:.1f}x CPU, {ref_peak / max(ours_peak, 1):.1f}x memory "
          "(traced Python/numpy allocations; TensorFlow's own buffers are not traced)")


if __name__ == "__main__":
    main()
