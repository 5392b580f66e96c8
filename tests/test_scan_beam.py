"""scan as a Beam pipeline (DirectRunner): the local scan's outputs, per recording and per block, failures, resume."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("apache_beam")

from mammalnet.detector import Detector  # noqa: E402
from mammalnet.raven import read_table  # noqa: E402
from mammalnet.scan import beam as scan_beam  # noqa: E402
from mammalnet.scan import cli as scan_cli  # noqa: E402
from mammalnet.scan import ledger  # noqa: E402
from mammalnet.scan import local as scan_local  # noqa: E402
from mammalnet.scan.settings import read_step_samples, resolve_settings  # noqa: E402
from tests.helpers.tone_detector import SR, export_tone_detector, write_recording  # noqa: E402

# 2-s reads (4 windows at the 0.5-s hop, one batch), elements of 4 s: the 10-14 s tone of main.wav
# crosses the element boundary at 12 s, so the merge has to join two elements' windows.
SETTINGS = ["--block-s", "2", "--batch-windows", "4", "--save-scores"]
BEAM_BLOCK_S = 3.0  # rounded up to two reads
ELEMENT_S = 4.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tone_detector(tmp_path_factory.mktemp("beam_model"))


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """main.wav (60 s), deep/other.wav (20 s at 8 kHz), a corrupt and a truncated file; plus a missing PATH."""
    folder = tmp_path_factory.mktemp("archive") / "audio"
    (folder / "deep").mkdir(parents=True)
    write_recording(folder / "main.wav")
    write_recording(folder / "deep" / "other.wav", [("low", 5.0, 8.0)], duration_s=20.0, rate=8000, seed=1)
    (folder / "broken.wav").write_bytes(b"RIFF not a wav at all")
    truncated = folder / "truncated.wav"
    sf.write(truncated, np.zeros(SR * 4, np.float32), SR, subtype="PCM_16")
    truncated.write_bytes(truncated.read_bytes()[:-SR])  # the data chunk is shorter than its header says
    return [folder, folder.parent / "nowhere.wav"]


@pytest.fixture(scope="module")
def local(model_dir, archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    assert scan_cli.main([str(model_dir), *map(str, archive), "--out", str(out), *SETTINGS]) == 1
    return out


@pytest.fixture(scope="module")
def per_recording(model_dir, archive, tmp_path_factory):
    """The CLI with a pass-through Beam option; returns (out, exit code, stderr)."""
    out = tmp_path_factory.mktemp("beam") / "out"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = scan_cli.main([str(model_dir), *map(str, archive), "--out", str(out), *SETTINGS,
                          "--runner", "DirectRunner", "--direct_num_workers", "1"])
    return out, code, stderr.getvalue()


@pytest.fixture(scope="module")
def per_block(model_dir, archive, tmp_path_factory):
    """The API in block mode; returns (out, summary, counters, Detectors built)."""
    out = tmp_path_factory.mktemp("blocks") / "out"
    built = []

    class CountingScorer(Detector):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    counters = {}
    with pytest.MonkeyPatch.context() as patch:  # the in-process runner shares this module
        patch.setattr(scan_local, "Detector", CountingScorer)
        patch.setattr(scan_beam, "Detector", CountingScorer)
        summary = scan_beam.scan_paths_beam(model_dir, archive, out, beam_block_s=BEAM_BLOCK_S, block_s=2.0,
                                            batch_windows=4, save_scores=True, counters=counters)
    return out, summary, counters, len(built)


def _files(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def _summary(out):
    summary = json.loads((out / ledger.SUMMARY).read_text())
    return {k: v for k, v in summary.items() if k not in ("wall_s", "real_time_factor")}


def assert_same_outputs(a, b, *, summary=True):
    """Every output file equal: text byte for byte, scores array for array, scan.json (unless summary
    is False) but for its times."""
    assert _files(a) == _files(b)
    for name in _files(a):
        if name.endswith(".npz"):
            x, y = ledger.load_scores(a / name), ledger.load_scores(b / name)
            assert x["class_names"] == y["class_names"] and x["window_s"] == y["window_s"]
            np.testing.assert_array_equal(x["starts_s"], y["starts_s"])
            np.testing.assert_array_equal(x["probs"], y["probs"])
        elif name == ledger.SUMMARY:
            assert not summary or _summary(a) == _summary(b)
        else:
            assert (a / name).read_text() == (b / name).read_text(), name


def test_local_scan_of_the_archive(local):
    summary = _summary(local)
    assert summary["recordings"] == {"total": 5, "done": 2, "skipped": 0, "failed": 3}
    assert {os.path.basename(f["file"]) for f in summary["failures"]} == {"broken.wav", "truncated.wav",
                                                                          "nowhere.wav"}
    assert summary["detections_per_class"] == {"low": 3, "high": 1}


def test_per_recording_pipeline_writes_what_the_local_scan_writes(local, per_recording):
    out, code, stderr = per_recording
    assert code == 1  # failed files: reported, not fatal
    assert "recordings_done=2" in stderr and "recordings_failed=3" in stderr
    assert_same_outputs(local, out)


def test_block_elements_give_the_per_recording_results(local, per_block):
    out, summary, counters, built = per_block
    assert_same_outputs(local, out)
    assert summary["failures"] == _summary(local)["failures"]
    # main.wav 60 s + other.wav 20 s in 4-s elements; truncated.wav's one element fails, broken.wav at planning
    assert counters["blocks_scored"] == (60 + 20) / ELEMENT_S
    assert counters["windows_scored"] == 119 + 39
    assert (counters["recordings_done"], counters["recordings_failed"]) == (2, 3)
    assert "recordings_skipped" not in counters
    # the model is loaded by the launcher and once per scoring DoFn instance, not once per element
    assert 2 <= built <= 3 < counters["blocks_scored"]
    # the 10-14 s tone spans two elements and is still one event, as in the local scan
    events = read_table(str(out / "tables" / "main.selections.txt"))
    begins, ends = events["Begin Time (s)"].astype(float), events["End Time (s)"].astype(float)
    assert ((begins < 3 * ELEMENT_S) & (ends > 3 * ELEMENT_S)).sum() == 1


def test_resume_skips_finished_recordings_of_a_local_scan(model_dir, archive, local, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(local, out)
    stale = out / "tables" / ".main.selections.txt.123.tmp"
    stale.write_text("left by a killed run")
    kwargs = dict(beam_block_s=BEAM_BLOCK_S, block_s=2.0, batch_windows=4, save_scores=True)
    summary = scan_beam.scan_paths_beam(model_dir, archive, out, **kwargs)
    assert summary["recordings"] == {"total": 5, "done": 0, "skipped": 2, "failed": 3}
    assert not stale.exists()
    assert_same_outputs(local, out, summary=False)

    (out / "ledger" / "other.json").unlink()  # other.wav was not finished
    counters = {}
    summary = scan_beam.scan_paths_beam(model_dir, archive, out, counters=counters, **kwargs)
    assert {f["name"]: f["status"] for f in summary["files"]} == {"main": "skipped", "other": "done"}
    assert counters["blocks_scored"] == 20 / ELEMENT_S and counters["recordings_skipped"] == 1
    assert (out / ledger.DETECTIONS_CSV).read_text() == (local / ledger.DETECTIONS_CSV).read_text()


def test_local_scan_does_not_import_apache_beam(model_dir, archive, tmp_path):
    code = ("import sys; from mammalnet.scan import cli; "
            f"rc = cli.main([{str(model_dir)!r}, {str(archive[0] / 'main.wav')!r}, '--out', {str(tmp_path)!r}]); "
            "print(rc, 'apache_beam' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.stdout.split()[-2:] == ["0", "False"], done.stderr[-2000:]


def test_bad_beam_arguments(model_dir, archive, tmp_path, capsys):
    main = str(archive[0] / "main.wav")
    with pytest.raises(SystemExit):  # a pipeline option without --runner
        scan_cli.main([str(model_dir), main, "--out", str(tmp_path), "--direct_num_workers", "2"])
    assert "need --runner" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        scan_cli.main([str(model_dir), main, "--out", str(tmp_path), "--beam-block-s", "60"])
    assert scan_cli.main([str(model_dir), "gs://bucket/a.wav", "--out", str(tmp_path), "--runner", "DirectRunner"]) == 2
    assert "Received: path='gs://bucket/a.wav'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="beam_block_s"):
        scan_beam.scan_paths_beam(model_dir, [main], tmp_path, beam_block_s=0.0)


def test_a_part_of_a_recording_must_start_on_the_read_grid(model_dir, archive):
    scorer = Detector(model_dir, batch_windows=4, threads=1)
    settings = resolve_settings(scorer.card, batch_windows=4, block_s=2.0, threads=1)
    step = read_step_samples(scorer.card, settings)
    assert step == 4 * SR // 2  # 4 windows at the 0.5-s hop
    # a read holds as many whole batches for every thread
    assert read_step_samples(scorer.card, resolve_settings(scorer.card, batch_windows=4, block_s=2.0,
                                                                      threads=2)) == 2 * step
    main = archive[0] / "main.wav"
    whole = np.concatenate([p for _, p in scan_local.score_windows(scorer, settings, main)])
    part = np.concatenate([p for _, p in scan_local.score_windows(scorer, settings, main, start_sample=3 * step,
                                                            stop_sample=5 * step)])
    np.testing.assert_array_equal(part, whole[12:20])
    with pytest.raises(ValueError, match="start_sample"):
        next(scan_local.score_windows(scorer, settings, main, start_sample=step + 1))
