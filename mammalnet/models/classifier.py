"""The full model: raw waveform in, probabilities out, with the frontend inside.

    waveform [batch, window_samples] ─► Bandpass ─► LogMel ─► per-example standardise
        ─► SpecAugment (training only) ─► backbone (registry) ─► shared head ─► probabilities
"""

from __future__ import annotations

import keras
from keras import layers

from mammalnet.config import PipelineConfig
from mammalnet.layers import Bandpass, LogMel, SpecAugment
from mammalnet.models.registry import build_model


def build_frontend(config: PipelineConfig) -> keras.Model:
    """waveform [batch, window_samples] -> standardised, augmented log-mel [batch, frames, n_mels, 1]."""
    fe, aug = config.frontend, config.augment
    waveform = keras.Input(shape=(config.window_samples,), name="waveform")
    x = Bandpass(fe.low_hz, fe.high_hz, config.audio.sample_rate_hz, num_taps=fe.bandpass_taps,
                 name="bandpass")(waveform)
    x = LogMel(config.audio.sample_rate_hz, n_fft=fe.n_fft, hop_length=fe.hop_length, n_mels=fe.n_mels,
               low_hz=fe.low_hz, high_hz=fe.high_hz, top_db=fe.top_db, name="logmel")(x)
    # Standardise each example over all of its time-frequency cells: recorder gain is not a cue.
    x = layers.LayerNormalization(axis=(1, 2, 3), center=False, scale=False, name="feature_norm")(x)
    x = SpecAugment(aug.freq_mask_param, aug.time_mask_param, num_freq_masks=aug.num_freq_masks,
                    num_time_masks=aug.num_time_masks, seed=config.train.seed, name="specaugment")(x)
    return keras.Model(waveform, x, name="frontend")


def build_classifier(config: PipelineConfig, num_classes: int) -> keras.Model:
    """Frontend + the registered backbone/head named by `config.model`."""
    frontend = build_frontend(config)
    backbone = build_model(config.model.name, frontend.output.shape[1:], num_classes, **config.model.params)
    waveform = keras.Input(shape=(config.window_samples,), name="waveform")
    probabilities = backbone(frontend(waveform))
    return keras.Model(waveform, probabilities, name=f"{config.model.name}_classifier")
