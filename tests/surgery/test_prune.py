"""prune: energy / threshold / rank rules on whole models, physical shrinking, errors."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from svdtrain import decompose, prune, singular_values


def _model_with_spectra(*spectra):
    """Sequential of SVDLinear layers with orthonormal factors and the given s (any order/sign)."""
    model = decompose(nn.Sequential(*[nn.Linear(len(s), len(s)) for s in spectra]))
    with torch.no_grad():
        for layer, s in zip(model, spectra):
            layer.s.copy_(torch.tensor(s))
    return model


def _shapes(layer):
    return tuple(layer.U.shape), tuple(layer.s.shape), tuple(layer.Vh.shape)


def test_energy_rule_on_known_spectra():
    model = _model_with_spectra([2.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    kept = prune(model, energy=1 / 6)
    # [2,1,1]: 5/6 needed -> 2; [1,1,1,1]: 5/6*4 = 3.33 -> 4; all-zero -> 1
    assert kept == {"0": 2, "1": 4, "2": 1}
    assert [layer.rank for layer in model] == [2, 4, 1]
    assert _shapes(model[0]) == ((3, 2), (2,), (2, 3))
    assert _shapes(model[2]) == ((3, 1), (1,), (1, 3))


def test_energy_zero_keeps_everything_including_zeros():
    model = _model_with_spectra([5.0, 0.0, 0.0], [0.0, 0.0])
    assert prune(model, energy=0.0) == {"0": 3, "1": 2}
    assert _shapes(model[0]) == ((3, 3), (3,), (3, 3))


def test_threshold_rule_and_at_least_one_kept():
    model = _model_with_spectra([3.0, 2.0, 1.0], [0.5, 0.1], [-4.0, 0.2, 1.0])
    assert prune(model, threshold=1.0) == {"0": 3, "1": 1, "2": 2}
    assert model[2].s.tolist() == [-4.0, 1.0]


def test_threshold_zero_keeps_all():
    model = _model_with_spectra([3.0, 0.0])
    assert prune(model, threshold=0) == {"0": 2}


def test_rank_int_and_dict():
    model = _model_with_spectra([3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0])
    assert prune(model, rank=2) == {"0": 2, "1": 2}
    model = _model_with_spectra([3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0])
    assert prune(model, rank={"1": 3}) == {"0": 3, "1": 3}  # unnamed layers are left alone
    assert prune(model, rank={"0": 1, "1": 10}) == {"0": 1, "1": 3}  # above current rank keeps whole
    assert prune(model, rank=99) == {"0": 1, "1": 3}


def test_prune_keeps_largest_magnitudes_of_unsorted_negative_s_with_their_vectors():
    model = _model_with_spectra([0.5, -4.0, 1.0, 3.0, -0.1])
    layer = model[0]
    U, Vh, s = layer.U.detach().clone(), layer.Vh.detach().clone(), layer.s.detach().clone()
    prune(model, rank=2)
    assert layer.s.tolist() == [-4.0, 3.0]
    keep = [1, 3]
    assert torch.equal(layer.U, U[:, keep]) and torch.equal(layer.Vh, Vh[keep, :])
    expected = (U[:, keep] * s[keep]) @ Vh[keep, :]
    torch.testing.assert_close(layer.weight_matrix(), expected)


def test_energy_on_unsorted_negative_s():
    model = _model_with_spectra([1.0, -2.0, 1.0])
    assert prune(model, energy=1 / 6) == {"0": 2}
    assert sorted(model[0].s.abs().tolist()) == [1.0, 2.0]
    assert model[0].s[0].item() == -2.0


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_prune_physically_shrinks_parameters_and_keeps_bias_and_training(scheme):
    model = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(8 * 2 * 2, 6))
    decompose(model, scheme=scheme)
    before = sum(p.numel() for p in model.parameters())
    bias = model[0].bias.detach().clone()
    kept = prune(model, rank={"0": 2, "2": 3})
    conv, fc = model[0], model[2]
    m = 8 if scheme == "channel" else 4 * 3
    n = 4 * 9 if scheme == "channel" else 8 * 3
    assert kept == {"0": 2, "2": 3}
    assert _shapes(conv) == ((m, 2), (2,), (2, n))
    assert _shapes(fc) == ((6, 3), (3,), (3, 32))
    assert torch.equal(conv.bias, bias)
    after = sum(p.numel() for p in model.parameters())
    assert after == before - (conv.full_rank - 2) * (m + n + 1) - (6 - 3) * (6 + 32 + 1)
    out = model(torch.randn(2, 4, 4, 4)).sum()
    out.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_prune_returns_names_of_all_layers_nested():
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 4)), nn.ModuleDict({"x": nn.Linear(4, 2)}))
    decompose(model)
    assert prune(model, energy=0.0) == {"0.0": 4, "1.x": 2}
    assert set(singular_values(model)) == {"0.0", "1.x"}


def test_prune_shared_layer_once():
    fc = nn.Linear(4, 4)
    model = decompose(nn.Sequential(fc, nn.Tanh(), fc))
    assert model[0] is model[2]
    assert prune(model, rank=2) == {"0": 2}
    assert model[2].rank == 2


@given(
    spectrum=st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=1, max_size=8),
    rule=st.sampled_from(["energy", "threshold", "rank"]),
    value=st.floats(0, 0.99),
)
def test_prune_keeps_the_top_magnitudes(spectrum, rule, value):
    model = _model_with_spectra(spectrum)
    arg = {"energy": value, "threshold": value * 10, "rank": int(value * 10) + 1}[rule]
    k = prune(model, **{rule: arg})["0"]
    assert 1 <= k <= len(spectrum)
    kept = sorted(model[0].s.abs().tolist(), reverse=True)
    assert kept == sorted((abs(v) for v in spectrum), reverse=True)[:k]
    assert model[0].s.abs().tolist() == kept  # stored by decreasing magnitude


@pytest.mark.parametrize("energy", [1.0, 1.2, -0.1, float("nan")])
def test_bad_energy_raises(energy):
    model = _model_with_spectra([1.0, 2.0])
    with pytest.raises(ValueError, match=r"energy must be a number in \[0, 1\)"):
        prune(model, energy=energy)
    assert model[0].rank == 2


@pytest.mark.parametrize("threshold", [-1e-9, -3, float("nan")])
def test_bad_threshold_raises(threshold):
    with pytest.raises(ValueError, match="threshold must be a number >= 0"):
        prune(_model_with_spectra([1.0, 2.0]), threshold=threshold)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, r"give exactly one of energy=, threshold=, rank= \(got none\)"),
        ({"energy": 0.1, "threshold": 0.1}, r"exactly one .*got energy, threshold"),
        ({"energy": 0.1, "rank": 2}, r"exactly one .*got energy, rank"),
        ({"energy": 0.1, "threshold": 1.0, "rank": 1}, r"got energy, threshold, rank"),
    ],
)
def test_none_or_several_rules_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        prune(_model_with_spectra([1.0, 2.0]), **kwargs)


@pytest.mark.parametrize("rank", [0, -1, 1.5, True, "2", {"0": 0}, {"0": 2.0}])
def test_bad_rank_raises(rank):
    model = _model_with_spectra([1.0, 2.0])
    with pytest.raises(ValueError, match=r"rank for '0' must be an integer >= 1"):
        prune(model, rank=rank)
    assert model[0].rank == 2


def test_unknown_layer_name_in_rank_dict_raises_before_changing_anything():
    model = _model_with_spectra([1.0, 2.0], [3.0, 4.0])
    with pytest.raises(ValueError, match=r"unknown SVD layer\(s\): 'head', 'x'"):
        prune(model, rank={"0": 1, "x": 1, "head": 2})
    assert [layer.rank for layer in model] == [2, 2]


def test_model_without_svd_layers_raises():
    with pytest.raises(ValueError, match=r"no SVD layers; call svdtrain\.decompose"):
        prune(nn.Sequential(nn.Linear(3, 3)), energy=0.1)
