"""Factored Linear weights: exact function preservation, the module kept as it is (type,
.weight, bias), pruning, the deployed pair and dense forms, costs."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from svdtrain import FactoredWeight, SVDWeight, compact, count_macs, decompose, factored_weights
from svdtrain.layers import is_factored, kind_for


def _close(out, ref):
    tol = 1e-4 * max(1.0, ref.abs().max().item())
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= tol


@st.composite
def linear_cases(draw):
    in_f, out_f = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    bias = draw(st.booleans())
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))  # () = unbatched input
    seed = draw(st.integers(0, 2**16))
    return in_f, out_f, bias, tuple(lead), seed


def _handle(module) -> FactoredWeight:
    (handle,) = factored_weights(module).values()
    return handle


def _forms(lin, x):
    """Outputs of every deployed form of the factored (bare) ``lin``."""
    pair, dense = compact(lin, forms={"weight": "pair"}), compact(lin, forms={"weight": "dense"})
    assert type(pair) is nn.Sequential and [type(m) for m in pair] == [nn.Linear, nn.Linear]
    assert type(dense) is nn.Linear
    return [lin(x), pair(x), dense(x), compact(lin)(x), compact(lin, x)(x)]


@given(linear_cases())
def test_svd_init_preserves_function_and_every_form_agrees(case):
    in_f, out_f, bias, lead, seed = case
    torch.manual_seed(seed)
    lin = nn.Linear(in_f, out_f, bias=bias)
    x = torch.randn(*lead, in_f)
    ref = lin(x)
    assert decompose(lin) is lin
    handle = _handle(lin)
    assert handle.name == "weight" and handle.view == "matrix"
    assert handle.rank == handle.full_rank == min(in_f, out_f)
    for out in _forms(lin, x):
        _close(out, ref)


@given(linear_cases(), st.data())
def test_forms_agree_after_pruning_to_low_rank(case, data):
    in_f, out_f, bias, lead, seed = case
    torch.manual_seed(seed)
    lin = decompose(nn.Linear(in_f, out_f, bias=bias))
    handle = _handle(lin)
    r = data.draw(st.integers(1, handle.rank))
    handle.keep_(r)
    assert handle.U.shape == (out_f, r) and handle.s.shape == (r,) and handle.Vh.shape == (r, in_f)
    assert lin.weight.shape == (out_f, in_f)
    x = torch.randn(*lead, in_f)
    ref = x @ ((handle.U * handle.s) @ handle.Vh).T + (lin.bias if bias else 0)
    for out in _forms(lin, x):
        _close(out, ref)


def test_singular_values_match_numpy_descending_nonnegative():
    lin = nn.Linear(7, 4)
    weight = lin.weight.detach().clone()
    decompose(lin)
    handle = _handle(lin)
    expected = np.linalg.svd(weight.double().numpy(), compute_uv=False)
    np.testing.assert_allclose(handle.s.detach().double().numpy(), expected, rtol=1e-5, atol=1e-6)
    s = handle.s.detach()
    assert torch.all(s >= 0) and torch.all(s[:-1] >= s[1:])
    torch.testing.assert_close(handle.matrix(), weight, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lin.weight, weight, atol=1e-5, rtol=1e-5)


def test_keep_selects_largest_magnitudes_and_their_vectors():
    lin = decompose(nn.Linear(4, 4, bias=False))
    handle = _handle(lin)
    with torch.no_grad():
        handle.U.copy_(torch.eye(4))
        handle.Vh.copy_(torch.eye(4))
        handle.s.copy_(torch.tensor([0.5, -4.0, 1.0, 3.0]))
    handle.keep_(2)
    assert handle.s.tolist() == [-4.0, 3.0]
    assert torch.equal(handle.U, torch.eye(4)[:, [1, 3]])
    assert torch.equal(handle.Vh, torch.eye(4)[[1, 3], :])
    expected = torch.diag(torch.tensor([0.0, -4.0, 0.0, 3.0]))
    assert torch.equal(handle.matrix(), expected)
    assert torch.equal(lin.weight, expected)  # the module's weight follows its factors


def test_keep_replaces_parameters_and_keeps_requires_grad():
    lin = decompose(nn.Linear(6, 5))
    handle = _handle(lin)
    handle.s.requires_grad_(False)
    old_U = handle.U
    handle.keep_(2)
    assert handle.U is not old_U and isinstance(handle.U, nn.Parameter)
    assert handle.U.requires_grad and not handle.s.requires_grad and handle.Vh.requires_grad
    assert sum(p.numel() for p in lin.parameters()) == 5 * 2 + 2 + 2 * 6 + 5
    assert handle.full_rank == 5 and handle.rank == 2
    assert "rank=2/5" in repr(handle)
    assert _handle(lin).rank == 2  # a fresh handle reads the same module


@pytest.mark.parametrize("bad", [0, -1, 6])
def test_keep_rejects_out_of_range_rank(bad):
    lin = decompose(nn.Linear(6, 5))
    with pytest.raises(ValueError, match=r"rank for 'weight' must be in \[1, 5\]"):
        _handle(lin).keep_(bad)
    assert _handle(lin).rank == 5


def test_module_keeps_its_type_weight_bias_and_hooks():
    lin = nn.Linear(5, 3)
    bias = lin.bias
    calls = []
    lin.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    decompose(lin)
    assert isinstance(lin, nn.Linear) and is_factored(lin, "weight")
    assert lin.bias is bias  # the same Parameter object: optimizers holding it stay valid
    assert isinstance(lin.weight, torch.Tensor) and lin.weight.shape == (3, 5)
    assert (lin.in_features, lin.out_features) == (5, 3)
    lin(torch.randn(2, 5))
    assert calls == [(2, 3)]
    assert [n for n, _ in lin.named_parameters()] == [
        "bias", "parametrizations.weight.original0", "parametrizations.weight.original1",
        "parametrizations.weight.original2",
    ]  # fmt: skip


@pytest.mark.parametrize("init", ["svd", "random"])
def test_assigning_a_weight_refactors_it(init):
    lin = decompose(nn.Linear(6, 4), init=init)
    _handle(lin).keep_(1)
    new = torch.randn(4, 6)
    lin.weight = new  # right_inverse: factored again (exactly, even after a random start), at decompose's rank
    assert _handle(lin).rank == 4
    torch.testing.assert_close(lin.weight, new, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_handle(lin).s, torch.linalg.svdvals(new))


def test_assigning_a_weight_keeps_decompose_rank():
    lin = decompose(nn.Linear(6, 4), rank=2)
    new = torch.randn(4, 6)
    lin.weight = new
    U, s, Vh = torch.linalg.svd(new)
    assert _handle(lin).rank == 2
    torch.testing.assert_close(lin.weight, (U[:, :2] * s[:2]) @ Vh[:2], atol=1e-5, rtol=1e-5)


def test_linear_subclass_is_factored_but_never_swapped():
    mha = nn.MultiheadAttention(8, 2)
    out_proj = mha.out_proj  # NonDynamicallyQuantizableLinear: MultiheadAttention reads its weight
    x = torch.randn(3, 8)
    ref = out_proj(x)
    decompose(out_proj)
    _close(out_proj(x), ref)
    assert not kind_for(out_proj).swappable(out_proj)
    _handle(out_proj).keep_(1)
    deployed = compact(out_proj, x)
    assert type(deployed) is nn.modules.linear.NonDynamicallyQuantizableLinear
    _close(deployed(x), out_proj(x))


def test_unknown_init_raises():
    lin = nn.Linear(3, 3)
    with pytest.raises(ValueError, match=r"unknown init 'zeros'.*svd, svd_lowrank, random"):
        decompose(lin, init="zeros")
    assert not parametrize.is_parametrized(lin)


def test_random_init_shapes_and_trainable():
    lin = nn.Linear(10, 4)
    bias = lin.bias.detach().clone()
    decompose(lin, init="random")
    handle = _handle(lin)
    assert handle.U.shape == (4, 4) and handle.s.shape == (4,) and handle.Vh.shape == (4, 10)
    assert torch.equal(lin.bias, bias)  # the bias is not factored
    out = lin(torch.randn(3, 10)).pow(2).sum()
    out.backward()
    for p in (handle.U, handle.s, handle.Vh, lin.bias):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_deployed_forms_are_copies_not_views_of_the_factored_model():
    lin = decompose(nn.Linear(4, 3))
    _handle(lin).keep_(1)
    pair, dense = compact(lin, forms={"weight": "pair"}), compact(lin, forms={"weight": "dense"})
    with torch.no_grad():
        lin.bias.add_(1.0)
        _handle(lin).s.mul_(2.0)
    assert not torch.equal(pair[1].bias, lin.bias) and not torch.equal(dense.bias, lin.bias)
    assert not torch.allclose(dense.weight, lin.weight)


@pytest.mark.parametrize("rank", [1, 2, 3, 4])
def test_costs_and_compact_choice(rank):
    lin = decompose(nn.Linear(8, 6))
    _handle(lin).keep_(rank)
    kind, shape = kind_for(lin), torch.Size([5, 7, 8])  # 35 tokens
    assert kind.dense_macs(lin, "weight", shape) == 35 * 6 * 8
    assert kind.pair_macs(lin, "weight", shape, rank) == 35 * rank * (6 + 8)
    assert count_macs(lin, torch.randn(shape)) == min(35 * 6 * 8, 35 * rank * 14)
    deployed = compact(lin)
    if rank * 14 < 48:  # rank 1, 2, 3 are cheaper as a pair
        assert isinstance(deployed, nn.Sequential) and [m.weight.shape for m in deployed] == [(rank, 8), (6, rank)]
        assert deployed[0].bias is None and deployed[1].bias is not None
    else:
        assert type(deployed) is nn.Linear and deployed.weight.shape == (6, 8)


def test_weight_is_rebuilt_from_the_factors_on_each_read_with_gradients():
    lin = decompose(nn.Linear(4, 4))
    handle = _handle(lin)
    with torch.no_grad():
        handle.s.zero_()
    assert torch.equal(lin.weight, torch.zeros(4, 4))
    lin.weight.sum().backward()
    assert handle.U.grad is not None and handle.Vh.grad is not None and handle.s.grad.abs().sum() > 0
    with parametrize.cached():  # torch's cache: one rebuild per forward for weights read many times
        assert lin.weight is lin.weight


def test_svd_weight_parametrization_round_trips():
    param = SVDWeight("matrix", (3, 5))
    weight = torch.randn(3, 5)
    U, s, Vh = param.right_inverse(weight)
    torch.testing.assert_close(param(U, s, Vh), weight, atol=1e-5, rtol=1e-5)
    assert "view=matrix" in repr(param)


def test_double_precision_layer_round_trips_tightly():
    lin = nn.Linear(9, 5).double()
    x = torch.randn(4, 9, dtype=torch.float64)
    ref = lin(x)
    decompose(lin)
    assert _handle(lin).U.dtype == torch.float64
    torch.testing.assert_close(lin(x), ref, rtol=1e-12, atol=1e-12)
    assert compact(lin, forms={"weight": "dense"}).weight.dtype == torch.float64
    assert compact(lin, forms={"weight": "pair"})[0].weight.dtype == torch.float64
