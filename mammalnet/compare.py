"""python -m mammalnet.compare [PIPELINE.yaml] --models cnn,cnn_small,... [--spec FILE.yaml] [--out DIR]
                              [--epochs N] [--data DIR] [--set KEY=VALUE ...] [--latency-runs N] [--force]

Trains several model families on the same data and split (the pipeline with only the model changed)
and writes one table of quality and cost into --out (default runs/compare/<pipeline name>):

    <out>/compare.md    header (command, split protocol, metadata-only baseline), table, footnotes
    <out>/compare.csv   the same rows, raw numbers
    <out>/compare.png   quality (accuracy, macro-F1, minority recall) and cost (MFLOPs, KB, ms) bars
    <out>/compare.json  rows with every measured value and the configs
    <out>/<label>/      train()'s workdir: runs/<pipeline>-<label>/, saved_models/<pipeline>-<label>/,
                        and result.json (what compare recorded: status, config, params, FLOPs)

Labels: a family name (the pipeline's `model.params` apply only when it is the pipeline's own
model.name; any other family gets its defaults), or a key of the --spec YAML, which maps a label to
pipeline overrides, e.g.

    cnn_half: {model: {name: cnn, params: {filters: [32, 64, 128, 256]}}}
    cnn_mfcc: {model: {name: cnn_small}, frontend: {features: mfcc}}

A spec entry without model.name keeps the label's family (when the label is one) or the pipeline's
model; its model.params are merged over that family's starting params; its other sections are merged
over the pipeline (and win over --epochs). `name`, `data` and `split` cannot be overridden: every model
sees the same clips and split. Export is always on (the table needs the TFLite file).

Resume: a model whose `<out>/<label>/result.json` records a finished run with the same pipeline
(and whose runs/.../pipeline.yaml, metrics.json and model.tflite are still there) is reused, not
retrained; --force retrains. A run of the same pipeline that was interrupted resumes where train()
left it; a label whose pipeline changed is wiped (`<out>/<label>/`) and retrained. The table lists every model in --out, in the order they were first
added (earlier batches first); without --models it is only rebuilt. LiteRT latency is measured again
in every invocation for every row, so one table's latencies come from one session. Delete
`<out>/<label>/` to drop a model from the table.

Exit codes: 0 all models of this invocation finished; 1 at least one failed (recorded in the table with
the first line of its error; the others still run); 2 bad arguments, spec, pipeline or model name
(found before any training starts).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import shlex
import shutil
import sys
import logging
import time

from mammalnet.edge.latency import DEFAULT_RUNS as DEFAULT_LATENCY_RUNS
from mammalnet.edge.latency import WARMUP_RUNS, tflite_latency_ms
from mammalnet.flops import FLOPS_METHOD, saved_model_stats

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: keep the console readable

logger = logging.getLogger("mammalnet.compare")  # by name: run with python -m, __name__ is "__main__"

RESULT_FILE = "result.json"
FORBIDDEN_SPEC_KEYS = ("name", "data", "split")
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_args(argv=None) -> argparse.Namespace:
    from mammalnet.cli import add_verbosity_arguments, non_negative_int

    parser = argparse.ArgumentParser(
        prog="python -m mammalnet.compare",
        description="Train several model families on the same split and tabulate accuracy, macro-F1, minority "
                    "recall, parameters, FLOPs, TFLite size and LiteRT latency.",
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline", nargs="?", default=None,
                        help="pipeline YAML, or the name of a shipped one, e.g. watkins (default: pipelines/default.yaml, "
                             "the synthetic ocean)")
    parser.add_argument("--models", default="", metavar="A,B,...",
                        help="comma-separated labels: family names or --spec keys (none: only rebuild the table "
                             "from --out)")
    parser.add_argument("--spec", metavar="FILE.yaml",
                        help="YAML mapping labels to pipeline overrides (see below), or a shipped one, e.g. "
                             "compare/zoo.yaml")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: runs/compare/<pipeline name>)")
    parser.add_argument("--epochs", type=int, metavar="N", help="override train.epochs for every model (a spec entry's own train.epochs wins)")
    parser.add_argument("--data", metavar="DIR", help="data folder, as in python -m mammalnet.fit")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a pipeline key for every model (repeatable)")
    parser.add_argument("--latency-runs", type=non_negative_int, default=DEFAULT_LATENCY_RUNS, metavar="N",
                        help=f"timed LiteRT invocations per model, after {WARMUP_RUNS} warm-up ones; the median "
                             f"is reported (default: {DEFAULT_LATENCY_RUNS}; 0 skips latency)")
    parser.add_argument("--force", action="store_true", help="retrain models even when a matching run exists")
    add_verbosity_arguments(parser)
    return parser.parse_args(argv)


# -- configs ---------------------------------------------------------------------------------------------


def load_spec(path) -> dict[str, dict]:
    """Reads a --spec YAML: {label: {pipeline section: overrides}}.

    Raises:
        ValueError: missing file, invalid YAML, or not a mapping of labels to mappings.
    """
    import yaml

    from mammalnet import config as config_lib

    if path is None:
        return {}
    path = config_lib.pipeline_path(path)  # also a shipped spec, e.g. compare/zoo.yaml
    if not os.path.isfile(path):
        raise ValueError(f"spec file not found. Received: --spec {path}")
    try:
        with open(path, encoding="utf-8") as f:
            spec = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML: {err}") from err
    if not isinstance(spec, dict) or not all(isinstance(v, dict) or v is None for v in spec.values()):
        raise ValueError(f"{path}: the spec must map labels to mappings of pipeline overrides, e.g. "
                         f"'cnn_half: {{model: {{name: cnn, params: {{filters: [32, 64]}}}}}}'. Received: {spec!r}")
    return {str(label): dict(entry or {}) for label, entry in spec.items()}


def _merge(base: dict, overrides: dict) -> dict:
    """Recursive dict merge: mappings merge, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def model_configs(base, labels, spec: dict[str, dict]) -> dict:
    """One validated PipelineConfig per label: the base pipeline with only the model (and spec) changed.

    Args:
        base: the resolved PipelineConfig (pipeline file + --data/--epochs/--set).
        labels: labels in order (family names or spec keys).
        spec: load_spec's mapping.

    Returns:
        {label: PipelineConfig} in label order; config.name is f"{base.name}-{label}".

    Raises:
        ValueError: a bad label, an unknown family (listing the available ones and the spec labels), a
            spec key compare does not allow, a parameter the family does not take, or an invalid config.
    """
    from mammalnet import config as config_lib
    from mammalnet.models import registry

    families = registry.available()
    base_dict = config_lib.to_dict(base)
    configs = {}
    for label in labels:
        if not LABEL_PATTERN.match(label):
            raise ValueError(f"a model label may hold letters, digits, '_', '.', '-' (a folder is named after it). "
                             f"Received: {label!r}")
        if label not in spec and label not in families:
            raise ValueError(f"unknown model {label!r}: not a registered family and not in --spec. Available "
                             f"families: {', '.join(families)}" + (f"; spec labels: {', '.join(spec)}" if spec else ""))
        entry = copy.deepcopy(spec.get(label, {}))
        bad = sorted(set(entry) & set(FORBIDDEN_SPEC_KEYS))
        if bad:
            raise ValueError(f"spec entry {label!r} overrides {bad}: compare keeps the name, data and split of "
                             "the pipeline for every model (change them in the pipeline)")
        model = entry.pop("model", None) or {}
        if not isinstance(model, dict) or set(model) - {"name", "params"}:
            raise ValueError(f"spec entry {label!r}: model must be a mapping with name and/or params. "
                             f"Received: model={model!r}")
        default_family = label if label in families else base.model.name
        family = model.get("name", default_family)
        if family not in families:
            raise ValueError(f"spec entry {label!r} names unknown model family {family!r}. Available families: "
                             f"{', '.join(families)}")
        params = copy.deepcopy(base.model.params) if family == base.model.name else {}
        extra_params = model.get("params") or {}
        if not isinstance(extra_params, dict):
            raise ValueError(f"spec entry {label!r}: model.params must be a mapping. Received: {extra_params!r}")
        params.update(copy.deepcopy(extra_params))
        unknown = sorted(p for p in params if not registry.accepts(family, p))
        if unknown:
            raise ValueError(f"model {label!r} (family {family!r}) takes no parameter(s) {unknown}")
        values = _merge(base_dict, entry)
        values["model"] = {"name": family, "params": params}
        values["name"] = f"{base.name}-{label}"
        values.setdefault("export", {})["enabled"] = True
        try:
            configs[label] = config_lib.from_dict(values).validate()
        except config_lib.ConfigError as err:
            raise ValueError(f"model {label!r}: {err}") from err
    return configs


def _normalised(config_values: dict) -> dict | None:
    """A config dict as from_dict/to_dict gives it (new defaults filled, JSON types); None if invalid."""
    from mammalnet import config as config_lib

    try:
        return json.loads(json.dumps(config_lib.to_dict(config_lib.from_dict(config_values))))
    except (config_lib.ConfigError, TypeError, ValueError):
        return None


# -- measurements ----------------------------------------------------------------------------------------


def latency_method(runs: int) -> str:
    if runs < 1:
        return "LiteRT latency: not measured (--latency-runs 0)."
    return (f"LiteRT latency: `ai_edge_litert` Interpreter on model.tflite (default XNNPACK delegate), batch 1, "
            f"num_threads=1, {WARMUP_RUNS} warm-up invocations, then the median of {runs} timed `invoke()` calls; "
            f"measured again in this invocation for every row on {platform.machine()} "
            f"({os.cpu_count()} CPUs{', ' + platform.processor() if platform.processor() else ''}).")


# -- runs ------------------------------------------------------------------------------------------------


def _paths(out_dir: str, label: str, config_name: str) -> dict:
    workdir = os.path.join(out_dir, label)
    saved = os.path.join(workdir, "saved_models", config_name)
    run = os.path.join(workdir, "runs", config_name)
    return {"workdir": workdir, "result": os.path.join(workdir, RESULT_FILE), "run": run, "saved": saved,
            "pipeline_yaml": os.path.join(run, "pipeline.yaml"), "manifest": os.path.join(run, "manifest.csv"),
            "metrics": os.path.join(saved, "metrics.json"), "tflite": os.path.join(saved, "model.tflite"),
            "saved_model": os.path.join(saved, "saved_model")}


def _read_json(path):
    from mammalnet.report.metrics import read_json

    return read_json(path)


def reusable(out_dir: str, label: str, config) -> bool:
    """Whether <out>/<label> holds a finished run of exactly this pipeline, with its artifacts."""
    from mammalnet import config as config_lib

    result = _read_json(_paths(out_dir, label, config.name)["result"])
    return (bool(result) and result.get("status") == "ok"
            and _normalised(result.get("config") or {}) == _normalised(config_lib.to_dict(config))
            and _finished_run_of(out_dir, label, config))


def _finished_run_of(out_dir: str, label: str, config) -> bool:
    """<out>/<label> holds a run of exactly this pipeline whose training and export finished."""
    from mammalnet import config as config_lib

    paths = _paths(out_dir, label, config.name)
    try:
        dumped = config_lib.to_dict(config_lib.load(paths["pipeline_yaml"]))
    except config_lib.ConfigError:
        return False
    return (_normalised(dumped) == _normalised(config_lib.to_dict(config))
            and all(os.path.isfile(paths[k]) for k in ("metrics", "tflite", "manifest"))
            and os.path.isdir(paths["saved_model"]))


def _resumable(out_dir: str, label: str, config) -> bool:
    """An interrupted run of this very pipeline (train() resumes it from its backup)."""
    from mammalnet import config as config_lib

    paths = _paths(out_dir, label, config.name)
    if os.path.exists(paths["result"]):
        return False
    try:
        dumped = config_lib.to_dict(config_lib.load(paths["pipeline_yaml"]))
    except config_lib.ConfigError:
        return False
    return _normalised(dumped) == _normalised(config_lib.to_dict(config))


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


def train_one(out_dir: str, label: str, config, *, force: bool = False, verbose=2) -> str:
    """Trains and measures one model unless a matching run exists; writes <out>/<label>/result.json.

    Returns:
        "reused", "trained" or "failed" (the error's first line is in result.json; the traceback is logged).
    """
    import keras

    from mammalnet import config as config_lib
    from mammalnet.training.train import train

    paths = _paths(out_dir, label, config.name)
    if not force and reusable(out_dir, label, config):
        logger.info(f"mammalnet.compare: {label}: reusing the finished run in {paths['workdir']} (same pipeline; "
                    "--force retrains)")
        return "reused"
    if not force and _trained_unmeasured(out_dir, label, config):
        logger.info(f"mammalnet.compare: {label}: training finished earlier but its measurement failed; measuring "
                    "again without retraining")
        return _measure(paths, label, config, {"label": label, "family": config.model.name,
                                               "config": config_lib.to_dict(config)}, "reused")
    if os.path.isdir(paths["workdir"]) and (force or not _resumable(out_dir, label, config)):
        shutil.rmtree(paths["workdir"])  # a stale backup of another pipeline must not be restored
    os.makedirs(paths["workdir"], exist_ok=True)
    record = {"label": label, "family": config.model.name, "config": config_lib.to_dict(config)}
    logger.info(f"mammalnet.compare: {label}: training {config.model.name} "
                f"(params {config.model.params or 'family defaults'}) in {paths['workdir']}")
    keras.backend.clear_session()
    try:
        train(config, paths["workdir"], verbose=verbose)
    except Exception as err:  # one model failing must not end the comparison
        return _failed(paths, label, record, err)
    finally:
        keras.backend.clear_session()
    return _measure(paths, label, config, record, "trained")


def _failed(paths: dict, label: str, record: dict, err: BaseException) -> str:
    from mammalnet.report.metrics import write_json

    logger.error(f"mammalnet.compare: {label}: FAILED: {_first_line(err)}", exc_info=err)  # with the traceback
    write_json(paths["result"], {**record, "status": "failed", "error": _first_line(err),
                                 "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return "failed"


def _measure(paths: dict, label: str, config, record: dict, status: str) -> str:
    """Parameters and FLOPs of a finished run into result.json; returns `status`, or "failed"."""
    import keras

    from mammalnet.report.metrics import write_json

    with open(os.path.join(paths["saved"], "labels.txt"), encoding="utf-8") as f:
        num_classes = sum(1 for line in f if line.strip())
    try:
        stats = saved_model_stats(paths["saved_model"], config.window_samples, config, num_classes)
    except Exception as err:  # one model failing must not end the comparison
        return _failed(paths, label, record, err)
    finally:
        keras.backend.clear_session()
    write_json(paths["result"], {**record, "status": "ok", "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                 **stats})
    return status


def _trained_unmeasured(out_dir: str, label: str, config) -> bool:
    """A run of this very pipeline whose training and export finished but whose measurement failed."""
    result = _read_json(_paths(out_dir, label, config.name)["result"])
    return bool(result) and result.get("status") == "failed" and _finished_run_of(out_dir, label, config)


def collect_rows(out_dir: str, *, order: list[str], statuses: dict[str, str], latency_runs: int) -> list[dict]:
    """One row per <out>/<label>/ holding a result.json (or an interrupted run), in `order` then by label."""
    import pandas as pd

    from mammalnet.report.compare_report import metrics_row

    found = sorted(name for name in os.listdir(out_dir) if os.path.isdir(os.path.join(out_dir, name))
                   and (os.path.isfile(os.path.join(out_dir, name, RESULT_FILE))
                        or os.path.isdir(os.path.join(out_dir, name, "runs"))))
    labels = [label for label in order if label in found] + [label for label in found if label not in order]
    rows = []
    for label in labels:
        result = _read_json(os.path.join(out_dir, label, RESULT_FILE))
        if result is None:
            rows.append({"label": label, "family": None, "status": "failed",
                         "error": "no result.json: interrupted, or not started by compare"})
            continue
        config = result.get("config") or {}
        row = {"label": label, "family": result.get("family"), "config": _normalised(config) or config,
               "epochs_max": config.get("train", {}).get("epochs"),
               "status": statuses.get(label, "earlier run"), "error": result.get("error")}
        if result.get("status") != "ok":
            row["status"] = "failed"
            rows.append(row)
            continue
        paths = _paths(out_dir, label, config.get("name", ""))
        try:
            metrics = _read_json(paths["metrics"])
            if metrics is None:
                raise ValueError(f"cannot read {paths['metrics']}")
            row.update(metrics_row(metrics, pd.read_csv(paths["manifest"])))
        except (OSError, ValueError, KeyError) as err:
            row.update(status="failed", error=f"artifacts missing: {_first_line(err)}")
            rows.append(row)
            continue
        for key in ("params", "params_total", "flops", "fft_flops_estimate", "uncounted_ops", "by_op",
                    "profiler_total"):
            row[key] = result.get(key)
        row["latency_ms"], row["latency_runs"] = None, latency_runs
        if latency_runs > 0 and os.path.isfile(paths["tflite"]):
            window = _window_samples(config)
            try:
                row["latency_ms"] = tflite_latency_ms(paths["tflite"], window, runs=latency_runs)
            except Exception as err:  # a broken file is a missing value, not the end of the table
                row["latency_error"] = _first_line(err)
        rows.append(row)
    return rows


def _window_samples(config_values: dict) -> int:
    from mammalnet import config as config_lib

    return config_lib.from_dict(config_values).window_samples


def _previous_order(out_dir: str) -> list[str]:
    previous = _read_json(os.path.join(out_dir, "compare.json")) or {}
    order = previous.get("order")
    return [str(label) for label in order] if isinstance(order, list) else []


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from mammalnet.cli import setup_logging
    from mammalnet.config import ConfigError
    from mammalnet.resolve import resolve_config

    setup_logging(args.log_level)

    labels = [label.strip() for label in args.models.split(",") if label.strip()]
    try:
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"--models lists {duplicates} more than once")
        base = resolve_config(argparse.Namespace(pipeline=args.pipeline, data=args.data, strict=False,
                                                 epochs=args.epochs, overrides=args.overrides))
        configs = model_configs(base, labels, load_spec(args.spec))
    except (ConfigError, ValueError) as err:
        logger.error(f"mammalnet.compare: {err}")
        return 2
    out_dir = args.out or os.path.join("runs", "compare", base.name)
    if not labels and not os.path.isdir(out_dir):
        logger.error(f"mammalnet.compare: nothing to compare: no --models and no earlier runs in {out_dir}")
        return 2
    os.makedirs(out_dir, exist_ok=True)

    statuses = {}
    for i, (label, config) in enumerate(configs.items()):
        logger.info(f"mammalnet.compare: [{i + 1}/{len(configs)}] {label}")
        statuses[label] = train_one(out_dir, label, config, force=args.force)

    order = _previous_order(out_dir)
    order += [label for label in labels if label not in order]
    rows = collect_rows(out_dir, order=order, statuses=statuses, latency_runs=args.latency_runs)
    if not rows:
        logger.error(f"mammalnet.compare: nothing to compare in {out_dir}")
        return 2
    from mammalnet.report.compare_report import markdown_table, write_outputs

    command = "python -m mammalnet.compare " + shlex.join(argv)
    paths = write_outputs(out_dir, rows, pipeline=base.name, command=command, flops_method=FLOPS_METHOD,
                          latency_method=latency_method(args.latency_runs))
    print(markdown_table(rows), flush=True)
    logger.info(f"mammalnet.compare: table in {paths['md']} (also .csv, .png, .json)")
    failed = [label for label, status in statuses.items() if status == "failed"]
    if failed:
        logger.error(f"mammalnet.compare: failed: {', '.join(failed)} (see the table and the tracebacks above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
