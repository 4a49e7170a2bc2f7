"""Shared test settings: deterministic hypothesis runs and fixed torch seeds.

Set SVDTRAIN_HYPOTHESIS_PROFILE=thorough for a long randomized search (not for CI).
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "svdtrain",
    deadline=None,
    derandomize=True,  # fixed examples: the suite is reproducible run to run
    database=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", parent=settings.get_profile("svdtrain"), derandomize=False, max_examples=400)
settings.load_profile(os.environ.get("SVDTRAIN_HYPOTHESIS_PROFILE", "svdtrain"))

torch.set_num_threads(1)  # 2-core CI: tiny ops run faster (and the demo test ~5x faster) single-threaded


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """``tmp_path``, with ``tmp_path/work`` as the working directory (far from this repository),
    ``tmp_path/home`` as a home without a cache folder, and $SVDTRAIN_DATA unset."""
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SVDTRAIN_DATA", raising=False)
    return tmp_path
