"""Evaluation of a scan against annotations.

    python -m mammalnet.evaluate --events --truth TRUTH... --scan SCAN_DIR [--out DIR] [--min-overlap F]
        [--thresholds P ...] [-q | -v]

`--events` (the one mode): event-level evaluation of a `python -m mammalnet.scan` output folder
against Raven truth tables (files, or folders searched recursively for *.selections.txt). A truth
table belongs to the scanned recording named in its `Begin File` column (selections placed by
`File Offset (s)`, or by Begin Time when the table names one file), else to the recording whose
file stem the table's name starts with (`mammalnet.raven.recording_stem`: `<stem>.Table.1.selections.txt`).
Only recordings with a truth table are evaluated (an empty table: a recording without calls);
truth selections of the scan's ignored classes are left out; labels are compared as written.

Matching and metrics: `mammalnet.report.events` (overlap / min(duration) >= --min-overlap, default
0.1; one-to-one, greedy by score; precision, recall, F1, false positives per hour, per class and
overall). Operating points: the scan's own detections ("scan"), and when the scan saved its window
scores (--save-scores), every threshold of the sweep (default 0.05, 0.10, ..., 0.95; one threshold
for all classes), re-merged from the scores with the scan's EventMerger settings (window, merge
gap, ignored classes). Written in --out (default SCAN_DIR/evaluation): events.csv, events.md,
events.json and pr_curve.png; the best-F1 threshold is printed.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import fnmatch
import logging
import os
import pathlib
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mammalnet.cli import add_verbosity_arguments, setup_logging
from mammalnet.data.problems import RowProblem, cell_text, seconds
from mammalnet.data.sources.common import walk_tree
from mammalnet.raven import (BEGIN, BEGIN_FILE, END, find_label_column, offset_in_file, read_table, recording_stem,
                             selections)
from mammalnet.edge.events import merge_events
from mammalnet.report.events import EVENT_COLUMNS, METRIC_COLUMNS, OVERALL, best_f1, event_metrics, plot_pr_curves
from mammalnet.report.metrics import read_json, write_json

log = logging.getLogger("mammalnet.evaluate")

TRUTH_GLOB = "*.selections.txt"
DEFAULT_MIN_OVERLAP = 0.1
DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
SCAN_POINT = "scan"
MODES = "--events (event-level evaluation of a scan against Raven truth tables)"


@dataclasses.dataclass
class Truth:
    """Truth events of the recordings that have a table, and what could not be used."""

    events: pd.DataFrame  # EVENT_COLUMNS; recording = the scanned file's path
    recordings: set
    problems: list


def find_tables(paths: Sequence) -> list[str]:
    """Truth tables: files as given, folders searched recursively for *.selections.txt.

    Raises:
        ValueError: a path that does not exist, or no table at all.
    """
    tables = []
    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            tables += [os.path.join(d, n) for d, _, names in walk_tree(path) for n in names
                       if fnmatch.fnmatch(n, TRUTH_GLOB)]
        elif os.path.isfile(path):
            tables.append(path)
        else:
            raise ValueError(f"truth table or folder not found. Received: {path!r}")
    if not tables:
        raise ValueError(f"no truth table ({TRUTH_GLOB}) in {list(map(os.fspath, paths))}")
    return tables


def read_truth(tables: Sequence[str], files: Sequence[str], ignore: Sequence[str] = ()) -> Truth:
    """Truth events of scanned recordings from Raven tables (see the module docstring).

    Args:
        tables: table paths.
        files: the scanned recordings' paths.
        ignore: labels left out (the scan's ignored classes).

    Returns:
        Truth; problems lists {table, reason} for tables or rows that could not be placed.
    """
    by_name, by_stem = collections.defaultdict(list), collections.defaultdict(list)
    for f in files:
        by_name[os.path.basename(f)].append(f)
        by_stem[Path(f).stem].append(f)
    rows, recordings, problems = [], set(), []
    for table_path in tables:
        try:
            table = read_table(table_path)
            labels = find_label_column(table, None)
            missing = [c for c in (BEGIN, END) if c not in table.columns]
            if missing:
                raise RowProblem(f"missing column(s) {missing}. Received columns: {list(table.columns)}")
        except RowProblem as problem:
            problems.append({"table": table_path, "reason": str(problem)})
            continue
        named = BEGIN_FILE in table.columns and any(cell_text(v) for v in table[BEGIN_FILE])
        if not named:
            stem = recording_stem(os.path.basename(table_path))
            if len(by_stem[stem]) != 1:
                problems.append({"table": table_path, "reason": f"{len(by_stem[stem])} scanned recordings have the "
                                                                f"stem {stem!r}; need exactly one"})
                continue
            recordings.add(by_stem[stem][0])
        for key, _, record, _ in selections(table, labels):
            try:
                begin, end = seconds(record[BEGIN], BEGIN), seconds(record[END], END)
                if end < begin:
                    raise RowProblem(f"ends before it begins. Received: begin {begin}, end {end}")
                if named:
                    name = pathlib.PureWindowsPath(cell_text(record[BEGIN_FILE])).name
                    if len(by_name[name]) != 1:
                        raise RowProblem(f"{len(by_name[name])} scanned recordings are named {name!r}; "
                                         "need exactly one")
                    recording = by_name[name][0]
                    offset = offset_in_file(record, table, begin, name)
                    begin, end = offset, offset + end - begin
                    recordings.add(recording)
                else:
                    recording = by_stem[recording_stem(os.path.basename(table_path))][0]
                label = cell_text(record[labels])
                if not label:
                    raise RowProblem("empty label")
            except RowProblem as problem:
                problems.append({"table": table_path, "reason": f"selection {key}: {problem}"})
                continue
            if label not in ignore:
                rows.append({"recording": recording, "label": label, "begin_s": begin, "end_s": end})
    events = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    return Truth(events.sort_values(["recording", "label", "begin_s"], kind="stable").reset_index(drop=True),
                 recordings, problems)


def _event_rows(recording: str, events, duration_s: float) -> list[dict]:
    # Clipped at the recording's end as the scan clips them.
    return [{"recording": recording, "label": e.label, "begin_s": e.begin_s, "end_s": min(e.end_s, duration_s),
             "score": e.score} for e in events]


def evaluate_events(scan_dir, truth_paths: Sequence, *, out_dir=None, min_overlap: float = DEFAULT_MIN_OVERLAP,
                    thresholds: Sequence[float] | None = None) -> dict:
    """Event-level evaluation of a scan folder against Raven truth tables; writes the report.

    Args:
        scan_dir: a `python -m mammalnet.scan` output folder (scan.json, detections.csv, scores/).
        truth_paths: truth tables or folders of them.
        out_dir: report folder (default scan_dir/evaluation).
        min_overlap: see `mammalnet.report.events`.
        thresholds: the sweep (default DEFAULT_THRESHOLDS); used only when the scan saved scores.

    Returns:
        The events.json content: {"rows": [METRIC_COLUMNS...], "best": {class: best-F1 row}, "hours",
        "recordings", "not_evaluated", "problems", "swept", "outputs"}.

    Raises:
        ValueError: no scan.json in scan_dir, no truth table, no scanned recording with a truth table,
            a threshold or min_overlap outside [0, 1].
    """
    scan_dir = Path(scan_dir)
    summary = read_json(scan_dir / "scan.json")
    if not isinstance(summary, dict) or "files" not in summary:
        raise ValueError(f"not a scan folder: no readable scan.json. Received: scan_dir={os.fspath(scan_dir)!r}")
    thresholds = [float(t) for t in (DEFAULT_THRESHOLDS if thresholds is None else thresholds)]
    bad = [t for t in thresholds if not 0.0 <= t <= 1.0]
    if bad or not 0.0 <= min_overlap <= 1.0:
        raise ValueError(f"thresholds and min_overlap must lie in [0, 1]. Received: thresholds={bad or thresholds}, "
                         f"min_overlap={min_overlap}")
    settings, model = summary["settings"], summary["model"]
    ignore = list(settings["ignore"])
    scanned = {f["file"]: f for f in summary["files"]}
    truth = read_truth(find_tables(truth_paths), list(scanned), ignore)
    evaluated = [f for f in scanned if f in truth.recordings]
    if not evaluated:
        raise ValueError(f"no scanned recording has a truth table. Scanned: {sorted(scanned)[:5]}; truth problems: "
                         f"{truth.problems[:5]}")
    hours = sum(scanned[f]["duration_s"] for f in evaluated) / 3600
    class_names = list(model["class_names"])
    classes = [c for c in class_names if c not in ignore]
    classes += sorted(set(truth.events["label"]) - set(classes))

    detections = pd.read_csv(scan_dir / "detections.csv", dtype={"label": str}, keep_default_na=False)
    detections = detections[detections["file"].isin(evaluated)].rename(columns={"file": "recording"})
    tables = [event_metrics(detections, truth.events, classes, hours, min_overlap=min_overlap).assign(
        threshold=SCAN_POINT)]
    swept = all(scanned[f].get("scores") and (scan_dir / scanned[f]["scores"]).is_file() for f in evaluated)
    if swept:
        from mammalnet.scan.ledger import load_scores

        scores = {f: load_scores(scan_dir / scanned[f]["scores"]) for f in evaluated}
        for t in thresholds:
            found = [row for f, s in scores.items()
                     for row in _event_rows(f, merge_events(s["starts_s"], s["probs"], s["class_names"], s["window_s"],
                                                            t, merge_gap_s=settings["merge_gap_s"], ignore=ignore),
                                            scanned[f]["duration_s"])]
            tables.append(event_metrics(pd.DataFrame(found, columns=[*EVENT_COLUMNS, "score"]), truth.events, classes,
                                        hours, min_overlap=min_overlap).assign(threshold=t))
    table = pd.concat(tables, ignore_index=True)[list(METRIC_COLUMNS)]

    out_dir = Path(out_dir) if out_dir is not None else scan_dir / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    best = {name: best_f1(table, name) for name in [OVERALL, *classes]} if swept else {}
    result = {"scan_dir": os.path.abspath(scan_dir), "min_overlap": min_overlap, "hours": hours,
              "recordings": evaluated, "not_evaluated": sorted(set(scanned) - set(evaluated)),
              "truth_events": len(truth.events), "problems": truth.problems, "swept": swept,
              "thresholds": thresholds if swept else [], "rows": table.to_dict("records"), "best": best,
              "outputs": {"csv": "events.csv", "markdown": "events.md", "json": "events.json",
                          "pr_curve": "pr_curve.png"}}
    table.to_csv(out_dir / "events.csv", index=False, float_format="%.6f", lineterminator="\n")
    (out_dir / "events.md").write_text(_markdown(table, result), encoding="utf-8")
    write_json(out_dir / "events.json", result)
    plot_pr_curves(table, classes, title=f"Event precision-recall ({hours:.2f} h, {len(evaluated)} recordings)"
                   ).savefig(out_dir / "pr_curve.png", dpi=110)
    return result


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.3f}"
    return str(value)


def _markdown(table: pd.DataFrame, result: dict) -> str:
    lines = [f"# Event evaluation of {result['scan_dir']}", "",
             f"{len(result['recordings'])} recording(s), {result['hours']:.3f} h of audio, {result['truth_events']} "
             f"truth events; match: overlap / min(duration) >= {result['min_overlap']}, one-to-one by score. "
             "`scan`: the scan's own detections" + ("; other rows re-merged from the saved scores at one threshold "
                                                   "for all classes." if result["swept"] else
                                                   " (no saved scores: no threshold sweep)."), ""]
    best = result["best"].get(OVERALL)
    if best:
        lines += [f"Best overall F1: **{best['f1']:.3f}** at threshold {best['threshold']:.2f} (precision "
                  f"{_cell(best['precision'])}, recall {_cell(best['recall'])}, {best['fp_per_hour']:.2f} FP/h).", ""]
    lines += ["| " + " | ".join(METRIC_COLUMNS) + " |", "|" + "---|" * len(METRIC_COLUMNS)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in METRIC_COLUMNS) + " |" for row in table.to_dict("records")]
    if result["problems"]:
        lines += ["", "Truth not used:"] + [f"- {p['table']}: {p['reason']}" for p in result["problems"]]
    return "\n".join(lines) + "\n"


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1]. Received: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mammalnet.evaluate",
                                     description=f"Evaluate mammalnet outputs. Modes: {MODES}.")
    parser.add_argument("--events", action="store_true", help="event-level evaluation of a scan folder")
    parser.add_argument("--truth", nargs="+", metavar="TRUTH", help="Raven truth tables or folders of them")
    parser.add_argument("--scan", metavar="SCAN_DIR", help="a python -m mammalnet.scan output folder")
    parser.add_argument("--out", default=None, help="report folder (default: SCAN_DIR/evaluation)")
    parser.add_argument("--min-overlap", type=_unit_float, default=DEFAULT_MIN_OVERLAP,
                        help=f"overlap / min(duration) a match needs (default: {DEFAULT_MIN_OVERLAP})")
    parser.add_argument("--thresholds", type=_unit_float, nargs="+", default=None, metavar="P",
                        help="thresholds of the sweep (default: 0.05 0.10 ... 0.95); needs scan --save-scores")
    add_verbosity_arguments(parser)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if not args.events:
        parser.error(f"choose an evaluation mode; the modes are: {MODES}")
    if not args.truth or not args.scan:
        parser.error("--events needs --truth TRUTH... and --scan SCAN_DIR")
    try:
        result = evaluate_events(args.scan, args.truth, out_dir=args.out, min_overlap=args.min_overlap,
                                 thresholds=args.thresholds)
    except ValueError as err:
        log.error("error: %s", err)
        return 2
    for problem in result["problems"]:
        log.warning("warning: truth not used: %s: %s", problem["table"], problem["reason"])
    scan_row = next(r for r in result["rows"] if r["threshold"] == SCAN_POINT and r["class"] == OVERALL)
    print(f"{len(result['recordings'])} recording(s), {result['hours']:.3f} h, {result['truth_events']} truth events")
    print(f"scan's own detections: precision {_cell(scan_row['precision'])}, recall {_cell(scan_row['recall'])}, "
          f"F1 {_cell(scan_row['f1'])}, {scan_row['fp_per_hour']:.2f} FP/h")
    best = result["best"].get(OVERALL)
    if best:
        print(f"best F1 threshold: {best['threshold']:.2f} (F1 {best['f1']:.3f}, precision {_cell(best['precision'])}, "
              f"recall {_cell(best['recall'])}, {best['fp_per_hour']:.2f} FP/h)")
    elif not result["swept"]:
        print("no threshold sweep: the scan saved no scores (scan with --save-scores)")
    out = Path(args.out) if args.out else Path(args.scan) / "evaluation"
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
