"""tools/augment_rare.py: configs, rare classes, resume, table, findings, fingerprints and exit codes.

No real training or sampling: a fake train() writes what the real one leaves behind (manifest.csv, the
generator file) and returns a metrics dict; a fake generate() writes empty WAV files.
"""

import importlib.util
import json
import os
import pathlib

import pandas as pd
import pytest
import yaml

from mammalnet import config as config_lib

_PATH = pathlib.Path(__file__).resolve().parents[1] / "tools" / "augment_rare.py"
_SPEC = importlib.util.spec_from_file_location("augment_rare", _PATH)
ar = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ar)

TRAIN_CLIPS = {"beluga": 40, "narwhal": 30, "orca": 20, "seal": 8, "walrus": 4}  # rarest quarter: walrus, seal


def _base(**train):
    return config_lib.from_dict({"name": "pipe", "model": {"name": "dnn", "params": {"units": [8]}},
                                 "data": {"synthetic_clips": 300}, "train": {"epochs": 3, **train}}).validate()


def _recipe(method="diffusion", **generative):
    return config_lib.from_dict({"name": "recipe", "data": {"synthetic_clips": 99}, "audio": {"window_s": 1.0},
                                 "train": {"epochs": 7, "batch_size": 8},
                                 "generative": {"method": method, "quality_classifier": "saved_models/x",
                                                **generative}})


def _manifest(config, moved_test=False) -> pd.DataFrame:
    rows = []
    for label, n in TRAIN_CLIPS.items():
        rows += [(f"{label}/t{i}.wav", label, "train", "real") for i in range(n)]
        rows += [(f"{label}/v{i}.wav", label, "val", "real") for i in range(3)]
        rows += [(f"{label}/x{i}.wav{'.moved' if moved_test else ''}", label, "test", "real") for i in range(3)]
    root = config.data.generated_root
    if root:
        for label in sorted(os.listdir(root)):
            if os.path.isdir(os.path.join(root, label)):
                rows += [(os.path.join(root, label, f), label, "train", "generated/" + f)
                         for f in sorted(os.listdir(os.path.join(root, label)))]
    return pd.DataFrame(rows, columns=["path", "label", "split", "group"]).assign(start_s=0.0)


class FakeTrain:
    """Stands in for train(): the generator run leaves generator.keras, a classifier run a manifest and
    metrics whose rare-class recalls rise by `gain` with generated clips (plus a per-seed jitter)."""

    def __init__(self, fail=(), gain=0.1, jitter=0.02, moved_test=()):
        self.calls, self.fail, self.gain, self.jitter, self.moved = [], set(fail), gain, jitter, set(moved_test)

    def __call__(self, config, workdir):
        self.calls.append(config.name)
        if config.name in self.fail:
            raise ValueError(f"boom in {config.name}")
        run_dir = os.path.join(workdir, "runs", config.name)
        os.makedirs(run_dir, exist_ok=True)
        _manifest(config, config.name in self.moved).to_csv(os.path.join(run_dir, "manifest.csv"), index=False)
        if config.generative.method != "none":
            path = os.path.join(workdir, "saved_models", config.name, "generator.keras")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(f"{config.generative.method} after {config.train.epochs} epochs".encode())
            return {"method": config.generative.method, "generator": path,
                    "quality": {"scored_windows": 12, "inversion_real": {"mel_snr_db_median": 11.5, "clips": 12}}}
        assert not config.export.enabled and config.generative.method == "none"
        gain = self.gain if config.data.generated_root else 0.0
        seed = config.train.seed
        recalls = {"beluga": 1.0, "narwhal": 1.0, "orca": 2 / 3, "seal": 1 / 3 + gain + self.jitter * seed,
                   "walrus": gain + self.jitter * seed}
        accuracy = 0.8 + 0.01 * seed + gain / 2
        return {"accuracy": accuracy, "balanced_accuracy": accuracy, "macro_f1": accuracy - 0.1,
                "minority_recall": 0.5, "minority_classes": ["walrus"], "num_examples": 15,
                "per_class": {c: {"recall": r, "support": 3, "precision": 0.5, "f1": 0.5} for c, r in recalls.items()},
                "split_protocol": {"counts": {"train": 102, "val": 15, "test": 15}, "evaluated_split": "test",
                                   **({"generated_train_clips": 64} if config.data.generated_root else {})},
                "timings_s": {"epochs_run": config.train.epochs}}


class FakeGenerate:
    def __init__(self):
        self.calls = []

    def __call__(self, model_dir, classes, n, out_dir, *, seed):
        self.calls.append((os.path.basename(model_dir), list(classes), n, seed))
        for name in classes:
            os.makedirs(os.path.join(out_dir, name), exist_ok=True)
            for i in range(n):
                open(os.path.join(out_dir, name, f"{name}_{i:03d}.wav"), "wb").close()
        return {"wavs": {}, "grid": None, "sample_rate_hz": 8000}


def _study(tmp_path, seeds=2, n=4, rare=None, train=None, generate=None, **kwargs):
    configs = ar.study_configs(_base(), _recipe(), out_dir=str(tmp_path), seeds=seeds, **kwargs)
    train, generate = train or FakeTrain(), generate or FakeGenerate()
    study = ar.run_study(configs, str(tmp_path), n=n, rare=rare, train_fn=train, generate_fn=generate)
    return configs, study, train, generate


# --------------------------------------------------------------------------------------------- configs


def test_generator_takes_only_generative_and_train_from_the_recipe(tmp_path):
    base = _base()
    configs = ar.study_configs(base, _recipe(), out_dir=str(tmp_path), seeds=2, generator_epochs=5,
                               overrides=["generative.sampling_steps=5", "data.synthetic_clips=300"])
    gen = configs["generator"]
    assert gen.name == "pipe-gen-diffusion" and gen.generative.method == "diffusion"
    assert gen.data == base.data and gen.split == base.split and gen.audio == base.audio
    assert gen.frontend == base.frontend and gen.data.generated_root is None
    assert gen.train.epochs == 5 and gen.train.batch_size == 8  # the recipe's train, --generator-epochs
    assert gen.generative.sampling_steps == 5 and gen.generative.quality_classifier is None
    assert configs["generated_root"] == os.path.join(str(tmp_path), "generated")
    assert [(s, a, c.name) for s, a, c in configs["runs"]] == [
        (0, "base", "pipe-base-s0"), (0, "aug", "pipe-aug-s0"), (1, "base", "pipe-base-s1"), (1, "aug", "pipe-aug-s1")]
    for seed, arm, config in configs["runs"]:
        assert config.train.seed == seed and config.train.epochs == 3 and config.split.seed == base.split.seed
        assert not config.export.enabled and config.generative.method == "none"
        assert config.data.generated_root == (configs["generated_root"] if arm == "aug" else None)
    with pytest.raises(config_lib.ConfigError, match="generative.method"):
        ar.study_configs(base, _recipe(method="none"), out_dir=str(tmp_path), seeds=1)


def test_rare_classes_rarest_quarter_or_requested():
    assert ar.rare_classes(TRAIN_CLIPS) == ["walrus", "seal"]  # ceil(5 / 4) = 2, fewest clips first
    assert ar.rare_classes({"a": 3, "b": 1, "c": 1, "d": 9}) == ["b"]  # ties by name
    scored = {c: 3 for c in TRAIN_CLIPS}
    assert ar.rare_classes(TRAIN_CLIPS, evaluated={**scored, "walrus": 0}) == ["seal"]  # 4 testable: one
    assert ar.rare_classes(TRAIN_CLIPS, ["orca"]) == ["orca"]
    with pytest.raises(ar.RareClassError, match=r"\['dolphin'\]"):
        ar.rare_classes(TRAIN_CLIPS, ["orca", "dolphin"])


# --------------------------------------------------------------------------------------------- runs and resume


def test_study_runs_generates_for_the_rare_classes_and_resumes(tmp_path):
    configs, study, train, generate = _study(tmp_path)
    assert train.calls == ["pipe-gen-diffusion", "pipe-base-s0", "pipe-aug-s0", "pipe-base-s1", "pipe-aug-s1"]
    assert generate.calls == [("pipe-gen-diffusion", ["seal", "walrus"], 4, 0)]
    assert study["rare"] == ["walrus", "seal"] and study["minority"] == ["walrus", "seal"]
    assert study["train_counts"] == TRAIN_CLIPS  # from the generator run's manifest
    aug_manifest = pd.read_csv(tmp_path / "runs" / "pipe-aug-s0" / "manifest.csv")
    assert (aug_manifest["group"].str.startswith("generated/")).sum() == 8
    assert ar.class_counts(str(tmp_path), "pipe-aug-s0") == (TRAIN_CLIPS, {c: 3 for c in TRAIN_CLIPS})  # real only
    assert study["generator"]["quality"]["inversion_real"]["mel_snr_db_median"] == 11.5
    assert all(r["status"] == "ok" and r["action"] == "trained" for r in study["records"])
    info = json.loads((tmp_path / "generated" / "generated.json").read_text())
    assert info["n"] == 4 and info["classes"] == ["seal", "walrus"] and len(info["generator_sha256"]) == 64

    again_train, again_generate = FakeTrain(), FakeGenerate()
    again = ar.run_study(configs, str(tmp_path), n=4, train_fn=again_train, generate_fn=again_generate)
    assert again_train.calls == [] and again_generate.calls == []
    assert [r["action"] for r in again["records"]] == ["reused"] * 4 and again["generated"]["action"] == "reused"

    # a replaced generator file retrains the generator; retrained to the same bytes, the clips still hold
    (tmp_path / "saved_models" / "pipe-gen-diffusion" / "generator.keras").write_bytes(b"someone else's")
    third_train, third_generate = FakeTrain(), FakeGenerate()
    ar.run_study(configs, str(tmp_path), n=4, train_fn=third_train, generate_fn=third_generate)
    assert third_train.calls == ["pipe-gen-diffusion"] and third_generate.calls == []

    # another N: new clips, so the augmented runs are stale and the base runs are not
    fourth_train, fourth_generate = FakeTrain(), FakeGenerate()
    ar.run_study(configs, str(tmp_path), n=6, train_fn=fourth_train, generate_fn=fourth_generate)
    assert fourth_train.calls == ["pipe-aug-s0", "pipe-aug-s1"] and len(fourth_generate.calls) == 1
    assert sorted(os.listdir(tmp_path / "generated" / "seal")) == [f"seal_{i:03d}.wav" for i in range(6)]

    # a clip deleted by hand: drawn again
    os.remove(tmp_path / "generated" / "seal" / "seal_000.wav")
    fifth_generate = FakeGenerate()
    ar.run_study(configs, str(tmp_path), n=6, train_fn=FakeTrain(), generate_fn=fifth_generate)
    assert len(fifth_generate.calls) == 1


def test_requested_rare_classes_and_a_failed_generator(tmp_path):
    _, study, _, generate = _study(tmp_path, seeds=1, rare=["orca"])
    assert study["rare"] == ["orca"] and study["minority"] == ["walrus", "seal"]
    assert generate.calls[0][1] == ["orca"]

    train = FakeTrain(fail={"pipe-gen-diffusion"})
    _, study, _, generate = _study(tmp_path / "failed", seeds=1, train=train)
    assert train.calls == ["pipe-gen-diffusion", "pipe-base-s0"] and generate.calls == []
    aug = study["records"][1]
    assert aug["status"] == "failed" and aug["action"] == "skipped" and "generator failed" in aug["error"]
    assert study["rare"] == ["walrus", "seal"]  # ranked by the base run's manifest instead


# --------------------------------------------------------------------------------------------- table and findings


def test_table_means_sds_and_rare_recalls(tmp_path):
    _, study, _, _ = _study(tmp_path)
    table = ar.build_table(study["records"], study["rare"], study["minority"])
    assert list(zip(table["seed"], table["arm"])) == [(0, "base"), (0, "aug"), (1, "base"), (1, "aug")]
    assert table["recall_walrus"].tolist() == pytest.approx([0.0, 0.1, 0.02, 0.12])
    assert table["generated_train_clips"].tolist()[1] == 64
    summary = ar.arm_summary(table, study["rare"])
    assert summary["base"]["accuracy"]["mean"] == pytest.approx(0.805)
    assert summary["base"]["accuracy"]["sd"] == pytest.approx(0.01 / 2 ** 0.5)
    md = ar.markdown_report(table, {"pipeline": "pipe", "rare": study["rare"], "minority": study["minority"],
                                    "train_counts": study["train_counts"], "n": 4, "test_clips": 15,
                                    "generator": {"run": "pipe-gen-diffusion", "method": "diffusion", "status": "ok",
                                                  "quality": study["generator"]["quality"]}})
    assert "| arm | runs ok | accuracy | macro-F1 | minority recall | rare recall | walrus recall | seal recall |" in md
    assert "| base (real clips only) | 2 | 0.805 ± 0.007 | 0.705 ± 0.007 | 0.177 ± 0.014 | 0.177 ± 0.014 | " \
           "0.010 ± 0.014 | 0.343 ± 0.014 |" in md
    assert "| aug (+ generated clips) | 2 | 0.855 ± 0.007 |" in md
    assert "| 0 | aug | 0.850 | 0.750 | 0.267 | 0.267 | 0.100 | 0.433 | 64 | 3 | ok |" in md
    assert "walrus (4), seal (8)" in md and "**4** generated clips" in md and "mel_snr_db_median 11.5" in md
    assert "Augmentation helps the rare classes" in md and "WARNING" not in md


def test_findings_say_when_augmentation_does_not_help(tmp_path):
    _, study, _, _ = _study(tmp_path / "none", train=FakeTrain(gain=0.0))
    lines = ar.findings(ar.build_table(study["records"], study["rare"], study["minority"]), study["rare"], 4,
                        {"walrus": 3})
    assert lines[0].startswith("**Augmentation did not help** the rare classes: with 4 generated clips per rare "
                               "class their mean recall changed by +0.000")
    assert any(line.startswith("walrus recall: augmented 0.010 vs base 0.010 (Δ +0.000") for line in lines)
    assert "Resolution: one test clip is 0.333 of walrus's recall (3 clips)." in lines
    assert not any(line.startswith("minority recall") for line in lines)  # the same classes as "rare recall"

    _, study, _, _ = _study(tmp_path / "noise", train=FakeTrain(gain=0.01, jitter=0.3))
    lines = ar.findings(ar.build_table(study["records"], study["rare"], study["minority"]), study["rare"])
    assert lines[0].startswith("**No clear effect**") and any("within the seed spread" in line for line in lines)

    _, study, _, _ = _study(tmp_path / "worse", train=FakeTrain(gain=-0.2))
    lines = ar.findings(ar.build_table(study["records"], study["rare"], study["minority"]), study["rare"])
    assert lines[0].startswith("**Augmentation did not help**")
    assert lines[0].endswith("(beyond the seed spread: it hurts).")

    _, study, _, _ = _study(tmp_path / "one", seeds=1)
    lines = ar.findings(ar.build_table(study["records"], study["rare"], study["minority"]), study["rare"])
    assert lines[0].startswith("**No clear effect**") and any("one seed only" in line for line in lines)


# --------------------------------------------------------------------------------------------- CLI


def _write_recipe(tmp_path, method="diffusion") -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "recipe", "train": {"epochs": 9},
                                    "generative": {"method": method, "sampling_steps": 10}}))
    return str(path)


def _main(tmp_path, monkeypatch, train, *extra):
    monkeypatch.setattr(ar, "_keras_train", train)
    monkeypatch.setattr(ar, "_generate", FakeGenerate())
    out = tmp_path / "study"
    return ar.main(["--out", str(out), "--generator", _write_recipe(tmp_path), "--n", "4", "--epochs", "2",
                    "--generator-epochs", "3", *extra]), out


def test_main_writes_the_report_and_reuses_on_a_second_call(tmp_path, monkeypatch):
    code, out = _main(tmp_path, monkeypatch, FakeTrain())
    assert code == 0
    md = (out / "augment_rare.md").read_text(encoding="utf-8")
    assert "`default-gen-diffusion` (diffusion" in md and "epochs 3): ok" in md and "--generator-epochs 3" in md
    csv = pd.read_csv(out / "augment_rare.csv")
    assert csv["run"].tolist() == ["default-base-s0", "default-aug-s0", "default-base-s1", "default-aug-s1"]
    saved = json.loads((out / "augment_rare.json").read_text(encoding="utf-8"))
    assert saved["info"]["rare"] == ["walrus", "seal"] and saved["info"]["epochs"] == 2
    assert saved["arms"]["aug"]["runs_ok"] == 2 and len(saved["runs"]) == 4
    again = FakeTrain()
    assert _main(tmp_path, monkeypatch, again)[0] == 0 and again.calls == []


def test_main_unknown_rare_class_exits_2_before_the_classifiers(tmp_path, monkeypatch, capsys):
    train = FakeTrain()
    assert _main(tmp_path, monkeypatch, train, "--rare", "dolphin")[0] == 2
    assert train.calls == ["default-gen-diffusion"]
    assert "--rare names classes the data does not have: ['dolphin']" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--n", "0"], ["--seeds", "0"], ["--epochs", "-1"], ["--generator-epochs", "x"]])
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        ar.main(argv)
    assert exit_info.value.code == 2


def test_bad_recipe_or_setting_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ar, "_keras_train", FakeTrain(fail={"never"}))
    assert ar.main(["--out", str(tmp_path), "--generator", _write_recipe(tmp_path, "none")]) == 2
    assert "generative.method" in capsys.readouterr().err
    assert ar.main(["--out", str(tmp_path), "--generator", str(tmp_path / "missing.yaml")]) == 2
    assert ar.main(["--out", str(tmp_path), "--set", "split.bogus=1"]) == 2
    assert ar._keras_train.calls == []


def test_a_failed_run_exits_1_and_is_in_the_table(tmp_path, monkeypatch, capsys):
    train = FakeTrain(fail={"default-aug-s1"})
    code, out = _main(tmp_path, monkeypatch, train)
    assert code == 1 and len(train.calls) == 5  # the others still ran
    assert "failed: default-aug-s1" in capsys.readouterr().err
    md = (out / "augment_rare.md").read_text(encoding="utf-8")
    assert "| 1 | aug | – | – |" in md and "failed: ValueError: boom in default-aug-s1 |" in md
    assert "| aug (+ generated clips) | 1 | 0.850 |" in md  # one seed left: no sd


def test_different_test_clips_are_reported_loudly_and_exit_1(tmp_path, monkeypatch, capsys):
    code, out = _main(tmp_path, monkeypatch, FakeTrain(moved_test={"default-aug-s0"}))
    assert code == 1 and "different test clips" in capsys.readouterr().err
    md = (out / "augment_rare.md").read_text(encoding="utf-8")
    assert "**WARNING: the runs were scored on 2 different test sets**" in md
