"""energy_rank / threshold_rank / importance_order on known spectra, properties and errors."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from svdtrain.linalg import check_energy, check_threshold, energy_rank, importance_order, threshold_rank


@pytest.mark.parametrize(
    "s, energy, expected",
    [
        ([2.0, 1.0, 1.0], 1 / 6, 2),  # top-2 squares 5 = (1 - 1/6) * 6 exactly -> 2, not 3
        ([2.0, 1.0, 1.0], 1 / 6 - 1e-6, 3),
        ([2.0, 1.0, 1.0], 2 / 6, 1),  # top-1 square 4 = (1 - 1/3) * 6 exactly
        ([2.0, 1.0, 1.0], 2 / 6 - 1e-6, 2),
        ([1.0, 1.0, 1.0], 1 / 3, 2),  # float (1 - 1/3) * 3 > 2: an exactly-met target must not add a rank
        ([3.0, 3.0, 3.0], 1 / 3, 2),
        ([1.0, 1.0, 1.0, 1.0], 0.5, 2),
        ([1.0, 1.0, 1.0, 1.0], 0.25, 3),
        ([1.0, 1.0, 1.0, 1.0], 0.0, 4),
        ([3.0, 4.0], 0.36, 1),  # 16/25 = 0.64 = 1 - 0.36
        ([5.0, 0.0, 0.0], 0.0, 3),  # energy 0 keeps all, zeros included
        ([5.0, 0.0, 0.0], 1e-9, 1),
        ([0.0, 0.0, 0.0], 0.5, 1),  # all-zero keeps 1
        ([0.0, 0.0, 0.0], 0.0, 3),
        ([0.0, 0.0, 0.0], 0.999, 1),
        ([1.0, 1.0], 0.999, 1),
        ([7.0], 0.9, 1),
    ],
)
def test_energy_rank_known_spectra(s, energy, expected):
    assert energy_rank(torch.tensor(s), energy) == expected


def test_energy_rank_ignores_order_and_sign():
    assert energy_rank(torch.tensor([1.0, -2.0, 1.0]), 1 / 6) == 2
    assert energy_rank(torch.tensor([0.1, 0.1, -10.0]), 0.01) == 1


@given(
    values=st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=12),
    energy=st.floats(0.0, 0.999),
)
def test_energy_rank_is_minimal_k_meeting_target(values, energy):
    s = torch.tensor(values, dtype=torch.float64)
    k = energy_rank(s, energy)
    assert 1 <= k <= len(values)
    squares = np.sort(np.square(np.array(values, dtype=np.float64)))[::-1]
    total = squares.sum()
    if energy == 0.0:
        assert k == len(values)
        return
    if total == 0:
        assert k == 1
        return
    cumulative = np.cumsum(squares)
    target = (1.0 - energy) * total
    assert cumulative[k - 1] >= target * (1 - 1e-6)
    if k > 1:
        assert cumulative[k - 2] < target * (1 + 1e-12)


@given(values=st.lists(st.floats(0.01, 10), min_size=2, max_size=10), e1=st.floats(0, 0.99), e2=st.floats(0, 0.99))
def test_energy_rank_is_monotone_in_energy(values, e1, e2):
    lo, hi = sorted((e1, e2))
    s = torch.tensor(values)
    assert energy_rank(s, lo) >= energy_rank(s, hi)


@pytest.mark.parametrize(
    "s, threshold, expected",
    [
        ([3.0, 2.0, 1.0], 1.5, 2),
        ([3.0, 2.0, 1.0], 2.0, 2),  # |s| >= t is kept
        ([3.0, 2.0, 1.0], 0.0, 3),
        ([1.0, -3.0, 0.5], 0.9, 2),  # magnitudes
        ([3.0, 2.0, 1.0], 100.0, 1),  # at least one kept
        ([0.0, 0.0], 0.0, 2),
        ([0.0, 0.0], 1e-12, 1),
        ([3.0, 2.0, 1.0], math.inf, 1),
    ],
)
def test_threshold_rank_known(s, threshold, expected):
    assert threshold_rank(torch.tensor(s), threshold) == expected


def test_importance_order_by_magnitude_stable_on_ties():
    s = torch.tensor([0.5, -3.0, 2.0, -2.0, 0.0])
    assert importance_order(s).tolist() == [1, 2, 3, 0, 4]


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.01, -1, float("nan"), "0.1", None, float("inf")])
def test_bad_energy_raises(bad):
    with pytest.raises(ValueError, match=r"energy must be a number in \[0, 1\)"):
        check_energy(bad)
    with pytest.raises(ValueError, match="energy must be"):
        energy_rank(torch.ones(3), bad)


@pytest.mark.parametrize("bad", [-0.1, -1, float("nan"), "1", None])
def test_bad_threshold_raises(bad):
    with pytest.raises(ValueError, match="threshold must be a number >= 0"):
        check_threshold(bad)
    with pytest.raises(ValueError, match="threshold must be"):
        threshold_rank(torch.ones(3), bad)


def test_rank_rules_do_not_track_gradients():
    s = torch.tensor([3.0, 1.0, 0.5], requires_grad=True)
    # squares 9, 1, 0.25 (total 10.25): 9 < 0.9 * 10.25 = 9.225 <= 10 -> 2
    k_energy, k_threshold = energy_rank(s, 0.1), threshold_rank(s, 0.9)
    assert (k_energy, k_threshold) == (2, 2)
    assert type(k_energy) is int and type(k_threshold) is int
