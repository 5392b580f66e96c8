import glob
import os

import pytest

from mammalnet import config as config_lib
from mammalnet.config import ConfigError
from mammalnet.fit import parse_args
from mammalnet.resolve import DEFAULT_PIPELINE, resolve_config

PIPELINES = os.path.dirname(DEFAULT_PIPELINE)


def test_default_pipeline_loads_and_validates():
    cfg = config_lib.load(DEFAULT_PIPELINE).validate()
    assert cfg.data.source == "synthetic"
    assert cfg.window_samples == int(cfg.audio.window_s * cfg.audio.sample_rate_hz)
    assert cfg.hop_samples == int(cfg.audio.hop_s * cfg.audio.sample_rate_hz)


def test_hop_defaults_to_the_window():
    cfg = config_lib.PipelineConfig()
    assert cfg.audio.hop_s is None
    assert cfg.hop_samples == cfg.window_samples


def test_unknown_key_is_an_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ntrain:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match="train.epoch"):
        config_lib.load(path)


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match="train.epochs"):
        config_lib.from_dict({"train": {"epochs": "many"}})


def test_overrides_parse_yaml_values_and_reject_unknown_keys():
    cfg = config_lib.apply_overrides(config_lib.PipelineConfig(),
                                     ["train.learning_rate=3e-4", "audio.hop_s=0.5", "model.params.dropout=0.1"])
    assert cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.audio.hop_s == 0.5
    assert cfg.model.params == {"dropout": 0.1}
    with pytest.raises(ConfigError, match="audio.windows"):
        config_lib.apply_overrides(cfg, ["audio.windows=3"])
    with pytest.raises(ConfigError, match="key=value"):
        config_lib.apply_overrides(cfg, ["audio.window_s"])


def test_validate_names_bad_values():
    cfg = config_lib.PipelineConfig()
    cfg.frontend.high_hz = 20000.0
    with pytest.raises(ConfigError, match="frontend.high_hz=20000"):
        cfg.validate()
    cfg = config_lib.PipelineConfig()
    cfg.split.method = "group"
    cfg.validate()  # the synthetic ocean brings its own groups (recording sessions)
    cfg.data.source, cfg.data.root = "folder", "/data"
    with pytest.raises(ConfigError, match="group_column or split.group_regex"):
        cfg.validate()
    cfg.split.group_regex = "^(.{5})"
    cfg.validate()
    cfg.split.group_regex = "^(.{5}"
    with pytest.raises(ConfigError, match="split.group_regex is not a valid regex"):
        cfg.validate()


@pytest.mark.parametrize("override, message", [
    ("split.method=fixed", "split.split_file"),
    ("audio.pad_mode=mirror", "audio.pad_mode"),
    ("data.below_band=upsample", "data.below_band"),
    ("data.source=xlsx", "data.source"),
    ("data.source=raven", "needs data.root"),
])
def test_validate_new_data_options(override, message):
    cfg = config_lib.apply_overrides(config_lib.PipelineConfig(), [override])
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_dump_load_round_trip(tmp_path):
    cfg = config_lib.apply_overrides(config_lib.PipelineConfig(), ["name=x", "frontend.top_db=null"])
    config_lib.dump(cfg, tmp_path / "p.yaml")
    assert config_lib.load(tmp_path / "p.yaml") == cfg


def test_fit_cli_data_switches_source(tone_folder):
    cfg = resolve_config(parse_args(["--data", str(tone_folder), "--epochs", "2"]))
    assert cfg.data.source == "folder" and cfg.data.root == str(tone_folder)
    assert cfg.train.epochs == 2


def test_fit_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "--workdir" in capsys.readouterr().out


def test_train_hop_cuts_the_same_stretch_more_densely():
    from mammalnet.training.prepare import window_spec

    cfg = config_lib.apply_overrides(config_lib.PipelineConfig(), [
        "audio.window_s=2", "audio.hop_s=1", "audio.train_hop_s=0.5", "audio.max_windows_per_clip=9"])
    train, evaluate = window_spec(cfg, training=True), window_spec(cfg)
    assert (train.hop_samples, evaluate.hop_samples) == (12000, 24000)
    # evaluation covers 2 + 8 * 1 = 10 s; training windows reach the same 10 s
    assert evaluate.max_windows_per_clip == 9 and train.max_windows_per_clip == 17
    with pytest.raises(ConfigError, match="audio.train_hop_s=0"):
        config_lib.apply_overrides(cfg, ["audio.train_hop_s=0"]).validate()


@pytest.mark.parametrize("pipeline", sorted(glob.glob(os.path.join(PIPELINES, "*.yaml"))))
def test_every_shipped_pipeline_loads_and_validates(pipeline):
    cfg = config_lib.load(pipeline)
    if cfg.data.source != "synthetic":
        cfg = config_lib.apply_overrides(cfg, ["data.root=/data"])
    cfg.validate()
    assert cfg.name == os.path.splitext(os.path.basename(pipeline))[0]


def test_shipped_pipelines_resolve_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no pipelines/ here: the names must reach the shipped ones
    shipped = config_lib.shipped_pipelines_dir()
    assert os.path.samefile(config_lib.pipeline_path(None), shipped / "default.yaml")
    assert os.path.samefile(DEFAULT_PIPELINE, shipped / "default.yaml")
    for name in ("watkins", "watkins.yaml", "pipelines/watkins.yaml", os.path.join("pipelines", "watkins.yaml")):
        assert os.path.samefile(config_lib.pipeline_path(name), shipped / "watkins.yaml"), name
    assert os.path.samefile(config_lib.pipeline_path("compare/zoo.yaml"), shipped / "compare" / "zoo.yaml")
    assert resolve_config(parse_args(["vae", "--epochs", "1"])).name == config_lib.load(shipped / "vae.yaml").name
    # nothing of that name: returned as given, and the error names it
    assert config_lib.pipeline_path("no_such_pipeline") == "no_such_pipeline"
    assert config_lib.pipeline_path("../watkins.yaml") == "../watkins.yaml"
    with pytest.raises(ConfigError, match="no_such_pipeline"):
        resolve_config(parse_args(["no_such_pipeline"]))


def test_a_file_in_the_current_folder_wins_over_the_shipped_pipeline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "watkins.yaml").write_text("name: mine\n")
    assert config_lib.pipeline_path("watkins.yaml") == "watkins.yaml"
    assert resolve_config(parse_args(["watkins.yaml"])).name == "mine"


def test_installed_pipelines_are_package_data(tmp_path, monkeypatch):
    """Installed (not a source checkout), the pipelines are mammalnet/pipelines/ inside the package."""
    package = tmp_path / "site-packages" / "mammalnet"
    (package / "pipelines" / "compare").mkdir(parents=True)
    (package / "pipelines" / "default.yaml").write_text("name: packaged\n")
    (package / "pipelines" / "compare" / "zoo.yaml").write_text("{}\n")
    monkeypatch.setattr(config_lib.importlib.resources, "files",
                        lambda name: package if name == "mammalnet" else pytest.fail(name))
    assert config_lib.shipped_pipelines_dir() == package / "pipelines"
    assert config_lib.pipeline_path(None) == str(package / "pipelines" / "default.yaml")
    assert config_lib.pipeline_path("compare/zoo") == str(package / "pipelines" / "compare" / "zoo.yaml")
    assert config_lib.load(config_lib.pipeline_path(None)).name == "packaged"


def test_fit_cli_logs_to_stderr_and_quiet_keeps_errors(capsys):
    import logging

    from mammalnet.fit import main as fit_main

    assert parse_args(["-v"]).log_level == logging.DEBUG and parse_args(["-q"]).log_level == logging.WARNING
    for flags in ([], ["-q"]):
        assert fit_main([*flags, "no_such_pipeline"]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "mammalnet.fit: pipeline file not found. Received: no_such_pipeline" in captured.err
