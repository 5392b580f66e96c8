"""Label efficiency: a classifier trained from scratch vs one fine-tuned from a SimCLR encoder, at a few
fractions of the training labels, on the same test split.

    python tools/label_efficiency.py PIPELINE [--fractions 0.01 0.05 0.1 0.25 1.0] [--out DIR] [--epochs N]
           [--pretrain-epochs N] [--data DIR] [--set KEY=VALUE ...] [--seed N] [--freeze-encoder] [--force]

Runs, all with train() and <out> as its workdir (runs/<run>/, saved_models/<run>/), same split seed:
    <name>-simclr          once: the contrastive encoder on all training-split audio, labels ignored
                           (pretrain.method simclr, finetune false, pretrain.epochs = --pretrain-epochs)
    <name>-scratch-f<pct>  per fraction: split.train_label_fraction = fraction, no pretraining
    <name>-simclr-f<pct>   per fraction: the same labelled clips, starting from that encoder
                           (pretrain.encoder; frozen throughout with --freeze-encoder: a linear probe)
The labelled subset is stratified with at least one clip per class, and a smaller fraction's clips
are a subset of a larger one's; validation and test clips are untouched, so every row is scored on
the same test clips (the md checks this with a fingerprint of the test rows). Export is off.

Outputs in --out (default runs/label_efficiency/<pipeline name>):
    label_efficiency.md    pipeline, split protocol, epochs, test clips, findings, the table
    label_efficiency.csv   rows (fraction, labelled training clips, method) with accuracy, macro-F1,
                           minority recall and the pretrained - scratch differences
    label_efficiency.json  the rows and the study's settings
    label_efficiency.png   the three metrics against the fraction (log x), one line per method
    <run>/result.json      what each finished run recorded (metrics subset, config, wall time)

Minority recall here: the mean test recall of the rarest quarter of the classes (at least one) by
clips in the whole training split, labelled or not, so every row is scored on the same classes.

Resume: a run whose <out>/<run>/result.json records the same resolved config (and, for the fine-tuned
runs, the same encoder file by SHA-256) is reused; an interrupted run of the same config resumes where
train() left it; --force reruns everything. The pretraining run is reused the same way (its encoder
file must be unchanged; train.epochs does not matter to it), so a killed study picks up where it
stopped, and a new --epochs retrains the classifiers only.

Exit codes: 0 every run finished; 1 at least one failed (in the table with its error; the others
still run); 2 bad arguments or pipeline (found before any training).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import shlex
import shutil
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: keep the console readable

DEFAULT_FRACTIONS = (0.01, 0.05, 0.1, 0.25, 1.0)
METHODS = ("scratch", "simclr")  # table order; the delta is simclr - scratch
METRICS = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("minority_recall", "minority recall"))
RESULT_FILE = "result.json"
STARTED_FILE = "started.json"
OUTPUT_STEM = "label_efficiency"
CSV_COLUMNS = (
    "fraction", "labelled_train_clips", "method", "run", "status", "accuracy", "macro_f1", "minority_recall",
    "balanced_accuracy", "delta_accuracy", "delta_macro_f1", "delta_minority_recall", "test_clips",
    "epochs_run", "wall_s", "error",
)


# -- arguments and configs -------------------------------------------------------------------------------


def label_fraction(text: str) -> float:
    """argparse type: a fraction of the training labels, in (0, 1]."""
    value = float(text)
    if not 0 < value <= 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in (0, 1]. Received: {text}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    from mammalnet.cli import non_negative_int, positive_int

    parser = argparse.ArgumentParser(
        prog="python tools/label_efficiency.py",
        description="Scratch vs SimCLR-pretrained classifiers at fractions of the training labels.",
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline", nargs="?", default=None,
                        help="pipeline YAML, or the name of a shipped one, e.g. watkins (default: pipelines/default.yaml, "
                             "the synthetic ocean)")
    parser.add_argument("--fractions", nargs="+", type=label_fraction, default=list(DEFAULT_FRACTIONS),
                        metavar="F", help="fractions of the training labels, each in (0, 1] (default: "
                                          f"{' '.join(map(str, DEFAULT_FRACTIONS))})")
    parser.add_argument("--out", metavar="DIR", help="output folder and train() workdir (default: "
                                                     "runs/label_efficiency/<pipeline name>)")
    parser.add_argument("--epochs", type=positive_int, metavar="N", help="train.epochs of every classifier run")
    parser.add_argument("--pretrain-epochs", type=positive_int, metavar="N",
                        help="pretrain.epochs of the SimCLR run (default: the pipeline's)")
    parser.add_argument("--data", metavar="DIR", help="data folder, as in python -m mammalnet.fit")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a pipeline key for every run (repeatable); the study sets "
                             "split.train_label_fraction and the pretrain method/encoder itself")
    parser.add_argument("--seed", type=non_negative_int, metavar="N",
                        help="split.seed of every run (default: the pipeline's): which clips are test clips, "
                             "and which training clips keep their labels")
    parser.add_argument("--freeze-encoder", action="store_true",
                        help="keep the pretrained encoder frozen in the fine-tuned runs (a linear probe)")
    parser.add_argument("--force", action="store_true", help="rerun every run even when a matching one exists")
    args = parser.parse_args(argv)
    duplicates = sorted({f for f in args.fractions if args.fractions.count(f) > 1})
    if duplicates:
        parser.error(f"--fractions lists {duplicates} more than once")
    args.fractions = sorted(args.fractions)
    return args


def fraction_tag(fraction: float) -> str:
    """The percentage in a run name: 0.01 -> "1", 0.25 -> "25", 0.005 -> "0p5" (no dot in folder names)."""
    return f"{round(fraction * 100, 6):g}".replace(".", "p")


def run_name(pipeline_name: str, method: str, fraction: float | None = None) -> str:
    """f"{name}-simclr" (the pretraining run) or f"{name}-{method}-f{pct}"."""
    return f"{pipeline_name}-simclr" if fraction is None else f"{pipeline_name}-{method}-f{fraction_tag(fraction)}"


def encoder_path(out_dir: str, pipeline_name: str) -> str:
    """Where train() saves the pretraining run's encoder."""
    return os.path.join(out_dir, "saved_models", run_name(pipeline_name, "simclr"), "encoder.keras")


def study_configs(base, fractions, *, out_dir: str, pretrain_epochs: int | None = None,
                  freeze_encoder: bool = False) -> dict:
    """The validated configs of the study: the base pipeline with only the labels and the start changed.

    Args:
        base: the resolved PipelineConfig (pipeline file + --data/--epochs/--set/--seed).
        fractions: label fractions in (0, 1].
        out_dir: the workdir (where the encoder will be).
        pretrain_epochs: pretrain.epochs of the SimCLR run (None: the pipeline's).
        freeze_encoder: pretrain.freeze_encoder of the fine-tuned runs.

    Returns:
        {"pipeline": base.name, "pretrain": PipelineConfig, "encoder": where it saves the encoder,
        "runs": [(fraction, method, PipelineConfig), ...]} in fraction order, scratch before simclr.

    Raises:
        ConfigError: a combination the pipeline refuses (e.g. distill.teacher with pretraining).
    """
    from mammalnet import config as config_lib

    values = config_lib.to_dict(base)
    values["export"]["enabled"] = False  # the study reads metrics only; exporting is minutes per run
    values["pretrain"].update(method="none", encoder=None, finetune=True, freeze_encoder=False)

    def make(name, fraction, **pretrain):
        run = copy.deepcopy(values)
        run["name"] = name
        run["split"]["train_label_fraction"] = fraction
        run["pretrain"].update(pretrain)
        return config_lib.from_dict(run).validate()

    pre_epochs = pretrain_epochs if pretrain_epochs is not None else base.pretrain.epochs
    encoder = encoder_path(out_dir, base.name)
    runs = []
    for fraction in fractions:
        runs.append((fraction, "scratch", make(run_name(base.name, "scratch", fraction), fraction)))
        runs.append((fraction, "simclr", make(run_name(base.name, "simclr", fraction), fraction, encoder=encoder,
                                              freeze_encoder=freeze_encoder)))
    # labels are ignored in pretraining; fraction 1.0 only says so (the dropped clips' audio is read anyway)
    pretrain = make(run_name(base.name, "simclr"), 1.0, method="simclr", finetune=False, epochs=pre_epochs)
    return {"pipeline": base.name, "pretrain": pretrain, "encoder": encoder, "runs": runs}


def comparable_config(config_values: dict) -> dict | None:
    """A config dict as from_dict/to_dict gives it (new defaults filled, JSON types), without
    pretrain.encoder (the encoder is compared by content, so a moved --out still matches); None if invalid."""
    from mammalnet import config as config_lib

    try:
        values = json.loads(json.dumps(config_lib.to_dict(config_lib.from_dict(copy.deepcopy(config_values)))))
    except (config_lib.ConfigError, TypeError, ValueError):
        return None
    values["pretrain"]["encoder"] = bool(values["pretrain"]["encoder"])
    return values


def file_sha256(path: str) -> str | None:
    """SHA-256 of a file, None if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


# -- runs ------------------------------------------------------------------------------------------------


def _read_json(path):
    from mammalnet.report.metrics import read_json

    return read_json(path)


def _write_json(path, value) -> None:
    from mammalnet.report.metrics import write_json

    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json(path, value)


def _matches(record, config_values: dict, start_encoder_sha256: str | None) -> bool:
    if not isinstance(record, dict) or record.get("start_encoder_sha256") != start_encoder_sha256:
        return False
    mine, theirs = comparable_config(config_values), comparable_config(record.get("config") or {})
    if mine is None or theirs is None:
        return False
    if mine["pretrain"]["method"] != "none" and not mine["pretrain"]["finetune"]:
        # pretraining only: no classifier is trained, so a new --epochs (or classifier steps per epoch)
        # must not throw the encoder away
        for values in (mine, theirs):
            for key in ("epochs", "steps_per_epoch"):
                values["train"].pop(key, None)
    return mine == theirs


def reusable_result(out_dir: str, name: str, config_values: dict, *, start_encoder_sha256: str | None = None,
                    encoder: str | None = None) -> dict | None:
    """The finished record in <out>/<name>/result.json when it ran this very config.

    Args:
        out_dir: the study's folder.
        name: the run's name.
        config_values: the run's config as a dict.
        start_encoder_sha256: SHA-256 of the encoder a fine-tuned run starts from (None for the others);
            a record made from another encoder is stale.
        encoder: for the pretraining run, where its encoder must still be, unchanged.
    """
    record = _read_json(os.path.join(out_dir, name, RESULT_FILE))
    if not _matches(record, config_values, start_encoder_sha256) or record.get("status") != "ok":
        return None
    if encoder is not None and file_sha256(encoder) != record.get("encoder_sha256"):
        return None  # the encoder file is gone or was replaced
    return record


def _run_dirs(out_dir: str, name: str) -> list[str]:
    return [os.path.join(out_dir, *parts, name) for parts in ((), ("runs",), ("saved_models",))]


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


def _train(config, out_dir: str, *, kind: str, start_encoder_sha256: str | None = None, force: bool, train_fn,
           encoder: str | None = None) -> tuple:
    """train() of one run in <out>, unless a finished record of it exists.

    Args:
        kind: "pretrain", "scratch" or "finetune".
        start_encoder_sha256: the starting encoder's SHA-256 (finetune).
        encoder: where the pretraining run saves its encoder, if train() does not say (pretrain).

    Returns:
        ("reused" | "trained" | "failed", the record written to result.json).
    """
    from mammalnet import config as config_lib

    name = config.name
    values = config_lib.to_dict(config)
    record = None if force else reusable_result(out_dir, name, values, start_encoder_sha256=start_encoder_sha256,
                                                encoder=encoder if kind == "pretrain" else None)
    if record is not None:
        print(f"label_efficiency: {name}: reusing {os.path.join(out_dir, name, RESULT_FILE)} (same config; "
              "--force reruns)", flush=True)
        return "reused", record
    started = _read_json(os.path.join(out_dir, name, STARTED_FILE))
    finished = (_read_json(os.path.join(out_dir, name, RESULT_FILE)) or {}).get("status") == "ok"
    if force or finished or not _matches(started, values, start_encoder_sha256):
        for path in _run_dirs(out_dir, name):  # a stale backup of another config must not be restored
            shutil.rmtree(path, ignore_errors=True)
    else:
        print(f"label_efficiency: {name}: resuming the interrupted run", flush=True)
    _write_json(os.path.join(out_dir, name, STARTED_FILE), {"config": values,
                                                             "start_encoder_sha256": start_encoder_sha256})
    record = {"run": name, "kind": kind, "config": values, "start_encoder_sha256": start_encoder_sha256}
    t0 = time.perf_counter()
    try:
        returned = train_fn(config, out_dir)
    except Exception as err:  # one run failing must not end the study
        traceback.print_exc()
        print(f"label_efficiency: {name}: FAILED: {_first_line(err)}", file=sys.stderr, flush=True)
        record.update(status="failed", error=_first_line(err), wall_s=time.perf_counter() - t0)
        _write_json(os.path.join(out_dir, name, RESULT_FILE), record)
        return "failed", record
    record.update(status="ok", wall_s=time.perf_counter() - t0, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    if kind == "pretrain":
        returned = returned if isinstance(returned, dict) else {}
        path = os.fspath(returned.get("encoder") or encoder)
        record.update(encoder=path, encoder_sha256=file_sha256(path), pretrain=pretrain_summary(returned))
        if record["encoder_sha256"] is None:
            record.update(status="failed", error=f"pretraining finished but left no encoder at {path}")
        elif os.path.abspath(path) != os.path.abspath(encoder):  # the fine-tuned configs name `encoder`
            record.update(status="failed", error=f"pretraining saved its encoder at {path}, not at {encoder} "
                                                 "where the fine-tuned runs look for it")
    else:
        run_dir = os.path.join(out_dir, "runs", name)
        metrics = returned if isinstance(returned, dict) and "accuracy" in returned else \
            _read_json(os.path.join(run_dir, "report", "metrics.json")) or {}
        manifest = os.path.join(run_dir, "manifest.csv")
        record.update(summarise_run(metrics, _read_manifest(manifest)))
    _write_json(os.path.join(out_dir, name, RESULT_FILE), record)
    return ("trained" if record["status"] == "ok" else "failed"), record


def pretrain_summary(returned: dict) -> dict:
    """What the report keeps of train()'s pretraining record: clips, windows, epochs, the last
    contrastive loss and the validation k-NN accuracy of the embeddings (a probe without a classifier)."""
    info = returned.get("pretrain") or {}
    summary = {k: info.get(k) for k in ("method", "clips", "windows", "epochs", "val_clips", "val_knn_accuracy",
                                          "projector")}
    losses = (info.get("history") or {}).get("loss") or []
    summary["final_loss"] = losses[-1] if losses else None
    return summary


def _read_manifest(path):
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        return None


def _keras_train(config, out_dir):
    import keras

    from mammalnet.training.train import train

    keras.backend.clear_session()
    try:
        return train(config, out_dir, verbose=2)
    finally:
        keras.backend.clear_session()


def run_study(configs: dict, out_dir: str, *, force: bool = False, train_fn=None) -> list[dict]:
    """Pretraining once, then every (fraction, method) run; reuses what already finished.

    Args:
        configs: study_configs' output.
        out_dir: the workdir.
        force: rerun everything.
        train_fn: (config, workdir) -> train()'s return value (default: train() with a fresh Keras
            session); tests pass a fake.

    Returns:
        One record per (fraction, method) run, in configs["runs"] order, with "fraction", "method" and
        "action" ("reused", "trained", "failed"; "skipped" when pretraining failed).
    """
    train_fn = train_fn or _keras_train
    _, pretrain = _train(configs["pretrain"], out_dir, kind="pretrain", force=force, train_fn=train_fn,
                         encoder=configs["encoder"])
    # a fine-tuned run is reused only with the very encoder it started from (a retrained one differs)
    encoder_sha = pretrain.get("encoder_sha256") if pretrain["status"] == "ok" else None
    records = []
    for fraction, method, config in configs["runs"]:
        if method == "simclr" and encoder_sha is None:
            record = {"run": config.name, "kind": "finetune", "status": "failed", "action": "skipped",
                      "error": f"pretraining failed: {pretrain.get('error')}"}
        else:
            action, record = _train(config, out_dir, kind="scratch" if method == "scratch" else "finetune",
                                    start_encoder_sha256=encoder_sha if method == "simclr" else None,
                                    force=force, train_fn=train_fn)
            record = {**record, "action": action}
        records.append({**record, "fraction": fraction, "method": method})
    return records


# -- results ---------------------------------------------------------------------------------------------


def training_clip_counts(manifest) -> tuple[dict[str, int], dict[str, int]]:
    """(clips per class in the whole training split, labelled clips per class) of a run's manifest.

    The label-fraction runs mark the training clips that lost their label with split "unlabelled".
    Generated clips (data.generated_root) are not counted: rarity is judged on the real clips.
    """
    from mammalnet.data.split import GENERATED_GROUP, UNLABELLED

    if "group" in manifest.columns:
        manifest = manifest[~manifest["group"].astype(str).str.startswith(GENERATED_GROUP)]
    labels = sorted(manifest["label"].astype(str).unique())
    split = manifest["split"].astype(str)
    whole = manifest.loc[split.isin(["train", UNLABELLED]), "label"].astype(str).value_counts()
    labelled = manifest.loc[split == "train", "label"].astype(str).value_counts()
    return ({n: int(whole.get(n, 0)) for n in labels}, {n: int(labelled.get(n, 0)) for n in labels})


def test_fingerprint(manifest) -> str | None:
    """12 hex digits naming the set of evaluated (test, else val) clips: equal means the same test split."""
    split = manifest["split"].astype(str)
    part = manifest[split == ("test" if (split == "test").any() else "val")]
    if part.empty:
        return None
    start = part["start_s"].astype(str) if "start_s" in part else [""] * len(part)
    keys = sorted(f"{p}|{s}" for p, s in zip(part["path"].astype(str), start))
    return hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()[:12]


def summarise_run(metrics: dict, manifest=None) -> dict:
    """The subset of a run's metrics the study keeps, with its minority recall and labelled clip count.

    Minority recall is recomputed from the manifest when there is one (the rarest quarter of the
    classes by clips in the whole training split, labelled or not: the same classes for every
    fraction); without a manifest train()'s own value is kept.

    Args:
        metrics: train()'s metrics dict (metrics.json).
        manifest: the run's manifest.csv as a DataFrame (label, split[, path, start_s]), or None.
    """
    from mammalnet.report.metrics import minority_recall

    protocol = metrics.get("split_protocol") or {}
    summary = {
        "metrics": {key: metrics.get(key) for key in ("accuracy", "balanced_accuracy", "macro_f1",
                                                      "minority_recall", "minority_classes", "per_class",
                                                      "num_examples")},
        "split_protocol": protocol,
        "evaluated_split": protocol.get("evaluated_split"),
        "epochs_run": (metrics.get("timings_s") or {}).get("epochs_run"),
        "labelled_train_clips": (protocol.get("label_fraction") or {}).get("labelled_train_clips"),
    }
    summary["metrics"]["minority_recall_train"] = metrics.get("minority_recall")  # train()'s own, as reported
    if manifest is not None and {"label", "split"} <= set(manifest.columns):
        whole, labelled = training_clip_counts(manifest)
        summary["train_clip_counts"], summary["labelled_clip_counts"] = whole, labelled
        if summary["labelled_train_clips"] is None:
            summary["labelled_train_clips"] = int(sum(labelled.values()))
        if "path" in manifest.columns:
            summary["test_fingerprint"] = test_fingerprint(manifest)
        if metrics.get("per_class"):
            summary["metrics"].update(minority_recall(metrics["per_class"], whole))
    elif summary["labelled_train_clips"] is None and protocol.get("train_label_fraction", 1.0) == 1.0:
        summary["labelled_train_clips"] = (protocol.get("counts") or {}).get("train")
    return summary


def build_table(records: list[dict]):
    """One row per (fraction, method) from run records, with the pretrained - scratch differences.

    Args:
        records: dicts with "fraction", "method", "run", "status" and, when ok, "metrics"
            (accuracy, macro_f1, minority_recall, balanced_accuracy, num_examples),
            "labelled_train_clips", "epochs_run", "wall_s"; a failed one carries "error".

    Returns:
        A DataFrame with CSV_COLUMNS, sorted by fraction then METHODS order. delta_* is set on the
        simclr row of a fraction whose two runs both finished (NaN otherwise).
    """
    import numpy as np
    import pandas as pd

    rows = []
    for record in records:
        ok = record.get("status") == "ok"
        metrics = (record.get("metrics") or {}) if ok else {}
        row = {"fraction": float(record["fraction"]), "method": record["method"], "run": record.get("run"),
               "status": record.get("status"), "error": None if ok else record.get("error"),
               "labelled_train_clips": record.get("labelled_train_clips"), "test_clips": metrics.get("num_examples"),
               "epochs_run": record.get("epochs_run") if ok else None, "wall_s": record.get("wall_s")}
        for key in ("accuracy", "macro_f1", "minority_recall", "balanced_accuracy"):
            value = metrics.get(key)
            row[key] = float(value) if value is not None else np.nan
        rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in CSV_COLUMNS if not c.startswith("delta_")])
    for key, _ in METRICS:
        table["delta_" + key] = np.nan
    # a fraction's labelled clips are the same for both methods; fill a failed row's from its partner
    table["labelled_train_clips"] = table.groupby("fraction")["labelled_train_clips"].transform(
        lambda s: s.fillna(s.dropna().iloc[0]) if s.notna().any() else s)
    for fraction, group in table.groupby("fraction"):
        by_method = {m: group.index[group["method"] == m] for m in METHODS}
        if all(len(idx) == 1 for idx in by_method.values()):
            scratch, simclr = by_method["scratch"][0], by_method["simclr"][0]
            for key, _ in METRICS:
                table.loc[simclr, "delta_" + key] = table.loc[simclr, key] - table.loc[scratch, key]
    table["method"] = pd.Categorical(table["method"], categories=list(METHODS), ordered=True)
    table = table.sort_values(["fraction", "method"], kind="stable").reset_index(drop=True)
    table["method"] = table["method"].astype(str)
    return table[list(CSV_COLUMNS)]


def _fmt(value, spec="{:.3f}", signed=False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return ("{:+.3f}" if signed else spec).format(value)


def markdown_table(table) -> str:
    lines = ["| labelled fraction | labelled training clips | method | accuracy | macro-F1 | minority recall "
             "| Δ accuracy | Δ macro-F1 | Δ minority recall | epochs run | status |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in table.itertuples(index=False):
        clips = "–" if row.labelled_train_clips is None or math.isnan(row.labelled_train_clips) \
            else f"{int(row.labelled_train_clips):,}"
        epochs = "–" if row.epochs_run is None or (isinstance(row.epochs_run, float) and math.isnan(row.epochs_run)) \
            else str(int(row.epochs_run))
        status = row.status if row.status == "ok" else f"{row.status}: {row.error}"
        lines.append(f"| {row.fraction * 100:g}% | {clips} | {row.method} | {_fmt(row.accuracy)} | "
                     f"{_fmt(row.macro_f1)} | {_fmt(row.minority_recall)} | {_fmt(row.delta_accuracy, signed=True)} "
                     f"| {_fmt(row.delta_macro_f1, signed=True)} | {_fmt(row.delta_minority_recall, signed=True)} "
                     f"| {epochs} | {status} |")
    return "\n".join(lines)


def findings(table, *, test_clips: int | None = None) -> list[str]:
    """Plain sentences on what the deltas say, including when pretraining does not help."""
    paired = table[table["method"] == "simclr"].dropna(subset=["delta_accuracy", "delta_macro_f1"])
    if paired.empty:
        return ["No fraction has both runs finished: nothing to compare yet."]
    lines = []
    for key, label in METRICS:
        deltas = paired[["fraction", "delta_" + key]].dropna()
        if deltas.empty:
            continue
        ahead = int((deltas["delta_" + key] > 0).sum())
        behind = int((deltas["delta_" + key] < 0).sum())
        best = deltas.loc[deltas["delta_" + key].idxmax()]
        worst = deltas.loc[deltas["delta_" + key].idxmin()]
        lines.append(f"{label}: SimCLR ahead at {ahead}, behind at {behind}, level at {len(deltas) - ahead - behind} "
                     f"of {len(deltas)} fractions; mean Δ {deltas['delta_' + key].mean():+.3f}, from "
                     f"{worst['delta_' + key]:+.3f} ({worst['fraction'] * 100:g}%) to "
                     f"{best['delta_' + key]:+.3f} ({best['fraction'] * 100:g}%).")
    mean_f1 = paired["delta_macro_f1"].mean()
    if (paired["delta_macro_f1"] <= 0).all():
        lines.append("**Pretraining did not help** on this data and schedule: the fine-tuned encoder is at best "
                     "level with training from scratch in macro-F1 at every fraction.")
    elif mean_f1 <= 0:
        lines.append(f"**Pretraining did not help on average** (mean Δ macro-F1 {mean_f1:+.3f}); it is ahead only "
                     "at some fractions.")
    else:
        low = paired[paired["fraction"] <= 0.1]["delta_macro_f1"]
        where = (f"; at ≤10% of the labels mean Δ {low.mean():+.3f}" if len(low) else "")
        lines.append(f"Pretraining helps on average (mean Δ macro-F1 {mean_f1:+.3f}{where}).")
    if test_clips:
        lines.append(f"Resolution: one test clip is {1 / test_clips:.3f} of accuracy ({test_clips} clips); one split "
                     "seed and one training seed per row, so differences of a few clips are noise.")
    return lines


def markdown_report(table, info: dict) -> str:
    """label_efficiency.md: what was run, on which split, what was found, and the table.

    Args:
        table: build_table's DataFrame.
        info: {"pipeline", "pipeline_file", "command", "epochs", "pretrain_epochs", "freeze_encoder",
            "split" (the split protocol: method, seed, val/test fractions, counts), "test_clips",
            "test_fingerprints" (distinct fingerprints of the evaluated clips), "minority_classes",
            "pretrain" (status / wall_s / error of the SimCLR run, and "pretrain": pretrain_summary)}, as
            study_info makes it; missing keys are left out.
    """
    split = info.get("split") or {}
    pretrain = info.get("pretrain") or {}
    lines = [f"# Label efficiency: {info.get('pipeline', '?')}", ""]
    if info.get("command"):
        lines += ["```bash", info["command"], "```", ""]
    lines += [
        f"- **Pipeline** `{info.get('pipeline', '?')}`"
        + (f" ({info['pipeline_file']})" if info.get("pipeline_file") else "")
        + ": `scratch` trains the classifier from random weights on the "
        "labelled fraction; `simclr` starts it from the SimCLR encoder pretrained on all training-split audio "
        f"(labels ignored){', kept frozen (linear probe)' if info.get('freeze_encoder') else ', then fine-tuned'}.",
        f"- **Split**: {split.get('method', '?')}, seed {split.get('seed', '?')}, val/test fractions "
        f"{split.get('val_fraction', '?')}/{split.get('test_fraction', '?')}; clips "
        f"{_counts(split.get('counts'))} (train: labelled or not). "
        "The labelled subset is stratified (at least one clip per class; a smaller fraction's clips are a subset of "
        "a larger one's); validation and test clips are the same in every row.",
        f"- **Epochs**: classifier {info.get('epochs', '?')} (max; early stopping on val loss), SimCLR pretraining "
        f"{info.get('pretrain_epochs', '?')}" + (f" ({pretrain['wall_s']:.0f} s)" if pretrain.get("wall_s") else "")
        + (f" — **failed**: {pretrain.get('error')}" if pretrain.get("status") == "failed" else "") + ".",
        *_pretrain_line(pretrain.get("pretrain") or {}),
        f"- **Test clips**: {info.get('test_clips', '?')}, scored per clip (mean window probability).",
    ]
    prints = info.get("test_fingerprints") or []
    if len(prints) > 1:
        lines.append(f"- **WARNING**: the rows were scored on {len(prints)} different test sets (fingerprints "
                     f"{', '.join(prints)}); the comparison is not like for like.")
    if info.get("minority_classes"):
        lines.append(f"- **Minority recall**: mean test recall of {', '.join(info['minority_classes'])} (the rarest "
                     "quarter of the classes by clips in the whole training split, labelled or not; the same classes "
                     "in every row).")
    lines += ["- Δ = SimCLR − scratch at the same fraction.", "", "## Findings", ""]
    lines += [f"- {line}" for line in findings(table, test_clips=info.get("test_clips"))]
    lines += ["", "## Table", "", markdown_table(table), ""]
    return "\n".join(lines)


def _counts(counts) -> str:
    if not isinstance(counts, dict):
        return "?"
    return " / ".join(f"{name} {n:,}" for name, n in counts.items())


def _pretrain_line(summary: dict) -> list[str]:
    if not summary:
        return []
    parts = [f"{summary[k]:,} {k}" for k in ("clips", "windows") if summary.get(k) is not None]
    line = "- **Pretraining data**: " + (", ".join(parts) or "?") + " of training-split audio"
    if summary.get("final_loss") is not None:
        line += f"; final contrastive loss {summary['final_loss']:.3f}"
    if summary.get("val_knn_accuracy") is not None:
        line += (f"; leave-one-out k-NN accuracy of the frozen embeddings on the {summary.get('val_clips', '?')} "
                 f"validation clips {summary['val_knn_accuracy']:.3f}")
    return [line + "."]


def plot_table(table, *, title: str | None = None):
    """Accuracy, macro-F1 and minority recall against the labelled fraction (log x), one line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    fig = Figure(figsize=(12.0, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(METRICS), sharex=True)
    fractions = sorted(table["fraction"].unique())
    styles = {"scratch": {"marker": "o", "linestyle": "--", "label": "from scratch"},
              "simclr": {"marker": "s", "linestyle": "-", "label": "SimCLR-pretrained"}}
    for ax, (key, label) in zip(axes, METRICS):
        for method in METHODS:
            rows = table[(table["method"] == method)].dropna(subset=[key]).sort_values("fraction")
            if not rows.empty:
                ax.plot(rows["fraction"], rows[key], **styles[method])
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(fractions))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{f * 100:g}%" for f in fractions])
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(label)
        ax.set_xlabel("labelled fraction of the training clips")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test score")
    axes[0].legend(loc="lower right")
    if title:
        fig.suptitle(title)
    return fig


def write_outputs(out_dir: str, table, info: dict) -> dict:
    """label_efficiency.{md,csv,json,png} in out_dir; returns their paths by extension."""
    from mammalnet.report.metrics import to_jsonable

    paths = {ext: os.path.join(out_dir, f"{OUTPUT_STEM}.{ext}") for ext in ("md", "csv", "json", "png")}
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(markdown_report(table, info))
    table.to_csv(paths["csv"], index=False)
    rows = to_jsonable(table.astype(object).where(table.notna(), None).to_dict(orient="records"))
    _write_json(paths["json"], {"info": info, "rows": rows})
    tests = info.get("test_clips")
    fig = plot_table(table, title=f"{info.get('pipeline', '')}: label efficiency"
                                  + (f" ({tests} test clips)" if isinstance(tests, int) else ""))
    fig.savefig(paths["png"], dpi=120)
    return paths


def study_info(configs: dict, records: list[dict], pretrain_record: dict | None, command: str,
               pipeline_file: str | None = None) -> dict:
    """The md/json header facts from the configs and the finished runs."""
    base = configs["runs"][0][2]
    ok = [r for r in records if r.get("status") == "ok"]
    protocol = next((r.get("split_protocol") for r in ok if r.get("split_protocol")), None) or {}
    tests = sorted({r["metrics"].get("num_examples") for r in ok if (r.get("metrics") or {}).get("num_examples")})
    minority = next((r["metrics"].get("minority_classes") for r in ok
                     if (r.get("metrics") or {}).get("minority_classes")), None)
    split = {"method": base.split.method, "seed": base.split.seed, "val_fraction": base.split.val_fraction,
             "test_fraction": base.split.test_fraction, "counts": protocol.get("counts")}
    return {
        "pipeline": configs["pipeline"], "pipeline_file": pipeline_file, "command": command,
        "epochs": base.train.epochs,
        "pretrain_epochs": configs["pretrain"].pretrain.epochs,
        "freeze_encoder": any(c.pretrain.freeze_encoder for _, _, c in configs["runs"]),
        "fractions": [f for f, m, _ in configs["runs"] if m == "scratch"], "split": split,
        "test_clips": tests[0] if len(tests) == 1 else (tests or None),
        "test_fingerprints": sorted({r["test_fingerprint"] for r in ok if r.get("test_fingerprint")}),
        "minority_classes": minority,
        "pretrain": {k: (pretrain_record or {}).get(k) for k in ("status", "wall_s", "error", "encoder", "pretrain")},
    }


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from mammalnet.cli import setup_logging
    from mammalnet.config import ConfigError, apply_overrides
    from mammalnet.resolve import DEFAULT_PIPELINE, resolve_config

    setup_logging()  # the training runs' messages (mammalnet's logger) to stderr
    try:
        base = resolve_config(argparse.Namespace(pipeline=args.pipeline, data=args.data, strict=False,
                                                 epochs=args.epochs, overrides=args.overrides))
        if args.seed is not None:
            base = apply_overrides(base, [f"split.seed={args.seed}"]).validate()
        out_dir = args.out or os.path.join("runs", "label_efficiency", base.name)
        configs = study_configs(base, args.fractions, out_dir=out_dir, pretrain_epochs=args.pretrain_epochs,
                                freeze_encoder=args.freeze_encoder)
    except (ConfigError, ValueError) as err:
        print(f"label_efficiency: {err}", file=sys.stderr)
        return 2
    os.makedirs(out_dir, exist_ok=True)

    records = run_study(configs, out_dir, force=args.force)
    pretrain_record = _read_json(os.path.join(out_dir, configs["pretrain"].name, RESULT_FILE))
    table = build_table(records)
    info = study_info(configs, records, pretrain_record, "python tools/label_efficiency.py " + shlex.join(argv),
                      pipeline_file=args.pipeline or DEFAULT_PIPELINE)
    paths = write_outputs(out_dir, table, info)
    print(markdown_table(table), flush=True)
    print("\n".join(findings(table, test_clips=info["test_clips"] if isinstance(info["test_clips"], int) else None)))
    print(f"label_efficiency: report in {paths['md']} (also .csv, .json, .png)", flush=True)
    failed = [r["run"] for r in records if r.get("status") != "ok"]
    if failed:
        print(f"label_efficiency: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
