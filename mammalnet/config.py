"""Typed pipeline configuration: dataclasses, YAML load/dump and `--set key=value` overrides.

One module although long: the sections are one schema, and a key's default, type, cross-field check
and YAML or `--set` parsing are read and changed together.

Every field is explicit: an unknown key in YAML or in `--set` is an error, never a silent default.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import pathlib
import re
import typing
from typing import Any

import yaml


class ConfigError(ValueError):
    """A pipeline file or override is invalid. The message names the key and the value."""


SOURCES = ("synthetic", "synthetic_long", "folder", "csv", "split_folders", "kaggle", "raven")
FEATURES = ("logmel", "mfcc", "pcen", "complexity", "waveform")
LOSSES = ("crossentropy", "focal", "class_balanced", "class_balanced_focal")
SAMPLING = ("none", "balanced", "sqrt")
GENERATIVE_METHODS = ("none", "vae", "diffusion")
PRETRAIN_METHODS = ("none", "simclr", "supcon")
DISTRIBUTE = ("auto", "none", "mirrored", "multi_worker")
SHORT_CLIPS = ("pad", "context")


@dataclasses.dataclass
class LongRecordingConfig:
    """The `synthetic_long` archive (mammalnet/data/synthetic/longrec.py): long recordings of drifting
    ocean noise with sparse calls at known times and Raven truth tables.

    files recordings of hours_per_file hours at sample_rate_hz; calls of `species` (only species whose
    calls fit below 0.45 x the rate) at calls_per_hour on average, each at an SNR drawn uniformly from
    snr_db ([lo, hi] or [value]; dB, in the call's truth box); unannotated distractors: ship passages
    and impulsive transients per hour. The defaults (8 x 1.5 h at 2 kHz, ~480 right whale upcalls)
    generate in well under a minute.
    """

    files: int = 8
    hours_per_file: float = 1.5
    sample_rate_hz: int = 2000
    species: list[str] = dataclasses.field(default_factory=lambda: ["right_whale"])
    calls_per_hour: float = 40.0
    snr_db: list[float] = dataclasses.field(default_factory=lambda: [0.0, 15.0])
    seed: int = 0
    ship_passages_per_hour: float = 0.2
    transients_per_hour: float = 6.0


@dataclasses.dataclass
class DataConfig:
    """Where the audio is, how it is labelled, and what to do with files that cannot be used.

    source (one reader each, in mammalnet/data/sources/):
      `synthetic`      the embedded ocean, generated on first use;
      `folder`         <root>/<class>/.../*.wav; the folder `label_depth` levels below root names the
                       class (1 = first level; -1 = the file's own folder);
      `csv`            a labels CSV (`labels_csv`) with file and label columns, optional group and
                       start/end columns (seconds);
      `split_folders`  <root>/{train,validate,test}/ (`split_dirs`), each with a `metadata_glob`
                       spreadsheet (file_name, species_name, sample_rate, feature columns kept as
                       side features); the folders are the split (split.method: fixed);
      `kaggle`         whale-detection layout: <root>/train/*.aiff + <root>/train.csv
                       (clip_name, label 0/1); <root>/test/ is unlabelled and not read;
      `raven`          long recordings + Raven selection tables (`raven_table_glob`): one manifest
                       row per selection, plus `background_per_recording` segments away from them.
      `synthetic_long` long synthetic recordings with Raven truth (the `long` section), generated
                       into the cache on first use, then read exactly like `raven` (background
                       settings apply; the group is the recording). data.root is not used.
    file_column / label_column: None means the layout's usual name (csv: file/species, else label; xlsx:
    file_name/species_name; kaggle: clip_name/label; raven: the first of Annotation, Species,
    Label, Class, Call Type, Type present).
    label_map: raw label -> class name (e.g. kaggle {"0": no_call, "1": upcall}).
    classes: when set, only these labels are used; rows with other labels are skipped as unknown.
    below_band: a clip recorded below twice `frontend.high_hz` cannot hold the band the model
    looks at: `skip` it (recorded in skipped.csv) or `keep` it anyway (inspect still warns).
    strict: any skipped file or row is an error (`--strict`).
    generated_root: a folder of class folders of extra clips (e.g. written by `mammalnet.generate`)
    added to the training split only, after the split: never validated or tested on. Their classes
    must be classes of the data.
    """

    source: str = "synthetic"
    root: str | None = None
    labels_csv: str = "labels.csv"
    file_column: str | None = None
    label_column: str | None = None
    group_column: str | None = None
    group_fallback_column: str | None = None
    start_column: str | None = None
    end_column: str | None = None
    label_depth: int = 1
    label_map: dict[str, str] = dataclasses.field(default_factory=dict)
    classes: list[str] | None = None
    extensions: list[str] = dataclasses.field(
        default_factory=lambda: [".wav", ".flac", ".aif", ".aiff", ".aifc", ".ogg", ".mp3"])
    metadata_glob: str = "*_metadata.xlsx"
    split_dirs: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"train": "train", "val": "validate", "test": "test"})
    raven_table_glob: str = "*.selections.txt"
    background_per_recording: int = 0
    background_label: str = "background"
    background_duration_s: float | None = None
    background_min_gap_s: float = 1.0
    below_band: str = "skip"
    strict: bool = False
    synthetic_seed: int = 0
    synthetic_clips: int = 1200
    cache_dir: str | None = None
    generated_root: str | None = None
    long: LongRecordingConfig = dataclasses.field(default_factory=LongRecordingConfig)


@dataclasses.dataclass
class SplitConfig:
    """How clips are divided into train / val / test.

    method: `stratified` (by clip, stratified by label), `group` (no group on two sides,
    stratified as far as groups allow; the group is `data.group_column`, or `group_regex` on the
    file name, or what the source provides: the recording for raven, the source for synthetic),
    or `fixed` (the split comes from `split_file`, a CSV with file and split columns, or from the
    split_folders layout). Identical audio (same content hash) always stays on one side.
    group_regex: applied to the file name (not the folder); the first capture group, else the whole
    match, is the group (e.g. `^(.{5})` for Watkins tape IDs).
    """

    method: str = "stratified"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    group_regex: str | None = None
    split_file: str | None = None
    # Keep only this fraction of the training clips' labels (stratified, at least one clip per
    # class; the same clips for the same seed). The dropped clips stay available, unlabelled, to
    # pretrain.method simclr. For label-efficiency studies: val and test are untouched.
    train_label_fraction: float = 1.0


@dataclasses.dataclass
class AudioConfig:
    """The model's view of time: pipeline sample rate and analysis windows.

    hop_s: seconds between window starts (default: window_s, no overlap); train_hop_s: the same
    for training windows only (denser windows = more time shifts per epoch; default: hop_s).
    max_windows_per_clip: a longer clip gives this many windows spread over its length, each read
    from disk by offset (a two-hour file is never decoded whole).
    channel: which channel of multichannel audio to use; None mixes all channels down.
    pad_mode: how a clip shorter than a window is filled: `zero`, `noise` (Gaussian noise at the
    clip's own quietest level) or `repeat` (the clip tiled).
    short_clips: a clip shorter than its windows' stretch, (max_windows_per_clip - 1) * hop + window:
    `pad` reads it alone and pads it (clips that are whole files); `context` reads that stretch of its
    file centred on it (annotated calls in long recordings, e.g. Raven selections: the model then
    learns from what a scan of the recording sees, and zero padding cannot tell calls from background).
    """

    sample_rate_hz: int = 24000
    window_s: float = 2.0
    hop_s: float | None = None
    train_hop_s: float | None = None
    max_windows_per_clip: int = 8
    channel: int | None = None
    pad_mode: str = "zero"
    short_clips: str = "pad"


@dataclasses.dataclass
class FrontendConfig:
    """Band-pass + log-mel layers inside the model (what trains is what ships)."""

    low_hz: float = 10.0
    high_hz: float = 12000.0
    # FIR length of the band-pass in front of the features; 0: none (the mel bands still span only
    # low_hz..high_hz; a buoy recipe saves the filter's cost, a fifth of a 2 kHz student's time).
    bandpass_taps: int = 129
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 64
    top_db: float | None = 80.0
    # What the backbone reads (FEATURES); None = the family's own input: log-mel for the image and
    # sequence families, the band-passed waveform for waveform families (raw_cnn, hub).
    features: str | None = None
    n_mfcc: int = 60
    pcen_time_constant_s: float = 0.4
    # "handcrafted": 18 clip features (centroid, RMS, ZCR, roll-off, band-energy ratio, 13 MFCC
    # means) computed in-graph and fused before the head; "none": the backbone alone.
    side_features: str = "none"


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
class LossConfig:
    """The training loss (LOSSES), on sparse labels and the model's probabilities.

    `crossentropy` (with `label_smoothing`), `focal` (Lin et al. 2017: `gamma`, optional per-class
    `alpha`, one weight per class in class order), `class_balanced` / `class_balanced_focal` (Cui et
    al. 2019: each class weighted by (1 - beta) / (1 - beta^n), n its training windows, normalised
    to average 1, on cross-entropy or on focal loss).
    """

    name: str = "crossentropy"
    label_smoothing: float = 0.0
    gamma: float = 2.0
    alpha: list[float] | None = None
    beta: float = 0.999


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 12
    # Batches per epoch; None: one pass over the training windows. Set, the windows repeat (or are
    # re-sampled) as needed: every run gets the same number of gradient steps whatever its data size
    # (label-efficiency studies: 1% of the labels is otherwise a step or two per epoch).
    steps_per_epoch: int | None = None
    batch_size: int = 32
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    early_stopping_patience: int = 4
    class_weight: str = "none"
    shuffle_buffer: int = 2048
    seed: int = 0
    # Fine-tuning schedule for a pretrained part (xception's `pretrained_backbone`, or the encoder
    # of pretrain.method / pretrain.encoder): frozen for the first `frozen_epochs` (0: trained from
    # the start), then unfrozen (BatchNorm kept in inference mode) at learning_rate * unfreeze_lr_factor.
    frozen_epochs: int = 0
    unfreeze_lr_factor: float = 0.1
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    # Re-sampling per class in tf.data (SAMPLING): `balanced` draws every class equally often,
    # `sqrt` in proportion to the square root of its training windows; an epoch keeps its length.
    sampling: str = "none"
    optimizer: str = "adam"
    weight_decay: float = 1e-4  # adamw only
    # Linear warm-up from ~0 to learning_rate over this many epochs (any lr_schedule).
    warmup_epochs: int = 0
    # Clip each gradient's global norm to this (None: no clipping).
    clipnorm: float | None = None
    # lr_schedule `plateau`: ReduceLROnPlateau on val_loss by this factor after this many epochs.
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    # tf.distribute strategy (DISTRIBUTE; mammalnet/training/distribute.py): `auto` is
    # MultiWorkerMirroredStrategy when TF_CONFIG names several workers, else MirroredStrategy when several
    # GPUs are visible, else none; `none` one device; `mirrored` all GPUs (or all logical CPUs);
    # `multi_worker` the TF_CONFIG cluster. batch_size is the global batch, split across the replicas.
    distribute: str = "auto"


@dataclasses.dataclass
class PretrainConfig:
    """Self-supervised (SimCLR) or supervised-contrastive (SupCon) pretraining of the encoder.

    The encoder is the model without its head: frontend + backbone up to the pooled embedding.
    method `simclr` pretrains it on all training-split audio with labels ignored (also the clips
    split.train_label_fraction dropped), plus every audio file under `unlabelled_root` when given;
    `supcon` uses the training labels. Two views of each window are made in-graph: noise at
    `noise_snr_db` (dB, the lowest; up to +20), a circular time shift up to `max_shift_s`, gain
    within +-`gain_db`, a pitch shift within +-`pitch_semitones`; the frontend's SpecAugment adds the
    time and frequency masks. Projection head `projection_units` (last = embedding for the loss),
    NT-Xent / SupCon loss at `temperature`.

    The encoder is saved as saved_models/<name>/encoder.keras. With `finetune`, the classifier is
    then trained from it (frozen for train.frozen_epochs, or for the whole run with
    `freeze_encoder`). `encoder`: a path to an encoder.keras from an earlier run; pretraining is
    skipped and the classifier starts from it.
    """

    method: str = "none"
    encoder: str | None = None
    unlabelled_root: str | None = None
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    temperature: float = 0.1
    projection_units: list[int] = dataclasses.field(default_factory=lambda: [512, 512, 128])
    noise_snr_db: float = 10.0
    max_shift_s: float = 0.5
    gain_db: float = 6.0
    pitch_semitones: float = 1.0
    finetune: bool = True
    freeze_encoder: bool = False
    embeddings: bool = True  # per-clip embeddings for TensorBoard's projector


@dataclasses.dataclass
class DistillConfig:
    """Knowledge distillation from a saved teacher.

    teacher: a saved_models/<name> folder of any mammalnet model (model.keras, labels.txt,
    audio.json) with the same classes, sample rate and window. Loss = alpha * T^2 * KL(teacher ||
    student, both softened at temperature T) + (1 - alpha) * cross-entropy on the hard labels.
    """

    teacher: str | None = None
    temperature: float = 3.0
    alpha: float = 0.7


@dataclasses.dataclass
class OpenSetConfig:
    """The unknown class: a clip whose (calibrated) top probability is under `threshold` is "unknown".

    calibrate: fit a softmax temperature on the validation clips (temperature scaling, by NLL)
    before thresholding; the temperature and threshold go to audio.json for predict.
    """

    threshold: float = 0.7
    calibrate: bool = True


@dataclasses.dataclass
class GenerativeConfig:
    """A generative model of log-mel patches, trained by `fit` instead of a classifier when `method` is set.

    Patches are the frontend's log-mel of each training-split window (frontend.n_fft, hop_length, n_mels,
    low_hz, high_hz, top_db), scaled so the window's peak is +1 and top_db below it -1, with the frame
    axis padded (with -1) to a multiple of 2**len(filters). The run uses train.epochs, batch_size,
    learning_rate, seed and early_stopping_patience.

    vae: a convolutional VAE with `latent_dim`, KL weight `kl_weight` ramped up from 0 over
    `kl_warmup_epochs`; a class's clips are generated from a Gaussian fitted to its training latents.
    diffusion: a class-conditional DDPM (U-Net with `blocks_per_level` residual blocks per level,
    self-attention at the lowest resolution when `attention`) over `timesteps` noise levels of a
    `schedule` (cosine|linear); labels are dropped with probability `class_dropout` so that sampling can
    use classifier-free guidance at `guidance_scale`; DDIM sampling in `sampling_steps` steps; weights
    averaged with `ema_momentum` (null: no EMA).
    Report: `samples_per_class` clips per class are generated and inverted to audio (mel to linear
    magnitude by `mel_solver`: nnls, or pinv ~40x faster and coarser; then Griffin-Lim,
    `griffin_lim_iters`); `quality_classifier` (a saved classifier folder at the same rate and window)
    scores them: its accuracy on each class's generated clips, and the Frechet distance between its
    embeddings of real and generated clips. `latent_projection`: tsne, umap (optional extra) or both.
    """

    method: str = "none"
    filters: list[int] = dataclasses.field(default_factory=lambda: [32, 64, 128])
    latent_dim: int = 64
    kl_weight: float = 1.0
    kl_warmup_epochs: int = 10
    timesteps: int = 1000
    schedule: str = "cosine"
    blocks_per_level: int = 1
    embedding_dim: int = 128
    attention: bool = False
    class_dropout: float = 0.1
    ema_momentum: float | None = 0.999
    sampling_steps: int = 50
    guidance_scale: float = 2.0
    griffin_lim_iters: int = 32
    mel_solver: str = "nnls"
    samples_per_class: int = 8
    quality_classifier: str | None = None
    latent_projection: str = "tsne"


@dataclasses.dataclass
class ExportConfig:
    """What `fit` exports to saved_models/<name>/ (see mammalnet/export.py).

    int8 / float16: also write model_int8.tflite (int8 weights and activations from the log-mel image
    on, the frontend in float32; calibrated on `representative_examples` training windows) and
    model_float16.tflite (float16 weights), both float32 waveform in, probabilities out, LiteRT
    builtins only. Each is compared with the Keras model on `quantized_parity_examples` validation
    windows (top-1 agreement, max abs probability difference); `min_quantized_agreement` (in [0, 1],
    null: no check) fails the export when a quantized model agrees less.
    """

    enabled: bool = True
    parity_examples: int = 32
    parity_tolerance: float = 1e-4
    int8: bool = False
    float16: bool = False
    representative_examples: int = 256
    quantized_parity_examples: int = 512
    min_quantized_agreement: float | None = None

    def check(self) -> None:
        """Raises ConfigError naming the first export setting out of range."""
        for key in ("parity_examples", "representative_examples", "quantized_parity_examples"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"export.{key} must be a positive integer. Received: export.{key}={value!r}")
        agreement = self.min_quantized_agreement
        if agreement is not None and not 0.0 <= agreement <= 1.0:
            raise ConfigError(f"export.min_quantized_agreement must be in [0, 1] or null. "
                              f"Received: export.min_quantized_agreement={agreement}")


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
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    open_set: OpenSetConfig = dataclasses.field(default_factory=OpenSetConfig)
    generative: GenerativeConfig = dataclasses.field(default_factory=GenerativeConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)

    def validate(self) -> "PipelineConfig":
        """Checks cross-field constraints; returns self.

        Raises:
            ConfigError: naming the offending key and value.
        """
        choices = {
            "data.source": (self.data.source, SOURCES),
            "data.below_band": (self.data.below_band, ("skip", "keep")),
            "split.method": (self.split.method, ("stratified", "group", "fixed")),
            "audio.pad_mode": (self.audio.pad_mode, ("zero", "noise", "repeat")),
            "audio.short_clips": (self.audio.short_clips, SHORT_CLIPS),
            "train.class_weight": (self.train.class_weight, ("none", "balanced")),
            "train.lr_schedule": (self.train.lr_schedule, ("cosine", "constant", "plateau")),
            "train.loss.name": (self.train.loss.name, LOSSES),
            "train.sampling": (self.train.sampling, SAMPLING),
            "train.optimizer": (self.train.optimizer, ("adam", "adamw")),
            "train.distribute": (self.train.distribute, DISTRIBUTE),
            "pretrain.method": (self.pretrain.method, PRETRAIN_METHODS),
            "frontend.features": (self.frontend.features, (None, *FEATURES)),
            "frontend.side_features": (self.frontend.side_features, ("none", "handcrafted")),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{key} must be one of {allowed}. Received: {key}={value!r}")
        if self.data.source not in ("synthetic", "synthetic_long") and not self.data.root:
            raise ConfigError(
                f"data.source={self.data.source!r} needs data.root (or --data DIR). Received: data.root=None")
        if self.data.source == "synthetic_long":
            from mammalnet.data.synthetic.longrec_settings import check_settings  # numpy/scipy only when used

            try:
                check_settings(self.data.long, "data.long")
            except ValueError as err:
                raise ConfigError(str(err)) from err
        if (self.split.method == "group" and not self.data.group_column and not self.split.group_regex
                and self.data.source not in ("synthetic", "synthetic_long", "raven")):
            raise ConfigError(
                "split.method='group' needs data.group_column or split.group_regex. Received: "
                f"data.group_column=None, split.group_regex=None (data.source={self.data.source!r})")
        if self.split.method == "fixed" and not self.split.split_file and self.data.source != "split_folders":
            raise ConfigError(
                "split.method='fixed' needs split.split_file (a CSV of file,split) or data.source='split_folders'. "
                "Received: split.split_file=None")
        if self.split.group_regex is not None:
            try:
                re.compile(self.split.group_regex)
            except re.error as err:
                raise ConfigError(f"split.group_regex is not a valid regex ({err}). "
                                  f"Received: split.group_regex={self.split.group_regex!r}") from err
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
        if not (self.frontend.bandpass_taps == 0 or self.frontend.bandpass_taps >= 3):
            raise ConfigError(f"frontend.bandpass_taps must be 0 (no band-pass) or >= 3. "
                              f"Received: frontend.bandpass_taps={self.frontend.bandpass_taps}")
        positive = {
            "audio.sample_rate_hz": self.audio.sample_rate_hz, "audio.window_s": self.audio.window_s,
            "audio.max_windows_per_clip": self.audio.max_windows_per_clip,
            "train.epochs": self.train.epochs, "train.batch_size": self.train.batch_size,
            "train.learning_rate": self.train.learning_rate,
        }
        if self.frontend.features == "mfcc" and not 1 <= self.frontend.n_mfcc <= self.frontend.n_mels:
            raise ConfigError(f"frontend.n_mfcc must be in [1, frontend.n_mels={self.frontend.n_mels}]. "
                              f"Received: frontend.n_mfcc={self.frontend.n_mfcc}")
        if not 0 <= self.train.frozen_epochs < max(self.train.epochs, 1):
            raise ConfigError(f"train.frozen_epochs must be in [0, train.epochs={self.train.epochs}). "
                              f"Received: train.frozen_epochs={self.train.frozen_epochs}")
        self._validate_training()
        self._validate_generative()
        self.export.check()
        positive["frontend.pcen_time_constant_s"] = self.frontend.pcen_time_constant_s
        positive["train.unfreeze_lr_factor"] = self.train.unfreeze_lr_factor
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{key} must be positive. Received: {key}={value}")
        for key in ("hop_s", "train_hop_s"):
            value = getattr(self.audio, key)
            if value is not None and not value > 0:
                raise ConfigError(f"audio.{key} must be positive. Received: audio.{key}={value}")
        return self

    def _validate_training(self) -> None:
        """Loss, optimiser, pretraining, distillation and open-set settings."""
        train, loss, pre, distill = self.train, self.train.loss, self.pretrain, self.distill
        ranges = {  # key: (value, low, high, low inclusive, high inclusive)
            "split.train_label_fraction": (self.split.train_label_fraction, 0, 1, False, True),
            "train.loss.label_smoothing": (loss.label_smoothing, 0, 1, True, False),
            "train.loss.gamma": (loss.gamma, 0, float("inf"), True, False),
            "train.loss.beta": (loss.beta, 0, 1, True, False),
            "train.weight_decay": (train.weight_decay, 0, float("inf"), True, False),
            "train.plateau_factor": (train.plateau_factor, 0, 1, False, False),
            "distill.alpha": (distill.alpha, 0, 1, True, True),
            "open_set.threshold": (self.open_set.threshold, 0, 1, True, True),
        }
        for key, (value, low, high, low_in, high_in) in ranges.items():
            above = value >= low if low_in else value > low
            below = value <= high if high_in else value < high
            if not (above and below):
                interval = f"{'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"
                raise ConfigError(f"{key} must be in {interval}. Received: {key}={value}")
        if loss.alpha is not None and (not loss.alpha or any(not a >= 0 for a in loss.alpha)):
            raise ConfigError(f"train.loss.alpha must be null or one weight >= 0 per class. "
                              f"Received: train.loss.alpha={loss.alpha}")
        if not 0 <= train.warmup_epochs < max(train.epochs, 1):
            raise ConfigError(f"train.warmup_epochs must be in [0, train.epochs={train.epochs}). "
                              f"Received: train.warmup_epochs={train.warmup_epochs}")
        if train.clipnorm is not None and not train.clipnorm > 0:
            raise ConfigError(f"train.clipnorm must be positive or null. Received: train.clipnorm={train.clipnorm}")
        if train.steps_per_epoch is not None and train.steps_per_epoch < 1:
            raise ConfigError(f"train.steps_per_epoch must be positive or null. Received: "
                              f"train.steps_per_epoch={train.steps_per_epoch}")
        if train.plateau_patience < 0:
            raise ConfigError(f"train.plateau_patience must be >= 0. Received: "
                              f"train.plateau_patience={train.plateau_patience}")
        positive = {"pretrain.epochs": pre.epochs, "pretrain.batch_size": pre.batch_size,
                    "pretrain.learning_rate": pre.learning_rate, "pretrain.temperature": pre.temperature,
                    "distill.temperature": distill.temperature}
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{key} must be positive. Received: {key}={value}")
        _require_non_negative({"pretrain.max_shift_s": pre.max_shift_s, "pretrain.gain_db": pre.gain_db,
                               "pretrain.pitch_semitones": pre.pitch_semitones})
        if not pre.projection_units or any(u < 1 for u in pre.projection_units):
            raise ConfigError(f"pretrain.projection_units must be a non-empty list of positive widths. "
                              f"Received: pretrain.projection_units={pre.projection_units}")
        if pre.method != "none" and pre.encoder:
            raise ConfigError(f"pretrain.encoder starts from a saved encoder, pretrain.method trains a new one: "
                              f"set one. Received: pretrain.method={pre.method!r}, pretrain.encoder={pre.encoder!r}")
        if pre.freeze_encoder and pre.method == "none" and not pre.encoder:
            raise ConfigError("pretrain.freeze_encoder needs an encoder (pretrain.method or pretrain.encoder). "
                              "Received: pretrain.method='none', pretrain.encoder=None")
        if train.class_weight != "none" and (train.sampling != "none" or loss.name.startswith("class_balanced")):
            raise ConfigError(f"train.class_weight would compound with train.sampling or a class-balanced loss "
                              f"(each already corrects the imbalance): choose one. Received: train.class_weight="
                              f"{train.class_weight!r}, train.sampling={train.sampling!r}, "
                              f"train.loss.name={loss.name!r}")
        if distill.teacher and pre.method != "none":
            raise ConfigError(f"distillation and contrastive pretraining are separate runs. Received: "
                              f"distill.teacher={distill.teacher!r}, pretrain.method={pre.method!r}")

    def _validate_generative(self) -> None:
        gen = self.generative
        choices = {"generative.method": (gen.method, GENERATIVE_METHODS),
                   "generative.schedule": (gen.schedule, ("cosine", "linear")),
                   "generative.latent_projection": (gen.latent_projection, ("tsne", "umap", "both")),
                   "generative.mel_solver": (gen.mel_solver, ("nnls", "pinv"))}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{key} must be one of {allowed}. Received: {key}={value!r}")
        positive = {"generative.latent_dim": gen.latent_dim, "generative.blocks_per_level": gen.blocks_per_level,
                    "generative.embedding_dim": gen.embedding_dim, "generative.sampling_steps": gen.sampling_steps,
                    "generative.griffin_lim_iters": gen.griffin_lim_iters,
                    "generative.samples_per_class": gen.samples_per_class}
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{key} must be positive. Received: {key}={value}")
        if gen.timesteps < 2:
            raise ConfigError(f"generative.timesteps must be at least 2. Received: generative.timesteps={gen.timesteps}")
        if not gen.filters or any(f < 1 for f in gen.filters):
            raise ConfigError(f"generative.filters must be a non-empty list of positive widths. "
                              f"Received: generative.filters={gen.filters}")
        if gen.sampling_steps > gen.timesteps:
            raise ConfigError(f"generative.sampling_steps must be <= generative.timesteps={gen.timesteps}. "
                              f"Received: generative.sampling_steps={gen.sampling_steps}")
        ranges = {"generative.class_dropout": (gen.class_dropout, 0.0, 1.0),
                  "generative.ema_momentum": (gen.ema_momentum, 0.0, 1.0)}
        for key, (value, low, high) in ranges.items():
            if value is not None and not low <= value < high:
                raise ConfigError(f"{key} must be in [{low}, {high}). Received: {key}={value}")
        _require_non_negative({"generative.kl_weight": gen.kl_weight, "generative.kl_warmup_epochs": gen.kl_warmup_epochs,
                               "generative.guidance_scale": gen.guidance_scale})
        if gen.method != "none" and (self.pretrain.method != "none" or self.distill.teacher):
            raise ConfigError(f"a generative run trains no classifier: pretraining and distillation do not apply. "
                              f"Received: generative.method={gen.method!r}, pretrain.method={self.pretrain.method!r}, "
                              f"distill.teacher={self.distill.teacher!r}")
        levels = 2 ** len(gen.filters)
        if gen.method != "none" and self.frontend.n_mels % levels:
            raise ConfigError(f"frontend.n_mels must be a multiple of 2**len(generative.filters)={levels} (the "
                              f"generative models halve the mel axis once per level). Received: "
                              f"frontend.n_mels={self.frontend.n_mels}, generative.filters={gen.filters}")
        if gen.method != "none" and self.frontend.top_db is None:
            raise ConfigError("generative patches scale the log-mel by frontend.top_db. Received: frontend.top_db=None")

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


def _require_non_negative(values: dict) -> None:
    """Raises ConfigError naming the first key whose value is not >= 0 (NaN included)."""
    for key, value in values.items():
        if not value >= 0:
            raise ConfigError(f"{key} must be >= 0. Received: {key}={value}")


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


DEFAULT_PIPELINE_NAME = "default.yaml"


def shipped_pipelines_dir() -> pathlib.Path:
    """The folder of the pipelines mammalnet ships (default.yaml, watkins.yaml, compare/zoo.yaml, ...).

    Installed from a wheel or `pip install .` they are package data, `mammalnet/pipelines/` (found
    with importlib.resources); run from a source checkout (`pip install -e .`, or the repository on
    the path) they are the repository's top-level pipelines/ folder beside the package.
    """
    packaged = pathlib.Path(str(importlib.resources.files("mammalnet").joinpath("pipelines")))
    checkout = pathlib.Path(__file__).resolve().parent.parent
    if not packaged.is_dir() and (checkout / "pyproject.toml").is_file() and (checkout / "pipelines").is_dir():
        return checkout / "pipelines"
    return packaged


def pipeline_path(pipeline: str | os.PathLike | None = None) -> str:
    """The file a pipeline argument names.

    None: the shipped default.yaml. A file that exists (or an absolute path): itself. Otherwise a
    shipped pipeline of that name, with or without `.yaml` and with or without a leading
    `pipelines/` (`watkins`, `watkins.yaml`, `pipelines/watkins.yaml`, `compare/zoo.yaml`), so the
    documented commands work from any folder; when there is none, the argument as given (load then
    reports it missing).
    """
    root = shipped_pipelines_dir()
    if pipeline is None:
        return os.fspath(root / DEFAULT_PIPELINE_NAME)
    path = os.fspath(pipeline)
    if os.path.isfile(path) or os.path.isabs(path):
        return path
    parts = pathlib.PurePath(path).parts
    if parts[:1] == ("pipelines",):
        parts = parts[1:]
    if not parts or ".." in parts:
        return path
    name = pathlib.PurePath(*parts)
    candidates = [name] if name.suffix in (".yaml", ".yml") else [name, name.with_name(name.name + ".yaml")]
    for candidate in candidates:
        if (root / candidate).is_file():
            return os.fspath(root / candidate)
    return path


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
