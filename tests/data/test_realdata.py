"""Real recordings from ../shared/datasets (skipped in a user's fresh clone, which has none)."""

import numpy as np
import pytest

from mammalnet.data.pipeline import WindowSpec, build_dataset, collect
from mammalnet.data.sources import read_labels_csv
from mammalnet.data.split import assign_splits
from tests.helpers.data import realdata

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def watkins():
    root = realdata("watkins10")
    return read_labels_csv(root / "labels.csv", file_column="file", label_column="label",
                           group_column="source_watkins_id", group_fallback_column="recording_group")


def test_watkins_manifest(watkins):
    assert len(watkins) == 1026
    assert watkins["label"].nunique() == 10
    assert watkins["sample_rate_hz"].min() == 5120 and watkins["sample_rate_hz"].max() == 166600
    # segments of one source recording share a group: nearly every clip has a group-mate
    sizes = watkins.groupby("group")["path"].transform("count")
    assert (sizes >= 2).mean() > 0.95


def test_watkins_grouped_split_keeps_recordings_apart(watkins):
    df, protocol = assign_splits(watkins, method="group")
    assert protocol["groups_across_splits"] == 0
    assert set(df["split"]) == {"train", "val", "test"}
    assert set(df.loc[df.split == "test", "label"]) == set(df["label"])


def test_watkins_decodes_at_every_rate(watkins):
    one_per_rate = watkins.groupby("sample_rate_hz").head(1).reset_index(drop=True)
    spec = WindowSpec(22050, 22050, 22050, max_windows_per_clip=2)
    names = sorted(watkins["label"].unique())
    x, y = collect(build_dataset(one_per_rate, names, spec, batch_size=8, training=False))
    assert x.shape[1] == 22050 and len(x) >= len(one_per_rate)
    assert np.isfinite(x).all() and np.abs(x).max() <= 1.5
    assert (np.abs(x).max(axis=1) > 0).all()  # no window came out silent


def _load_real(pipeline, name, *overrides):
    from mammalnet import config as config_lib
    from mammalnet.data.load import load_manifest
    from mammalnet.data.problems import SkipLog

    cfg = config_lib.apply_overrides(config_lib.load(pipeline), [f"data.root={realdata(name)}", *overrides])
    skips = SkipLog()
    return load_manifest(cfg.validate(), skips), skips


def test_watkins_pipeline_skips_only_recordings_below_its_band():
    manifest, skips = _load_real("pipelines/watkins.yaml", "watkins10")
    assert len(manifest) == 1010 and len(skips) == 16
    assert all("below 2 x frontend.high_hz" in s.reason and "Northern_Right_Whale" in s.path for s in skips)
    assert manifest["audio_hash"].nunique() == 1010  # no duplicate audio in watkins10


def test_srkw_call_types_load_with_their_junk_chunks():
    manifest, skips = _load_real("pipelines/srkw.yaml", "srkw_calltypes")
    assert len(skips) == 0 and len(manifest) == 128 and manifest["label"].nunique() == 31
    assert set(manifest["sample_rate_hz"]) >= {22050, 44100}


def test_watkins31_smoke_loads_one_clip_per_species():
    manifest, skips = _load_real("pipelines/srkw.yaml", "watkins31_smoke", "split.method=stratified")
    assert len(skips) == 0 and len(manifest) == 31 and manifest["label"].nunique() == 31
