"""Benchmark: CPU ms per 2-s clip of mammalnet's resample against soxr and scipy.signal.resample_poly.

Run: python tools/bench_resample.py
CPU time of this process, best of several rounds (wall time is unreliable on shared cores).
"""

import math
import os
import sys
import time

import numpy as np
import scipy.signal
import soxr
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mammalnet.audio.resample import resample  # noqa: E402


def best_ms(fn, repeats=20, rounds=7):
    fn()
    best = math.inf
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(repeats):
            fn()
        best = min(best, (time.process_time() - start) / repeats * 1e3)
    return best


def dataset_ms(clips, map_fn, rounds=5):
    data = tf.data.Dataset.from_tensor_slices(clips).cache()
    for _ in data:
        pass
    data = data.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE)
    best = math.inf
    for _ in range(rounds):
        start = time.process_time()
        for _ in data:
            pass
        best = min(best, (time.process_time() - start) / len(clips[0]) * 1e3)
    return best


def main():
    signature = [tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)]
    print("2-s clip, CPU ms per clip (2-core machine):")
    for source, target in [(166600, 24000), (44100, 24000), (8000, 24000), (81920, 22050)]:
        x = np.random.default_rng(0).standard_normal(2 * source).astype(np.float32)
        tensor, rate, common = tf.constant(x), tf.constant(source), math.gcd(source, target)
        static = tf.function(lambda w: resample(w, source, target))
        dynamic = tf.function(lambda w, r: resample(w, r, target), input_signature=signature)
        known = (source, 8000, 48000, 96000)
        clips = (np.stack([x] * 40), np.full(40, source, np.int32))
        row = {
            "tf.function: python rate": best_ms(lambda: static(tensor)),
            "tf.function: tensor rate": best_ms(lambda: dynamic(tensor, rate)),
            "tf.data map: python rate": dataset_ms(clips, lambda w, r: resample(w, source, target)),
            "tf.data map: tensor rate": dataset_ms(clips, lambda w, r: resample(w, r, target)),
            "tensor rate + known_rates_hz": dataset_ms(
                clips, lambda w, r: resample(w, r, target, known_rates_hz=known)),
            "| soxr HQ": best_ms(lambda: soxr.resample(x, source, target, "HQ")),
            "soxr VHQ": best_ms(lambda: soxr.resample(x, source, target, "VHQ")),
            "resample_poly": best_ms(
                lambda: scipy.signal.resample_poly(x, target // common, source // common), 3, 3),
        }
        print(f"  {source:>6} -> {target:<5}", ", ".join(f"{k} {v:.2f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
