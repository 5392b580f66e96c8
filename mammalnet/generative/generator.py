"""A saved generative model: saved_models/<name>/{generator.keras, generative.json, labels.txt}.

generative.json holds what sampling and the way back to audio need: the method, the patch spec
(rate, window, mel settings), the class names, the sampling defaults and, for a VAE, the Gaussian
fitted to each class's training latents.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np

from mammalnet.generative.diffusion import Diffusion
from mammalnet.generative.inversion import PatchSpec, patches_to_audio
from mammalnet.generative.vae import VAE, sample_latents

GENERATOR_FILE = "generator.keras"
INFO_FILE = "generative.json"
METHODS = ("vae", "diffusion")


class GeneratorDirError(ValueError):
    """A folder that is not a saved mammalnet generative model."""


@dataclasses.dataclass
class Generator:
    """A loaded generative model with its patch spec and class names."""

    model: keras.Model
    method: str
    spec: PatchSpec
    class_names: list[str]
    info: dict

    def class_index(self, class_name: str) -> int:
        if class_name not in self.class_names:
            raise ValueError(f"unknown class; this model generates {self.class_names}. Received: class={class_name!r}")
        return self.class_names.index(class_name)

    def sample(self, class_name: str, n: int, *, seed: int = 0, steps: int | None = None,
               guidance_scale: float | None = None, temperature: float = 1.0) -> np.ndarray:
        """n log-mel patches of one class: float32 [n, padded_frames, n_mels, 1] in [-1, 1].

        Args:
            class_name: one of class_names.
            n: how many.
            seed: the draw; the same seed gives the same patches.
            steps: diffusion only, DDIM steps (default: the trained model's generative.sampling_steps).
            guidance_scale: diffusion only, classifier-free guidance (default: generative.guidance_scale).
            temperature: VAE only, scales the class latent Gaussian's standard deviation.

        Raises:
            ValueError: an unknown class or n < 1.
        """
        index = self.class_index(class_name)
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer. Received: n={n!r}")
        if self.method == "vae":
            latents = sample_latents(self.info["class_latents"], class_name, int(n), seed=seed,
                                     temperature=temperature)
            return self.model.decode(latents)
        return self.model.sample(np.full(int(n), index, dtype=np.int32),
                                 steps=steps or self.info["sampling_steps"],
                                 guidance_scale=self.info["guidance_scale"] if guidance_scale is None else guidance_scale,
                                 seed=seed)

    def to_audio(self, patches: np.ndarray, *, n_iter: int | None = None, seed: int = 0,
                 mel_solver: str | None = None) -> np.ndarray:
        """Mel inversion + Griffin-Lim: patches -> float32 [n, window_samples] at spec.sample_rate_hz
        (defaults: the trained model's generative.griffin_lim_iters and mel_solver)."""
        return patches_to_audio(patches, self.spec, n_iter=n_iter or self.info["griffin_lim_iters"], seed=seed,
                                mel_solver=mel_solver or self.info.get("mel_solver", "nnls"))


def save_generator(model: keras.Model, model_dir: str, *, method: str, spec: PatchSpec, class_names,
                   info: dict) -> dict:
    """Writes generator.keras, generative.json (info + method, patch spec, class names) and labels.txt.

    Returns:
        {"model": path, "info": path, "labels": path}.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}. Received: method={method!r}")
    os.makedirs(model_dir, exist_ok=True)
    paths = {"model": os.path.join(model_dir, GENERATOR_FILE), "info": os.path.join(model_dir, INFO_FILE),
             "labels": os.path.join(model_dir, "labels.txt")}
    model.save(paths["model"])
    record = {**info, "method": method, "patch": spec.to_dict(), "class_names": list(class_names)}
    with open(paths["info"], "w") as f:
        json.dump(record, f, indent=2)
    with open(paths["labels"], "w") as f:
        f.write("\n".join(class_names) + "\n")
    return paths


def load_generator(model_dir: str | os.PathLike) -> Generator:
    """Loads a folder written by save_generator.

    Raises:
        GeneratorDirError: missing files, unreadable generative.json, missing keys, an unknown
            method, or a model whose type does not match the method.
    """
    model_dir = os.fspath(model_dir)
    model_path, info_path = os.path.join(model_dir, GENERATOR_FILE), os.path.join(model_dir, INFO_FILE)
    for path in (model_path, info_path):
        if not os.path.isfile(path):
            hint = (" (a classifier export; generate needs a run with generative.method vae or diffusion)"
                    if os.path.isfile(os.path.join(model_dir, "model.keras")) else "")
            raise GeneratorDirError(f"{model_dir}: not a generative model folder, missing "
                                    f"{os.path.basename(path)}{hint}")
    try:
        with open(info_path) as f:
            info = json.load(f)
    except json.JSONDecodeError as err:
        raise GeneratorDirError(f"{info_path}: not valid JSON ({err})") from err
    required = {"method", "patch", "class_names", "griffin_lim_iters"}
    required |= {"class_latents"} if info.get("method") == "vae" else {"sampling_steps", "guidance_scale"}
    missing = sorted(required - set(info))
    if missing:
        raise GeneratorDirError(f"{info_path}: missing keys {missing}")
    if info["method"] not in METHODS:
        raise GeneratorDirError(f"{info_path}: method must be one of {METHODS}. Received: method={info['method']!r}")
    model = keras.saving.load_model(model_path, compile=False)
    expected = {"vae": VAE, "diffusion": Diffusion}[info["method"]]
    if not isinstance(model, expected):
        raise GeneratorDirError(f"{model_path}: holds a {type(model).__name__}, generative.json says "
                                f"method={info['method']!r}")
    return Generator(model=model, method=info["method"], spec=PatchSpec.from_dict(info["patch"]),
                     class_names=list(info["class_names"]), info=info)
