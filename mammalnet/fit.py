"""python -m mammalnet.fit [PIPELINE.yaml] [--data DIR] [--workdir DIR] [--epochs N] [--set key=value ...]

Trains, reports and exports a model. With no arguments it runs pipelines/default.yaml on the
embedded synthetic ocean (generated on first use).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: keep the console readable

DEFAULT_PIPELINE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipelines",
                                "default.yaml")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mammalnet.fit",
        description="Train a marine mammal classifier: report in runs/<name>/, exports in saved_models/<name>/.")
    parser.add_argument("pipeline", nargs="?", default=None,
                        help="pipeline YAML (default: pipelines/default.yaml, the synthetic ocean)")
    parser.add_argument("--data", metavar="DIR",
                        help="data folder: one sub-folder per class, or a folder holding labels.csv")
    parser.add_argument("--workdir", metavar="DIR", default=".",
                        help="where runs/ and saved_models/ are written (default: .)")
    parser.add_argument("--epochs", type=int, metavar="N", help="override train.epochs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any pipeline key, e.g. --set audio.window_s=3 (repeatable)")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace):
    """Pipeline file + --data/--epochs/--set -> a validated PipelineConfig."""
    from mammalnet import config as config_lib

    cfg = config_lib.load(args.pipeline or DEFAULT_PIPELINE)
    overrides = list(args.overrides)
    if args.data:
        if cfg.data.source == "synthetic":
            has_csv = os.path.isfile(os.path.join(args.data, cfg.data.labels_csv))
            overrides.insert(0, f"data.source={'csv' if has_csv else 'folder'}")
        overrides.insert(0, f"data.root={args.data}")
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    return config_lib.apply_overrides(cfg, overrides).validate()


def main(argv=None) -> int:
    args = parse_args(argv)
    from mammalnet.audio.io import AudioError
    from mammalnet.config import ConfigError

    try:
        cfg = resolve_config(args)
    except ConfigError as err:
        print(f"mammalnet.fit: {err}", file=sys.stderr)
        return 2
    from mammalnet.training.train import train

    try:
        train(cfg, args.workdir)
    except (AudioError, ValueError) as err:
        print(f"mammalnet.fit: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
