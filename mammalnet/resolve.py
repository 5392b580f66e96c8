"""A pipeline from command-line arguments, as every training command resolves it (fit, compare,
inspect, tools/label_efficiency.py, tools/augment_rare.py): the pipeline file (a path, or the name
of a shipped pipeline; the shipped default.yaml when none) plus --data, --strict, --epochs and --set.
"""

from __future__ import annotations

import argparse

from mammalnet import config as config_lib

# The shipped default.yaml (package data when installed, pipelines/ in a source checkout).
DEFAULT_PIPELINE = config_lib.pipeline_path(None)


def resolve_config(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """Pipeline file + --data/--epochs/--set -> a validated PipelineConfig.

    Args:
        args: pipeline (a file, a shipped pipeline's name as config.pipeline_path takes it, or None:
            default.yaml), data (a folder or None; for a synthetic pipeline its layout is detected and
            becomes data.source), strict, epochs (None: the pipeline's) and overrides (`key=value`
            strings, applied last).

    Raises:
        ConfigError: a missing or invalid pipeline, a bad override.
        ValueError: a --data folder that is missing or unreadable.
    """
    cfg = config_lib.load(config_lib.pipeline_path(args.pipeline))
    overrides = list(args.overrides)
    if args.data:
        if cfg.data.source == "synthetic":
            from mammalnet.data.sources import detect_layout

            overrides.insert(0, f"data.source={detect_layout(args.data)}")
        overrides.insert(0, f"data.root={args.data}")
    if args.strict:
        overrides.append("data.strict=true")
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    return config_lib.apply_overrides(cfg, overrides).validate()
