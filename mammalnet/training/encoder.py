"""The encoder of a classifier: waveform -> pooled embedding, the part contrastive pretraining trains.

    classifier: waveform ─► frontend ─► backbone [... ─► embedding ─► (side fusion) ─► head]
    encoder:    waveform ─► frontend (features output) ─► backbone up to `embedding`

The encoder shares its layers with the classifier it is cut from: training one trains the other.
A saved encoder (encoder.keras) is loaded into a new classifier by layer name.
"""

from __future__ import annotations

import os

import keras

from mammalnet.models.heads import EMBEDDING_LAYER


def encoder_from_classifier(classifier: keras.Model) -> keras.Model:
    """Cuts the encoder out of a mammalnet classifier (shared layers, not a copy).

    Args:
        classifier: build_classifier's model: waveform -> nested `frontend` model -> backbone model
            holding an EMBEDDING_LAYER.

    Returns:
        keras.Model named "encoder": waveform [B, window_samples] -> embedding [B, d].

    Raises:
        ValueError: the model has no nested frontend/backbone with an embedding layer.
    """
    frontend = _nested(classifier, lambda m: m.name == "frontend")
    backbone = _nested(classifier, lambda m: any(layer.name == EMBEDDING_LAYER for layer in m.layers))
    if frontend is None or backbone is None:
        raise ValueError(f"model {classifier.name!r} is not a mammalnet classifier with an encoder (needs a nested "
                         f"'frontend' and a backbone with an {EMBEDDING_LAYER!r} layer; models saved before that layer "
                         "existed predict as ever but have no encoder to cut out: train them again)")
    features = frontend.outputs[0]
    frontend_features = frontend if len(frontend.outputs) == 1 else keras.Model(
        frontend.inputs, features, name="frontend_features")
    # The embedding is computed before side features are fused, so it depends on the first input only.
    trunk = keras.Model(backbone.inputs[0], backbone.get_layer(EMBEDDING_LAYER).output, name=f"{backbone.name}_trunk")
    waveform = keras.Input(shape=classifier.inputs[0].shape[1:], name="waveform")
    return keras.Model(waveform, trunk(frontend_features(waveform)), name="encoder")


def _nested(model: keras.Model, predicate) -> keras.Model | None:
    for layer in model.layers:
        if isinstance(layer, keras.Model) and predicate(layer):
            return layer
    return None


def weighted_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Leaf layers holding weights, by name, through nested models.

    Raises:
        ValueError: two different weighted layers share a name (transfer by name would be ambiguous).
    """
    found: dict[str, keras.layers.Layer] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            inner = weighted_layers(layer)
            for name, sub in inner.items():
                if name in found and found[name] is not sub:
                    raise ValueError(f"two weighted layers are named {name!r} in model {model.name!r}")
                found[name] = sub
        elif layer.weights:
            if layer.name in found and found[layer.name] is not layer:
                raise ValueError(f"two weighted layers are named {layer.name!r} in model {model.name!r}")
            found[layer.name] = layer
    return found


def load_encoder_into(classifier: keras.Model, encoder_path: str | os.PathLike) -> list[str]:
    """Copies a saved encoder's weights into the matching layers of a freshly built classifier.

    Args:
        classifier: built from the same pipeline settings (family, params, frontend) as the encoder.
        encoder_path: an encoder.keras written by a pretraining run.

    Returns:
        the names of the classifier layers that received weights (the encoder part).

    Raises:
        FileNotFoundError: no file at encoder_path.
        ValueError: the encoder does not fit this classifier (a layer missing or of another shape),
            naming the file and the layer.
    """
    import mammalnet.layers  # noqa: F401  (registers the custom layers for loading)

    encoder_path = os.fspath(encoder_path)
    if not os.path.isfile(encoder_path):
        raise FileNotFoundError(f"pretrain.encoder: no encoder file at {encoder_path} (a pretraining run writes "
                                "saved_models/<name>/encoder.keras)")
    saved = keras.saving.load_model(encoder_path, compile=False, safe_mode=True)
    source = weighted_layers(saved)
    target = weighted_layers(encoder_from_classifier(classifier))
    missing = sorted(set(target) - set(source))
    extra = sorted(set(source) - set(target))
    if missing or extra:
        raise ValueError(f"{encoder_path}: the encoder does not match this pipeline's model (built with other "
                         f"model or frontend settings?). Layers only in the model: {missing[:5]}; only in the "
                         f"encoder: {extra[:5]}")
    for name, layer in target.items():
        weights = source[name].get_weights()
        shapes = [w.shape for w in layer.get_weights()]
        if [w.shape for w in weights] != shapes:
            raise ValueError(f"{encoder_path}: layer {name!r} has weights {[w.shape for w in weights]}, the model "
                             f"expects {shapes} (other model or frontend settings?)")
        layer.set_weights(weights)
    return sorted(target)


__all__ = ["encoder_from_classifier", "load_encoder_into", "weighted_layers"]
