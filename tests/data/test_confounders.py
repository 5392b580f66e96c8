"""The confounder audit: metadata alone vs the label, with and without the clip duration."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mammalnet.data.confounders import confounder_audit


def _annotated_calls(n=80, seed=0):
    """Calls annotated 0.6-1.4 s long, background stretches all exactly 1 s, one recording setting."""
    rng = np.random.default_rng(seed)
    label = np.where(np.arange(n) % 2 == 0, "call", "background")
    length = np.where(label == "call", rng.choice([0.6, 0.8, 1.2, 1.4], n), 1.0)
    start = rng.uniform(0, 3000, n)
    return pd.DataFrame({"label": label, "start_s": start, "end_s": start + length, "duration_s": 3600.0,
                         "sample_rate_hz": 2000, "channels": 1, "bit_depth": 16,
                         "split": np.where(np.arange(n) < 0.75 * n, "train", "test")})


def test_clip_duration_is_a_shortcut_only_when_it_reaches_the_model():
    manifest = _annotated_calls()
    padded = confounder_audit(manifest)
    assert padded["warning"] and padded["results"]["rate+duration"]["accuracy"] == 1.0
    context = confounder_audit(manifest, clip_duration=False)
    assert set(context["results"]) == {"rate+channels+bit_depth", "rate"}
    assert not context["warning"]
    assert context["results"]["rate"]["accuracy"] <= context["majority_rate"] + 0.05
