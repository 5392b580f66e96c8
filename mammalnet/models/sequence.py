"""Shared helper for sequence backbones: a log-mel image seen as a 1-D series over time."""

from __future__ import annotations

from keras import layers


def apply_frames_to_sequence(x, *, name: str):
    """Feature image [batch, frames, bins, channels] -> sequence [batch, frames, bins * channels].

    Frames become time steps and the mel bins (times channels) the features of each step. A plain
    `Reshape` (no Lambda), so the model stays safe_mode-loadable and converts to the TFLite builtin
    RESHAPE. An unknown number of frames is kept dynamic (-1).

    Args:
        x: 4-D tensor [batch, frames, bins, channels] with static bins and channels.
        name: layer name (the Reshape is named `name`).

    Returns:
        3-D tensor [batch, frames, bins * channels].

    Raises:
        ValueError: `x` is not 4-D or its bins/channels are not static.
    """
    shape = tuple(x.shape)
    if len(shape) != 4 or shape[2] is None or shape[3] is None:
        raise ValueError(
            f"apply_frames_to_sequence needs [batch, frames, bins, channels] with static bins and "
            f"channels. Received: shape={shape}")
    frames = -1 if shape[1] is None else int(shape[1])
    return layers.Reshape((frames, int(shape[2]) * int(shape[3])), name=name)(x)


__all__ = ["apply_frames_to_sequence"]
