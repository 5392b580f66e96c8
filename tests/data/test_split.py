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
