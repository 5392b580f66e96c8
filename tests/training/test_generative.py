"""fit's generative runs (VAE, class-conditional diffusion) end to end on tiny tones, the generate CLI,
and data.generated_root feeding generated clips to a classifier's training split only."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mammalnet import generate as generate_cli
from mammalnet.config import ConfigError
from mammalnet.generative.generator import GeneratorDirError, load_generator
from mammalnet.data.split import GENERATED_GROUP
from mammalnet.training.train import train
from tests.helpers.audio import write_tone_folder
from tests.helpers.configs import tiny_config

TINY_GENERATIVE = ["generative.filters=[8, 16]", "generative.samples_per_class=3", "generative.griffin_lim_iters=4",
                   "generative.latent_projection=tsne"]
TINY_DIFFUSION = ["generative.method=diffusion", "generative.timesteps=50", "generative.sampling_steps=5",
                  "generative.embedding_dim=16"]
RATE, WINDOW = 8000, 4000  # tests.helpers.configs.TINY: 0.5-s windows at 8 kHz


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return write_tone_folder(tmp_path_factory.mktemp("generative") / "tones")


@pytest.fixture(scope="module")
def classifier_dir(tones, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("scorer")
    train(tiny_config(tones, "name=scorer"), workdir, verbose=0)
    return workdir / "saved_models" / "scorer"


@pytest.fixture(scope="module")
def vae_run(tones, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vae")
    metrics = train(tiny_config(tones, "name=vae", "generative.method=vae", "generative.latent_dim=8",
                                "generative.kl_warmup_epochs=1", *TINY_GENERATIVE, epochs=2), workdir, verbose=0)
    return workdir, metrics


@pytest.fixture(scope="module")
def diffusion_run(tones, classifier_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("diffusion")
    metrics = train(tiny_config(tones, "name=ddpm", *TINY_DIFFUSION, *TINY_GENERATIVE,
                                f"generative.quality_classifier={classifier_dir}", epochs=2), workdir, verbose=0)
    return workdir, metrics


def _wav_facts(paths):
    facts = {(sf.info(p).samplerate, sf.info(p).frames) for p in paths}
    return facts


def test_vae_run_leaves_a_generator_a_report_and_audible_clips(vae_run):
    workdir, metrics = vae_run
    report = workdir / "runs" / "vae" / "report"
    assert metrics["method"] == "vae" and len(metrics["history"]["loss"]) == 2
    assert metrics["params"] == load_generator(workdir / "saved_models" / "vae").model.count_params()
    assert {"reconstruction_mse", "kl", "val_loss"} <= set(metrics["history"])
    quality = json.loads((report / "quality.json").read_text())
    # the second epoch reconstructs better than the first
    assert metrics["history"]["reconstruction_mse"][1] < metrics["history"]["reconstruction_mse"][0]
    reconstruction = quality["reconstruction"]
    assert math.isfinite(reconstruction["mse_patch"]) and reconstruction["mse_patch"] > 0
    assert quality["scored_split"] == "test"
    assert np.isfinite(quality["inversion_real"]["mel_snr_db_median"])
    assert quality["latent_space"] == "VAE latent (z mean)"
    for png in ("reconstructions.png", "generated.png", "latent_tsne.png"):
        assert (report / png).read_bytes().startswith(b"\x89PNG")
    for name in ("low", "mid", "high"):
        wavs = sorted((report / "generated" / name).glob("*.wav"))
        assert len(wavs) == 3 and _wav_facts(wavs) == {(RATE, WINDOW)}
        audio, _ = sf.read(wavs[0])
        assert np.abs(audio).max() > 0.1  # audible, not silence
    assert "| reconstruction | mse_patch |" in (report / "quality.md").read_text()
    info = json.loads((workdir / "saved_models" / "vae" / "generative.json").read_text())
    assert info["method"] == "vae" and set(info["class_latents"]) == {"high", "low", "mid"}
    assert (workdir / "runs" / "vae" / "logs" / "embeddings" / "projector_config.pbtxt").is_file()


def test_diffusion_run_is_scored_by_a_trained_classifier(diffusion_run):
    workdir, metrics = diffusion_run
    scores = metrics["quality"]["classifier"]
    assert set(scores["per_class"]) == {"high", "low", "mid"}
    n = metrics["quality"]["scored_windows"]
    for key in ("accuracy_real", "accuracy_real_inverted"):  # shares of the scored real windows
        assert 0 <= scores[key] <= 1 and scores[key] * n == pytest.approx(round(scores[key] * n))
    # over the 9 generated clips: the mean of the three classes' accuracies (3 clips each)
    per_class_accuracy = [v["accuracy"] for v in scores["per_class"].values()]
    assert scores["accuracy_generated"] == pytest.approx(np.mean(per_class_accuracy))
    for key in ("frechet_generated_vs_real", "frechet_inverted_real_vs_real", "frechet_train_vs_real"):
        assert math.isfinite(scores[key]) and scores[key] >= 0
    # two real samples are closer to each other than two tiny epochs' generated clips are to real ones
    assert scores["frechet_train_vs_real"] < scores["frechet_generated_vs_real"]
    assert all(v["n"] == 3 for v in scores["per_class"].values())
    assert "reconstruction" not in metrics["quality"]  # a DDPM reconstructs nothing
    assert metrics["quality"]["latent_space"] == "quality classifier embedding"
    generator = load_generator(workdir / "saved_models" / "ddpm")
    a, b = generator.sample("low", 2, seed=1), generator.sample("low", 2, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, *generator.spec.shape) and a.min() >= -1 and a.max() <= 1


def test_generate_cli_writes_wavs_and_a_grid(vae_run, tmp_path, capsys):
    workdir, _ = vae_run
    out = tmp_path / "gen"
    assert generate_cli.main([str(workdir / "saved_models" / "vae"), "--class", "mid", "--n", "4",
                              "--out", str(out), "--seed", "3"]) == 0
    wavs = sorted((out / "mid").glob("*.wav"))
    assert len(wavs) == 4 and _wav_facts(wavs) == {(RATE, WINDOW)}
    assert (out / "generated.png").read_bytes().startswith(b"\x89PNG")
    assert "mid: 4 clips at 8000 Hz" in capsys.readouterr().out
    assert generate_cli.main([str(workdir / "saved_models" / "vae"), "--class", "all", "--n", "1",
                              "--out", str(tmp_path / "all"), "--mel-solver", "pinv"]) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir() if p.is_dir()) == ["high", "low", "mid"]


def test_generate_cli_errors_name_the_problem(vae_run, classifier_dir, tmp_path, capsys):
    workdir, _ = vae_run
    model_dir = str(workdir / "saved_models" / "vae")
    assert generate_cli.main([model_dir, "--class", "orca", "--n", "2", "--out", str(tmp_path / "x")]) == 1
    assert "Received: class='orca'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # checked before anything is written
    assert generate_cli.main([str(classifier_dir), "--class", "low", "--out", str(tmp_path / "y")]) == 1
    assert "not a generative model folder, missing generator.keras (a classifier export" in capsys.readouterr().err
    assert generate_cli.main([model_dir, "--class", "low", "--n", "0", "--out", str(tmp_path / "z")]) == 2
    with pytest.raises(GeneratorDirError, match="missing generator.keras"):
        load_generator(tmp_path)


def test_generated_clips_join_the_training_split_only(tones, vae_run, classifier_dir, tmp_path):
    workdir, _ = vae_run
    generated = tmp_path / "generated"
    generate_cli.generate(workdir / "saved_models" / "vae", ["low", "high"], 3, generated)
    aug = train(tiny_config(tones, "name=aug", "export.enabled=false", f"data.generated_root={generated}", epochs=1),
                tmp_path, verbose=0)
    base = json.loads((classifier_dir / "metrics.json").read_text())  # the same pipeline without them
    m_base = pd.read_csv(classifier_dir.parents[1] / "runs" / "scorer" / "manifest.csv")
    m_aug = pd.read_csv(tmp_path / "runs" / "aug" / "manifest.csv")
    extra = m_aug[m_aug["group"].astype(str).str.startswith(GENERATED_GROUP)]
    assert len(extra) == 6 and set(extra["split"]) == {"train"} and sorted(set(extra["label"])) == ["high", "low"]
    real = m_aug.drop(extra.index)
    for split in ("val", "test"):  # the real clips' split is the one made without the generated clips
        assert sorted(real.loc[real["split"] == split, "path"]) == sorted(m_base.loc[m_base["split"] == split, "path"])
    assert aug["split_protocol"]["generated_train_clips"] == 6
    assert aug["minority_classes"] == base["minority_classes"]  # rarity is judged on real clips


def test_generated_root_with_a_class_the_data_lacks_is_refused(tones, tmp_path):
    (tmp_path / "gen" / "narwhal").mkdir(parents=True)
    sf.write(tmp_path / "gen" / "narwhal" / "a.wav", np.zeros(4000, np.float32) + 0.1, RATE)
    with pytest.raises(ValueError, match=r"not classes of the data .*\['narwhal'\]"):
        train(tiny_config(tones, "name=bad", f"data.generated_root={tmp_path / 'gen'}", epochs=1), tmp_path, verbose=0)


@pytest.mark.parametrize("setting, message", [
    ("generative.method=gan", "generative.method must be one of"),
    ("generative.filters=[8, 16, 32, 64]", "frontend.n_mels must be a multiple of 2\\*\\*len"),
    ("generative.sampling_steps=2000", "sampling_steps must be <= generative.timesteps"),
    ("generative.class_dropout=1.0", "generative.class_dropout must be in"),
    ("generative.timesteps=1", "generative.timesteps must be at least 2"),
    ("generative.mel_solver=lstsq", "generative.mel_solver must be one of"),
])
def test_bad_generative_settings_are_config_errors(tones, setting, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(tones, "generative.method=vae", setting)


def test_a_generative_run_refuses_pretraining(tones):
    with pytest.raises(ConfigError, match="a generative run trains no classifier"):
        tiny_config(tones, "generative.method=diffusion", "pretrain.method=simclr")
