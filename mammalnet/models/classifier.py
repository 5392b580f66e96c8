"""The full model: raw waveform in, probabilities out, with the frontend inside.

    waveform [batch, window_samples] ─► Bandpass ─┬─► features (frontend.features) ─► backbone ─► probabilities
                                                  └─► 18 handcrafted clip features ──┘ (frontend.side_features)

features: `logmel` (LogMel dB), `mfcc` (LogMel -> MFCC), `pcen` (mel power -> PCEN), each standardised
per example and SpecAugment-ed in training, [frames, bins, 1]; `complexity` (mel power ->
per-frame entropy and three statistical complexities, [frames, 4, 1], already in [0, 1]); `waveform`
(the band-passed window standardised per example, [samples]) for waveform families.
"""

from __future__ import annotations

import keras
from keras import layers

from mammalnet.config import PipelineConfig
from mammalnet.layers import MFCC, PCEN, Bandpass, ComplexityEntropy, HandcraftedFeatures, LogMel, SpecAugment
from mammalnet.models import registry

# Frontend features each input kind can read.
_ACCEPTED = {"features": ("logmel", "mfcc", "pcen", "complexity"), "waveform": ("waveform",)}
SIDE_FEATURES = {"none": 0, "handcrafted": 18}


def resolve_features(config: PipelineConfig) -> str:
    """The frontend output for config.model.name: frontend.features, or the family's own input.

    Raises:
        ValueError: frontend.features names an input the family cannot read.
    """
    kind = registry.input_kind(config.model.name)
    features = config.frontend.features
    if features is None:
        return _ACCEPTED[kind][0]
    if features not in _ACCEPTED[kind]:
        raise ValueError(f"model {config.model.name!r} reads {kind} and takes frontend.features in "
                         f"{_ACCEPTED[kind]}. Received: frontend.features={features!r}")
    return features


def build_frontend(config: PipelineConfig) -> keras.Model:
    """waveform [batch, window_samples] -> the backbone's input(s).

    Returns:
        keras.Model named "frontend" with one output (the features) or two ([features, side
        features [batch, 18]]) when frontend.side_features is "handcrafted".
    """
    fe, aug, rate = config.frontend, config.augment, config.audio.sample_rate_hz
    features = resolve_features(config)
    waveform = keras.Input(shape=(config.window_samples,), name="waveform")
    filtered = (Bandpass(fe.low_hz, fe.high_hz, rate, num_taps=fe.bandpass_taps, name="bandpass")(waveform)
                if fe.bandpass_taps else waveform)
    if features == "waveform":
        # Per-example standardisation: recorder gain is not a cue.
        x = layers.LayerNormalization(axis=1, center=False, scale=False, name="feature_norm")(filtered)
    else:
        scale = {} if features in ("logmel", "mfcc") else {"scale": "power"}
        x = LogMel(rate, n_fft=fe.n_fft, hop_length=fe.hop_length, n_mels=fe.n_mels, low_hz=fe.low_hz,
                   high_hz=fe.high_hz, top_db=fe.top_db, name="logmel", **scale)(filtered)
        if features == "mfcc":
            x = MFCC(fe.n_mfcc, name="mfcc")(x)
        elif features == "pcen":
            # Smoother started from the first frame: no start-up boost at the head of every window.
            x = PCEN(rate, fe.hop_length, time_constant=fe.pcen_time_constant_s, initial_state="first_frame",
                     name="pcen")(x)
        if features == "complexity":
            x = ComplexityEntropy(name="complexity_entropy")(x)
        else:
            # Standardise each example over all of its time-frequency cells: gain is not a cue.
            x = layers.LayerNormalization(axis=(1, 2, 3), center=False, scale=False, name="feature_norm")(x)
            x = SpecAugment(aug.freq_mask_param, aug.time_mask_param, num_freq_masks=aug.num_freq_masks,
                            num_time_masks=aug.num_time_masks, seed=config.train.seed, name="specaugment")(x)
    outputs = x
    if SIDE_FEATURES[fe.side_features]:
        side = HandcraftedFeatures(rate, fe.n_fft, fe.hop_length, n_mels=fe.n_mels, low_hz=fe.low_hz,
                                   high_hz=fe.high_hz, name="handcrafted_features")(filtered)
        outputs = [x, side]
    return keras.Model(waveform, outputs, name="frontend")


def build_classifier(config: PipelineConfig, num_classes: int) -> keras.Model:
    """Frontend + the registered backbone/head named by `config.model`.

    Waveform families that take `sample_rate_hz` (hub) get the pipeline rate; with
    frontend.side_features the family is built with `side_features=18`.

    Raises:
        ValueError: a frontend the family cannot read, or side features for a family without them.
    """
    name, params = config.model.name, dict(config.model.params)
    frontend = build_frontend(config)
    side = SIDE_FEATURES[config.frontend.side_features]
    if side:
        if not registry.accepts(name, "side_features"):
            raise ValueError(f"model {name!r} takes no side features. Received: "
                             f"frontend.side_features={config.frontend.side_features!r}")
        params["side_features"] = side
    if registry.input_kind(name) == "waveform" and registry.accepts(name, "sample_rate_hz"):
        params.setdefault("sample_rate_hz", config.audio.sample_rate_hz)
    feature_shape = (frontend.outputs[0] if side else frontend.output).shape[1:]
    backbone = registry.build_model(name, feature_shape, num_classes, **params)
    waveform = keras.Input(shape=(config.window_samples,), name="waveform")
    probabilities = backbone(frontend(waveform))
    return keras.Model(waveform, probabilities, name=f"{name}_classifier")
