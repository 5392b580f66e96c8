"""python -m mammalnet.fit [PIPELINE.yaml] [--data DIR] [--workdir DIR] [--epochs N] [--strict] [--set key=value ...]

Trains, reports and exports a model. With no arguments it runs pipelines/default.yaml on the
embedded synthetic ocean (generated on first use).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from mammalnet.cli import add_verbosity_arguments, setup_logging
from mammalnet.resolve import resolve_config

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: keep the console readable

logger = logging.getLogger("mammalnet.fit")  # by name: run with python -m, __name__ is "__main__"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mammalnet.fit",
        description="Train a marine mammal classifier: report in runs/<name>/, exports in saved_models/<name>/.")
    parser.add_argument("pipeline", nargs="?", default=None,
                        help="pipeline YAML, or the name of a shipped one, e.g. watkins (default: pipelines/default.yaml, "
                             "the synthetic ocean)")
    parser.add_argument("--data", metavar="DIR",
                        help="data folder in any supported layout (class folders, labels.csv, split folders, "
                             "Kaggle train/ + train.csv, Raven selection tables); detected from its contents")
    parser.add_argument("--workdir", metavar="DIR", default=".",
                        help="where runs/ and saved_models/ are written (default: .)")
    parser.add_argument("--epochs", type=int, metavar="N", help="override train.epochs")
    parser.add_argument("--strict", action="store_true",
                        help="any unusable file or table row is an error (default: skip it and list it in "
                             "runs/<name>/skipped.csv)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any pipeline key, e.g. --set audio.window_s=3 (repeatable)")
    add_verbosity_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    from mammalnet.audio.io import AudioError
    from mammalnet.config import ConfigError

    try:
        cfg = resolve_config(args)
    except (ConfigError, ValueError) as err:  # ValueError: a --data folder that is missing or unreadable
        logger.error(f"mammalnet.fit: {err}")
        return 2
    from mammalnet.training.train import train

    try:
        train(cfg, args.workdir)
    except (AudioError, ValueError, FileNotFoundError) as err:  # FileNotFoundError: weights, embeddings
        logger.error(f"mammalnet.fit: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
