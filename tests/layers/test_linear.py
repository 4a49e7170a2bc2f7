"""SVDLinear: exact function preservation, both forward paths, pruning, conversions, costs."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from svdtrain import SVDLinear
from svdtrain.layers import UnsupportedLayer


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


@given(linear_cases())
def test_svd_init_preserves_function_and_both_paths_agree(case):
    in_f, out_f, bias, lead, seed = case
    torch.manual_seed(seed)
    lin = nn.Linear(in_f, out_f, bias=bias)
    x = torch.randn(*lead, in_f)
    ref = lin(x)
    layer = SVDLinear.from_linear(lin)
    assert layer.rank == layer.full_rank == min(in_f, out_f)
    for out in (layer(x), layer.forward_dense(x), layer.forward_factored(x), layer.to_dense()(x),
                layer.to_factored()(x), layer.to_compact()(x)):  # fmt: skip
        _close(out, ref)


@given(linear_cases(), st.data())
def test_paths_agree_after_pruning_to_low_rank(case, data):
    in_f, out_f, bias, lead, seed = case
    torch.manual_seed(seed)
    layer = SVDLinear.from_linear(nn.Linear(in_f, out_f, bias=bias))
    r = data.draw(st.integers(1, layer.rank))
    layer.keep_(r)
    assert layer.U.shape == (out_f, r) and layer.s.shape == (r,) and layer.Vh.shape == (r, in_f)
    x = torch.randn(*lead, in_f)
    ref = layer.forward_dense(x)
    for out in (layer(x), layer.forward_factored(x), layer.to_dense()(x), layer.to_factored()(x),
                layer.to_compact()(x)):  # fmt: skip
        _close(out, ref)


def test_singular_values_match_numpy_descending_nonnegative():
    lin = nn.Linear(7, 4)
    layer = SVDLinear.from_linear(lin)
    expected = np.linalg.svd(lin.weight.detach().double().numpy(), compute_uv=False)
    np.testing.assert_allclose(layer.s.detach().double().numpy(), expected, rtol=1e-5, atol=1e-6)
    s = layer.s.detach()
    assert torch.all(s >= 0) and torch.all(s[:-1] >= s[1:])
    torch.testing.assert_close(layer.weight_matrix(), lin.weight, atol=1e-5, rtol=1e-5)


def test_keep_selects_largest_magnitudes_and_their_vectors():
    U = torch.eye(4)
    Vh = torch.eye(4)
    s = torch.tensor([0.5, -4.0, 1.0, 3.0])
    layer = SVDLinear(U, s, Vh)
    layer.keep_(2)
    assert layer.s.tolist() == [-4.0, 3.0]
    assert torch.equal(layer.U, torch.eye(4)[:, [1, 3]])
    assert torch.equal(layer.Vh, torch.eye(4)[[1, 3], :])
    expected = torch.diag(torch.tensor([0.0, -4.0, 0.0, 3.0]))
    assert torch.equal(layer.weight_matrix(), expected)


def test_keep_replaces_parameters_and_keeps_requires_grad():
    layer = SVDLinear.from_linear(nn.Linear(6, 5))
    layer.s.requires_grad_(False)
    old_U = layer.U
    layer.keep_(2)
    assert layer.U is not old_U and isinstance(layer.U, nn.Parameter)
    assert layer.U.requires_grad and not layer.s.requires_grad and layer.Vh.requires_grad
    assert sum(p.numel() for p in layer.parameters()) == 5 * 2 + 2 + 2 * 6 + 5
    assert layer.full_rank == 5 and layer.rank == 2
    assert "rank=2/5" in repr(layer)


@pytest.mark.parametrize("bad", [0, -1, 6])
def test_keep_rejects_out_of_range_rank(bad):
    layer = SVDLinear.from_linear(nn.Linear(6, 5))
    with pytest.raises(ValueError, match=r"rank must be in \[1, 5\]"):
        layer.keep_(bad)


def test_constructor_rejects_shapes_that_do_not_chain():
    with pytest.raises(ValueError, match="factor shapes do not chain"):
        SVDLinear(torch.randn(4, 3), torch.randn(2), torch.randn(3, 5))
    with pytest.raises(ValueError, match="factor shapes do not chain"):
        SVDLinear(torch.randn(4, 3), torch.randn(3, 1), torch.randn(3, 5))


def test_linear_subclass_is_unsupported():
    mha = nn.MultiheadAttention(8, 2)
    with pytest.raises(UnsupportedLayer, match="subclass of Linear"):
        SVDLinear.from_linear(mha.out_proj)


def test_unknown_init_raises():
    with pytest.raises(ValueError, match=r"unknown init 'zeros'.*svd, svd_lowrank, random"):
        SVDLinear.from_linear(nn.Linear(3, 3), init="zeros")


def test_random_init_shapes_and_trainable():
    lin = nn.Linear(10, 4)
    layer = SVDLinear.from_linear(lin, init="random")
    assert layer.U.shape == (4, 4) and layer.s.shape == (4,) and layer.Vh.shape == (4, 10)
    assert torch.equal(layer.bias, lin.bias) and layer.bias is not lin.bias
    out = layer(torch.randn(3, 10)).pow(2).sum()
    out.backward()
    for p in (layer.U, layer.s, layer.Vh, layer.bias):
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_parameters_are_copies_not_views_of_dense_weights():
    lin = nn.Linear(4, 3)
    layer = SVDLinear.from_linear(lin)
    with torch.no_grad():
        lin.bias.add_(1.0)
    assert not torch.equal(layer.bias, lin.bias)


@pytest.mark.parametrize("rank", [1, 2, 3, 4])
def test_costs_and_compact_choice(rank):
    layer = SVDLinear.from_linear(nn.Linear(8, 6))
    layer.keep_(rank)
    shape = torch.Size([5, 7, 8])  # 35 tokens
    assert layer.dense_macs(shape) == 35 * 6 * 8
    assert layer.factored_macs(shape) == 35 * rank * (6 + 8)
    assert layer.inference_macs(shape) == min(35 * 6 * 8, 35 * rank * 14)
    compact = layer.to_compact()
    if rank * 14 < 48:  # rank 1, 2, 3 are cheaper as a pair
        assert isinstance(compact, nn.Sequential) and [m.weight.shape for m in compact] == [(rank, 8), (6, rank)]
        assert compact[0].bias is None and compact[1].bias is not None
    else:
        assert type(compact) is nn.Linear and compact.weight.shape == (6, 8)


def test_forward_picks_factored_path_when_cheaper(monkeypatch):
    layer = SVDLinear.from_linear(nn.Linear(64, 64))
    x = torch.randn(1024, 64)  # dense 1024*64*64 + rebuild 64^3 < factored 1024*64*128
    calls = []
    monkeypatch.setattr(layer, "forward_factored", lambda x: calls.append("factored") or x)
    monkeypatch.setattr(layer, "forward_dense", lambda x: calls.append("dense") or x)
    layer(x)  # full rank, many tokens: rebuilding the weight once is cheaper
    layer(x[:8])  # full rank, few tokens: 8*64*128 < 8*64*64 + 64^3
    layer.keep_(2)
    layer(x)  # rank 2: the thin path is cheaper
    assert calls == ["dense", "factored", "factored"]


def test_double_precision_layer_round_trips_tightly():
    lin = nn.Linear(9, 5).double()
    layer = SVDLinear.from_linear(lin)
    assert layer.U.dtype == torch.float64
    x = torch.randn(4, 9, dtype=torch.float64)
    torch.testing.assert_close(layer(x), lin(x), rtol=1e-12, atol=1e-12)
    assert layer.to_dense().weight.dtype == torch.float64
    assert layer.to_factored()[0].weight.dtype == torch.float64
