"""scan CLI: tones at known times in long recordings -> Raven tables, combined table, CSV, resume, failures."""

import json
import math
import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mammalnet.audio.io import audio_info
from mammalnet.card import ModelDirError
from mammalnet.data.sources.raven import read_raven
from mammalnet.detector import Detector, load_keras_model
from mammalnet.edge.events import merge_events
from mammalnet.raven import SCAN_COLUMNS, read_table
from mammalnet.scan import cli as scan_cli
from mammalnet.scan import ledger
from mammalnet.scan import local as scan_local
from mammalnet.scan.settings import resolve_settings
from tests.helpers.tone_detector import CLASSES, SR, TONES, WINDOW, export_tone_detector, write_recording


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tone_detector(tmp_path_factory.mktemp("scan_model"))


@pytest.fixture
def recordings(tmp_path):
    folder = tmp_path / "audio"
    (folder / "deep").mkdir(parents=True)
    main = write_recording(folder / "main.wav")
    # 8 kHz: resampled to the model rate; 20 s with one low tone
    other = write_recording(folder / "deep" / "other.wav", [("low", 5.0, 8.0)], duration_s=20.0, rate=8000, seed=1)
    return folder, main, other


def _events(table: pd.DataFrame):
    return [(r["Species"], float(r["Begin Time (s)"]), float(r["End Time (s)"])) for _, r in table.iterrows()]


def _run(model_dir, paths, out, *extra):
    return scan_cli.main([str(model_dir), *map(str, paths), "--out", str(out), *extra])


def test_events_tables_combined_table_and_csv(model_dir, recordings, tmp_path, capsys):
    folder, main, other = recordings
    out = tmp_path / "out"
    assert _run(model_dir, [folder], out) == 0
    err = capsys.readouterr().err
    assert "2/2 recordings" in err and "audio-h/s" in err

    table = read_table(str(out / "tables" / "main.selections.txt"))
    assert list(table.columns) == list(SCAN_COLUMNS)
    events = _events(table)
    # background is ignored by default; each tone is one event within half a window of the truth
    assert [e[0] for e in events] == [label for label, _, _ in TONES]
    for (label, begin, end), (_, got_begin, got_end) in zip(TONES, events):
        assert begin - 0.5 <= got_begin <= begin and end <= got_end <= end + 0.5
    assert set(table["Begin File"]) == {"main.wav"} and set(table["View"]) == {"Spectrogram 1"}
    assert table["Low Freq (Hz)"].astype(float).eq(0).all() and table["High Freq (Hz)"].astype(float).eq(SR / 2).all()
    assert table["Selection"].tolist() == ["1", "2", "3"]
    assert (table["Score"].astype(float) > 0.5).all()
    (other_event,) = _events(read_table(str(out / "tables" / "other.selections.txt")))
    assert other_event[0] == "low" and 4.5 <= other_event[1] <= 5.0 and 8.0 <= other_event[2] <= 8.5

    # the combined table lays the recordings end to end in scan order (main, then deep/other)
    combined = read_table(str(out / ledger.COMBINED_TABLE))
    assert combined["Selection"].tolist() == ["1", "2", "3", "4"]
    assert combined["Begin File"].tolist() == ["main.wav"] * 3 + ["other.wav"]
    last = combined.iloc[-1]
    assert float(last["File Offset (s)"]) == pytest.approx(other_event[1])
    assert float(last["Begin Time (s)"]) == pytest.approx(60.0 + other_event[1])
    assert float(combined.iloc[0]["Begin Time (s)"]) == float(combined.iloc[0]["File Offset (s)"])

    csv = pd.read_csv(out / ledger.DETECTIONS_CSV)
    assert list(csv.columns) == list(ledger.CSV_COLUMNS)
    assert csv["file"].tolist() == [os.path.abspath(main)] * 3 + [os.path.abspath(other)]
    assert csv["begin_s"].tolist() == pytest.approx([e[1] for e in events] + [other_event[1]])
    assert (csv["windows"] >= 1).all() and (csv["mean_score"] <= csv["score"] + 1e-9).all()

    summary = json.loads((out / ledger.SUMMARY).read_text())
    assert summary["recordings"] == {"total": 2, "done": 2, "skipped": 0, "failed": 0}
    assert summary["detections_per_class"] == {"low": 3, "high": 1}
    assert summary["audio_hours"]["scanned"] == pytest.approx(80 / 3600)
    assert summary["settings"]["hop_s"] == 0.5 and summary["settings"]["ignore"] == ["background"]
    assert summary["failures"] == []
    # the 80 s scanned per second of the scan's own wall time
    assert math.isfinite(summary["wall_s"]) and summary["wall_s"] > 0
    assert summary["real_time_factor"] == pytest.approx(80 / summary["wall_s"])


def test_tables_read_back_as_raven_training_data(model_dir, recordings, tmp_path):
    folder, main, _ = recordings
    out = tmp_path / "out"
    assert _run(model_dir, [main], out) == 0
    shutil.copy(out / "tables" / "main.selections.txt", folder / "main.Table.1.selections.txt")
    manifest = read_raven(folder)
    assert manifest["label"].tolist() == [label for label, _, _ in TONES]
    assert set(manifest["path"]) == {str(main)}


def test_per_class_thresholds_and_ignored_classes(model_dir, recordings, tmp_path):
    _, main, _ = recordings
    assert _run(model_dir, [main], tmp_path / "a", "--threshold", "0.5", "--threshold", "high=0.99999") == 0
    assert [e[0] for e in _events(read_table(str(tmp_path / "a" / "tables" / "main.selections.txt")))] == ["low", "low"]
    # an explicit ignore list replaces the default: background is reported, low is not
    assert _run(model_dir, [main], tmp_path / "b", "--ignore-class", "low") == 0
    labels = {e[0] for e in _events(read_table(str(tmp_path / "b" / "tables" / "main.selections.txt")))}
    assert labels == {"background", "high"}
    assert _run(model_dir, [main], tmp_path / "c", "--threshold", "nosuch=0.5") == 2
    with pytest.raises(SystemExit):
        _run(model_dir, [main], tmp_path / "d", "--threshold", "1.5")


def test_thresholds_and_band_come_from_audio_json(model_dir, recordings, tmp_path):
    _, main, _ = recordings
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    audio = json.loads((model / "audio.json").read_text())
    audio.update(thresholds={"background": 0.5, "low": 0.99999, "high": 0.5}, band_hz=[300, 1800],
                 background_classes=["background"])
    (model / "audio.json").write_text(json.dumps(audio))
    assert _run(model, [main], tmp_path / "out") == 0
    table = read_table(str(tmp_path / "out" / "tables" / "main.selections.txt"))
    assert [e[0] for e in _events(table)] == ["high"]
    assert table[["Low Freq (Hz)", "High Freq (Hz)"]].astype(float).values.tolist() == [[300.0, 1800.0]]


def test_block_batch_size_and_threads_do_not_change_events(model_dir, recordings, tmp_path):
    folder, main, other = recordings
    runs = {}
    for name, extra in (("big", ["--block-s", "600", "--batch-windows", "256", "--threads", "1"]),
                        ("small", ["--block-s", "3.2", "--batch-windows", "5", "--threads", "3"])):
        assert _run(model_dir, [folder], tmp_path / name, *extra, "--save-scores") == 0
        runs[name] = tmp_path / name
    # at the model rate, blocks are exact: same windows, same scores, same table text
    big, small = (ledger.load_scores(runs[n] / "scores" / "main.npz") for n in ("big", "small"))
    np.testing.assert_array_equal(big["starts_s"], small["starts_s"])
    np.testing.assert_allclose(big["probs"], small["probs"], atol=1e-6)
    assert (runs["big"] / "tables" / "main.selections.txt").read_text() == \
        (runs["small"] / "tables" / "main.selections.txt").read_text()
    # resampled blockwise equals resampled whole, to float rounding
    a, b = (read_table(str(runs[n] / "tables" / "other.selections.txt")) for n in ("big", "small"))
    assert a[["Species", "Begin Time (s)", "End Time (s)"]].equals(b[["Species", "Begin Time (s)", "End Time (s)"]])
    assert a["Score"].astype(float).values == pytest.approx(b["Score"].astype(float).values, abs=1e-4)


def test_saved_scores_remerge_to_the_same_events(model_dir, recordings, tmp_path):
    _, main, _ = recordings
    out = tmp_path / "out"
    assert _run(model_dir, [main], out, "--save-scores", "--merge-gap-s", "1.0") == 0
    scores = ledger.load_scores(out / "scores" / "main.npz")
    assert scores["class_names"] == CLASSES and scores["window_s"] == 1.0
    assert scores["starts_s"].tolist() == pytest.approx(list(np.arange(119) * 0.5))  # (60 - 1) / 0.5 + 1
    events = merge_events(scores["starts_s"], scores["probs"], CLASSES, 1.0, 0.5, merge_gap_s=1.0,
                          ignore=["background"])
    table = read_table(str(out / "tables" / "main.selections.txt"))
    assert [(e.label, round(e.begin_s, 6), round(min(e.end_s, 60.0), 6)) for e in events] == _events(table)


def test_same_stem_in_two_folders_gets_two_tables(model_dir, tmp_path):
    for sub in ("site_a", "site_b"):
        (tmp_path / sub).mkdir()
        write_recording(tmp_path / sub / "0001.wav", [("high", 2.0, 4.0)], duration_s=6.0)
    out = tmp_path / "out"
    assert _run(model_dir, [tmp_path / "site_a", tmp_path / "site_b"], out) == 0
    tables = sorted(p.name for p in (out / "tables").iterdir())
    assert len(tables) == 2 and all(t.startswith("0001-") for t in tables)
    combined = read_table(str(out / ledger.COMBINED_TABLE))
    assert combined["Begin File"].tolist() == ["0001.wav", "0001.wav"]
    assert float(combined["Begin Time (s)"].iloc[1]) == pytest.approx(6.0 + float(combined["File Offset (s)"].iloc[1]))


def test_resume_skips_finished_rescans_changed_and_ignores_stale_temporaries(model_dir, recordings, tmp_path):
    folder, main, other = recordings
    out = tmp_path / "out"
    assert _run(model_dir, [folder], out) == 0
    first_csv = (out / ledger.DETECTIONS_CSV).read_text()

    stale = out / "tables" / ".main.selections.txt.abc123.tmp"  # what a killed run leaves
    stale.write_text((out / "tables" / "main.selections.txt").read_text())
    assert _run(model_dir, [folder], out) == 0
    summary = json.loads((out / ledger.SUMMARY).read_text())
    assert summary["recordings"]["done"] == 0 and summary["recordings"]["skipped"] == 2
    assert not stale.exists() and (out / ledger.DETECTIONS_CSV).read_text() == first_csv

    write_recording(other, [("high", 1.0, 4.0)], duration_s=20.0, rate=8000, seed=2)  # the file changed
    assert _run(model_dir, [folder], out) == 0
    summary = json.loads((out / ledger.SUMMARY).read_text())
    assert {f["name"]: f["status"] for f in summary["files"]} == {"main": "skipped", "other": "done"}
    assert [e[0] for e in _events(read_table(str(out / "tables" / "other.selections.txt")))] == ["high"]
    assert summary["detections_per_class"] == {"low": 2, "high": 2}

    assert _run(model_dir, [folder], out, "--merge-gap-s", "40") == 0  # settings changed: everything again
    summary = json.loads((out / ledger.SUMMARY).read_text())
    assert summary["recordings"]["done"] == 2
    assert [e[0] for e in _events(read_table(str(out / "tables" / "main.selections.txt")))] == ["low", "high"]
    assert _run(model_dir, [folder], out, "--merge-gap-s", "40", "--no-resume") == 0
    assert json.loads((out / ledger.SUMMARY).read_text())["recordings"]["done"] == 2


def test_a_killed_scan_loses_and_duplicates_nothing(model_dir, recordings, tmp_path, monkeypatch):
    folder, main, other = recordings
    out = tmp_path / "out"
    real = scan_local.scan_recording

    def dies_on_other(scorer, settings, path, **kwargs):
        if os.path.basename(path) == "other.wav":
            raise KeyboardInterrupt
        return real(scorer, settings, path, **kwargs)

    monkeypatch.setattr(scan_local, "scan_recording", dies_on_other)
    with pytest.raises(KeyboardInterrupt):
        _run(model_dir, [folder], out)
    assert not (out / "ledger" / "other.json").exists() and (out / "ledger" / "main.json").exists()
    monkeypatch.setattr(scan_local, "scan_recording", real)
    assert _run(model_dir, [folder], out) == 0
    summary = json.loads((out / ledger.SUMMARY).read_text())
    assert {f["name"]: f["status"] for f in summary["files"]} == {"main": "skipped", "other": "done"}
    assert len(pd.read_csv(out / ledger.DETECTIONS_CSV)) == 4
    assert not [p for p in out.rglob("*.tmp")]


def test_corrupt_and_missing_files_are_recorded_and_the_others_run(model_dir, recordings, tmp_path, capsys):
    folder, main, other = recordings
    (folder / "broken.wav").write_bytes(b"RIFF not a wav at all")
    truncated = folder / "truncated.wav"
    sf.write(truncated, np.zeros(SR * 4, np.float32), SR, subtype="PCM_16")
    truncated.write_bytes(truncated.read_bytes()[:-SR])  # the data chunk is shorter than its header says
    out = tmp_path / "out"
    assert _run(model_dir, [folder, tmp_path / "nowhere.wav"], out) == 1
    assert "broken.wav" in capsys.readouterr().err
    summary = json.loads((out / ledger.SUMMARY).read_text())
    assert summary["recordings"] == {"total": 5, "done": 2, "skipped": 0, "failed": 3}
    reasons = {os.path.basename(f["file"]): f["reason"] for f in summary["failures"]}
    assert set(reasons) == {"broken.wav", "truncated.wav", "nowhere.wav"}
    assert "not a readable audio file" in reasons["broken.wav"] and "truncated" in reasons["truncated.wav"]
    assert (out / "tables" / "main.selections.txt").is_file() and (out / "tables" / "other.selections.txt").is_file()


def test_bad_model_dir_exits_2(recordings, tmp_path, capsys):
    _, main, _ = recordings
    assert _run(tmp_path, [main], tmp_path / "out") == 2
    assert "missing model.keras" in capsys.readouterr().err


def test_tflite_backend_gives_the_same_events(model_dir, recordings, tmp_path):
    _, main, _ = recordings
    assert _run(model_dir, [main], tmp_path / "k") == 0
    assert _run(model_dir, [main], tmp_path / "t", "--backend", "tflite") == 0
    keras_events, tflite_events = (_events(read_table(str(tmp_path / n / "tables" / "main.selections.txt")))
                                   for n in ("k", "t"))
    assert keras_events == tflite_events


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("backend", ["keras", "tflite"])
def test_scorer_batches_and_padded_tail_give_the_models_outputs(model_dir, backend, threads):
    scorer = Detector(model_dir, batch_windows=32, backend=backend, threads=threads)
    assert scorer.tail_windows == 2  # 37 windows: batches of 32, 2, 2 and 2 (padded), dealt to the threads
    windows = (0.2 * np.random.default_rng(3).standard_normal((37, WINDOW))).astype(np.float32)
    model, _ = load_keras_model(model_dir)
    np.testing.assert_allclose(scorer(windows), np.asarray(model(windows)), atol=1e-6)
    assert scorer(windows[:0]).shape == (0, len(CLASSES))


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_threads_must_be_a_positive_integer(model_dir, threads):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        Detector(model_dir, threads=threads)


def test_threads_flag_is_checked_by_argparse(capsys):
    with pytest.raises(SystemExit):
        scan_cli.build_parser().parse_args(["MODEL", "AUDIO", "--out", "OUT", "--threads", "0"])
    assert "--threads" in capsys.readouterr().err


def test_progress_is_reported_after_every_block_on_a_terminal(model_dir, recordings, monkeypatch):
    import io

    folder, main, _ = recordings

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    blocks = []
    detector = Detector(model_dir, batch_windows=4)
    settings = resolve_settings(detector.card, block_s=3.2, batch_windows=4)
    list(scan_local.score_windows(detector, settings, main, on_block=blocks.append))
    assert len(blocks) > 3 and sum(blocks) == pytest.approx(audio_info(str(main)).duration_s, abs=0.01)

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    scan_local.scan_paths(model_dir, [main], folder / "out", block_s=3.2, batch_windows=4)
    text = terminal.getvalue()
    in_place = [part for part in text.split("\r") if " at " in part]  # rewritten after each block
    assert len(in_place) >= len(blocks) and "main.wav at 0.01 h" in text
    final = text.split("\r")[-1]  # the recording's own line, written over the in-place one
    assert final.startswith("\033[Kscan: 1/1 recordings (1 scanned, 0 skipped, 0 failed), 0.017 audio-h scanned")
    assert final.endswith(" audio-h/s\n")


def test_detector_checks_its_folder_and_its_input(model_dir, tmp_path):
    keras_detector, tflite_detector = Detector(model_dir, threads=1), Detector(model_dir, backend="tflite", threads=1)
    assert Detector(model_dir, threads=1).fingerprint == keras_detector.fingerprint  # what a resumed scan matches
    assert keras_detector.fingerprint != tflite_detector.fingerprint  # each backend reads its own model file
    with pytest.raises(ValueError, match=rf"windows must be \[k, window_samples={WINDOW}\]"):
        keras_detector(np.zeros((2, WINDOW // 2), np.float32))
    with pytest.raises(ModelDirError, match="needs model_int8.tflite, which is missing"):
        Detector(model_dir, backend="tflite", tflite_file="model_int8.tflite")
    with pytest.raises(ValueError, match="backend must be one of"):
        Detector(model_dir, backend="onnx")
    no_card = tmp_path / "no_card"
    shutil.copytree(model_dir, no_card)
    (no_card / "audio.json").unlink()
    with pytest.raises(ModelDirError, match="missing audio.json"):
        Detector(no_card)
