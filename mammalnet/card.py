"""The model card: what an exported model folder promises to whoever feeds it audio.

An export folder holds the model files (model.keras, saved_model/, model.tflite, model_int8.tflite, ...)
and `audio.json`, which is this card serialised: the rate and window the model takes, its classes in
output order, the band its frontend looks at, decision thresholds, calibration, background classes,
padding, the frontend's settings and the versions that made it. Everything that reads a model folder
(predict, scan, explain, evaluate, the buoy, tools) reads it through `ModelCard.from_dir` and nothing
else; `export` writes it with `ModelCard.write`.

Schema versions:
    1   audio.json without `schema_version` (exports from before the card): read with the defaults
        below (pad_mode zero, thresholds 0.5, temperature 1, no unknown threshold).
    2   adds schema_version, frontend and versions.
A card of a newer schema than this module knows is refused rather than half-read.

Standard library only (json, dataclasses): the buoy runtime, which has numpy and LiteRT and nothing
else, imports it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

from mammalnet import files

SCHEMA_VERSION = 2
CARD_FILE = "audio.json"
PAD_MODES = ("zero", "noise", "repeat")  # how a clip shorter than a window is filled (audio.dsp implements them)
DEFAULT_THRESHOLD = 0.5
INPUT_NAME, OUTPUT_NAME, SIGNATURE_KEY = "waveform", "probabilities", "serving_default"
NO_CALIBRATION = {"temperature": 1.0, "unknown_threshold": 0.0}

_REQUIRED = ("sample_rate_hz", "window_samples", "class_names")


class ModelDirError(ValueError):
    """A model folder that cannot be used: its card (audio.json) is missing, unreadable or inconsistent,
    or a model file is missing or disagrees with the card. The message names the file and the reason."""


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What an export promises. Build one with `ModelCard.create` (checked) or read one with `from_dir`.

    Attributes:
        sample_rate_hz: the model rate: every input window is audio at this rate.
        window_samples: samples per input window.
        class_names: output order of the probabilities.
        pad_mode: how a clip or file tail shorter than a window is filled (one of PAD_MODES).
        thresholds: {class: p} per-class decision thresholds of detectors (scan, buoy).
        calibration: {"temperature", "unknown_threshold"}: temperature scaling of a file's mean
            probabilities, and the calibrated top probability under which predict says "unknown".
        background_classes: classes that are no call, never reported by a detector; None: not
            stated (a class named `background` is then ignored, see `edge.events.default_ignored`).
        band_hz: (low, high) the frontend looks at; None: 0 Hz to the Nyquist frequency.
        frontend: the frontend's settings (n_fft, hop_length, n_mels, low_hz, ...); None: not stated.
        versions: {package: version} of what made the export; None: not stated.
        tflite_models: {kind: file name} of the TFLite files (float32, int8, float16).
        input_name, output_name, signature_key: the SavedModel/TFLite signature.
        schema_version: see the module docstring.
        extra: keys of audio.json this module does not interpret, kept so a rewrite loses nothing.
        source: the file the card was read from ("" for a card built in memory); not serialised.
    """

    sample_rate_hz: int
    window_samples: int
    class_names: tuple
    pad_mode: str = "zero"
    thresholds: Mapping = dataclasses.field(default_factory=dict)
    calibration: Mapping = dataclasses.field(default_factory=lambda: dict(NO_CALIBRATION))
    background_classes: tuple | None = None
    band_hz: tuple | None = None
    frontend: Mapping | None = None
    versions: Mapping | None = None
    tflite_models: Mapping = dataclasses.field(default_factory=dict)
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    signature_key: str = SIGNATURE_KEY
    schema_version: int = SCHEMA_VERSION
    extra: Mapping = dataclasses.field(default_factory=dict)
    source: str = dataclasses.field(default="", compare=False)

    # -- derived -------------------------------------------------------------------------------------
    @property
    def window_s(self) -> float:
        return self.window_samples / self.sample_rate_hz

    @property
    def nyquist_hz(self) -> float:
        return self.sample_rate_hz / 2

    @property
    def band(self) -> tuple[float, float]:
        """(low, high) Hz the model hears: band_hz, else 0 to the Nyquist frequency."""
        return tuple(self.band_hz) if self.band_hz is not None else (0.0, self.nyquist_hz)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def threshold(self, name: str) -> float:
        """The decision threshold of class `name` (DEFAULT_THRESHOLD when the card gives none)."""
        return float(self.thresholds.get(name, DEFAULT_THRESHOLD))

    def hop_samples(self, hop_s: float | None, default_windows: float = 1.0) -> int:
        """`hop_s` in whole samples at the model rate (at least 1); None: `default_windows` windows."""
        if hop_s is None:
            return max(1, int(self.window_samples * default_windows))
        if not hop_s > 0:
            raise ValueError(f"hop_s must be positive. Received: hop_s={hop_s}")
        return max(1, round(hop_s * self.sample_rate_hz))

    # -- building and checking -----------------------------------------------------------------------
    @classmethod
    def create(cls, **fields) -> "ModelCard":
        """A checked card from keyword fields (what export writes). Raises ModelDirError on bad values."""
        return cls(**fields).checked()

    def checked(self) -> "ModelCard":
        """This card with its values normalised (ints, floats, tuples, every class thresholded).

        Raises:
            ModelDirError: a value that cannot be what the field promises; the message names the file.
        """
        where = self.source or "model card"

        def fail(message):
            raise ModelDirError(f"{where}: {message}")

        rate, window = self.sample_rate_hz, self.window_samples
        for name, value in (("sample_rate_hz", rate), ("window_samples", window)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                if not (isinstance(value, float) and value.is_integer() and value >= 1):
                    fail(f"{name} must be a positive integer. Received: {name}={value!r}")
        rate, window = int(rate), int(window)
        names = self.class_names
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
            fail(f"class_names must be a non-empty list of names. Received: class_names={names!r}")
        names = tuple(str(n) for n in names)
        bad = [n for n in names if not n.strip() or "\n" in n or "\r" in n]
        if bad:
            fail(f"class names must be non-empty single lines. Received: {bad!r}")
        if len(set(names)) != len(names):
            fail(f"class_names has duplicates. Received: {sorted({n for n in names if names.count(n) > 1})!r}")
        if self.pad_mode not in PAD_MODES:
            fail(f"pad_mode must be one of {PAD_MODES}. Received: pad_mode={self.pad_mode!r}")
        thresholds = dict(self.thresholds or {})
        unknown = sorted(set(thresholds) - set(names))
        if unknown:
            fail(f"thresholds name unknown classes (not in class_names {list(names)}): {unknown}")
        resolved = {}
        for name in names:
            value = thresholds.get(name, DEFAULT_THRESHOLD)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                fail(f"thresholds must be numbers in [0, 1]. Received: thresholds[{name!r}]={value!r}")
            resolved[name] = float(value)
        calibration = dict(self.calibration or NO_CALIBRATION)
        if set(calibration) != set(NO_CALIBRATION):
            fail(f"calibration must have exactly temperature and unknown_threshold. Received: calibration={calibration!r}")
        try:
            temperature, unknown_threshold = float(calibration["temperature"]), float(calibration["unknown_threshold"])
        except (TypeError, ValueError):
            fail(f"calibration values must be numbers. Received: calibration={calibration!r}")
        if not (temperature > 0 and 0.0 <= unknown_threshold <= 1.0):
            fail(f"calibration needs temperature > 0 and unknown_threshold in [0, 1]. Received: calibration={calibration!r}")
        background = self.background_classes
        if background is not None:
            if isinstance(background, str) or not isinstance(background, (list, tuple)):
                fail(f"background_classes must be a list of class names. Received: background_classes={background!r}")
            background = tuple(str(n) for n in background)
            if set(background) - set(names):
                fail(f"background_classes must be class names of {list(names)}. "
                     f"Received: background_classes={list(background)}")
        band = self.band_hz
        if band is not None:
            if not (isinstance(band, (list, tuple)) and len(band) == 2
                    and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in band)
                    and 0 <= band[0] < band[1] <= rate / 2):
                fail(f"band_hz must be [low, high] with 0 <= low < high <= Nyquist ({rate / 2:g} Hz). "
                     f"Received: band_hz={band!r}")
            band = (float(band[0]), float(band[1]))
        for name in ("frontend", "versions"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                fail(f"{name} must be an object. Received: {name}={value!r}")
        models = dict(self.tflite_models or {})
        if not all(isinstance(k, str) and isinstance(v, str) and v and os.sep not in v and "/" not in v
                   for k, v in models.items()):
            fail(f"tflite_models must map kinds to file names in the model folder. Received: tflite_models={models!r}")
        if isinstance(self.schema_version, bool) or not isinstance(self.schema_version, int) \
                or not 1 <= self.schema_version <= SCHEMA_VERSION:
            fail(f"schema_version {self.schema_version!r} is not one this mammalnet reads (1 to {SCHEMA_VERSION}); "
                 "a newer mammalnet wrote it")
        return dataclasses.replace(
            self, sample_rate_hz=rate, window_samples=window, class_names=names, thresholds=resolved,
            calibration={"temperature": temperature, "unknown_threshold": unknown_threshold},
            background_classes=background, band_hz=band,
            frontend=None if self.frontend is None else dict(self.frontend),
            versions=None if self.versions is None else dict(self.versions), tflite_models=models,
            extra=dict(self.extra or {}))

    # -- reading and writing -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping, source: str = "") -> "ModelCard":
        """A checked card from audio.json's object; keys it does not interpret are kept in `extra`.

        Raises:
            ModelDirError: missing keys or bad values, naming `source`.
        """
        where = source or "model card"
        if not isinstance(data, Mapping):
            raise ModelDirError(f"{where}: must be a JSON object. Received: {type(data).__name__}")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise ModelDirError(f"{where}: missing keys {missing}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "source"}
        # derived or fixed fields that audio.json carries for other readers; rewritten from the card
        derived = {"window_s", "input_dtype", "input_shape"}
        fields = {k: v for k, v in data.items() if k in known}
        fields.setdefault("schema_version", 1)
        extra = {k: v for k, v in data.items() if k not in known and k not in derived}
        card = cls(**fields, extra=extra, source=source)
        return card.checked()

    @classmethod
    def from_file(cls, path) -> "ModelCard":
        """The card in a file (an audio.json anywhere).

        Raises:
            ModelDirError: the file is missing, not JSON, or not a valid card; the message names it.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ModelDirError(f"{path}: cannot read the model card ({err.strerror or err})") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModelDirError(f"{path}: not valid JSON ({err})") from err
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dir(cls, model_dir) -> "ModelCard":
        """The card of an export folder (its audio.json).

        Raises:
            ModelDirError: not an export folder, or its card is missing or invalid.
        """
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ModelDirError(f"{model_dir}: no such model folder")
        path = model_dir / CARD_FILE
        if not path.is_file():
            raise ModelDirError(f"{model_dir}: not an exported model folder, missing {CARD_FILE}")
        return cls.from_file(path)

    def to_dict(self) -> dict[str, Any]:
        """audio.json's object: every field (None fields left out), the derived window_s and input
        spec for readers in other languages, then `extra`."""
        out = {
            "schema_version": self.schema_version,
            "sample_rate_hz": self.sample_rate_hz,
            "window_samples": self.window_samples,
            "window_s": self.window_s,
            "pad_mode": self.pad_mode,
            "class_names": list(self.class_names),
            "thresholds": dict(self.thresholds),
            "calibration": dict(self.calibration),
        }
        if self.background_classes is not None:
            out["background_classes"] = list(self.background_classes)
        if self.band_hz is not None:
            out["band_hz"] = list(self.band_hz)
        out.update(input_name=self.input_name, output_name=self.output_name, signature_key=self.signature_key,
                   input_dtype="float32", input_shape=[None, self.window_samples])
        if self.tflite_models:
            out["tflite_models"] = dict(self.tflite_models)
        for name in ("frontend", "versions"):
            if getattr(self, name) is not None:
                out[name] = dict(getattr(self, name))
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def write(self, model_dir) -> Path:
        """Writes audio.json into `model_dir` atomically; returns its path."""
        path = Path(model_dir) / CARD_FILE
        files.write_json(path, self.to_dict())
        return path

    def replace(self, **changes) -> "ModelCard":
        """A checked copy with `changes` (e.g. tflite_models after quantization)."""
        return dataclasses.replace(self, **changes).checked()


__all__ = ["CARD_FILE", "ModelDirError", "DEFAULT_THRESHOLD", "ModelCard", "PAD_MODES", "SCHEMA_VERSION"]
