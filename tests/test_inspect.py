"""python -m mammalnet.inspect on small generated folders: report fields, PNGs, warnings, exit codes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mammalnet import inspect as inspect_cli
from tests.helpers.audio import tone_clip
from tests.helpers.data import realdata

PNGS = ("class_counts.png", "sample_rates.png", "durations.png")
# A 3 kHz band edge: every clip here is recorded at >= 8 kHz, so none is below the band.
BAND = ["--set", "frontend.high_hz=3000", "--set", "audio.sample_rate_hz=8000", "--set", "audio.window_s=1"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMMALNET_CACHE", str(tmp_path / "cache"))


def write_folder(root, plan: dict) -> None:
    """plan: class -> list of (sample_rate_hz, duration_s), one file each, in <root>/<class>/."""
    for c, (label, clips) in enumerate(plan.items()):
        (root / label).mkdir(parents=True)
        for i, (rate, seconds) in enumerate(clips):
            sf.write(root / label / f"g{i % 6}_{label}_{i}.wav",
                     tone_clip(300 + 200 * c, rate, seconds, seed=100 * c + i), rate, subtype="PCM_16")


def run(argv, capsys) -> tuple[int, str, str]:
    code = inspect_cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def confounded(tmp_path):
    """Class `a` recorded at 8 kHz in 1-s clips, `b` at 16 kHz in 2-s clips: the settings give it away."""
    root = tmp_path / "confounded"
    write_folder(root, {"a": [(8000, 1.0)] * 12, "b": [(16000, 2.0)] * 12})
    return root


@pytest.fixture
def balanced(tmp_path):
    """Both classes recorded with the same mix of settings: metadata says nothing about the label."""
    root = tmp_path / "balanced"
    mix = [(8000, 1.0), (16000, 1.0), (8000, 1.5), (16000, 1.5)] * 5
    write_folder(root, {"a": mix, "b": mix})
    return root


def test_confounded_folder_warns_and_writes_report(confounded, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run([confounded, "--out", out, *BAND], capsys)
    assert code == 0
    assert "WARNING: recording metadata alone predicts the label" in stdout
    assert "grouped split" in stdout and "per recording setting" in stdout
    report = json.loads((out / "inspect.json").read_text())
    for png in PNGS:
        assert (out / png).stat().st_size > 1000
    assert (out / "skipped.csv").is_file()
    assert report["totals"]["clips"] == 24 and report["totals"]["classes"] == 2
    assert report["classes"]["a"]["sample_rates_hz"] == {"8000": 12}
    assert report["classes"]["b"]["duration_s"]["median"] == pytest.approx(2.0)
    assert sum(report["classes"]["a"]["splits"].values()) == 12
    chosen = report["confounders"]["chosen"]
    assert chosen["warning"] and report["confounders"]["warning"]
    assert chosen["results"]["rate+duration"]["accuracy"] == 1.0
    assert chosen["majority_rate"] <= 0.6 and chosen["scored_on"] == "test"
    assert "stratified" not in report["confounders"]  # the chosen split is already clip-stratified
    assert report["suggested"]["audio.sample_rate_hz"]["value"] == 8000
    assert report["suggested"]["frontend.high_hz"]["value"] == 3800
    assert report["suggested"]["audio.window_s"]["value"] in (1.0, 1.5, 2.0)


def test_balanced_control_does_not_warn(balanced, tmp_path, capsys):
    code, stdout, _ = run([balanced, "--out", tmp_path / "out", *BAND, "--set", "split.test_fraction=0.4"], capsys)
    assert code == 0
    assert "WARNING" not in stdout
    report = json.loads((tmp_path / "out" / "inspect.json").read_text())
    chosen = report["confounders"]["chosen"]
    assert not chosen["warning"]
    assert chosen["results"]["rate+duration+channels+bit_depth"]["accuracy"] < chosen["majority_rate"] + 0.15


def test_grouped_split_also_reports_clip_stratified(confounded, tmp_path, capsys):
    code, stdout, _ = run([confounded, "--out", tmp_path / "out", "--json", *BAND,
                           "--set", "split.method=group", "--set", "split.group_regex=^(g\\d)_(?:a|b)"], capsys)
    assert code == 0
    report = json.loads(stdout)
    assert report["split"]["method"] == "group"
    assert {"chosen", "stratified"} <= set(report["confounders"])
    assert report["confounders"]["stratified"]["split"] == "stratified"
    assert report["confounders"]["stratified"]["results"]["rate+duration"]["accuracy"] == 1.0


def test_json_flag_prints_the_report_and_warns_on_stderr(confounded, tmp_path, capsys):
    code, stdout, stderr = run([confounded, "--out", tmp_path / "out", "--json", *BAND], capsys)
    assert code == 0
    assert json.loads(stdout)["outputs"] == sorted(["inspect.json", "skipped.csv", *PNGS])
    assert "WARNING: recording metadata alone predicts the label" in stderr


def test_skips_duplicates_and_short_clips_are_counted(tmp_path, capsys):
    root = tmp_path / "data"
    write_folder(root, {"a": [(8000, 0.5), (8000, 1.5)] * 4, "b": [(16000, 1.5)] * 8})
    (root / "a" / "broken.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    sf.write(root / "a" / "nan.wav", np.full(800, np.nan, np.float32), 8000, subtype="FLOAT")
    shutil.copy(root / "a" / "g1_a_1.wav", root / "a" / "copy_in_class.wav")
    shutil.copy(root / "b" / "g0_b_0.wav", root / "a" / "mislabelled_copy.wav")
    (root / "slow").mkdir()
    sf.write(root / "slow" / "tape.wav", tone_clip(200, 4000, 1.5), 4000)
    code, _, _ = run([root, "--out", tmp_path / "out", *BAND], capsys)
    assert code == 0
    report = json.loads((tmp_path / "out" / "inspect.json").read_text())
    by_reason = report["skipped"]["by_reason"]
    assert by_reason["contains NaN or Inf samples"] == 1
    assert by_reason["identical audio"] == 2
    assert by_reason["recorded at N Hz: below 2 x frontend.high_hz = N Hz"] == 1
    assert any(k.startswith("not a readable audio file") for k in by_reason)
    assert "slow" not in report["classes"]  # its only clip is below the band
    assert report["totals"]["below_band"] == 1
    dup = report["duplicates"]
    assert dup["within_class"] == {"sets": 1, "clips": 2, "per_class": {"a": 2}}
    assert dup["across_classes"]["files_skipped"] == 2
    assert dup["across_splits"]["clips"] == 0
    assert report["classes"]["a"]["shorter_than_window"] == 4
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert len(skipped) == report["skipped"]["count"] == 5


def test_keep_mode_counts_below_band_without_skipping(tmp_path, capsys):
    root = tmp_path / "data"
    write_folder(root, {"a": [(8000, 1.0)] * 4, "b": [(4000, 1.0)] * 4})
    code, stdout, _ = run([root, "--out", tmp_path / "out", *BAND, "--set", "data.below_band=keep"], capsys)
    assert code == 0
    report = json.loads((tmp_path / "out" / "inspect.json").read_text())
    assert report["classes"]["b"]["below_band"] == 4 and report["classes"]["b"]["clips"] == 4
    assert report["skipped"]["count"] == 0
    assert report["suggested"]["audio.sample_rate_hz"]["value"] == 4000


def test_all_below_band_still_reports_settings(tmp_path, capsys):
    root = tmp_path / "data"
    write_folder(root, {"a": [(8000, 1.0)] * 3, "b": [(8000, 1.0)] * 3})
    code, stdout, _ = run([root, "--out", tmp_path / "out"], capsys)  # default.yaml: 12 kHz band edge
    assert code == 0
    assert "every clip is recorded below 2 x frontend.high_hz = 24000 Hz" in stdout
    assert "--set audio.sample_rate_hz=8000 (now 24000)" in stdout


def test_strict_makes_a_bad_file_a_data_error(tmp_path, capsys):
    root = tmp_path / "data"
    write_folder(root, {"a": [(8000, 1.0)] * 3, "b": [(8000, 1.0)] * 3})
    sf.write(root / "b" / "zero.wav", np.zeros(800, np.float32), 8000)
    code, _, stderr = run([root, "--out", tmp_path / "out", "--strict", *BAND], capsys)
    assert code == 1
    assert "zero.wav" in stderr and "silent: every sample is zero" in stderr
    assert "zero.wav" in (tmp_path / "out" / "skipped.csv").read_text()


def test_pipeline_yaml_with_data(confounded, tmp_path, capsys):
    yaml_path = tmp_path / "p.yaml"
    yaml_path.write_text("name: mine\ndata:\n  source: folder\naudio:\n  sample_rate_hz: 8000\n"
                         "frontend:\n  high_hz: 3000\n")
    code, stdout, _ = run([yaml_path, "--data", confounded, "--out", tmp_path / "out"], capsys)
    assert code == 0 and stdout.startswith("mine: 24 clips")


@pytest.mark.parametrize("argv", [
    ["{data}", "--set", "audio.no_such_key=1"],
    ["{tmp}/missing.yaml"],
    ["{data}", "--data", "{data}"],
    ["{data}", "--set", "frontend.high_hz=99999"],
])
def test_config_errors_exit_2(confounded, tmp_path, capsys, argv):
    argv = [a.format(data=confounded, tmp=tmp_path) for a in argv]
    code, _, stderr = run(argv + ["--out", tmp_path / "out"], capsys)
    assert code == 2 and stderr.startswith("mammalnet.inspect: ")


def test_unreadable_source_exits_1(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    (root / "labels.csv").write_text("file,species\nmissing.wav,a\n")
    code, _, stderr = run([root, "--out", tmp_path / "out", *BAND], capsys)
    assert code == 1 and "missing.wav" in stderr


def test_suggest_settings_rule():
    rates = [4000] * 3 + [22050] * 10 + [44100] * 87
    df = pd.DataFrame({"sample_rate_hz": rates, "start_s": 0.0, "end_s": np.nan, "duration_s": [0.1] * 50 + [0.3] * 50})
    config = inspect_cli.resolve_config(inspect_cli.parse_args(["pipelines/default.yaml"]))
    suggested = inspect_cli.suggest_settings(df, config)
    assert suggested["audio.sample_rate_hz"]["value"] == 22050  # 97% reach it; 87% reach 44.1 kHz
    assert suggested["frontend.high_hz"]["value"] == 10500
    assert suggested["audio.window_s"]["value"] == 0.25  # median 0.2 s, clamped


@pytest.mark.parametrize("reason,kind", [
    ("silent: every sample is zero", "silent: every sample is zero"),
    ("truncated: header says 8000 frames, file holds 6000", "truncated: header says N frames"),
    ("identical audio to /x/y.wav labelled b", "identical audio"),
    ("not a readable audio file (Error opening)", "not a readable audio file"),
])
def test_reason_kind(reason, kind):
    assert inspect_cli.reason_kind(reason) == kind


@pytest.mark.realdata
def test_watkins10_metadata_confounder(tmp_path, capsys):
    data = realdata("watkins10")
    code, stdout, _ = run(["pipelines/watkins.yaml", "--data", data, "--out", tmp_path / "out", "--json"], capsys)
    assert code == 0
    chosen = json.loads(stdout)["confounders"]["chosen"]
    assert chosen["warning"] and chosen["results"]["rate+duration"]["accuracy"] > 0.7
