"""The confounder audit: how well recording metadata alone predicts the label under a split.

Recording settings (sample rate, duration, channels, bit depth) often differ by class in real
archives: each species was recorded on its own cruise, with its own gear. A model can then score by
learning the settings instead of the animal. This module measures that shortcut with a random
forest that sees only the metadata, so both `inspect` and every fit can report it beside the
model's own accuracy.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from mammalnet.data.manifest import clip_duration_s

# Warn when metadata accuracy >= majority rate + CONFOUNDER_MARGIN and >= CONFOUNDER_MIN_ACCURACY:
# 0.15 is three binomial standard deviations of accuracy on ~100 scored clips (chance does not get
# there), and 0.5 keeps a handful of scored clips from warning on noise.
CONFOUNDER_MARGIN = 0.15
CONFOUNDER_MIN_ACCURACY = 0.5
FEATURE_SETS = {
    "rate+duration+channels+bit_depth": ("sample_rate_hz", "clip_s", "channels", "bit_depth"),
    "rate+duration": ("sample_rate_hz", "clip_s"),
}


def metadata_features(df: pd.DataFrame, columns) -> np.ndarray:
    """[rows, len(columns)] recording metadata of an audited manifest (bit depth 0 = compressed)."""
    table = pd.DataFrame({"sample_rate_hz": df["sample_rate_hz"].astype(float), "clip_s": clip_duration_s(df),
                          "channels": df["channels"].astype(float),
                          "bit_depth": df["bit_depth"].astype("Float64").fillna(0.0).astype(float)})
    return table[list(columns)].to_numpy()


def confounder_audit(df: pd.DataFrame, *, seed: int = 0, clip_duration: bool = True) -> dict:
    """How well recording metadata alone predicts the label under the split in `df["split"]`.

    A RandomForestClassifier (random_state=seed) per FEATURE_SETS entry is trained on the train rows
    and scored on the test rows (val when there are none), beside the majority rate: the share of
    scored rows whose label is the train majority class.

    clip_duration=False leaves the clip duration out of every feature set: when each clip is read as
    the same stretch of its recording (audio.short_clips: context), its annotated duration does not
    reach the model, so it is no shortcut the model could take.

    Returns:
        {"scored_on", "n_train", "n_scored", "majority_class", "majority_rate", "results":
        {feature set: {"accuracy", "balanced_accuracy"}}, "warning": bool}, or {"skipped": reason}
        when the split leaves nothing to score.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    train = df[df["split"] == "train"]
    scored_on = "test" if (df["split"] == "test").any() else "val"
    scored = df[df["split"] == scored_on]
    if scored.empty or train["label"].nunique() < 2:
        return {"skipped": f"the split has {len(scored)} val/test clip(s) and {train['label'].nunique()} "
                           "class(es) in train: nothing to score (too few clips per class)"}
    majority = train["label"].value_counts().idxmax()
    majority_rate = float((scored["label"] == majority).mean())
    results = {}
    feature_sets = FEATURE_SETS if clip_duration else {
        name.replace("+duration", ""): tuple(c for c in columns if c != "clip_s") for name, columns in FEATURE_SETS.items()}
    for name, columns in feature_sets.items():
        forest = RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1)
        forest.fit(metadata_features(train, columns), train["label"])
        predicted = forest.predict(metadata_features(scored, columns))
        with warnings.catch_warnings():  # predicting a class absent from the scored rows is expected here
            warnings.simplefilter("ignore", UserWarning)
            balanced = float(balanced_accuracy_score(scored["label"], predicted))
        results[name] = {"accuracy": float(accuracy_score(scored["label"], predicted)), "balanced_accuracy": balanced}
    warning = any(r["accuracy"] >= majority_rate + CONFOUNDER_MARGIN and r["accuracy"] >= CONFOUNDER_MIN_ACCURACY
                  for r in results.values())
    return {"scored_on": scored_on, "n_train": int(len(train)), "n_scored": int(len(scored)),
            "majority_class": str(majority), "majority_rate": majority_rate, "results": results,
            "warning": bool(warning)}


__all__ = ["confounder_audit", "metadata_features", "FEATURE_SETS", "CONFOUNDER_MARGIN",
           "CONFOUNDER_MIN_ACCURACY"]
