"""Shared test settings: deterministic hypothesis runs and fixed torch seeds."""

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
settings.load_profile("svdtrain")

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
