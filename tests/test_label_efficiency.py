"""tools/label_efficiency.py: configs, result collection, table, report, plot, CLI errors and resume.

No real training: a fake train() writes what the real one leaves behind (manifest, encoder file) and
returns a metrics dict.
"""

import importlib.util
import json
import math
import os
import pathlib

import numpy as np
import pandas as pd
import pytest

from mammalnet import config as config_lib

_PATH = pathlib.Path(__file__).resolve().parents[1] / "tools" / "label_efficiency.py"
_SPEC = importlib.util.spec_from_file_location("label_efficiency", _PATH)
le = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(le)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRAIN_CLIPS = {"beluga": 40, "orca": 20, "seal": 8, "walrus": 4}  # walrus rarest, then seal


def _base(**train):
    return config_lib.from_dict({"name": "pipe", "model": {"name": "dnn", "params": {"units": [8]}},
                                 "train": {"epochs": 3, **train}, "pretrain": {"epochs": 2}}).validate()


def _manifest(fraction: float) -> pd.DataFrame:
    """A split manifest as train() writes it: 3 val and 3 test clips per class, the training clips
    beyond the labelled fraction marked "unlabelled" (as mammalnet.data.split.hold_out_labels does)."""
    rows = []
    for label, n in TRAIN_CLIPS.items():
        keep = max(1, round(fraction * n))
        rows += [(f"{label}/t{i}.wav", label, "train" if i < keep else "unlabelled") for i in range(n)]
        rows += [(f"{label}/v{i}.wav", label, "val") for i in range(3)]
        rows += [(f"{label}/x{i}.wav", label, "test") for i in range(3)]
    return pd.DataFrame(rows, columns=["path", "label", "split"]).assign(start_s=0.0)


def _metrics(fraction: float, pretrained: bool) -> dict:
    gain = 0.1 if pretrained else 0.0
    recalls = {"beluga": 1.0, "orca": 2 / 3, "seal": min(1.0, 1 / 3 + gain), "walrus": 0.0 if fraction < 0.5 else 1 / 3}
    accuracy = min(1.0, 0.5 + 0.3 * fraction + gain)
    labelled = sum(max(1, round(fraction * n)) for n in TRAIN_CLIPS.values())
    return {
        "accuracy": accuracy, "balanced_accuracy": accuracy - 0.05, "macro_f1": accuracy - 0.1,
        # what train() reports; ranked by labelled clips it may pick other classes than the study
        "minority_recall": 0.99, "minority_classes": ["beluga"],
        "per_class": {name: {"recall": r, "support": 3, "precision": 0.5, "f1": 0.5} for name, r in recalls.items()},
        "num_examples": 12,
        "split_protocol": {"method": "stratified", "seed": 0, "counts": {"train": 72, "val": 12, "test": 12},
                           "evaluated_split": "test",
                           **({"label_fraction": {"fraction": fraction, "labelled_train_clips": labelled}}
                              if fraction < 1 else {})},
        "timings_s": {"epochs_run": 3},
    }


class FakeTrain:
    """Stands in for mammalnet.training.train.train: records calls, writes the files train() writes."""

    def __init__(self, fail=(), encoder_tag=""):
        self.calls, self.fail, self.encoder_tag = [], set(fail), encoder_tag

    def __call__(self, config, workdir):
        self.calls.append(config.name)
        if config.name in self.fail:
            raise ValueError(f"boom in {config.name}")
        if config.pretrain.method == "simclr":
            assert not config.pretrain.finetune and config.split.train_label_fraction == 1.0
            path = os.path.join(workdir, "saved_models", config.name, "encoder.keras")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(f"encoder after {config.pretrain.epochs} epochs{self.encoder_tag}".encode())
            return {"encoder": path, "pretrain": {"method": "simclr", "clips": 72, "windows": 144, "epochs": 2,
                                                  "history": {"loss": [4.0, 3.25]}, "val_clips": 12,
                                                  "val_knn_accuracy": 0.5, "encoder": path}}
        assert not config.export.enabled
        fraction = config.split.train_label_fraction
        run_dir = os.path.join(workdir, "runs", config.name)
        os.makedirs(run_dir, exist_ok=True)
        _manifest(fraction).to_csv(os.path.join(run_dir, "manifest.csv"), index=False)
        return _metrics(fraction, pretrained=bool(config.pretrain.encoder))


# --------------------------------------------------------------------------------------------- configs


def test_run_names_and_fraction_tags():
    assert [le.fraction_tag(f) for f in (0.01, 0.05, 0.1, 0.25, 1.0, 0.005, 0.07)] == \
        ["1", "5", "10", "25", "100", "0p5", "7"]
    assert le.run_name("pipe", "simclr") == "pipe-simclr"
    assert le.run_name("pipe", "scratch", 0.05) == "pipe-scratch-f5"


def test_study_configs_change_only_labels_and_start(tmp_path):
    base = _base()
    configs = le.study_configs(base, [0.1, 1.0], out_dir=str(tmp_path), pretrain_epochs=7, freeze_encoder=True)
    pre = configs["pretrain"]
    assert pre.name == "pipe-simclr" and pre.pretrain.method == "simclr" and not pre.pretrain.finetune
    assert pre.pretrain.epochs == 7 and not pre.export.enabled
    assert configs["encoder"] == os.path.join(str(tmp_path), "saved_models", "pipe-simclr", "encoder.keras")
    assert [(f, m, c.name) for f, m, c in configs["runs"]] == [
        (0.1, "scratch", "pipe-scratch-f10"), (0.1, "simclr", "pipe-simclr-f10"),
        (1.0, "scratch", "pipe-scratch-f100"), (1.0, "simclr", "pipe-simclr-f100")]
    for fraction, method, config in configs["runs"]:
        assert config.split.train_label_fraction == fraction and config.split.seed == base.split.seed
        assert config.train.epochs == 3 and not config.export.enabled and config.pretrain.method == "none"
        assert config.pretrain.encoder == (configs["encoder"] if method == "simclr" else None)
        assert config.pretrain.freeze_encoder == (method == "simclr")


# --------------------------------------------------------------------------------------------- results


def test_summarise_run_counts_labels_and_ranks_minority_by_the_whole_training_split():
    summary = le.summarise_run(_metrics(0.05, False), _manifest(0.05))
    # 5% of 40/20/8/4 -> 2/1/1/1 labelled: by labelled clips orca, seal and walrus tie
    assert summary["labelled_train_clips"] == 5
    assert summary["labelled_clip_counts"] == {"beluga": 2, "orca": 1, "seal": 1, "walrus": 1}
    assert summary["train_clip_counts"] == TRAIN_CLIPS
    assert summary["metrics"]["minority_classes"] == ["walrus"]  # the rarest quarter of 4 classes: one
    assert summary["metrics"]["minority_recall"] == 0.0 and summary["metrics"]["minority_recall_train"] == 0.99
    assert summary["epochs_run"] == 3 and summary["evaluated_split"] == "test"
    assert summary["test_fingerprint"] == le.summarise_run(_metrics(1.0, True), _manifest(1.0))["test_fingerprint"]

    other_test = _manifest(0.05)
    other_test.loc[other_test["split"] == "test", "path"] += ".moved"
    assert le.summarise_run(_metrics(0.05, False), other_test)["test_fingerprint"] != summary["test_fingerprint"]
    # no manifest: train()'s own minority recall, the labelled count from the split protocol
    bare = le.summarise_run(_metrics(0.05, False))
    assert bare["metrics"]["minority_recall"] == 0.99 and bare["labelled_train_clips"] == 5


def _records(fractions=(0.05, 1.0), failed=()):
    records = []
    for fraction in fractions:
        for method in le.METHODS:
            name = le.run_name("pipe", method, fraction)
            if name in failed:
                records.append({"run": name, "fraction": fraction, "method": method, "status": "failed",
                                "error": "ValueError: boom"})
                continue
            summary = le.summarise_run(_metrics(fraction, method == "simclr"), _manifest(fraction))
            records.append({"run": name, "fraction": fraction, "method": method, "status": "ok", "wall_s": 1.5,
                            **summary})
    return records


def test_build_table_rows_and_deltas():
    records = _records()
    table = le.build_table(records[::-1])  # any order in, fraction then method out
    assert list(table.columns) == list(le.CSV_COLUMNS)
    assert list(zip(table["fraction"], table["method"])) == [(0.05, "scratch"), (0.05, "simclr"),
                                                             (1.0, "scratch"), (1.0, "simclr")]
    assert list(table["labelled_train_clips"]) == [5, 5, 72, 72]
    assert list(table["test_clips"]) == [12] * 4
    simclr = table[table["method"] == "simclr"]
    np.testing.assert_allclose(simclr["delta_accuracy"], [0.1, 0.1])
    np.testing.assert_allclose(simclr["delta_macro_f1"], [0.1, 0.1])
    np.testing.assert_allclose(simclr["delta_minority_recall"], [0.0, 0.0])  # walrus, not seal
    assert table[table["method"] == "scratch"]["delta_accuracy"].isna().all()


def test_build_table_keeps_failed_rows_without_deltas():
    table = le.build_table(_records(failed={"pipe-simclr-f5"}))
    row = table[(table["fraction"] == 0.05) & (table["method"] == "simclr")].iloc[0]
    assert row["status"] == "failed" and row["error"] == "ValueError: boom" and math.isnan(row["accuracy"])
    assert math.isnan(row["delta_accuracy"]) and row["labelled_train_clips"] == 5  # from its scratch partner
    assert not math.isnan(table.loc[3, "delta_accuracy"])


def test_markdown_has_protocol_rows_deltas_and_findings():
    table = le.build_table(_records())
    info = {"pipeline": "pipe", "command": "python tools/label_efficiency.py x.yaml", "epochs": 3,
            "pretrain_epochs": 2, "split": {"method": "stratified", "seed": 0, "val_fraction": 0.15,
                                            "test_fraction": 0.15, "counts": {"train": 72, "val": 12, "test": 12}},
            "test_clips": 12, "test_fingerprints": ["abc"], "minority_classes": ["walrus"]}
    md = le.markdown_report(table, info)
    assert "# Label efficiency: pipe" in md and "python tools/label_efficiency.py x.yaml" in md
    assert "stratified, seed 0" in md and "classifier 3 (max" in md and "pretraining 2" in md
    assert "**Test clips**: 12" in md and "walrus" in md
    assert "| 5% | 5 | scratch | 0.515 | 0.415 | 0.000 | – | – | – | 3 | ok |" in md
    assert "| 5% | 5 | simclr | 0.615 | 0.515 | 0.000 | +0.100 | +0.100 | +0.000 | 3 | ok |" in md
    assert "| 100% | 72 | simclr |" in md
    assert "Pretraining helps on average (mean Δ macro-F1 +0.100" in md
    assert "one test clip is 0.083 of accuracy" in md
    assert "WARNING" not in le.markdown_report(table, info)
    assert "WARNING" in le.markdown_report(table, {**info, "test_fingerprints": ["abc", "def"]})


def test_findings_say_when_pretraining_does_not_help():
    records = _records()
    for record in records:  # swap the methods: the pretrained runs now trail
        record["method"] = "scratch" if record["method"] == "simclr" else "simclr"
    lines = le.findings(le.build_table(records))
    assert any("**Pretraining did not help**" in line for line in lines)
    assert any(line.startswith("macro-F1: SimCLR ahead at 0, behind at 2") for line in lines)
    assert le.findings(le.build_table(_records(failed={"pipe-simclr-f5", "pipe-simclr-f100"}))) == \
        ["No fraction has both runs finished: nothing to compare yet."]


def test_write_outputs_writes_md_csv_json_and_a_png(tmp_path):
    table = le.build_table(_records(fractions=(0.01, 0.1, 1.0), failed={"pipe-scratch-f1"}))
    fig = le.plot_table(table)
    assert [ax.get_xscale() for ax in fig.axes] == ["log"] * 3
    assert [ax.get_title() for ax in fig.axes] == ["accuracy", "macro-F1", "minority recall"]
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2, 2]
    paths = le.write_outputs(str(tmp_path), table, {"pipeline": "pipe", "test_clips": 12})
    with open(paths["png"], "rb") as f:
        assert f.read(8) == PNG_MAGIC
    csv = pd.read_csv(paths["csv"])
    assert len(csv) == 6 and list(csv.columns) == list(le.CSV_COLUMNS)
    saved = json.loads(open(paths["json"], encoding="utf-8").read())
    assert len(saved["rows"]) == 6 and saved["rows"][0]["accuracy"] is None  # the failed row: null, not NaN
    assert "| 1% |" in open(paths["md"], encoding="utf-8").read()


# --------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("argv", [
    ["--fractions", "0"], ["--fractions", "1.5"], ["--fractions", "-0.1"], ["--fractions", "nan"],
    ["--fractions", "abc"], ["--fractions", "0.1", "0.1"], ["--epochs", "0"], ["--pretrain-epochs", "-1"],
    ["--seed", "-1"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        le.main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_bad_pipeline_settings_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(le, "_keras_train", FakeTrain(fail={"never"}))
    assert le.main(["--set", "split.bogus=1", "--out", str(tmp_path)]) == 2
    assert "split.bogus" in capsys.readouterr().err
    assert le.main(["--set", "distill.teacher=somewhere", "--out", str(tmp_path)]) == 2  # refused with pretraining
    assert "distill" in capsys.readouterr().err
    assert le._keras_train.calls == []


# --------------------------------------------------------------------------------------------- resume


def test_study_reuses_matching_runs_and_reruns_stale_ones(tmp_path):
    out = str(tmp_path)
    configs = le.study_configs(_base(), [0.05, 1.0], out_dir=out)
    fake = FakeTrain()
    records = le.run_study(configs, out, train_fn=fake)
    assert fake.calls == ["pipe-simclr", "pipe-scratch-f5", "pipe-simclr-f5", "pipe-scratch-f100", "pipe-simclr-f100"]
    assert [r["action"] for r in records] == ["trained"] * 4 and all(r["status"] == "ok" for r in records)
    saved = json.loads(open(os.path.join(out, "pipe-simclr-f5", "result.json"), encoding="utf-8").read())
    assert saved["config"]["name"] == "pipe-simclr-f5" and math.isfinite(saved["wall_s"]) and saved["wall_s"] >= 0
    assert saved["metrics"]["accuracy"] == pytest.approx(0.615) and saved["labelled_train_clips"] == 5
    assert saved["start_encoder_sha256"] == le.file_sha256(configs["encoder"])

    again = FakeTrain()
    assert [r["action"] for r in le.run_study(configs, out, train_fn=again)] == ["reused"] * 4
    assert again.calls == []

    # a result.json of another config (here: edited by hand) is not reused; the rest still is
    path = os.path.join(out, "pipe-scratch-f100", "result.json")
    record = json.loads(open(path, encoding="utf-8").read())
    record["config"]["train"]["epochs"] = 99
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f)
    third = FakeTrain()
    assert [r["action"] for r in le.run_study(configs, out, train_fn=third)] == ["reused", "reused", "trained",
                                                                                    "reused"]
    assert third.calls == ["pipe-scratch-f100"]

    # more classifier epochs: every classifier run is stale, the pretraining run is not
    longer = le.study_configs(_base(epochs=5), [0.05, 1.0], out_dir=out)
    fourth = FakeTrain()
    le.run_study(longer, out, train_fn=fourth)
    assert fourth.calls == ["pipe-scratch-f5", "pipe-simclr-f5", "pipe-scratch-f100", "pipe-simclr-f100"]

    # a retrained encoder (other pretraining epochs) makes the fine-tuned runs stale, not the scratch ones
    repretrained = le.study_configs(_base(epochs=5), [0.05, 1.0], out_dir=out, pretrain_epochs=9)
    fifth = FakeTrain()
    le.run_study(repretrained, out, train_fn=fifth)
    assert fifth.calls == ["pipe-simclr", "pipe-simclr-f5", "pipe-simclr-f100"]

    forced = FakeTrain()
    le.run_study(repretrained, out, train_fn=forced, force=True)
    assert len(forced.calls) == 5


def test_failed_pretraining_skips_the_finetuned_runs_and_is_retried(tmp_path):
    out = str(tmp_path)
    configs = le.study_configs(_base(), [0.1], out_dir=out)
    fake = FakeTrain(fail={"pipe-simclr"})
    records = le.run_study(configs, out, train_fn=fake)
    assert fake.calls == ["pipe-simclr", "pipe-scratch-f10"]
    assert [(r["method"], r["status"], r["action"]) for r in records] == [("scratch", "ok", "trained"),
                                                                          ("simclr", "failed", "skipped")]
    assert "pretraining failed: ValueError: boom in pipe-simclr" in records[1]["error"]
    retry = FakeTrain()
    assert [r["action"] for r in le.run_study(configs, out, train_fn=retry)] == ["reused", "trained"]
    assert retry.calls == ["pipe-simclr", "pipe-simclr-f10"]


def test_main_end_to_end_with_a_fake_train(tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    monkeypatch.setattr(le, "_keras_train", FakeTrain(fail={"default-scratch-f100"}))
    argv = ["--fractions", "1.0", "0.25", "--out", str(out), "--epochs", "2", "--pretrain-epochs", "3", "--seed", "4"]
    assert le.main(argv) == 1  # one run failed: still a table, exit 1
    assert "failed: default-scratch-f100" in capsys.readouterr().err
    for ext in ("md", "csv", "json", "png"):
        assert (out / f"label_efficiency.{ext}").is_file()
    saved = json.loads((out / "label_efficiency.json").read_text(encoding="utf-8"))
    assert saved["info"]["fractions"] == [0.25, 1.0] and saved["info"]["split"]["seed"] == 4
    assert saved["info"]["epochs"] == 2 and saved["info"]["pretrain_epochs"] == 3 and saved["info"]["test_clips"] == 12
    assert saved["info"]["pretrain"]["status"] == "ok"
    assert [(r["fraction"], r["method"], r["status"]) for r in saved["rows"]] == [
        (0.25, "scratch", "ok"), (0.25, "simclr", "ok"), (1.0, "scratch", "failed"), (1.0, "simclr", "ok")]
    md = (out / "label_efficiency.md").read_text(encoding="utf-8")
    assert "--pretrain-epochs 3" in md and "seed 4" in md and "failed: ValueError: boom in default-scratch-f100" in md
    assert ("72 clips, 144 windows of training-split audio; final contrastive loss 3.250; leave-one-out k-NN "
            "accuracy of the frozen embeddings on the 12 validation clips 0.500") in md

    monkeypatch.setattr(le, "_keras_train", FakeTrain())
    assert le.main(argv) == 0
    assert le._keras_train.calls == ["default-scratch-f100"]  # only the failed run again


def test_a_replaced_encoder_file_retrains_the_encoder_and_the_finetuned_runs(tmp_path):
    out = str(tmp_path)
    configs = le.study_configs(_base(), [0.1], out_dir=out)
    le.run_study(configs, out, train_fn=FakeTrain())
    with open(configs["encoder"], "wb") as f:
        f.write(b"someone else's encoder")
    same = FakeTrain()  # retrained to the same bytes (a deterministic run): the fine-tuned run stays valid
    assert [r["action"] for r in le.run_study(configs, out, train_fn=same)] == ["reused", "reused"]
    assert same.calls == ["pipe-simclr"]
    with open(configs["encoder"], "wb") as f:
        f.write(b"someone else's encoder")
    other = FakeTrain(encoder_tag=" (another seed)")
    assert [r["action"] for r in le.run_study(configs, out, train_fn=other)] == ["reused", "trained"]
    assert other.calls == ["pipe-simclr", "pipe-simclr-f10"]
