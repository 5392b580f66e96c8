"""Typed pipeline configuration: dataclasses, YAML load/dump and `--set key=value` overrides.

Every field is explicit: an unknown key in YAML or in `--set` is an error, never a silent default.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any

import yaml


class ConfigError(ValueError):
    """A pipeline file or override is invalid. The message names the key and the value."""


@dataclasses.dataclass
class DataConfig:
    """Where the audio is and how it is labelled.

    source: `synthetic` (the embedded ocean, generated on first use), `folder` (one sub-folder per
    class under `root`) or `csv` (a labels CSV with file and label columns).
    """

    source: str = "synthetic"
    root: str | None = None
    labels_csv: str = "labels.csv"
    file_column: str = "file"
    label_column: str = "species"
    group_column: str | None = None
    group_fallback_column: str | None = None
    extensions: list[str] = dataclasses.field(
        default_factory=lambda: [".wav", ".flac", ".aif", ".aiff", ".aifc", ".ogg", ".mp3"])
    synthetic_seed: int = 0
    synthetic_clips: int = 1200
    cache_dir: str | None = None


@dataclasses.dataclass
class SplitConfig:
    """How clips are divided into train / val / test.

    method: `stratified` (by clip, stratified by label) or `group` (no group on two sides,
    stratified as far as groups allow; needs `data.group_column`).
    """

    method: str = "stratified"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0


@dataclasses.dataclass
class AudioConfig:
    """The model's view of time: pipeline sample rate and analysis windows.

    hop_s: seconds between window starts (default: window_s, no overlap); train_hop_s: the same
    for training windows only (denser windows = more time shifts per epoch; default: hop_s).
    """

    sample_rate_hz: int = 24000
    window_s: float = 2.0
    hop_s: float | None = None
    train_hop_s: float | None = None
    max_windows_per_clip: int = 8
    channel: int | None = None


@dataclasses.dataclass
class FrontendConfig:
    """Band-pass + log-mel layers inside the model (what trains is what ships)."""

    low_hz: float = 10.0
    high_hz: float = 12000.0
    bandpass_taps: int = 129
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 64
    top_db: float | None = 80.0


@dataclasses.dataclass
class AugmentConfig:
    """SpecAugment masks, applied only while training."""

    freq_mask_param: int = 8
    time_mask_param: int = 10
    num_freq_masks: int = 1
    num_time_masks: int = 1


@dataclasses.dataclass
class ModelConfig:
    """A registered model family and its keyword arguments (checked by the builder)."""

    name: str = "cnn"
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    early_stopping_patience: int = 4
    class_weight: str = "none"
    shuffle_buffer: int = 2048
    seed: int = 0


@dataclasses.dataclass
class ExportConfig:
    enabled: bool = True
    parity_examples: int = 32
    parity_tolerance: float = 1e-4


@dataclasses.dataclass
class PipelineConfig:
    name: str = "default"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    audio: AudioConfig = dataclasses.field(default_factory=AudioConfig)
    frontend: FrontendConfig = dataclasses.field(default_factory=FrontendConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)

    def validate(self) -> "PipelineConfig":
        """Checks cross-field constraints; returns self.

        Raises:
            ConfigError: naming the offending key and value.
        """
        choices = {
            "data.source": (self.data.source, ("synthetic", "folder", "csv")),
            "split.method": (self.split.method, ("stratified", "group")),
            "train.class_weight": (self.train.class_weight, ("none", "balanced")),
            "train.lr_schedule": (self.train.lr_schedule, ("cosine", "constant")),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{key} must be one of {allowed}. Received: {key}={value!r}")
        if self.data.source in ("folder", "csv") and not self.data.root:
            raise ConfigError(
                f"data.source={self.data.source!r} needs data.root (or --data DIR). Received: data.root=None")
        if self.split.method == "group" and not self.data.group_column:
            raise ConfigError("split.method='group' needs data.group_column. Received: data.group_column=None")
        fractions = self.split.val_fraction + self.split.test_fraction
        if not (0 < self.split.val_fraction < 1 and 0 < self.split.test_fraction < 1 and fractions < 1):
            raise ConfigError(
                "split fractions must be in (0, 1) and sum below 1. Received: "
                f"split.val_fraction={self.split.val_fraction}, split.test_fraction={self.split.test_fraction}")
        nyquist = self.audio.sample_rate_hz / 2
        if not 0 <= self.frontend.low_hz < self.frontend.high_hz <= nyquist:
            raise ConfigError(
                f"need 0 <= frontend.low_hz < frontend.high_hz <= Nyquist ({nyquist} Hz). Received: "
                f"frontend.low_hz={self.frontend.low_hz}, frontend.high_hz={self.frontend.high_hz}")
        positive = {
            "audio.sample_rate_hz": self.audio.sample_rate_hz, "audio.window_s": self.audio.window_s,
            "audio.max_windows_per_clip": self.audio.max_windows_per_clip,
            "train.epochs": self.train.epochs, "train.batch_size": self.train.batch_size,
            "train.learning_rate": self.train.learning_rate,
        }
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{key} must be positive. Received: {key}={value}")
        for key in ("hop_s", "train_hop_s"):
            value = getattr(self.audio, key)
            if value is not None and not value > 0:
                raise ConfigError(f"audio.{key} must be positive. Received: audio.{key}={value}")
        return self

    @property
    def window_samples(self) -> int:
        return int(round(self.audio.window_s * self.audio.sample_rate_hz))

    @property
    def hop_samples(self) -> int:
        hop_s = self.audio.hop_s if self.audio.hop_s is not None else self.audio.window_s
        return int(round(hop_s * self.audio.sample_rate_hz))

    @property
    def train_hop_samples(self) -> int:
        if self.audio.train_hop_s is None:
            return self.hop_samples
        return int(round(self.audio.train_hop_s * self.audio.sample_rate_hz))


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Converts a YAML value to the dataclass field type, or raises ConfigError."""
    if dataclasses.is_dataclass(annotation):
        return _from_dict(annotation, value, key)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list. Received: {key}={value!r}")
        return [_coerce(v, args[0], f"{key}[]") for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping. Received: {key}={value!r}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false. Received: {key}={value!r}")
        return value
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        # PyYAML (YAML 1.1) reads `1e-3` without a dot as a string.
        try:
            return float(value)
        except ValueError:
            pass
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is str and isinstance(value, str):
        return value
    raise ConfigError(f"{key} must be {getattr(annotation, '__name__', annotation)}. Received: {key}={value!r}")


def _from_dict(cls, values: Any, prefix: str = ""):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'pipeline'} must be a mapping. Received: {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key(s) {', '.join(where + k for k in unknown)}; known: {sorted(fields)}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in values.items()}
    return cls(**kwargs)


def from_dict(values: dict) -> PipelineConfig:
    """Builds a PipelineConfig from a nested mapping (unknown keys are errors)."""
    return _from_dict(PipelineConfig, values)


def to_dict(config: PipelineConfig) -> dict:
    return dataclasses.asdict(config)


def load(path: str | os.PathLike) -> PipelineConfig:
    """Loads a pipeline YAML file.

    Raises:
        ConfigError: missing file, invalid YAML, unknown key or wrong type (naming the file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"pipeline file not found. Received: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
        return from_dict(values or {})
    except (yaml.YAMLError, ConfigError) as err:
        raise ConfigError(f"{path}: {err}") from err


def dump(config: PipelineConfig, path: str | os.PathLike) -> None:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(to_dict(config), f, sort_keys=False)


def apply_overrides(config: PipelineConfig, overrides: list[str]) -> PipelineConfig:
    """Applies `section.key=value` overrides; the value is parsed as YAML (`1e-3`, `[a, b]`, `null`).

    Raises:
        ConfigError: malformed override, unknown key, or a value of the wrong type.
    """
    values = to_dict(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set needs key=value. Received: {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = values
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"unknown key {'.'.join(parts[: i + 1])!r} in --set {item!r}")
            node = node[part]
        last = parts[-1]
        if last not in node and not (len(parts) >= 2 and parts[-2] == "params"):
            raise ConfigError(f"unknown key {key!r} in --set {item!r}")
        node[last] = yaml.safe_load(raw)
    return from_dict(values)
