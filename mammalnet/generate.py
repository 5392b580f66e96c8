"""python -m mammalnet.generate MODEL_DIR --class NAME [--class NAME ...] --n 16 --out DIR

Draws clips of the given classes from a generative model trained by `fit` (generative.method vae or
diffusion), inverts them to audio (Griffin-Lim) and writes DIR/<class>/<class>_NNN.wav at the
pipeline rate, plus DIR/generated.png: the log-mel patches, one row per class. `--class all` draws
every class. The WAV folders can be given to a classifier run as data.generated_root.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from mammalnet.cli import add_verbosity_arguments, setup_logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: keep the console readable

logger = logging.getLogger("mammalnet.generate")  # by name: run with python -m, __name__ is "__main__"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mammalnet.generate",
        description="Generate audio clips of a class from a trained VAE or diffusion model (saved_models/<name>).")
    parser.add_argument("model_dir", help="a saved_models/<name> folder of a generative run")
    parser.add_argument("--class", dest="classes", action="append", required=True, metavar="NAME",
                        help="class to generate (repeatable; 'all' for every class)")
    parser.add_argument("--n", type=int, default=16, help="clips per class (default 16)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--steps", type=int, help="diffusion: DDIM steps (default: the model's sampling_steps)")
    parser.add_argument("--guidance", type=float,
                        help="diffusion: classifier-free guidance scale (default: the model's guidance_scale)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="VAE: scale of the class latent Gaussian's spread (default 1)")
    parser.add_argument("--griffin-lim-iters", type=int, help="Griffin-Lim iterations (default: the model's)")
    parser.add_argument("--mel-solver", choices=("nnls", "pinv"),
                        help="mel to linear magnitude: nnls, or pinv (~40x faster, coarser); default: the model's")
    add_verbosity_arguments(parser)
    return parser


def generate(model_dir, classes, n: int, out_dir, *, seed: int = 0, steps: int | None = None,
             guidance_scale: float | None = None, temperature: float = 1.0,
             griffin_lim_iters: int | None = None, mel_solver: str | None = None) -> dict:
    """Writes n WAVs per class and a patch grid PNG into out_dir.

    Returns:
        {"wavs": {class: [paths]}, "grid": path, "sample_rate_hz": int}.

    Raises:
        GeneratorDirError: model_dir is not a generative model folder.
        ValueError: an unknown class or a bad count.
    """
    from mammalnet.generative.generator import load_generator
    from mammalnet.generative.inversion import write_wavs
    from mammalnet.report.generative import plot_generated_by_class, write_figure

    generator = load_generator(model_dir)
    names = generator.class_names if "all" in classes else list(dict.fromkeys(classes))
    for name in names:
        generator.class_index(name)  # every class checked before minutes of sampling
    os.makedirs(out_dir, exist_ok=True)
    patches, wavs = {}, {}
    for offset, name in enumerate(names):
        patches[name] = generator.sample(name, n, seed=seed + offset, steps=steps, guidance_scale=guidance_scale,
                                         temperature=temperature)
        audio = generator.to_audio(patches[name], n_iter=griffin_lim_iters, seed=seed, mel_solver=mel_solver)
        wavs[name] = write_wavs(os.path.join(out_dir, name), audio, generator.spec.sample_rate_hz, prefix=name)
    grid = write_figure(plot_generated_by_class(patches, per_class=min(n, 8)), os.path.join(out_dir, "generated.png"))
    return {"wavs": wavs, "grid": grid, "sample_rate_hz": generator.spec.sample_rate_hz}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.n < 1:
        logger.error(f"mammalnet.generate: --n must be positive. Received: --n {args.n}")
        return 2
    try:
        result = generate(args.model_dir, args.classes, args.n, args.out, seed=args.seed, steps=args.steps,
                          guidance_scale=args.guidance, temperature=args.temperature,
                          griffin_lim_iters=args.griffin_lim_iters, mel_solver=args.mel_solver)
    except (ValueError, FileNotFoundError) as err:
        logger.error(f"mammalnet.generate: {err}")
        return 1
    for name, paths in result["wavs"].items():
        print(f"{name}: {len(paths)} clips at {result['sample_rate_hz']} Hz in {os.path.dirname(paths[0])}")
    print(f"grid: {result['grid']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
