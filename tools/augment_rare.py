"""Does adding N generated clips per rare class help a classifier? The same classifier with and without
clips drawn from a generative model (VAE or diffusion) trained on the same training split.

    python tools/augment_rare.py PIPELINE [--data DIR] [--generator pipelines/diffusion.yaml] [--n 32]
           [--seeds 2] [--epochs N] [--generator-epochs N] [--rare NAME ...] [--out DIR] [--set KEY=VALUE ...]
           [--force]

Runs, all with train() and <out> as its workdir, on the pipeline's split (split.seed unchanged):
    <name>-gen-<method>  once: the generator. The recipe (--generator) gives only its `generative` and
                         `train` sections (train.epochs = --generator-epochs); data, split, audio and
                         frontend are the pipeline's, so it learns the classifier's patches from the same
                         training split. generative.quality_classifier is null (no classifier exists yet).
    <out>/generated/     N clips per rare class from it (mammalnet.generate, seed 0): data.generated_root
    <name>-base-s<k>     per seed k in 0..seeds-1: the classifier, train.seed = k
    <name>-aug-s<k>      the same with data.generated_root = <out>/generated (training split only)
Rare classes: --rare, else the rarest quarter (at least one; ties by name) by real training clips of
the classes with test clips, as minority recall in mammalnet.report.metrics ranks them. --set applies to
every run, except that the generator's `train` section is the recipe's (--set generative.* reaches the
generator). Export is off.

Outputs in --out (default runs/augment_rare/<pipeline name>):
    augment_rare.md     settings, generator quality, rare classes, mean ± sd per arm, per-seed table, findings
    augment_rare.csv    one row per classifier run;  augment_rare.json: the rows, the arms and the settings
    <run>/result.json   what each finished run recorded (reused when the config matches; --force reruns)
The generator is reused while its result.json matches and generator.keras is unchanged; the clips while
generated.json records the same generator, N and classes and each rare class folder holds N WAVs; an
augmented run only with the very clips it trained on.

Exit codes: 0 every run finished on the same test clips; 1 a run failed (the others still run; the
failure is in the tables) or the runs were scored on different test clips; 2 bad arguments, pipeline,
recipe or --rare name.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
import math
import os
import shlex
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: keep the console readable

# tools/ is not a package: the generic run machinery (resumable train() runs, run summaries) is
# label_efficiency's, loaded by path
_SPEC = importlib.util.spec_from_file_location("label_efficiency", os.path.join(REPO, "tools", "label_efficiency.py"))
le = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(le)

DEFAULT_GENERATOR = os.path.join(REPO, "pipelines", "diffusion.yaml")
ARMS = {"base": "real clips only", "aug": "+ generated clips"}
OUTPUT_STEM = "augment_rare"
GENERATED_INFO = "generated.json"
GENERATE_SEED = 0
_keras_train = le._keras_train


class RareClassError(ValueError):
    """A --rare name that is not a class of the data."""


# -- arguments and configs -------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    from mammalnet.cli import positive_int

    parser = argparse.ArgumentParser(
        prog="python tools/augment_rare.py", description="A classifier with and without generated rare-class clips.",
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline", nargs="?", help="pipeline YAML, or the name of a shipped one (default: pipelines/default.yaml)")
    parser.add_argument("--data", metavar="DIR", help="data folder, as in python -m mammalnet.fit")
    parser.add_argument("--generator", default=DEFAULT_GENERATOR, metavar="YAML",
                        help="generator recipe: only its generative and train sections are used "
                             "(default: pipelines/diffusion.yaml)")
    parser.add_argument("--n", type=positive_int, default=32, help="generated clips per rare class (default 32)")
    parser.add_argument("--seeds", type=positive_int, default=2, help="training seeds per arm (default 2)")
    parser.add_argument("--epochs", type=positive_int, metavar="N", help="train.epochs of the classifier runs")
    parser.add_argument("--generator-epochs", type=positive_int, metavar="N", help="train.epochs of the generator")
    parser.add_argument("--rare", nargs="+", metavar="NAME", help="the rare classes (default: the rarest quarter)")
    parser.add_argument("--out", metavar="DIR", help="output folder and workdir (default: runs/augment_rare/<name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a pipeline key (repeatable)")
    parser.add_argument("--force", action="store_true", help="rerun everything, even what matches")
    args = parser.parse_args(argv)
    args.rare = list(dict.fromkeys(args.rare)) if args.rare else None
    return args


def study_configs(base, recipe, *, out_dir: str, seeds: int, generator_epochs: int | None = None,
                  overrides=()) -> dict:
    """The validated configs: one generator, then a base and an augmented classifier per seed.

    Args:
        base: the resolved PipelineConfig (pipeline + --data/--epochs/--set).
        recipe: the generator recipe's PipelineConfig; only its generative and train sections count.
        out_dir: the workdir (the generated clips go to <out_dir>/generated).
        seeds: how many training seeds per arm.
        generator_epochs: the generator's train.epochs (None: the recipe's).
        overrides: the --set list; its generative.* items are applied to the generator too.

    Returns:
        {"pipeline", "generator": PipelineConfig, "generated_root", "runs": [(seed, arm, PipelineConfig)]}.

    Raises:
        ConfigError: a recipe without a generative method, or settings the pipeline refuses.
    """
    from mammalnet import config as config_lib

    values = config_lib.to_dict(base)
    values["export"]["enabled"] = False  # the study reads metrics only; exporting is minutes per run
    values["data"]["generated_root"] = None  # the generator and the base arm see real clips only
    recipe_values = config_lib.to_dict(recipe)
    gen = copy.deepcopy(values)
    gen["train"] = recipe_values["train"]
    gen["generative"] = {**recipe_values["generative"], "quality_classifier": None}
    late = [o for o in overrides if o.split("=", 1)[0].strip().startswith("generative.")]
    late += [f"train.epochs={generator_epochs}"] if generator_epochs else []
    gen = config_lib.to_dict(config_lib.apply_overrides(config_lib.from_dict(gen), late))
    if gen["generative"]["method"] == "none":
        raise config_lib.ConfigError(f"the generator recipe must set generative.method (vae or diffusion). "
                                     f"Received: generative.method='none' from {recipe.name!r}")
    gen["name"] = f"{base.name}-gen-{gen['generative']['method']}"
    root = os.path.join(out_dir, "generated")
    values["generative"]["method"] = "none"

    def classifier(arm, seed):
        run = copy.deepcopy(values)
        run["name"], run["train"]["seed"] = f"{base.name}-{arm}-s{seed}", seed
        run["data"]["generated_root"] = root if arm == "aug" else None
        return config_lib.from_dict(run).validate()

    runs = [(seed, arm, classifier(arm, seed)) for seed in range(seeds) for arm in ARMS]
    return {"pipeline": base.name, "generator": config_lib.from_dict(gen).validate(), "generated_root": root,
            "runs": runs}


def rare_classes(train_counts: dict[str, int], requested=None, evaluated: dict[str, int] | None = None) -> list[str]:
    """The requested classes (checked against the data), else the rarest quarter (at least one, ties by
    name) by training clips of the classes with evaluated clips: minority_recall's classes.

    Args:
        train_counts: real training clips per class (every class of the data).
        requested: --rare names, or None.
        evaluated: test (else validation) clips per class; None counts every class as evaluated.

    Raises:
        RareClassError: a requested name that is not a class of train_counts.
    """
    from mammalnet.report.metrics import minority_recall

    if requested:
        unknown = [name for name in requested if name not in train_counts]
        if unknown:
            raise RareClassError(f"--rare names classes the data does not have: {unknown}; its classes: "
                                 f"{sorted(train_counts)}. Received: --rare {' '.join(requested)}")
        return list(requested)
    support = {name: {"recall": 0.0, "support": evaluated.get(name, 0) if evaluated is not None else 1}
               for name in train_counts}
    return minority_recall(support, train_counts)["minority_classes"]


def class_counts(out_dir: str, name: str) -> tuple[dict | None, dict | None]:
    """(real training clips, evaluated clips) per class from runs/<name>/manifest.csv; (None, None) without one.

    Evaluated: the test split, else validation (what train() scores); generated clips are not counted.
    """
    manifest = le._read_manifest(os.path.join(out_dir, "runs", name, "manifest.csv"))
    if manifest is None or not {"label", "split"} <= set(manifest.columns):
        return None, None
    from mammalnet.data.split import GENERATED_GROUP

    if "group" in manifest.columns:
        manifest = manifest[~manifest["group"].astype(str).str.startswith(GENERATED_GROUP)]
    train_counts = le.training_clip_counts(manifest)[0]
    split = manifest["split"].astype(str)
    scored = manifest.loc[split == ("test" if (split == "test").any() else "val"), "label"].astype(str).value_counts()
    return train_counts, {c: int(scored.get(c, 0)) for c in train_counts}


# -- runs ------------------------------------------------------------------------------------------------


def _generate(model_dir, classes, n, out_dir, *, seed):
    import keras

    from mammalnet.generate import generate

    keras.backend.clear_session()
    try:
        return generate(model_dir, classes, n, out_dir, seed=seed)
    finally:
        keras.backend.clear_session()


def _wav_counts(folder: str) -> dict[str, int]:
    if not os.path.isdir(folder):
        return {}
    return {d.name: sum(f.lower().endswith(".wav") for f in os.listdir(d.path))
            for d in os.scandir(folder) if d.is_dir()}


def ensure_generated(model_dir: str, classes, n: int, out_dir: str, *, generate_fn, force: bool = False) -> dict:
    """n WAVs per class in out_dir/<class>/, drawn again only when what is there is not exactly that.

    Returns:
        generated.json's record plus "action" ("reused"/"generated") and "digest" (names the clip set).

    Raises:
        RuntimeError: generate_fn did not leave n WAVs per class.
    """
    wanted = {"generator_sha256": le.file_sha256(os.path.join(model_dir, "generator.keras")), "n": n,
              "classes": sorted(classes), "seed": GENERATE_SEED}
    digest = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()
    expected = {name: n for name in classes}
    if not force and le._read_json(os.path.join(out_dir, GENERATED_INFO)) == wanted and \
            _wav_counts(out_dir) == expected:
        return {**wanted, "action": "reused", "digest": digest}
    shutil.rmtree(out_dir, ignore_errors=True)  # other classes' or counts' clips must not stay in the root
    generate_fn(model_dir, sorted(classes), n, out_dir, seed=GENERATE_SEED)
    if _wav_counts(out_dir) != expected:
        raise RuntimeError(f"generation left {_wav_counts(out_dir)} WAVs in {out_dir}, not {expected}")
    le._write_json(os.path.join(out_dir, GENERATED_INFO), wanted)
    return {**wanted, "action": "generated", "digest": digest}


def _train_generator(config, out_dir: str, *, force: bool, train_fn) -> dict:
    """The generator run via label_efficiency's resumable _train, plus its generator file's hash and quality."""
    from mammalnet import config as config_lib

    model = os.path.join(out_dir, "saved_models", config.name, "generator.keras")
    prior = le.reusable_result(out_dir, config.name, config_lib.to_dict(config))
    stale = prior is not None and le.file_sha256(model) != prior.get("generator_sha256")
    returned = {}

    def keep_returned(config, workdir):  # _train keeps only a classifier's metrics; the quality is wanted here
        returned.update(train_fn(config, workdir) or {})
        return returned

    _, record = le._train(config, out_dir, kind="generator", force=force or stale, train_fn=keep_returned)
    if record["status"] == "ok" and "generator_sha256" not in record:
        metrics = returned or le._read_json(os.path.join(out_dir, "runs", config.name, "report", "metrics.json")) or {}
        record.update(generator=model, generator_sha256=le.file_sha256(model), quality=metrics.get("quality"),
                      method=config.generative.method)
        if record["generator_sha256"] is None:
            record.update(status="failed", error=f"the generator run finished but left no generator at {model}")
        le._write_json(os.path.join(out_dir, config.name, le.RESULT_FILE), record)
    return record


def run_study(configs: dict, out_dir: str, *, n: int, rare=None, force: bool = False, train_fn=None,
              generate_fn=None) -> dict:
    """The generator, the generated clips, then base and augmented classifiers per seed.

    Args:
        configs: study_configs' output.
        out_dir: the workdir.
        n: generated clips per rare class.
        rare: the --rare names, or None for the rarest quarter.
        force: rerun and regenerate everything.
        train_fn: (config, workdir) -> train()'s return value; tests pass a fake.
        generate_fn: mammalnet.generate.generate's signature (model_dir, classes, n, out_dir, *, seed).

    Returns:
        {"generator": its record, "generated": the clips' record (or status/error), "train_counts":
        real training clips per class, "rare", "minority": classes, "records": one per classifier run}.

    Raises:
        RareClassError: a --rare name the data lacks (found before any classifier run).
    """
    train_fn, generate_fn = train_fn or _keras_train, generate_fn or _generate
    generator = _train_generator(configs["generator"], out_dir, force=force, train_fn=train_fn)
    counts, evaluated = class_counts(out_dir, generator["run"]) if generator["status"] == "ok" else (None, None)
    chosen = rare_classes(counts, rare, evaluated) if counts else rare
    if generator["status"] != "ok":
        generated = {"status": "failed", "error": f"generator failed: {generator.get('error')}"}
    else:
        try:
            model_dir = os.path.dirname(generator["generator"])
            generated = {"status": "ok", **ensure_generated(model_dir, chosen, n, configs["generated_root"],
                                                            generate_fn=generate_fn, force=force)}
        except Exception as err:  # the base runs still run
            generated = {"status": "failed", "error": f"generation failed: {le._first_line(err)}"}
    records = []
    for seed, arm, config in configs["runs"]:
        if arm == "aug" and generated["status"] != "ok":
            record = {"run": config.name, "status": "failed", "action": "skipped", "error": generated["error"]}
        else:
            action, record = le._train(config, out_dir, kind="scratch", force=force, train_fn=train_fn,
                                       start_encoder_sha256=generated.get("digest") if arm == "aug" else None)
            record = {**record, "action": action}
        records.append({**record, "seed": seed, "arm": arm})
    for record in records if counts is None else []:  # no generator manifest: a classifier run's
        counts, evaluated = class_counts(out_dir, record["run"]) if record["status"] == "ok" else (None, None)
        if counts:
            chosen = chosen or rare_classes(counts, evaluated=evaluated)
            break
    return {"generator": generator, "generated": generated, "train_counts": counts, "rare": list(chosen or []),
            "minority": rare_classes(counts, evaluated=evaluated) if counts else [], "records": records}


# -- results ---------------------------------------------------------------------------------------------


def build_table(records: list[dict], rare, minority):
    """One row per classifier run: seed, arm, scores, recall_<class> of each rare class, status.

    Minority recall is recomputed over `minority` (the rarest real classes) for every run, since an
    augmented run's own manifest counts its generated clips too. A class without test clips has no recall.
    """
    import numpy as np
    import pandas as pd

    rows = []
    for record in records:
        ok = record.get("status") == "ok"
        metrics = (record.get("metrics") or {}) if ok else {}
        recall = {name: values.get("recall") for name, values in (metrics.get("per_class") or {}).items()
                  if (values or {}).get("support", 1) > 0 and values.get("recall") is not None}
        row = {"seed": record["seed"], "arm": record["arm"], "run": record.get("run"), "status": record.get("status")}
        for key in ("accuracy", "macro_f1", "balanced_accuracy"):
            row[key] = float(metrics[key]) if metrics.get(key) is not None else np.nan

        def mean_recall(names):
            found = [recall[c] for c in names if c in recall]
            return float(np.mean(found)) if found else np.nan

        row.update(minority_recall=mean_recall(minority), rare_recall=mean_recall(rare))
        row.update({f"recall_{c}": mean_recall([c]) for c in rare})
        row.update(test_clips=metrics.get("num_examples"), test_fingerprint=record.get("test_fingerprint"),
                   generated_train_clips=(record.get("split_protocol") or {}).get("generated_train_clips"),
                   epochs_run=record.get("epochs_run"), wall_s=record.get("wall_s"),
                   error=None if ok else record.get("error"))
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["seed", "arm"], key=lambda s: s.map(list(ARMS).index)
                                          if s.name == "arm" else s, kind="stable").reset_index(drop=True)


def _score_columns(rare) -> list[tuple[str, str]]:
    return [("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("minority_recall", "minority recall"),
            ("rare_recall", "rare recall"), *[(f"recall_{c}", f"{c} recall") for c in rare]]


def arm_summary(table, rare) -> dict:
    """{arm: {"runs_ok", column: {"mean", "sd"}}}: sd over seeds (ddof 1), None with fewer than two."""
    summary = {}
    for arm in ARMS:
        rows = table[(table["arm"] == arm) & (table["status"] == "ok")]
        summary[arm] = {"runs_ok": len(rows)}
        for key, _ in _score_columns(rare):
            values = rows[key].dropna()
            summary[arm][key] = {"mean": float(values.mean()) if len(values) else None,
                                 "sd": float(values.std(ddof=1)) if len(values) > 1 else None}
    return summary


def _verdict(base, aug) -> tuple[float, str, str]:
    """(mean paired Δ, "one seed" | "within" | "helps" | "hurts", a clause saying so): an effect counts only
    when every seed agrees on its sign and it is larger than the seed-to-seed sd of either arm."""
    delta = aug - base
    ahead, behind = int((delta > 0).sum()), int((delta < 0).sum())
    tally = f"Δ {delta.mean():+.3f}; augmented ahead in {ahead}, behind in {behind} of {len(delta)} seeds"
    if len(delta) < 2:
        return delta.mean(), "one seed", f"{tally}; one seed only, so no seed spread to judge it against"
    spread = max(base.std(ddof=1), aug.std(ddof=1))
    if abs(delta.mean()) <= spread or (ahead and behind):
        return delta.mean(), "within", f"{tally}; within the seed spread (sd {spread:.3f}): no evidence either way"
    kind = "helps" if delta.mean() > 0 else "hurts"
    return delta.mean(), kind, f"{tally}; beyond the seed spread (sd {spread:.3f}): augmentation {kind}"


def findings(table, rare, n: int | None = None, rare_support: dict | None = None) -> list[str]:
    """Plain sentences: per metric, augmented vs base over the seeds where both finished; the first one
    answers the question, and says so plainly when augmentation did not help or the effect is noise."""
    ok = table[table["status"] == "ok"].set_index(["seed", "arm"])
    seeds = [s for s in sorted(set(table["seed"])) if all((s, arm) in ok.index for arm in ARMS)]
    if not seeds:
        return ["No seed has both runs finished: nothing to compare yet."]
    lines, verdicts = [], {}
    pairs = ok.loc[[(s, a) for s in seeds for a in ARMS]]
    for key, label in _score_columns(rare)[1:]:
        if key == "minority_recall" and pairs[key].equals(pairs["rare_recall"]):
            continue  # the rare classes are the minority classes: one line is enough
        pair = pairs[key].unstack("arm").dropna()
        if not pair.empty:
            verdicts[key] = _verdict(pair["base"], pair["aug"])
            lines.append(f"{label}: augmented {pair['aug'].mean():.3f} vs base {pair['base'].mean():.3f} "
                         f"({verdicts[key][2]}).")
    mean, kind, _ = verdicts.get("rare_recall", (math.nan, None, None))
    what = f"{n} generated clips per rare class" if n else "the generated clips"
    if kind is None:
        lines.insert(0, "The rare classes' recall could not be compared.")
    elif mean <= 0:
        lines.insert(0, f"**Augmentation did not help** the rare classes: with {what} their mean recall changed by "
                        f"{mean:+.3f}" + (" (beyond the seed spread: it hurts)." if kind == "hurts" else "."))
    elif kind == "helps":
        lines.insert(0, f"Augmentation helps the rare classes: {what} raised their mean recall by {mean:+.3f}, "
                        "more than the seed-to-seed spread, in every seed.")
    else:
        lines.insert(0, f"**No clear effect**: {what} raised the rare classes' mean recall by {mean:+.3f}, but "
                        + ("with one seed there is no spread to judge that against" if kind == "one seed" else
                           "that is within the seed-to-seed spread") + "; more seeds (--seeds) would tell.")
    shown = [f"{1 / k:.3f} of {name}'s recall ({k} clip{'s' * (k > 1)})" for name, k in (rare_support or {}).items()
             if k]
    if shown:
        lines.append(f"Resolution: one test clip is {', '.join(shown)}.")
    return lines


def _cell(stats) -> str:
    if stats["mean"] is None:
        return "–"
    return le._fmt(stats["mean"]) + (f" ± {stats['sd']:.3f}" if stats["sd"] is not None else "")


def markdown_report(table, info: dict) -> str:
    """augment_rare.md from build_table's rows and the study's settings (study_info)."""
    rare, gen = info.get("rare") or [], info.get("generator") or {}
    columns = _score_columns(rare)
    counts, support = info.get("train_counts") or {}, info.get("rare_support") or {}
    quality = "; ".join(f"{section} {k} {v:.3g}" for section, values in (gen.get("quality") or {}).items()
                        if isinstance(values, dict) for k, v in values.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool))
    lines = [f"# Generated clips for rare classes: {info.get('pipeline', '?')}", ""]
    if info.get("command"):
        lines += ["```bash", info["command"], "```", ""]
    lines += [
        f"- **Pipeline** `{info.get('pipeline', '?')}`" + (f" ({info['pipeline_file']})" if info.get("pipeline_file")
                                                         else "") + f"; classifier epochs {info.get('epochs', '?')} "
        f"(max), training seeds per arm: {info.get('seeds', '?')}, one split (seed {info.get('split_seed', '?')}).",
        f"- **Generator** `{gen.get('run', '?')}` ({gen.get('method', '?')}, recipe {info.get('recipe', '?')}, "
        f"epochs {info.get('generator_epochs', '?')}): " + (gen.get("status") or "?")
        + (f": {gen.get('error')}" if gen.get("error") else "") + (f". Quality: {quality}" if quality else "") + ".",
        "- **Rare classes** (training clips): " + ", ".join(
            f"{c} ({counts.get(c, '?')}" + ("; no test clips, so no recall" if support.get(c) == 0 else "") + ")"
            for c in rare)
        + f"; **{info.get('n', '?')}** generated clips each, in {info.get('generated_root', '?')}"
        + (f" — **{info['generated_error']}**" if info.get("generated_error") else "") + ".",
        f"- **Minority recall**: mean test recall of {', '.join(info.get('minority') or []) or '?'} (rarest quarter "
        "by real training clips); rare recall: mean over the rare classes. Test clips: "
        f"{info.get('test_clips', '?')}.",
    ]
    prints = info.get("test_fingerprints") or []
    if len(prints) > 1:
        lines.append(f"- **WARNING: the runs were scored on {len(prints)} different test sets** (fingerprints "
                     f"{', '.join(prints)}); the comparison is not like for like.")
    lines += ["", "## Findings", ""] + [f"- {line}" for line in findings(table, rare, info.get("n"),
                                                                          info.get("rare_support"))]
    summary = arm_summary(table, rare)
    lines += ["", "## Mean ± sd over seeds", "", "| arm | runs ok | " + " | ".join(l for _, l in columns) + " |",
              "|---|---:|" + "---:|" * len(columns)]
    for arm, what in ARMS.items():
        cells = " | ".join(_cell(summary[arm][key]) for key, _ in columns)
        lines.append(f"| {arm} ({what}) | {summary[arm]['runs_ok']} | {cells} |")
    lines += ["", "## Per seed", "", "| seed | arm | " + " | ".join(l for _, l in columns)
              + " | generated clips | epochs run | status |", "|---:|---|" + "---:|" * (len(columns) + 2) + "---|"]
    for row in table.to_dict(orient="records"):  # not itertuples: class names need not be identifiers
        status = row["status"] if row["status"] == "ok" else f"{row['status']}: {row['error']}"
        extra = [le._fmt(row["generated_train_clips"], "{:.0f}"), le._fmt(row["epochs_run"], "{:.0f}")]
        lines.append(f"| {row['seed']} | {row['arm']} | " + " | ".join(le._fmt(row[k]) for k, _ in columns)
                     + f" | {' | '.join(extra)} | {status} |")
    return "\n".join(lines) + "\n"


def study_info(configs: dict, study: dict, command: str, *, n: int, recipe: str, pipeline_file=None) -> dict:
    """The md/json header facts from the configs and what the runs recorded."""
    base, gen = configs["runs"][0][2], study["generator"]
    ok = [r for r in study["records"] if r.get("status") == "ok"]
    tests = sorted({r["metrics"].get("num_examples") for r in ok if r["metrics"].get("num_examples")})
    support = next((r["metrics"]["per_class"] for r in ok if r["metrics"].get("per_class")), {})
    runs = ok + ([gen] if gen.get("status") == "ok" else [])
    return {
        "pipeline": configs["pipeline"], "pipeline_file": pipeline_file, "command": command, "recipe": recipe,
        "epochs": base.train.epochs, "seeds": len(configs["runs"]) // len(ARMS), "split_seed": base.split.seed, "n": n,
        "generator_epochs": configs["generator"].train.epochs, "generated_root": configs["generated_root"],
        "generator": {"run": configs["generator"].name, "method": configs["generator"].generative.method,
                      **{k: gen.get(k) for k in ("status", "error", "quality", "generator_sha256", "wall_s")}},
        "generated_error": study["generated"].get("error"),
        "rare": study["rare"], "minority": study["minority"], "train_counts": study["train_counts"],
        "rare_support": {c: (support.get(c) or {}).get("support") for c in study["rare"]},
        "test_clips": tests[0] if len(tests) == 1 else (tests or None),
        "test_fingerprints": sorted({r["test_fingerprint"] for r in runs if r.get("test_fingerprint")}),
    }


def write_outputs(out_dir: str, table, info: dict) -> dict:
    """augment_rare.{md,csv,json} in out_dir; returns their paths by extension."""
    from mammalnet.report.metrics import to_jsonable

    paths = {ext: os.path.join(out_dir, f"{OUTPUT_STEM}.{ext}") for ext in ("md", "csv", "json")}
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(markdown_report(table, info))
    table.to_csv(paths["csv"], index=False)
    rows = to_jsonable(table.astype(object).where(table.notna(), None).to_dict(orient="records"))
    le._write_json(paths["json"], {"info": info, "arms": arm_summary(table, info.get("rare") or []), "runs": rows})
    return paths


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from mammalnet import config as config_lib
    from mammalnet.cli import setup_logging
    from mammalnet.resolve import DEFAULT_PIPELINE, resolve_config

    setup_logging()  # the training runs' messages (mammalnet's logger) to stderr
    try:
        base = resolve_config(argparse.Namespace(pipeline=args.pipeline, data=args.data, strict=False,
                                                 epochs=args.epochs, overrides=args.overrides))
        out_dir = args.out or os.path.join("runs", "augment_rare", base.name)
        configs = study_configs(base, config_lib.load(config_lib.pipeline_path(args.generator)), out_dir=out_dir, seeds=args.seeds,
                                generator_epochs=args.generator_epochs, overrides=args.overrides)
    except (config_lib.ConfigError, ValueError) as err:
        print(f"augment_rare: {err}", file=sys.stderr)
        return 2
    os.makedirs(out_dir, exist_ok=True)
    try:
        study = run_study(configs, out_dir, n=args.n, rare=args.rare, force=args.force)
    except RareClassError as err:
        print(f"augment_rare: {err}", file=sys.stderr)
        return 2
    table = build_table(study["records"], study["rare"], study["minority"])
    info = study_info(configs, study, "python tools/augment_rare.py " + shlex.join(argv), n=args.n,
                      recipe=args.generator, pipeline_file=args.pipeline or DEFAULT_PIPELINE)
    paths = write_outputs(out_dir, table, info)
    print("\n".join(findings(table, study["rare"], args.n, info["rare_support"])), flush=True)
    print(f"augment_rare: report in {paths['md']} (also .csv, .json)", flush=True)
    failed = [r["run"] for r in [study["generator"], *study["records"]] if r.get("status") != "ok"]
    if failed:
        print(f"augment_rare: failed: {', '.join(failed)}", file=sys.stderr)
    if len(info["test_fingerprints"]) > 1:
        print("augment_rare: the runs were scored on different test clips (see the report)", file=sys.stderr)
    return 1 if failed or len(info["test_fingerprints"]) > 1 or study["generated"]["status"] != "ok" else 0


if __name__ == "__main__":
    sys.exit(main())
