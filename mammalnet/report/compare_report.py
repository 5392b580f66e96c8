"""The tables and the plot of `python -m mammalnet.compare`: one row per model, from its metrics.json.

Definitions used in every table:
    minority classes  the quarter (at least one) of the classes present in the evaluated split with
                      the fewest TRAINING clips (ties: first by name; mammalnet.report.metrics.
                      minority_recall); their mean recall is "minority recall".
    worst recall      the lowest per-class recall over the classes present in the evaluated split.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import math
import os
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mammalnet.report.metrics import minority_recall, write_json

# (key, heading, format) of the markdown table, in order; csv columns are CSV_COLUMNS.
MD_COLUMNS = (
    ("label", "model", "{}"),
    ("family", "family", "{}"),
    ("accuracy", "accuracy", "{:.3f}"),
    ("macro_f1", "macro-F1", "{:.3f}"),
    ("minority_recall", "minority recall [1]", "{:.3f}"),
    ("worst_recall", "worst recall [2]", "{:.3f}"),
    ("params", "params [3]", "{:,}"),
    ("mflops", "MFLOPs / window [4]", "{:.2f}"),
    ("tflite_kb", "TFLite KB", "{:.1f}"),
    ("latency_ms", "latency ms [5]", "{:.2f}"),
    ("epochs", "epochs run / max", "{}"),
    ("fit_s", "train s", "{:.0f}"),
    ("status", "status", "{}"),
)
CSV_COLUMNS = (
    "label", "family", "status", "error", "accuracy", "balanced_accuracy", "macro_f1", "minority_class",
    "minority_train_clips", "minority_recall", "worst_class", "worst_recall", "params", "params_total", "flops",
    "fft_flops_estimate", "tflite_bytes", "latency_ms", "latency_runs", "epochs_run", "epochs_max", "fit_s",
    "total_s", "num_test_clips", "evaluated_split", "split_fingerprint",
)


def train_clip_counts(manifest: pd.DataFrame) -> dict[str, int]:
    """Training clips per class of a split manifest (label, split columns); every label appears."""
    labels = sorted(manifest["label"].astype(str).unique())
    counts = manifest.loc[manifest["split"] == "train", "label"].astype(str).value_counts()
    return {name: int(counts.get(name, 0)) for name in labels}


def worst_class(per_class: dict) -> tuple[str | None, float | None]:
    """The evaluated class (support > 0) with the lowest recall (ties: first by name)."""
    evaluated = sorted(name for name, values in per_class.items() if values.get("support", 0) > 0)
    if not evaluated:
        return None, None
    name = min(evaluated, key=lambda n: (per_class[n]["recall"], n))
    return name, float(per_class[name]["recall"])


def split_fingerprint(manifest: pd.DataFrame) -> str:
    """12 hex digits identifying which clip segment went to which split (order-independent)."""
    start = manifest["start_s"] if "start_s" in manifest else pd.Series([""] * len(manifest))
    keys = sorted(f"{p}|{s}|{sp}" for p, s, sp in zip(manifest["path"].astype(str), start.astype(str),
                                                       manifest["split"].astype(str)))
    return hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()[:12]


def metrics_row(metrics: dict, manifest: pd.DataFrame) -> dict:
    """The quality and training columns of one model from its metrics.json and split manifest."""
    counts = train_clip_counts(manifest)
    per_class = metrics.get("per_class", {})
    minority = minority_recall(per_class, counts)
    worst, worst_recall = worst_class(per_class)
    timings = metrics.get("timings_s", {})
    protocol = metrics.get("split_protocol", {})
    return {
        "accuracy": metrics.get("accuracy"),
        "balanced_accuracy": metrics.get("balanced_accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "minority_class": ", ".join(minority["minority_classes"]) or None,
        "minority_train_clips": ", ".join(str(counts[n]) for n in minority["minority_classes"]) or None,
        "minority_recall": minority["minority_recall"],
        "worst_class": worst,
        "worst_recall": worst_recall,
        "tflite_bytes": metrics.get("parity", {}).get("tflite_bytes"),
        "epochs_run": timings.get("epochs_run"),
        "fit_s": timings.get("fit_s"),
        "total_s": timings.get("total_s"),
        "num_test_clips": metrics.get("num_examples"),
        "evaluated_split": protocol.get("evaluated_split"),
        "split_protocol": protocol,
        "metadata_baseline": metrics.get("metadata_baseline"),
        "train_clip_counts": counts,
        "split_fingerprint": split_fingerprint(manifest),
    }


def _number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(float(value))


def _cell(row: dict, key: str, fmt: str) -> str:
    if key == "mflops":
        value = row["flops"] / 1e6 if _number(row.get("flops")) else None
    elif key == "tflite_kb":
        value = row["tflite_bytes"] / 1024 if _number(row.get("tflite_bytes")) else None
    elif key == "epochs":
        run, most = row.get("epochs_run"), row.get("epochs_max")
        return f"{run if run is not None else '-'} / {most if most is not None else '-'}"
    elif key == "status":
        value = row.get("status", "")
        if value == "failed" and row.get("error"):
            value = f"failed: {row['error']}"
        return str(value).replace("|", "\\|").replace("\n", " ")
    else:
        value = row.get(key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if _number(value):
        return fmt.format(value)
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[dict]) -> str:
    """The markdown table of MD_COLUMNS, one line per row ("-" where a value is missing)."""
    lines = ["| " + " | ".join(heading for _, heading, _ in MD_COLUMNS) + " |",
             "|" + "|".join("---" if key in ("label", "family", "status") else "---:"
                            for key, _, _ in MD_COLUMNS) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row, key, fmt) for key, _, fmt in MD_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """compare.csv: CSV_COLUMNS, raw numbers (bytes, FLOPs, seconds), empty where missing."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})


def _split_line(rows: Sequence[dict]) -> list[str]:
    ok = [r for r in rows if r.get("status") != "failed" and r.get("split_protocol")]
    if not ok:
        return ["Split: no model finished, so no split to report."]
    first = ok[0]
    protocol = first["split_protocol"]
    counts = protocol.get("counts", {})
    unit = protocol.get("unit", "clip")
    lines = [f"Split: **{protocol.get('method')}** (unit: {unit}, seed {protocol.get('seed')}), "
             f"train {counts.get('train')} / val {counts.get('val')} / test {counts.get('test')} clips; "
             f"scores are clip-level ({protocol.get('aggregation', 'mean window probability per clip')}) "
             f"on the **{first.get('evaluated_split')}** split ({first.get('num_test_clips')} clips)."]
    if protocol.get("train_only_classes"):
        lines.append(f"Train-only classes (too few clips to evaluate): {', '.join(protocol['train_only_classes'])}.")
    fingerprints = {r.get("split_fingerprint") for r in ok}
    if len(fingerprints) == 1:
        lines.append(f"Every model was trained and scored on the same split (fingerprint `{fingerprints.pop()}`).")
    else:
        per_row = ", ".join(f"{r['label']}: `{r.get('split_fingerprint')}`" for r in ok)
        lines.append(f"**WARNING: the models were not all trained on the same split** ({per_row}); "
                     "their scores are not comparable. A spec entry that changes the band or the window "
                     "can skip different clips.")
    baseline = first.get("metadata_baseline") or {}
    if "results" in baseline:
        best = max(baseline["results"].items(), key=lambda kv: kv[1]["accuracy"])
        lines.append(f"Metadata-only baseline (random forest on {best[0].replace('+', ', ')}) on the same "
                     f"{baseline.get('scored_on')} clips: accuracy **{best[1]['accuracy']:.3f}**; majority class "
                     f"({baseline.get('majority_class')}) {baseline.get('majority_rate', float('nan')):.3f}"
                     + (" -- WARNING: the labels are predictable from the recording settings."
                        if baseline.get("warning") else "."))
    elif "skipped" in baseline:
        lines.append(f"Metadata-only baseline: skipped ({baseline['skipped']}).")
    return lines


def _settings_that_differ(rows: Sequence[dict]) -> list[str]:
    """Pipeline keys (other than name and model) whose values differ between rows."""
    configs = {r["label"]: _flatten(r["config"]) for r in rows if r.get("config")}
    if len(configs) < 2:
        return []
    keys = sorted(set().union(*configs.values()))
    notes = []
    for key in keys:
        if key == "name" or key.startswith("model."):
            continue
        values = {label: flat.get(key) for label, flat in configs.items()}
        if len({repr(v) for v in values.values()}) > 1:
            notes.append(f"`{key}`: " + ", ".join(f"{label} {value!r}" for label, value in values.items()))
    return notes


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value}


def markdown_report(rows: Sequence[dict], *, pipeline: str, command: str, flops_method: str,
                    latency_method: str) -> str:
    """compare.md: header (command, split, metadata baseline), the table, and the footnotes."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    trained = sum(r.get("status") == "trained" for r in rows)
    reused = sum(r.get("status") in ("reused", "earlier run") for r in rows)
    failed = sum(r.get("status") == "failed" for r in rows)
    parts = [f"# Model comparison: {pipeline}", "",
             f"Command: `{command}`", "",
             f"Written {now}: {len(rows)} model(s): {trained} trained now, {reused} reused from earlier runs, "
             f"{failed} failed.", ""]
    for line in _split_line(rows):
        parts += [line, ""]
    parts += [markdown_table(rows), "Notes:", ""]
    ok = [r for r in rows if r.get("status") != "failed"]
    minorities = {(r.get("minority_class"), r.get("minority_train_clips")) for r in ok}
    if len(minorities) == 1:
        name, clips = minorities.pop()
        minority_text = f"the minority classes are **{name}** ({clips} training clips)"
    else:
        minority_text = "per model: " + ", ".join(
            f"{r['label']}: {r.get('minority_class')} ({r.get('minority_train_clips')} clips)" for r in ok)
    worst = ", ".join(f"{r['label']}: {r.get('worst_class')}" for r in ok) or "-"
    parts += [
        "1. Minority recall: mean recall of the quarter (at least one) of the classes present in the evaluated "
        f"split with the fewest *training* clips; {minority_text}.",
        f"2. Worst recall: the lowest per-class recall on the evaluated split (class per model: {worst}).",
        "3. Params: trainable parameters of the whole classifier (frontend constants and batch-norm "
        "moving statistics excluded; both are in compare.csv as params_total).",
        f"4. {flops_method}",
        f"5. {latency_method}",
        "6. Epochs run < max: early stopping (patience train.early_stopping_patience, best weights "
        "restored). Train s: time inside model.fit.",
        "7. Status: `trained` in this invocation, `reused` (same pipeline as an earlier run, not retrained), "
        "`earlier run` (in this folder, not named in this invocation's --models), `failed` (first line of "
        "the error). Rows are in the order the models were first added to this folder; delete "
        "`<out>/<label>/` to drop one.",
    ]
    differ = _settings_that_differ(rows)
    if differ:
        parts += ["", "**WARNING: pipeline settings other than the model differ between rows:**", ""]
        parts += [f"- {line}" for line in differ]
    uncounted = sorted(set().union(*[set(r.get("uncounted_ops") or []) for r in ok])) if ok else []
    if uncounted:
        parts += ["", f"Op types in the graphs that carry no FLOPs statistic (not counted): {', '.join(uncounted)}."]
    return "\n".join(parts) + "\n"


def plot_comparison(rows: Sequence[dict]) -> Figure:
    """Two panels: quality (accuracy, macro-F1, minority recall) and cost (MFLOPs, KB, ms; log scale)."""
    ok = [r for r in rows if r.get("status") != "failed"]
    labels = [r["label"] for r in rows]
    width_in = max(8.0, 1.1 * len(rows) + 4.0)
    fig = Figure(figsize=(width_in, 8.0), layout="constrained")
    FigureCanvasAgg(fig)
    quality, cost = fig.subplots(2, 1)
    x = np.arange(len(rows))

    def bars(ax, series, *, log: bool = False):
        width = 0.8 / len(series)
        for i, (key, name, scale) in enumerate(series):
            values = [float(r[key]) * scale if r.get("status") != "failed" and _number(r.get(key)) else np.nan
                      for r in rows]
            drawn = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
            ax.bar_label(drawn, fmt="%.3g" if log else "%.2f", fontsize=7, padding=1)
        for j, r in enumerate(rows):
            if r.get("status") == "failed":
                ax.text(j, 0.05, "failed", ha="center", va="bottom", color="crimson", rotation=90,
                        transform=ax.get_xaxis_transform())  # x in data, y in axes units (log-safe)
        ax.set_xticks(x, labels, rotation=20, ha="right")
        ax.legend(fontsize=8, ncols=len(series), loc="upper left", bbox_to_anchor=(0, 1.13))
        if log:
            ax.set_yscale("log")

    bars(quality, [("accuracy", "accuracy", 1.0), ("macro_f1", "macro-F1", 1.0),
                   ("minority_recall", "minority recall", 1.0)])
    quality.set_ylim(0, 1.1)
    quality.set_ylabel("score (evaluated split)")
    bars(cost, [("flops", "MFLOPs / window", 1e-6), ("tflite_bytes", "TFLite KB", 1 / 1024),
                ("latency_ms", "LiteRT latency ms (1 thread)", 1.0)], log=True)
    cost.set_ylabel("cost (log scale)")
    if not ok:
        quality.set_title("no model finished")
    return fig


def write_outputs(out_dir: str | os.PathLike, rows: Sequence[dict], *, pipeline: str, command: str,
                  flops_method: str, latency_method: str, extra: dict | None = None) -> dict:
    """Writes compare.md, compare.csv, compare.png and compare.json into out_dir; returns the paths."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, f"compare.{name}") for name in ("md", "csv", "png", "json")}
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(markdown_report(rows, pipeline=pipeline, command=command, flops_method=flops_method,
                                latency_method=latency_method))
    write_csv(paths["csv"], rows)
    plot_comparison(rows).savefig(paths["png"], dpi=110)
    write_json(paths["json"], {"pipeline": pipeline, "command": command, "flops_method": flops_method,
                               "latency_method": latency_method, "order": [r["label"] for r in rows],
                               "rows": list(rows), **(extra or {})})
    return paths


__all__ = ["CSV_COLUMNS", "MD_COLUMNS", "markdown_report", "markdown_table", "metrics_row",
           "plot_comparison", "split_fingerprint", "train_clip_counts", "worst_class", "write_csv",
           "write_outputs"]
