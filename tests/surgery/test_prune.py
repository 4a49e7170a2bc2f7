"""prune: Energy / Threshold / Ranks policies on whole models (keyed by weight name), physical
shrinking of the factors, errors."""

import copy
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from svdtrain import Energy, Ranks, Threshold, decompose, factored_weights, prune, singular_values


def _model_with_spectra(*spectra):
    """Sequential of factored Linear layers with orthonormal factors and the given s (any order/sign)."""
    model = decompose(nn.Sequential(*[nn.Linear(len(s), len(s)) for s in spectra]))
    with torch.no_grad():
        for handle, s in zip(factored_weights(model).values(), spectra):
            handle.s.copy_(torch.tensor(s))
    return model


def _h(model, index):
    """The handle on ``model[index].weight``."""
    return factored_weights(model)[f"{index}.weight"]


def _ranks(model):
    return [handle.rank for handle in factored_weights(model).values()]


def _shapes(handle):
    return tuple(handle.U.shape), tuple(handle.s.shape), tuple(handle.Vh.shape)


def test_energy_rule_on_known_spectra():
    model = _model_with_spectra([2.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    kept = prune(model, Energy(1 / 6))
    # [2,1,1]: 5/6 needed -> 2; [1,1,1,1]: 5/6*4 = 3.33 -> 4; all-zero -> 1
    assert kept == {"0.weight": 2, "1.weight": 4, "2.weight": 1}
    assert _ranks(model) == [2, 4, 1]
    assert _shapes(_h(model, 0)) == ((3, 2), (2,), (2, 3))
    assert _shapes(_h(model, 2)) == ((3, 1), (1,), (1, 3))
    assert model[0].weight.shape == (3, 3)  # the module's weight keeps its shape, at rank 2
    assert torch.linalg.matrix_rank(model[0].weight.detach()) == 2


def test_energy_zero_keeps_everything_including_zeros():
    model = _model_with_spectra([5.0, 0.0, 0.0], [0.0, 0.0])
    assert prune(model, Energy(0.0)) == {"0.weight": 3, "1.weight": 2}
    assert _shapes(_h(model, 0)) == ((3, 3), (3,), (3, 3))


def test_threshold_rule_and_at_least_one_kept():
    model = _model_with_spectra([3.0, 2.0, 1.0], [0.5, 0.1], [-4.0, 0.2, 1.0])
    assert prune(model, Threshold(1.0)) == {"0.weight": 3, "1.weight": 1, "2.weight": 2}
    assert _h(model, 2).s.tolist() == [-4.0, 1.0]


def test_threshold_zero_keeps_all():
    model = _model_with_spectra([3.0, 0.0])
    assert prune(model, Threshold(0)) == {"0.weight": 2}


def test_rank_int_and_dict():
    model = _model_with_spectra([3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0])
    assert prune(model, Ranks(2)) == {"0.weight": 2, "1.weight": 2}
    model = _model_with_spectra([3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0])
    assert prune(model, Ranks({"1.weight": 3})) == {"0.weight": 3, "1.weight": 3}  # unnamed weights are left alone
    assert prune(model, Ranks({"0.weight": 1, "1.weight": 10})) == {"0.weight": 1, "1.weight": 3}  # above: kept whole
    assert prune(model, Ranks(99)) == {"0.weight": 1, "1.weight": 3}


def test_prune_keeps_largest_magnitudes_of_unsorted_negative_s_with_their_vectors():
    model = _model_with_spectra([0.5, -4.0, 1.0, 3.0, -0.1])
    handle = _h(model, 0)
    U, Vh, s = handle.U.detach().clone(), handle.Vh.detach().clone(), handle.s.detach().clone()
    prune(model, Ranks(2))
    assert handle.s.tolist() == [-4.0, 3.0]  # the handle reads the module: never stale
    keep = [1, 3]
    assert torch.equal(handle.U, U[:, keep]) and torch.equal(handle.Vh, Vh[keep, :])
    expected = (U[:, keep] * s[keep]) @ Vh[keep, :]
    torch.testing.assert_close(handle.matrix(), expected)
    torch.testing.assert_close(model[0].weight, expected)


def test_energy_on_unsorted_negative_s():
    model = _model_with_spectra([1.0, -2.0, 1.0])
    assert prune(model, Energy(1 / 6)) == {"0.weight": 2}
    assert sorted(_h(model, 0).s.abs().tolist()) == [1.0, 2.0]
    assert _h(model, 0).s[0].item() == -2.0


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_prune_physically_shrinks_parameters_and_keeps_bias_and_training(scheme):
    model = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(8 * 2 * 2, 6))
    decompose(model, scheme=scheme)
    before = sum(p.numel() for p in model.parameters())
    bias = model[0].bias
    kept = prune(model, Ranks({"0.weight": 2, "2.weight": 3}))
    conv, fc = _h(model, 0), _h(model, 2)
    m = 8 if scheme == "channel" else 4 * 3
    n = 4 * 9 if scheme == "channel" else 8 * 3
    assert kept == {"0.weight": 2, "2.weight": 3}
    assert _shapes(conv) == ((m, 2), (2,), (2, n))
    assert _shapes(fc) == ((6, 3), (3,), (3, 32))
    assert model[0].bias is bias  # only the factors are replaced
    assert model[0].weight.shape == (8, 4, 3, 3) and isinstance(model[0], nn.Conv2d)
    after = sum(p.numel() for p in model.parameters())
    assert after == before - (conv.full_rank - 2) * (m + n + 1) - (6 - 3) * (6 + 32 + 1)
    out = model(torch.randn(2, 4, 4, 4)).sum()
    out.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_prune_returns_names_of_all_weights_nested():
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 4)), nn.ModuleDict({"x": nn.Linear(4, 2)}))
    decompose(model)
    assert prune(model, Energy(0.0)) == {"0.0.weight": 4, "1.x.weight": 2}
    assert set(singular_values(model)) == {"0.0.weight", "1.x.weight"}


def test_prune_shared_layer_once():
    fc = nn.Linear(4, 4)
    model = decompose(nn.Sequential(fc, nn.Tanh(), fc))
    assert model[0] is model[2]
    assert prune(model, Ranks(2)) == {"0.weight": 2}
    assert factored_weights(model[2])["weight"].rank == 2


def test_prune_a_bare_layer():
    lin = decompose(nn.Linear(5, 5))
    assert prune(lin, Ranks(2)) == {"weight": 2}
    assert torch.linalg.matrix_rank(lin.weight.detach()) == 2


@given(
    spectrum=st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=1, max_size=8),
    rule=st.sampled_from(["energy", "threshold", "rank"]),
    value=st.floats(0, 0.99),
)
def test_prune_keeps_the_top_magnitudes(spectrum, rule, value):
    model = _model_with_spectra(spectrum)
    arg = {"energy": value, "threshold": value * 10, "rank": int(value * 10) + 1}[rule]
    k = prune(model, {"energy": Energy, "threshold": Threshold, "rank": Ranks}[rule](arg))["0.weight"]
    assert 1 <= k <= len(spectrum)
    kept = sorted(_h(model, 0).s.abs().tolist(), reverse=True)
    assert kept == sorted((abs(v) for v in spectrum), reverse=True)[:k]
    assert _h(model, 0).s.abs().tolist() == kept  # stored by decreasing magnitude


@pytest.mark.parametrize("energy", [1.0, 1.2, -0.1, float("nan")])
def test_bad_energy_raises(energy):
    model = _model_with_spectra([1.0, 2.0])
    with pytest.raises(ValueError, match=r"energy must be a number in \[0, 1\)"):
        prune(model, Energy(energy))
    assert _h(model, 0).rank == 2


@pytest.mark.parametrize("threshold", [-1e-9, -3, float("nan")])
def test_bad_threshold_raises(threshold):
    with pytest.raises(ValueError, match="threshold must be a number >= 0"):
        prune(_model_with_spectra([1.0, 2.0]), Threshold(threshold))


@pytest.mark.parametrize("rank", [0, -1, 1.5, True, "2", {"0.weight": 0}, {"0.weight": 2.0}])
def test_bad_rank_raises(rank):
    model = _model_with_spectra([1.0, 2.0])
    with pytest.raises(ValueError, match=r"rank for '0\.weight' must be an integer >= 1"):
        prune(model, Ranks(rank))
    assert _h(model, 0).rank == 2


def test_bad_rank_of_a_later_weight_changes_nothing():
    model = _model_with_spectra([1.0, 2.0], [3.0, 4.0])
    with pytest.raises(ValueError, match=r"rank for '1\.weight' must be an integer >= 1"):
        prune(model, Ranks({"0.weight": 1, "1.weight": 0}))
    assert _ranks(model) == [2, 2]


def test_unknown_weight_name_in_rank_dict_raises_before_changing_anything():
    model = _model_with_spectra([1.0, 2.0], [3.0, 4.0])
    with pytest.raises(ValueError, match=r"rank names unknown factored weight\(s\): '0', 'head', 'x\.weight'"):
        prune(model, Ranks({"0.weight": 1, "x.weight": 1, "head": 2, "0": 1}))  # "0": a module, not a weight
    assert _ranks(model) == [2, 2]


def test_model_without_factored_weights_raises():
    with pytest.raises(ValueError, match=r"no factored weights; call svdtrain\.decompose"):
        prune(nn.Sequential(nn.Linear(3, 3)), Energy(0.1))


@pytest.mark.parametrize("policy,got", [("energy", r"'energy' \(str\)"), (None, r"None \(NoneType\)"),
                                        (Energy, "the class Energy")])  # a bare number: the old spelling, below
def test_what_is_not_a_rank_policy_is_named_as_such(policy, got):
    model = _model_with_spectra([1.0, 2.0])
    with pytest.raises(TypeError, match=r"policy must be a rank policy such as Energy\(0\.02\), Threshold.*MacsBudget.*"
                                        r"Speedup.*; got " + got):  # fmt: skip
        prune(model, policy)
    assert _ranks(model) == [2]


def test_diverged_singular_values_of_a_later_weight_change_nothing():
    model = _model_with_spectra([1.0, 2.0], [3.0, float("nan")])
    with pytest.raises(ValueError, match="NaN or inf"):
        prune(model, Energy(0.5))
    assert _ranks(model) == [2, 2]


def test_kept_energy_is_the_share_of_sum_s_squared_the_largest_values_keep():
    from svdtrain.surgery.ranks import kept_energy

    model = decompose(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), init="svd")
    layers = factored_weights(model)
    with torch.no_grad():
        layers["0.weight"].s.copy_(torch.tensor([-3.0, 1.0, 0.0, 2.0]))  # order by |s|: 3, 2, 1, 0
        layers["1.weight"].s.copy_(torch.tensor([1.0, 1.0]))
    total = 9 + 4 + 1 + 0 + 1 + 1
    assert kept_energy(model, {"0.weight": 1, "1.weight": 1}) == pytest.approx((9 + 1) / total)
    assert kept_energy(model, {"0.weight": 2}) == pytest.approx((9 + 4 + 2) / total)  # unnamed: all kept
    assert kept_energy(model, {}) == 1.0


@pytest.mark.parametrize("call, new", [
    (lambda m: prune(m, energy=0.02), "prune(model, Energy(0.02))"),
    (lambda m: prune(m, 0.02), "prune(model, Energy(0.02))"),
    (lambda m: prune(m, threshold=0.1), "prune(model, Threshold(0.1))"),
    (lambda m: prune(m, rank=2), "prune(model, Ranks(2))"),
])  # fmt: skip
def test_the_earlier_releases_spelling_still_prunes_and_names_the_new_one(call, new):
    model = decompose(nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 4)), init="svd")
    reference = copy.deepcopy(model)
    with pytest.warns(DeprecationWarning, match=re.escape(new)):
        ranks = call(model)
    policy = {"E": Energy(0.02), "T": Threshold(0.1), "R": Ranks(2)}[new.split("(model, ")[1][0]]
    assert ranks == prune(reference, policy)


def test_the_earlier_releases_spelling_refuses_what_it_refused():
    model = decompose(nn.Sequential(nn.Linear(6, 6)), init="svd")
    with pytest.raises(ValueError, match="give one rule, got energy, threshold"):
        prune(model, energy=0.1, threshold=0.1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'amount'"):
        prune(model, amount=0.5)
