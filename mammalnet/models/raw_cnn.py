"""A 1-D CNN on the waveform itself: a learned, strided filterbank instead of a spectrogram.

    waveform [batch, samples] ─► [batch, samples, 1]
        ─► filterbank: Conv1D(kernel, stride) ─► BatchNorm ─► ReLU      (a learned STFT-like bank)
        ─► per block: Conv1D(k, "same") ─► BatchNorm ─► ReLU ─► MaxPool1D(pool)  (pool 1: none)
        ─► global average pooling over time ─► side fusion ─► shared head ─► probabilities

The builder does not know the sample rate, so every length is in samples. The defaults suit the
default pipeline (2 s at 24 kHz = 48,000 samples): a 64-sample (2.7 ms) filterbank kernel hopped by
16 samples (0.67 ms) gives 3,000 frames; blocks pooled by 4, 4, 4 and a last unpooled block leave 46
frames of 43 ms each for the global average. The same defaults still fit 0.5 s at 8 kHz (4,000
samples: 250 -> 62 -> 15 -> 3 frames). A waveform too short for the pooling stack is an error that
lists the length at every stage.

With the defaults and 3 classes: 169,475 parameters (1,024 of them batch-norm moving statistics)
whatever the input length (global pooling). Behind the default pipeline's band-pass and
standardisation (2 s at 24 kHz, 6 classes): 168,838 trainable parameters, 71.6 MFLOPs per window
(70.6 M in convolutions, the 129-tap band-pass FIR included), a 674 KB TFLite file and 2.8 ms per
window in LiteRT on one thread of the 2-core development machine (the default `cnn` at half width:
456K, 195 MFLOPs, 1.93 MB, 5.9 ms). Conv1D becomes CONV_2D between reshapes in TFLite, max pooling
MAX_POOL_2D: builtins only.
"""

from __future__ import annotations

import keras
from keras import layers

from mammalnet.models.checks import check_dropout, check_positive_int, check_positive_ints
from mammalnet.models.heads import build_head_model


def check_waveform_shape(builder: str, input_shape) -> int:
    """The (samples,) waveform shape with a static length; returns samples."""
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if shape is None or len(shape) != 1 or shape[0] is None or isinstance(shape[0], bool) \
            or not isinstance(shape[0], int) or shape[0] < 1:
        raise ValueError(f"{builder} needs a static waveform shape (samples,). Received: input_shape={input_shape}")
    return int(shape[0])


def stage_lengths(samples: int, *, filterbank_stride: int, pool_sizes) -> list[int]:
    """Frames after the filterbank and after each block's pooling.

    The filterbank pads "same" (ceil(samples / stride) frames); a pool of p keeps floor(L / p)
    (padding "valid"); a pool of 1 is no pooling.
    """
    lengths = [-(-samples // filterbank_stride)]
    for pool in pool_sizes:
        lengths.append(lengths[-1] // pool)
    return lengths


def apply_raw_conv_block(x, filters: int, kernel_size: int, *, pool: int, bn_momentum: float, name: str):
    """Conv1D("same", no bias) -> BatchNorm -> ReLU (-> MaxPool1D(pool) when pool > 1)."""
    x = layers.Conv1D(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    if pool > 1:
        x = layers.MaxPooling1D(pool, name=f"{name}_pool")(x)
    return x


def build_raw_cnn(
    input_shape,
    num_classes: int,
    *,
    filterbank_filters: int = 32,
    filterbank_kernel: int = 64,
    filterbank_stride: int = 16,
    filters=(32, 64, 128, 256),
    kernel_sizes=(3, 3, 3, 3),
    pool_sizes=(4, 4, 4, 1),
    head_units: int = 128,
    dropout: float = 0.3,
    bn_momentum: float = 0.9,
    side_features: int = 0,
    name: str = "raw_cnn",
) -> keras.Model:
    """Builds the waveform CNN.

    Args:
        input_shape: (samples,), static: the band-passed, standardised waveform window.
        num_classes: number of output classes (>= 2).
        filterbank_filters: channels of the first, strided conv (the learned filterbank).
        filterbank_kernel: its kernel length in samples (64 = 2.7 ms at 24 kHz, 8 ms at 8 kHz).
        filterbank_stride: its hop in samples; the time resolution of everything after it.
        filters: channels of the Conv1D blocks after the filterbank.
        kernel_sizes: kernel length of each block, in frames (one per entry of `filters`).
        pool_sizes: max-pool size after each block (one per entry of `filters`); 1 skips pooling.
        head_units: width of the shared head's hidden layer.
        dropout: dropout in the head, in [0, 1).
        bn_momentum: batch-norm momentum; 0.9 for the short schedules of small datasets (as in cnn).
        side_features: length of an optional side-feature vector fused before the head (0: none).
        name: model name.

    Returns:
        keras.Model: waveform [batch, samples] (+ side features [batch, side_features]) ->
        probabilities [batch, num_classes].

    Raises:
        ValueError: an argument out of range, naming it and the value received; or a waveform too
            short for the filterbank or the pooling stack, listing the frames at every stage.
    """
    builder = "build_raw_cnn"
    samples = check_waveform_shape(builder, input_shape)
    for arg, value in (("filterbank_filters", filterbank_filters), ("filterbank_kernel", filterbank_kernel),
                       ("filterbank_stride", filterbank_stride), ("head_units", head_units)):
        check_positive_int(arg, value)
    filters = check_positive_ints("filters", filters)
    kernel_sizes = check_positive_ints("kernel_sizes", kernel_sizes)
    pool_sizes = check_positive_ints("pool_sizes", pool_sizes)
    if not len(filters) == len(kernel_sizes) == len(pool_sizes):
        raise ValueError("filters, kernel_sizes and pool_sizes need one entry per block. Received: "
                         f"filters={filters}, kernel_sizes={kernel_sizes}, pool_sizes={pool_sizes}")
    check_dropout(dropout)
    if samples < filterbank_kernel:
        raise ValueError(f"{builder}: the waveform is shorter than the filterbank kernel. Received: "
                         f"input_shape={tuple(input_shape)}, filterbank_kernel={filterbank_kernel}")
    lengths = stage_lengths(samples, filterbank_stride=filterbank_stride, pool_sizes=pool_sizes)
    if min(lengths) < 1:
        stages = " -> ".join(str(n) for n in lengths)
        raise ValueError(
            f"{builder}: a waveform of {samples} samples is too short for the pooling stack: frames "
            f"{stages} (filterbank stride {filterbank_stride}, then pool_sizes={pool_sizes}). "
            f"Received: input_shape={tuple(input_shape)}; use a longer window, a smaller stride or "
            "fewer/smaller pools")

    inputs = keras.Input(shape=(samples,), name="waveform")
    x = layers.Reshape((samples, 1), name="to_channels")(inputs)
    x = layers.Conv1D(filterbank_filters, filterbank_kernel, strides=filterbank_stride, padding="same",
                      use_bias=False, name="filterbank_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name="filterbank_bn")(x)
    x = layers.Activation("relu", name="filterbank_relu")(x)
    for i, (width, kernel, pool) in enumerate(zip(filters, kernel_sizes, pool_sizes)):
        x = apply_raw_conv_block(x, width, kernel, pool=pool, bn_momentum=bn_momentum, name=f"block{i + 1}")
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    return build_head_model(inputs, x, num_classes, side_features=side_features, units=head_units,
                            dropout=dropout, name=name)


__all__ = ["apply_raw_conv_block", "build_raw_cnn", "check_waveform_shape", "stage_lengths"]
