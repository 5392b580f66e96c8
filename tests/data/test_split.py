import pandas as pd
import pytest

from mammalnet.data.split import assign_splits, check_no_leak


def _manifest(n_per_class=(40, 30, 20, 2), groups_per_class=8):
    rows = []
    for c, n in enumerate(n_per_class):
        for i in range(n):
            rows.append({"path": f"c{c}/{i}.wav", "label": f"c{c}", "group": f"c{c}_g{i % groups_per_class}",
                         "start_s": 0.0})
    return pd.DataFrame(rows)


def test_stratified_split_fractions_and_rare_class():
    df, protocol = assign_splits(_manifest(), method="stratified", seed=1)
    counts = df.groupby(["label", "split"]).size().unstack(fill_value=0)
    assert counts.loc["c0", "test"] == 6 and counts.loc["c0", "val"] == 6  # 15% of 40
    assert set(df.loc[df.label == "c3", "split"]) == {"train"}
    assert protocol["train_only_classes"] == ["c3"]
    assert sum(protocol["counts"].values()) == len(df)
    check_no_leak(df)


def test_group_split_keeps_groups_together():
    df, protocol = assign_splits(_manifest(), method="group", seed=0)
    spread = df.groupby("group")["split"].nunique()
    assert (spread == 1).all()
    assert protocol["groups_across_splits"] == 0
    assert {"train", "val", "test"} <= set(df["split"])


def test_split_is_deterministic_and_seeded():
    a, _ = assign_splits(_manifest(), seed=3)
    b, _ = assign_splits(_manifest(), seed=3)
    c, _ = assign_splits(_manifest(), seed=4)
    assert (a["split"] == b["split"]).all()
    assert not (a["split"] == c["split"]).all()


def test_split_errors():
    with pytest.raises(ValueError, match="method"):
        assign_splits(_manifest(), method="random")
    with pytest.raises(ValueError, match="needs at least 7 groups. Received: 6 groups"):
        assign_splits(_manifest(n_per_class=(6, 6), groups_per_class=3), method="group")


def test_leak_detected():
    df = pd.DataFrame({"path": ["a", "a"], "start_s": [0.0, 0.0], "split": ["train", "test"]})
    with pytest.raises(ValueError, match="more than one split"):
        check_no_leak(df)


def test_all_classes_too_rare_to_split_stay_in_train():
    df, protocol = assign_splits(_manifest(n_per_class=(2, 1)))
    assert set(df["split"]) == {"train"}
    assert protocol["train_only_classes"] == ["c0", "c1"]


def test_identical_audio_stays_on_one_side():
    df = _manifest(n_per_class=(40, 30))
    # every clip of c0 has a twin at another path with the same content hash
    df["audio_hash"] = [f"h{i // 2}" if label == "c0" else f"u{i}" for i, label in enumerate(df["label"])]
    df["end_s"] = float("nan")
    for seed in range(5):
        out, protocol = assign_splits(df, seed=seed)
        assert (out.groupby("audio_hash")["split"].nunique() == 1).all()
        assert protocol["identical_audio_merged"] == 20
        assert protocol["counts"]["test"] == (out["split"] == "test").sum() > 0


def test_group_split_merges_groups_joined_by_identical_audio():
    df = _manifest(n_per_class=(40, 30))
    df["end_s"] = float("nan")
    df["audio_hash"] = [f"u{i}" for i in range(len(df))]
    df.loc[[0, 9], "audio_hash"] = "same"  # c0_g0 and c0_g1 share one clip: they must land together
    out, _ = assign_splits(df, method="group", seed=0)
    assert out.loc[out.group.isin(["c0_g0", "c0_g1"]), "split"].nunique() == 1


def test_group_regex_from_file_names():
    from mammalnet.data.split import apply_group_regex

    df = pd.DataFrame({"path": ["/d/a/6101100A.wav", "/d/b/6101100B.wav", "/d/a/7200300A.wav", "/d/x.wav"],
                       "group": ["", "", "", ""]})
    out, unmatched = apply_group_regex(df, r"^(\d{5})")
    assert list(out["group"]) == ["61011", "61011", "72003", "/d/x.wav"]
    assert unmatched == 1
    out, _ = apply_group_regex(df, r"^\d{3}")
    assert list(out["group"][:3]) == ["610", "610", "720"]


def test_fixed_split_from_file(tmp_path):
    df = _manifest(n_per_class=(4, 4))
    df["path"] = [str(tmp_path / p) for p in df["path"]]
    names = ["train", "validate", "test", "TRAIN"] * 2
    pd.DataFrame({"file": [p.split(str(tmp_path) + "/")[1] for p in df["path"]], "split": names}).to_csv(
        tmp_path / "split.csv", index=False)
    out, protocol = assign_splits(df, method="fixed", split_file=tmp_path / "split.csv")
    assert list(out["split"]) == ["train", "val", "test", "train"] * 2
    assert protocol["unit"] == "given" and protocol["counts"] == {"train": 4, "val": 2, "test": 2}


def test_fixed_split_errors(tmp_path):
    df = _manifest(n_per_class=(2,))
    df["path"] = [str(tmp_path / p) for p in df["path"]]
    pd.DataFrame({"file": ["c0/0.wav"], "split": ["train"]}).to_csv(tmp_path / "split.csv", index=False)
    with pytest.raises(ValueError, match="1 clip\\(s\\) have no split .*c0/1.wav"):
        assign_splits(df, method="fixed", split_file=tmp_path / "split.csv")
    pd.DataFrame({"file": ["c0/0.wav", "c0/1.wav"], "split": ["train", "holdout"]}).to_csv(
        tmp_path / "split.csv", index=False)
    with pytest.raises(ValueError, match="c0/1.wav: unknown split 'holdout'"):
        assign_splits(df, method="fixed", split_file=tmp_path / "split.csv")
    with pytest.raises(ValueError, match="split file not found"):
        assign_splits(df, method="fixed", split_file=tmp_path / "nope.csv")


def test_fixed_split_refuses_identical_audio_in_train_and_test():
    df = _manifest(n_per_class=(3,))
    df["split"] = ["train", "test", "val"]
    df["end_s"] = float("nan")
    df["audio_hash"] = ["h0", "h0", "h1"]
    with pytest.raises(ValueError, match="c0/0.wav \\(train\\) == c0/1.wav \\(test\\)"):
        assign_splits(df, method="fixed")


def test_many_small_classes_still_get_val_and_test_per_class():
    # 31 classes of 3-5 clips: a 15% stratified draw has fewer clips than classes (sklearn refuses)
    df = _manifest(n_per_class=[3 + i % 3 for i in range(31)])
    out, protocol = assign_splits(df, seed=0)
    counts = out.groupby(["label", "split"]).size().unstack(fill_value=0)
    assert (counts[["train", "val", "test"]] >= 1).all().all()
    assert protocol["train_only_classes"] == []


def test_hold_out_labels_keeps_nested_stratified_subsets():
    from mammalnet.data.split import UNLABELLED, hold_out_labels

    df = pd.DataFrame({"path": [f"{i}.wav" for i in range(60)], "label": ["a"] * 35 + ["b"] * 10 + ["c"] * 5 + ["a", "b", "c"] * 3 + ["a"],
                       "split": ["train"] * 50 + ["test"] * 10})
    kept = {}
    for fraction in (0.01, 0.25, 0.5, 1.0):
        out, info = hold_out_labels(df, fraction, seed=3)
        kept[fraction] = set(out.index[out["split"] == "train"])
        assert (out["split"].iloc[50:] == "test").all()  # held-out clips untouched
        counts = out[out["split"] == "train"]["label"].value_counts()
        assert counts.min() >= 1 and info["labelled_train_clips"] == len(kept[fraction])
        assert info["unlabelled_train_clips"] == (out["split"] == UNLABELLED).sum()
    assert kept[0.01] <= kept[0.25] <= kept[0.5] <= kept[1.0] and len(kept[1.0]) == 50
    assert len(kept[0.01]) == 3  # one per class
    with pytest.raises(ValueError, match="fraction must be in"):
        hold_out_labels(df, 0.0)
