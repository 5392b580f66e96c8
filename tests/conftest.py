"""Shared fixtures: tiny synthetic audio written on the fly (no real data needed).

Builders that test modules call directly live in tests/helpers/.
"""

from __future__ import annotations

import os
import pathlib

import pytest

from tests.helpers.audio import write_tone_folder


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Audit facts and generated data of a test session stay out of the user's ~/.cache/mammalnet."""
    previous = os.environ.get("MAMMALNET_CACHE")
    os.environ["MAMMALNET_CACHE"] = str(tmp_path_factory.mktemp("mammalnet_cache"))
    yield
    if previous is None:
        os.environ.pop("MAMMALNET_CACHE", None)
    else:
        os.environ["MAMMALNET_CACHE"] = previous


@pytest.fixture
def tone_folder(tmp_path) -> pathlib.Path:
    """<tmp>/tones/<label>/*.wav: three classes of tones at mixed sample rates and lengths."""
    return write_tone_folder(tmp_path / "tones")
