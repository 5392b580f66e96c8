"""Xception (keras.applications) as a backbone over log-mel "images", optionally ImageNet-initialised.

    features [b, frames, bins, 1] ─► to_rgb (repeat the channel 3x) ─► resize (image_size²)
        ─► pretrained_backbone: Xception, no top, global average pooling [b, 2048]
        (─► concat side_features) ─► Dense ─► Dropout ─► Dense softmax

Weights never come from the network: `weights="imagenet"` only reads the no-top file that is
already in the Keras cache, and anything else must be a local file (see `resolve_xception_weights`).

Fine-tuning (left to the training loop, which finds the nested model by name): get it with
`model.get_layer("pretrained_backbone")`, set `trainable = False` for the first epochs (only the
head learns), then set it back to True with a lower learning rate, keeping its
BatchNormalization layers at `trainable = False` so that they stay in inference mode (in Keras 3
a non-trainable BatchNormalization normalises with its moving statistics): a small bioacoustic
batch would otherwise overwrite the ImageNet statistics. (With weights=None there is nothing
to protect: train it like any other family.)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import keras
from keras import layers

from mammalnet.models.checks import check_dropout, check_feature_shape, check_num_classes, check_positive_int
from mammalnet.models.heads import build_head_model

BACKBONE_NAME = "pretrained_backbone"
# The smallest image Xception accepts (its stem and four stride-2 stages need 71 x 71).
MIN_IMAGE_SIZE = 71
DEFAULT_IMAGE_SIZE = 96
IMAGENET_NOTOP_FILE = "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/xception/"
                      + IMAGENET_NOTOP_FILE)
# The md5 keras.applications checks the cached file against (it re-downloads on a mismatch; we
# refuse instead).
IMAGENET_NOTOP_MD5 = "b0042744bf5b25fce3cb969f33bebb97"


def keras_cache_dir() -> Path:
    """The folder keras.utils.get_file caches into, resolved now: $KERAS_HOME, else ~/.keras.

    Keras reads KERAS_HOME once, when it is imported, and falls back to /tmp/.keras when the
    home folder is not writable; this follows the same rules but at call time.
    """
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"]).expanduser()
    home = Path("~").expanduser()
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"


def _offline_help() -> str:
    target = keras_cache_dir() / "models" / IMAGENET_NOTOP_FILE
    return (f"To use ImageNet weights offline, fetch {IMAGENET_NOTOP_URL} on a connected machine and "
            f"either copy it to {target} (the Keras cache: $KERAS_HOME/models/, else ~/.keras/models/) "
            f"and pass weights: imagenet, or pass weights: /path/to/{IMAGENET_NOTOP_FILE}. "
            "weights: null trains from random initialisation.")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_xception_weights(weights):
    """Turns the `weights` argument into what keras.applications.Xception may load without a network.

    Args:
        weights: None (random init); "imagenet" (the no-top ImageNet file, which must already be in
            the Keras cache, `keras_cache_dir() / "models"`); or a path (str or os.PathLike) to a
            weights file for the no-top Xception, .h5 (the ImageNet file's format) or .weights.h5
            (written by `model.save_weights` on a `keras.applications.Xception(include_top=False)`).

    Returns:
        None or the local file path (str) to hand to Xception: never "imagenet", so Keras never
        reaches for the download.

    Raises:
        FileNotFoundError: "imagenet" is not cached, or the path does not exist; the message says how
            to provide the file offline.
        ValueError: weights is of another type, or the cached ImageNet file fails Keras' md5 check
            (an incomplete copy).
    """
    if weights is None:
        return None
    if isinstance(weights, str) and weights == "imagenet":
        cached = keras_cache_dir() / "models" / IMAGENET_NOTOP_FILE
        if not cached.is_file():
            raise FileNotFoundError(
                f"weights='imagenet' needs {IMAGENET_NOTOP_FILE} in the Keras cache, and {cached} does not "
                f"exist; mammalnet never downloads at run time. {_offline_help()}")
        digest = _md5(cached)
        if digest != IMAGENET_NOTOP_MD5:
            raise ValueError(
                f"{cached} is not the file keras.applications expects (md5 {digest}, expected "
                f"{IMAGENET_NOTOP_MD5}): probably an interrupted download. {_offline_help()}")
        return str(cached)
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"Xception weights file not found: {path}. {_offline_help()}")
        return str(path)
    raise ValueError(f"weights must be None, 'imagenet' or a path to a weights file. Received: weights={weights!r}")


@keras.saving.register_keras_serializable(package="mammalnet")
class ResizeImage(layers.Layer):
    """Bilinear resize of [batch, height, width, channels] images to a fixed (height, width).

    Used instead of `keras.layers.Resizing`: that is a preprocessing layer whose `call` defaults
    to `training=True`, and in Keras 3.15 a layer's default fills the call context for every layer
    after it, so `model(x)` without `training=` would run Xception's BatchNormalization on batch
    statistics. This layer has no `training` argument. Exports to TFLite RESIZE_BILINEAR.

    Args:
        height: output height.
        width: output width.
    """

    def __init__(self, height: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.height = check_positive_int("height", height)
        self.width = check_positive_int("width", width)

    def call(self, inputs):
        return keras.ops.image.resize(inputs, (self.height, self.width), interpolation="bilinear",
                                      antialias=False, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"height": self.height, "width": self.width})
        return config


def _check_image_size(image_size) -> tuple[int, int]:
    sizes = image_size if isinstance(image_size, (list, tuple)) else (image_size, image_size)
    if len(sizes) != 2:
        raise ValueError(f"image_size must be an int or (height, width). Received: image_size={image_size!r}")
    sizes = tuple(check_positive_int("image_size", s) for s in sizes)
    if min(sizes) < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE} (the smallest image Xception takes). "
                         f"Received: image_size={image_size!r}")
    return sizes


def build_xception(
    input_shape,
    num_classes: int,
    *,
    weights=None,
    image_size=DEFAULT_IMAGE_SIZE,
    head_units: int = 256,
    dropout: float = 0.3,
    bn_momentum: float | None = None,
    side_features: int = 0,
    name: str = "xception",
) -> keras.Model:
    """Builds Xception over log-mel images, with the shared head.

    The single-channel image is repeated into 3 identical channels (layer `to_rgb`, no weights)
    rather than mapped by a learned 1x1 convolution: with ImageNet weights the first convolution
    then sees what it saw for a grey photograph, so the pretrained filters keep their meaning
    from the first step, and nothing untrained sits in front of a frozen backbone. A
    3-channel input passes through unchanged. The image is then stretched (bilinear, layer
    `resize`) to `image_size`; no further scaling is applied: the classifier frontend already
    standardises each log-mel image to zero mean and unit variance, the same scale as the [-1, 1]
    range Xception was trained on.

    Cost: the parameters do not depend on the image size (global pooling): 20,861,480 in the
    backbone, 21,386,795 in all with the default head and 3 classes. The compute grows with the
    image area, in GFLOPs (2 x multiply-adds) per image: 1.10 at 71 x 71, 1.65 at 96 x 96 (the
    default), 2.95 at 128 x 128 and 16.7 at ImageNet's 299 x 299. 96 keeps the 94 frames of the
    default log-mel image (2 s at 24 kHz, hop 512: (94, 64)) at about their native resolution
    (71 would drop a quarter of them) for a little over half the cost of 128; 71 and 96 both end
    in a 3 x 3 x 2048 feature map, 128 in 4 x 4. Inference on 2 CPU cores (TensorFlow, float32,
    batch 1): about 22 ms per (94, 64) image at 96, 30 ms at 128.

    The nested Xception model is named `pretrained_backbone` (see the module docstring for the
    fine-tuning schedule the training loop applies to it).

    Args:
        input_shape: feature image shape (frames, bins, channels) with 1 or 3 channels, e.g.
            log-mel (94, 64, 1).
        num_classes: number of output classes.
        weights: None (random init), "imagenet" (only from the Keras cache, never downloaded),
            or a path to a no-top Xception weights file; see `resolve_xception_weights`.
        image_size: side (int) or (height, width) the image is resized to, each >= 71.
        head_units: width of the shared head's hidden layer.
        dropout: dropout rate in the head, in [0, 1).
        bn_momentum: momentum of every BatchNormalization in the backbone; None keeps Keras' 0.99,
            right for fine-tuning ImageNet weights (statistics already settled). From random
            weights on a small dataset 0.99 leaves the inference statistics far from the batch
            ones after a few hundred steps (measured on watkins10: 0.69 training vs 0.13 validation
            accuracy after 4 epochs); 0.9 lets them settle, as in the `cnn` family.
        side_features: when > 0, a second input `side_features` [batch, side_features] is
            batch-normalised and concatenated with the pooled features before the head.
        name: model name.

    Returns:
        keras.Model: features [batch, *input_shape] -> probabilities [batch, num_classes]; with
        side_features > 0 its inputs are [features, side_features].

    Raises:
        ValueError: input_shape not (frames, bins, 1 or 3), image_size below 71, dropout outside
            [0, 1), side_features < 0, fewer than 2 classes, or weights of an unknown kind.
        FileNotFoundError: weights="imagenet" not in the Keras cache, or a weights path that does
            not exist (the message says how to provide the file offline).
    """
    input_shape = check_feature_shape("build_xception", input_shape)
    if input_shape[-1] not in (1, 3):
        raise ValueError(f"build_xception needs 1 or 3 channels. Received: input_shape={input_shape}")
    height, width = _check_image_size(image_size)
    check_dropout(dropout)
    check_num_classes(num_classes)
    if isinstance(side_features, bool) or not isinstance(side_features, int) or side_features < 0:
        # Checked here too (apply_side_fusion would) so a bad value fails before the 20M-weight build.
        raise ValueError(f"side_features must be an int >= 0. Received: side_features={side_features!r}")
    weights_path = resolve_xception_weights(weights)

    inputs = keras.Input(shape=input_shape, name="features")
    x = inputs
    if input_shape[-1] == 1:
        x = layers.Concatenate(axis=-1, name="to_rgb")([x, x, x])
    x = ResizeImage(height, width, name="resize")(x)
    backbone = keras.applications.Xception(
        include_top=False, weights=weights_path, input_shape=(height, width, 3), pooling="avg",
        name=BACKBONE_NAME)
    if bn_momentum is not None:
        if not 0.0 <= float(bn_momentum) < 1.0:
            raise ValueError(f"bn_momentum must be in [0, 1) or None. Received: bn_momentum={bn_momentum!r}")
        for layer in backbone.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    x = backbone(x)
    return build_head_model(inputs, x, num_classes, side_features=side_features, units=head_units,
                            dropout=dropout, name=name)


__all__ = [
    "BACKBONE_NAME",
    "IMAGENET_NOTOP_FILE",
    "IMAGENET_NOTOP_URL",
    "ResizeImage",
    "build_xception",
    "keras_cache_dir",
    "resolve_xception_weights",
]
