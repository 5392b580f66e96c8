"""Real datasets under ../shared/datasets (tests that use them carry the `realdata` marker)."""

from __future__ import annotations

import pathlib

import pytest

SHARED_DATASETS = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def realdata(name: str) -> pathlib.Path:
    """Path of a real dataset under ../shared/datasets, or skip the test."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real data not present: {path}")
    return path
