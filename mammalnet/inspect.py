"""python -m mammalnet.inspect DATA_OR_PIPELINE [--data DIR] [--set key=value ...] [--strict] [--out DIR] [--json]

Looks at a dataset before any training: what is there, what cannot be used, and what a model
could learn that is not the animal. Writes inspect.json, skipped.csv and PNGs to --out
(default runs/<name>/inspect) and prints a summary table.

  - clips per class and split, sample rates and durations per class, totals;
  - clips shorter than the window and recorded below the band (2 x frontend.high_hz), per class;
  - skipped files by reason; identical audio within a class, across classes, across splits;
  - the confounder audit: a random forest that sees only recording metadata (sample rate,
    duration, channels, bit depth), trained on the split's train rows and scored on its test rows
    (val when there is no test). When it beats the train-majority rate by CONFOUNDER_MARGIN and
    reaches CONFOUNDER_MIN_ACCURACY, the recording settings differ by class and a model can score
    by learning the settings: a loud warning says so. Reported for the pipeline's split and, when
    that is not clip-stratified, for a clip-stratified split too;
  - suggested settings (see `suggest_settings`).

Exit codes: 0 done, 2 invalid pipeline/arguments, 1 data that cannot be used (the message names
the file and reason).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import math
import os
import re
import sys

import numpy as np
import pandas as pd

from mammalnet.cli import add_verbosity_arguments, setup_logging
from mammalnet.data.confounders import CONFOUNDER_MARGIN, CONFOUNDER_MIN_ACCURACY, confounder_audit

logger = logging.getLogger("mammalnet.inspect")  # by name: run with python -m, __name__ is "__main__"

# Suggested settings: the rate at least this share of clips reach, the band edge as a share of
# it (leaves the resampler's transition band below Nyquist), the window's clamp and nice values.
RATE_COVERAGE = 0.95
BAND_EDGE_SHARE = 0.48
WINDOW_RANGE_S = (0.25, 10.0)
NICE_WINDOWS_S = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
WARNING_TEXT = (
    "WARNING: recording metadata alone predicts the label",
    "The recording settings (sample rate, duration, channels, bit depth) differ by class, so a model",
    "can score by learning the settings instead of the animal, and fail on new recorders.",
    "Use a grouped split (split.method: group), a common band every clip holds (frontend.high_hz",
    "below half the lowest rate; data.below_band: skip), and check accuracy per recording setting.",
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mammalnet.inspect",
        description="Inspect a dataset before training: counts, rates, durations, skips, duplicates, "
                    "confounders and suggested settings.")
    parser.add_argument("target", metavar="DATA_OR_PIPELINE",
                        help="a pipeline YAML (or a shipped one's name), or a data folder (then "
                             "pipelines/default.yaml's settings with the folder's detected layout)")
    parser.add_argument("--data", metavar="DIR", help="data folder for the pipeline YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any pipeline key, e.g. --set frontend.high_hz=4000 (repeatable)")
    parser.add_argument("--strict", action="store_true", help="any unusable file or table row is an error")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: runs/<name>/inspect)")
    parser.add_argument("--json", action="store_true", help="print inspect.json instead of the table")
    add_verbosity_arguments(parser)
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace):
    """DATA_OR_PIPELINE + --data/--set/--strict -> a validated PipelineConfig (as fit resolves them).

    Raises:
        ConfigError: a folder given twice, a bad pipeline or override.
    """
    from mammalnet.config import ConfigError
    from mammalnet.resolve import resolve_config as resolve_pipeline

    pipeline, data = args.target, args.data
    if os.path.isdir(args.target):
        if args.data:
            raise ConfigError(f"give a data folder once: as DATA_OR_PIPELINE or as --data. "
                              f"Received: {args.target!r} and --data {args.data!r}")
        pipeline, data = None, args.target
    return resolve_pipeline(argparse.Namespace(pipeline=pipeline, data=data, epochs=None, strict=args.strict,
                                               overrides=args.overrides))


def reason_kind(reason: str) -> str:
    """A skip reason without its particulars (paths, numbers), for counting skips by kind."""
    head = re.split(r", | \(|\. | to (?=\S*[/\\])", reason, maxsplit=1)[0]
    return re.sub(r"\d+(\.\d+)?(?! x)", "N", head)


def _nice_window(duration_s: float) -> float:
    clamped = min(max(duration_s, WINDOW_RANGE_S[0]), WINDOW_RANGE_S[1])
    return min(NICE_WINDOWS_S, key=lambda w: abs(math.log(w / clamped)))


def suggest_settings(df: pd.DataFrame, config) -> dict:
    """Pipeline settings read off the data, each with a one-line reason.

    Rules:
      audio.sample_rate_hz: the highest rate present that at least RATE_COVERAGE (95%) of clips
        reach, so almost no clip is upsampled into a band it never recorded;
      frontend.high_hz: BAND_EDGE_SHARE (0.48) x that rate, rounded down to 100 Hz (10 Hz below
        4 kHz), keeping the band edge under Nyquist with room for the filter's transition;
      audio.window_s: the median clip duration, clamped to WINDOW_RANGE_S (0.25-10 s) and rounded
        to the nearest of NICE_WINDOWS_S on a log scale.

    Returns:
        {key: {"value", "current", "reason"}}.
    """
    from mammalnet.data.manifest import clip_duration_s

    rates = df["sample_rate_hz"].to_numpy()
    present = np.unique(rates)
    reached = [r for r in present if (rates >= r).mean() >= RATE_COVERAGE]
    rate = int(max(reached))
    coverage = float((rates >= rate).mean())
    span = f"{int(present[0])} Hz" if len(present) == 1 else f"{int(present[0])}-{int(present[-1])} Hz"
    step = 100 if rate >= 4000 else 10
    high_hz = float(math.floor(BAND_EDGE_SHARE * rate / step) * step)
    median = float(np.median(clip_duration_s(df)))
    window = _nice_window(median)
    return {
        "audio.sample_rate_hz": {
            "value": rate, "current": config.audio.sample_rate_hz,
            "reason": f"{100 * coverage:.1f}% of clips are recorded at >= {rate} Hz (rates present: {span})"},
        "frontend.high_hz": {
            "value": high_hz, "current": config.frontend.high_hz,
            "reason": f"{BAND_EDGE_SHARE} x {rate} Hz: a band those clips hold, under Nyquist"},
        "audio.window_s": {
            "value": window, "current": config.audio.window_s,
            "reason": f"median clip {median:.2f} s, as a nice value within {WINDOW_RANGE_S[0]}-{WINDOW_RANGE_S[1]} s"},
    }


def _duplicates(df: pd.DataFrame, skips) -> dict:
    from mammalnet.data.split import identical_audio_across_splits

    end = df["end_s"].fillna(-1.0).astype(float).round(6).astype(str)
    key = df["audio_hash"].astype(str) + "@" + df["start_s"].astype(float).round(6).astype(str) + "-" + end
    sizes = key.map(key.value_counts())
    dup = df[sizes > 1]
    across_splits = identical_audio_across_splits(df)
    conflicts = [s for s in skips if s.reason.startswith("identical audio to ")]
    return {
        "within_class": {"sets": int(key[sizes > 1].nunique()), "clips": int(len(dup)),
                         "per_class": {str(k): int(v) for k, v in dup["label"].value_counts().items()}},
        "across_classes": {"files_skipped": len(conflicts),
                           "examples": [f"{s.path}: {s.reason}" for s in conflicts[:5]]},
        "across_splits": {"clips": len(across_splits),
                          "examples": [f"{a} ({sa}) = {b} ({sb})" for a, sa, b, sb in across_splits[:5]]},
    }


def _class_summary(df: pd.DataFrame, config, below_per_class: pd.Series) -> dict:
    from mammalnet.data.manifest import clip_duration_s

    clip_s = clip_duration_s(df)
    summary = {}
    for label, rows in df.groupby("label", sort=True):
        durations = clip_s[rows.index]
        summary[str(label)] = {
            "clips": int(len(rows)),
            "files": int(rows["path"].nunique()),
            "splits": {s: int((rows["split"] == s).sum()) for s in ("train", "val", "test")},
            "sample_rates_hz": {str(int(r)): int(n) for r, n in rows["sample_rate_hz"].value_counts().sort_index().items()},
            "duration_s": {"min": float(durations.min()), "median": float(durations.median()),
                           "max": float(durations.max()), "total": float(durations.sum())},
            "shorter_than_window": int((durations < config.audio.window_s).sum()),
            "below_band": int(below_per_class.get(label, 0)),
        }
    return summary


def _try_split(manifest: pd.DataFrame, config) -> tuple[pd.DataFrame, dict]:
    """split_manifest, or (unsplit manifest, protocol with "error") so the rest can still be reported."""
    from mammalnet.data.split import split_manifest

    try:
        return split_manifest(manifest, config)  # a fixed split reads the manifest's own split column
    except ValueError as err:
        return manifest.assign(split=""), {"method": config.split.method, "error": str(err),
                                           "counts": {"train": 0, "val": 0, "test": 0}}


def _audit_split(manifest: pd.DataFrame, protocol: dict, config) -> dict:
    if "error" in protocol:
        return {"skipped": f"the split failed, so fit would too: {protocol['error']}"}
    return confounder_audit(manifest, seed=config.split.seed, clip_duration=config.audio.short_clips == "pad")


def inspect_dataset(config, out_dir: str | os.PathLike) -> dict:
    """Loads, audits and splits the pipeline's data; writes inspect.json, skipped.csv and the PNGs.

    The audit runs with `data.below_band: keep` so the report can count below-band clips per class;
    with `skip` (the default) they are then dropped and recorded as skips, as `fit` would.

    Returns:
        The report (what inspect.json holds).

    Raises:
        DataError: strict mode and anything skipped, or nothing usable left.
        ValueError / AudioError: the source cannot be read at all.
    """
    from mammalnet.data.audit import below_band_reason
    from mammalnet.data.load import load_manifest
    from mammalnet.data.manifest import clip_duration_s
    from mammalnet.data.problems import SkipLog
    from mammalnet.report import inspect_plots

    os.makedirs(out_dir, exist_ok=True)
    skips = SkipLog(strict=config.data.strict)
    keep = dataclasses.replace(config, data=dataclasses.replace(config.data, below_band="keep", strict=False))
    try:
        everything = load_manifest(keep, skips)
        below = everything["below_band"].to_numpy(dtype=bool)
        manifest = everything
        if config.data.below_band == "skip" and below.any():
            for path, rate in everything.loc[below, ["path", "sample_rate_hz"]].drop_duplicates("path").itertuples(
                    index=False):
                skips.skip(path, below_band_reason(int(rate), config.frontend.high_hz))
            if not below.all():  # else report them anyway: the suggested settings are what the user needs
                manifest = everything[~below].reset_index(drop=True)
        skips.raise_if_strict()
    finally:  # a strict failure still leaves the list of problems on disk
        skips.write_csv(os.path.join(out_dir, "skipped.csv"))
    manifest, protocol = _try_split(manifest, config)

    # below-band clips are counted before they were dropped, so the skipped ones show too
    classes = _class_summary(manifest, config, everything.loc[below, "label"].value_counts())
    confounders = {"chosen": {"split": config.split.method, **_audit_split(manifest, protocol, config)}}
    if config.split.method != "stratified":
        stratified = dataclasses.replace(config, split=dataclasses.replace(config.split, method="stratified",
                                                                            split_file=None))
        clip_split, clip_protocol = _try_split(manifest, stratified)
        confounders["stratified"] = {"split": "stratified", **_audit_split(clip_split, clip_protocol, config)}
    confounders["warning"] = any(c.get("warning", False) for c in confounders.values() if isinstance(c, dict))
    confounders["rule"] = (f"warn when metadata accuracy >= majority rate + {CONFOUNDER_MARGIN} "
                           f"and >= {CONFOUNDER_MIN_ACCURACY}")

    kinds = collections.Counter(reason_kind(s.reason) for s in skips)
    report = {
        "pipeline": config.name,
        "data": {"source": config.data.source, "root": config.data.root, "below_band": config.data.below_band},
        "settings": {"audio.sample_rate_hz": config.audio.sample_rate_hz, "audio.window_s": config.audio.window_s,
                     "frontend.high_hz": config.frontend.high_hz, "split.method": config.split.method},
        "totals": {"clips": int(len(manifest)), "files": int(manifest["path"].nunique()), "classes": len(classes),
                   "hours": float(clip_duration_s(manifest).sum() / 3600),
                   "shorter_than_window": sum(c["shorter_than_window"] for c in classes.values()),
                   "below_band": int(below.sum()), "skipped_files": len(skips),
                   "all_below_band": bool(config.data.below_band == "skip" and below.all())},
        "classes": classes,
        "split": protocol,
        "skipped": {"count": len(skips), "by_reason": dict(kinds.most_common()),
                    "files": [dataclasses.asdict(s) for s in skips]},
        "duplicates": _duplicates(manifest, skips),
        "confounders": confounders,
        # read off every usable clip, not only those the current band lets through
        "suggested": suggest_settings(everything, config),
    }

    shown = f" (all {len(everything)} usable clips, below band included)" if below.any() else ""
    figures = {
        "class_counts.png": inspect_plots.plot_class_counts(
            {k: {**v["splits"], "": v["clips"] - sum(v["splits"].values())} for k, v in classes.items()}),
        "sample_rates.png": inspect_plots.plot_class_distribution(
            everything["sample_rate_hz"], everything["label"], sorted(everything["label"].unique()),
            title=f"sample rate by class{shown}",
            xlabel="sample rate (kHz)", fmt=lambda v: f"{v / 1000:.4g}", marker=2 * config.frontend.high_hz,
            marker_label=f"2 x frontend.high_hz = {2 * config.frontend.high_hz:g} Hz"),
        "durations.png": inspect_plots.plot_class_distribution(
            clip_duration_s(everything), everything["label"], sorted(everything["label"].unique()),
            title=f"clip duration by class{shown}",
            xlabel="duration (s)", fmt=lambda v: f"{v:.3g}", marker=config.audio.window_s,
            marker_label=f"audio.window_s = {config.audio.window_s:g} s"),
    }
    for name, fig in figures.items():
        fig.savefig(os.path.join(out_dir, name), dpi=110)
    report["outputs"] = sorted(["inspect.json", "skipped.csv", *figures])
    with open(os.path.join(out_dir, "inspect.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    return report


def _box(lines) -> str:
    width = max(len(line) for line in lines)
    bar = "!" * (width + 4)
    return "\n".join([bar, *(f"! {line.ljust(width)} !" for line in lines), bar])


def format_report(report: dict) -> str:
    """The terminal summary of an inspect report."""
    out = []
    t = report["totals"]
    out.append(f"{report['pipeline']}: {t['clips']} clips in {t['files']} files, {t['classes']} classes, "
               f"{t['hours']:.2f} h; {t['skipped_files']} file(s) skipped ({report['data']['root']})")
    s = report["settings"]
    out.append(f"settings: {s['audio.sample_rate_hz']} Hz, window {s['audio.window_s']:g} s, band edge "
               f"{s['frontend.high_hz']:g} Hz, split {s['split.method']}")
    if "error" in report["split"]:
        out.append(f"split failed ({s['split.method']}), so fit would too: {report['split']['error']}")
    width = max([5] + [len(c) for c in report["classes"]])
    out.append(f"\n{'class'.ljust(width)}  clips  train   val  test  rates (kHz)        duration s (min/med/max)"
               f"  <window  <band")
    for name, c in report["classes"].items():
        rates = [int(r) for r in c["sample_rates_hz"]]
        rate_text = f"{min(rates) / 1000:.4g}" if len(rates) == 1 else \
            f"{min(rates) / 1000:.4g}-{max(rates) / 1000:.4g} ({len(rates)})"
        d = c["duration_s"]
        sp = c["splits"]
        out.append(f"{name.ljust(width)}  {c['clips']:5d}  {sp['train']:5d} {sp['val']:5d} {sp['test']:5d}  "
                   f"{rate_text:<17}  {d['min']:6.2f} {d['median']:6.2f} {d['max']:7.2f}       "
                   f"{c['shorter_than_window']:7d}  {c['below_band']:5d}")
    counts = report["split"].get("counts", {})
    out.append(f"{'total'.ljust(width)}  {t['clips']:5d}  {counts.get('train', 0):5d} {counts.get('val', 0):5d} "
               f"{counts.get('test', 0):5d}  {'':17}  {'':22}       {t['shorter_than_window']:7d}  "
               f"{t['below_band']:5d}")
    if t["all_below_band"]:
        out.append(_box([f"every clip is recorded below 2 x frontend.high_hz = {2 * s['frontend.high_hz']:g} Hz: fit "
                         "would skip them all.", "Shown anyway; see the suggested settings below."]))
    elif report["data"]["below_band"] == "skip" and t["below_band"]:
        out.append("(<band: recorded below 2 x frontend.high_hz; skipped by data.below_band: skip)")

    sk = report["skipped"]
    out.append(f"\nskipped: {sk['count']} file(s)")
    out += [f"  {n:5d} x {kind}" for kind, n in sk["by_reason"].items()]
    out += [f"  {f['path']}: {f['reason']}" for f in sk["files"][:3]]
    if sk["count"] > 3:
        out.append(f"  ... all {sk['count']} in skipped.csv")
    d = report["duplicates"]
    out.append(f"identical audio: {d['within_class']['clips']} clips in {d['within_class']['sets']} sets within a "
               f"class; {d['across_classes']['files_skipped']} files skipped as label conflicts across classes; "
               f"{d['across_splits']['clips']} clips across splits")

    conf = report["confounders"]
    out.append(f"\nconfounder audit: random forest on recording metadata only ({conf['rule']})")
    for key in ("chosen", "stratified"):
        if key not in conf:
            continue
        c = conf[key]
        if "skipped" in c:
            out.append(f"  {c['split']} split: {c['skipped']}")
            continue
        out.append(f"  {c['split']} split, trained on {c['n_train']}, scored on {c['scored_on']} ({c['n_scored']}): "
                   f"majority rate {c['majority_rate']:.3f}")
        for name, r in c["results"].items():
            out.append(f"    {name:<34} accuracy {r['accuracy']:.3f}  balanced {r['balanced_accuracy']:.3f}")
    if conf["warning"]:
        out.append(_box(WARNING_TEXT))

    out.append("\nsuggested settings:")
    for key, v in report["suggested"].items():
        same = " (as now)" if v["value"] == v["current"] else f" (now {v['current']:g})"
        out.append(f"  --set {key}={v['value']:g}{same}: {v['reason']}")
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    from mammalnet.audio.io import AudioError
    from mammalnet.config import ConfigError

    try:
        cfg = resolve_config(args)
    except (ConfigError, ValueError) as err:  # ValueError: a data folder that is missing or unreadable
        logger.error(f"mammalnet.inspect: {err}")
        return 2
    out_dir = args.out or os.path.join("runs", cfg.name, "inspect")
    try:
        report = inspect_dataset(cfg, out_dir)
    except (AudioError, ValueError) as err:  # DataError is a ValueError
        logger.error(f"mammalnet.inspect: {err}")
        return 1
    if args.json:
        print(json.dumps(report, indent=1))
        if report["confounders"]["warning"]:  # stdout is for the machine; the warning still reaches a person
            logger.warning(_box(WARNING_TEXT))
    else:
        print(format_report(report))
        logger.info(f"\nwrote {', '.join(report['outputs'])} to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
