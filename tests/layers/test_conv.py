"""Factored Conv1d/Conv2d weights: function preservation over random configurations (stride,
padding, dilation, padding modes, both schemes), pruning, the deployed pair and dense forms,
and exact MAC formulas."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from svdtrain import compact, count_macs, decompose, factored_weights
from svdtrain.layers import SVDWeight, UnsupportedLayer, kind_for, plain_type
from svdtrain.linalg import kernel_to_matrix, matrix_to_kernel
from svdtrain.surgery.plan import pair_saving

MODES = ["zeros", "reflect", "replicate", "circular"]


def _close(out, ref):
    tol = 1e-4 * max(1.0, ref.abs().max().item())
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= tol, (out - ref).abs().max().item()


def _min_len(kernel, dilation, pad):
    """Smallest input length giving >= 1 output and a legal reflect/circular pad."""
    return max(1, dilation * (kernel - 1) + 1 - 2 * pad, pad + 1)


def _same_pad(kernel, dilation):
    return math.ceil(dilation * (kernel - 1) / 2)  # the larger side of "same" padding


@st.composite
def conv2d_cases(draw, max_channels=(4, 5)):
    in_c, out_c = draw(st.integers(1, max_channels[0])), draw(st.integers(1, max_channels[1]))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    mode = draw(st.sampled_from(MODES))
    kind = draw(st.sampled_from(["int", "tuple", "valid", "same"]))  # "same" with every padding mode
    if kind == "same":
        stride, padding = (1, 1), "same"
        pads = (_same_pad(kh, dilation[0]), _same_pad(kw, dilation[1]))
    else:
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        if kind == "int":
            padding = draw(st.integers(0, 2))
        elif kind == "tuple":
            padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        else:
            padding = "valid"
        pads = (0, 0) if padding == "valid" else ((padding, padding) if isinstance(padding, int) else padding)
    h = _min_len(kh, dilation[0], pads[0]) + draw(st.integers(0, 4))
    w = _min_len(kw, dilation[1], pads[1]) + draw(st.integers(0, 4))
    conv = dict(in_channels=in_c, out_channels=out_c, kernel_size=(kh, kw), stride=stride, padding=padding,
                dilation=dilation, bias=draw(st.booleans()), padding_mode=mode)  # fmt: skip
    batch = draw(st.integers(1, 2))
    return conv, (batch, in_c, h, w), draw(st.integers(0, 2**16))


@st.composite
def conv1d_cases(draw):
    in_c, out_c, k = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dilation = draw(st.integers(1, 2))
    mode = draw(st.sampled_from(MODES))
    kind = draw(st.sampled_from(["int", "valid", "same"]))
    stride = 1 if kind == "same" else draw(st.integers(1, 3))
    padding = draw(st.integers(0, 3)) if kind == "int" else kind
    pad = padding if kind == "int" else (_same_pad(k, dilation) if kind == "same" else 0)
    length = _min_len(k, dilation, pad) + draw(st.integers(0, 5))
    conv = dict(in_channels=in_c, out_channels=out_c, kernel_size=k, stride=stride, padding=padding,
                dilation=dilation, bias=draw(st.booleans()), padding_mode=mode)  # fmt: skip
    return conv, (draw(st.integers(1, 2)), in_c, length), draw(st.integers(0, 2**16))


def _has_pair(conv):
    return kind_for(conv).pair_macs(conv, "weight", None, 1) is not None


def _deployed_outputs(conv, x):
    """Outputs of every deployed form of the factored (bare) ``conv`` on ``x``."""
    outs = {"compact(x)": compact(conv, x)(x), "compact()": compact(conv)(x)}
    dense = compact(conv, forms={"weight": "dense"})
    assert type(dense) is plain_type(conv) and not parametrize.is_parametrized(dense)
    outs["dense"] = dense(x)
    if _has_pair(conv):
        pair = compact(conv, forms={"weight": "pair"})
        assert type(pair) is nn.Sequential and len(pair) == 2
        outs["pair"] = pair(x)
    else:  # "same" padding of a non-zero mode: trained low rank, deployed dense
        assert conv.padding == "same" and conv.padding_mode != "zeros"
        with pytest.raises(ValueError, match="has no pair form"):
            compact(conv, forms={"weight": "pair"})
    return outs


def _plain(kwargs, conv):
    """A fresh unfactored conv holding ``conv``'s current (low-rank) kernel, rebuilt from the factors."""
    handle = factored_weights(conv)["weight"]
    ref = plain_type(conv)(**kwargs)
    assert not parametrize.is_parametrized(ref)
    with torch.no_grad():
        ref.weight.copy_(matrix_to_kernel(handle.matrix(), handle.view, ref.weight.shape))
        if ref.bias is not None:
            ref.bias.copy_(conv.bias)
    return ref


@given(conv2d_cases(), st.sampled_from(["channel", "spatial"]))
def test_conv2d_svd_init_preserves_function(case, scheme):
    kwargs, shape, seed = case
    torch.manual_seed(seed)
    conv = nn.Conv2d(**kwargs)
    x = torch.randn(shape)
    ref = conv(x)
    assert decompose(conv, scheme=scheme) is conv  # a bare layer decomposes in place
    handle = factored_weights(conv)["weight"]
    assert handle.view == scheme and handle.rank == handle.full_rank
    assert isinstance(conv, nn.Conv2d) and conv.weight.shape == (kwargs["out_channels"], kwargs["in_channels"],
                                                                   *kwargs["kernel_size"])  # fmt: skip
    _close(conv(x), ref)
    for out in _deployed_outputs(conv, x).values():
        _close(out, ref)


@given(conv1d_cases(), st.sampled_from(["channel", "spatial"]))
def test_conv1d_svd_init_preserves_function(case, scheme):
    kwargs, shape, seed = case
    torch.manual_seed(seed)
    conv = nn.Conv1d(**kwargs)
    x = torch.randn(shape)
    ref = conv(x)
    decompose(conv, scheme=scheme)
    assert factored_weights(conv)["weight"].view == "channel"  # a 1-d kernel has only the channel reshape
    assert isinstance(conv, nn.Conv1d)
    _close(conv(x), ref)
    for out in _deployed_outputs(conv, x).values():
        _close(out, ref)
    _close(conv(x[0]), ref[0])  # unbatched input
    _close(compact(conv, x[0])(x[0]), ref[0])


@given(conv2d_cases(), st.sampled_from(["channel", "spatial"]), st.data())
def test_conv2d_forms_agree_after_pruning(case, scheme, data):
    kwargs, shape, seed = case
    torch.manual_seed(seed)
    conv = decompose(nn.Conv2d(**kwargs), scheme=scheme)
    handle = factored_weights(conv)["weight"]
    rank = data.draw(st.integers(1, handle.rank))
    handle.keep_(rank)
    assert handle.rank == rank and handle.U.shape[1] == handle.s.shape[0] == handle.Vh.shape[0] == rank
    x = torch.randn(shape)
    ref = _plain(kwargs, conv)(x)
    _close(conv(x), ref)
    for out in _deployed_outputs(conv, x).values():
        _close(out, ref)


@given(conv1d_cases(), st.data())
def test_conv1d_forms_agree_after_pruning(case, data):
    kwargs, shape, seed = case
    torch.manual_seed(seed)
    conv = decompose(nn.Conv1d(**kwargs))
    handle = factored_weights(conv)["weight"]
    handle.keep_(data.draw(st.integers(1, handle.rank)))
    x = torch.randn(shape)
    ref = _plain(kwargs, conv)(x)
    _close(conv(x), ref)
    for out in _deployed_outputs(conv, x).values():
        _close(out, ref)


# Derandomized hypothesis runs cluster around a few configurations; this grid makes sure every
# padding kind meets every padding mode and scheme, with strides and dilations that differ per axis.
GRID_PADDINGS = [1, (2, 0), "valid", "same"]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("scheme", ["channel", "spatial"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", GRID_PADDINGS, ids=str)
def test_conv2d_grid_of_paddings_modes_and_schemes(padding, mode, scheme):
    stride = (1, 1) if padding == "same" else (2, 3)
    kwargs = dict(in_channels=3, out_channels=5, kernel_size=(3, 2), stride=stride, padding=padding,
                  dilation=(2, 1), padding_mode=mode)  # fmt: skip
    conv, x = nn.Conv2d(**kwargs), torch.randn(2, 3, 9, 8)
    ref = conv(x)
    decompose(conv, scheme=scheme)
    for out in [conv(x), *_deployed_outputs(conv, x).values()]:
        _close(out, ref)
    handle = factored_weights(conv)["weight"]
    handle.keep_(2)
    low_rank = _plain(kwargs, conv)(x)
    for out in [conv(x), *_deployed_outputs(conv, x).values()]:
        _close(out, low_rank)
    pair = kind_for(conv).pair_macs(conv, "weight", x.shape, 2)
    if _has_pair(conv):
        first, second = compact(conv, forms={"weight": "pair"})
        first_macs, h = _conv_macs(first, x)
        assert pair == pytest.approx(first_macs + _conv_macs(second, h)[0], rel=1e-9)
    else:
        assert pair is None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", [2, "valid", "same"])
def test_conv1d_grid_of_paddings_and_modes(padding, mode):
    kwargs = dict(in_channels=3, out_channels=4, kernel_size=4, stride=1 if padding == "same" else 2,
                  padding=padding, dilation=2, padding_mode=mode)  # fmt: skip
    conv, x = nn.Conv1d(**kwargs), torch.randn(2, 3, 11)
    ref = conv(x)
    decompose(conv, scheme="spatial")
    for out in [conv(x), *_deployed_outputs(conv, x).values()]:
        _close(out, ref)
    factored_weights(conv)["weight"].keep_(1)
    low_rank = _plain(kwargs, conv)(x)
    for out in [conv(x), *_deployed_outputs(conv, x).values()]:
        _close(out, low_rank)


def _conv_macs(conv, x):
    y = conv(x)
    return y.numel() * conv.in_channels // conv.groups * math.prod(conv.kernel_size), y


@given(conv2d_cases(max_channels=(16, 16)), st.sampled_from(["channel", "spatial"]), st.data())
def test_mac_formulas_match_the_deployed_layers(case, scheme, data):
    kwargs, shape, seed = case
    torch.manual_seed(seed)
    conv = decompose(nn.Conv2d(**kwargs), scheme=scheme)
    handle = factored_weights(conv)["weight"]
    handle.keep_(data.draw(st.integers(1, handle.rank)))
    kind, x = kind_for(conv), torch.randn(shape)
    dense_macs, _ = _conv_macs(compact(conv, forms={"weight": "dense"}), x)
    assert kind.dense_macs(conv, "weight", x.shape) == dense_macs
    pair = kind.pair_macs(conv, "weight", x.shape, handle.rank)
    if pair is None:  # no pair form: always dense
        assert count_macs(conv, x) == dense_macs
        assert type(compact(conv, x)) is nn.Conv2d and type(compact(conv)) is nn.Conv2d
        return
    first, second = compact(conv, forms={"weight": "pair"})
    first_macs, h = _conv_macs(first, x)
    second_macs, _ = _conv_macs(second, h)
    assert pair == pytest.approx(first_macs + second_macs, rel=1e-9)
    assert count_macs(conv, x) == min(dense_macs, first_macs + second_macs)
    # Without an input shape the choice may only err towards the dense layer.
    if pair_saving(handle, None) > 0:
        assert first_macs + second_macs <= dense_macs
        assert type(compact(conv)) is nn.Sequential
    else:
        assert type(compact(conv)) is nn.Conv2d
    assert isinstance(compact(conv, x), nn.Sequential) == (first_macs + second_macs < dense_macs)


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_singular_values_match_numpy_of_the_scheme_reshape(scheme):
    conv = nn.Conv2d(3, 5, (2, 3))
    w = conv.weight.detach().double().numpy()
    decompose(conv, scheme=scheme)
    handle = factored_weights(conv)["weight"]
    matrix = w.reshape(5, -1) if scheme == "channel" else w.transpose(1, 2, 0, 3).reshape(3 * 2, 5 * 3)
    assert matrix.shape == tuple(kernel_to_matrix(torch.from_numpy(w), scheme).shape) == handle.shape
    expected = np.linalg.svd(matrix, compute_uv=False)
    s = handle.s.detach().double().numpy()
    assert s.shape == (min(matrix.shape),)
    np.testing.assert_allclose(s, expected, rtol=1e-5, atol=1e-6)
    assert np.all(s >= 0) and np.all(np.diff(s) <= 0)
    assert handle.U.shape == (matrix.shape[0], s.size) and handle.Vh.shape == (s.size, matrix.shape[1])
    np.testing.assert_allclose(handle.matrix().detach().double().numpy(), matrix, atol=1e-5)
    np.testing.assert_allclose(conv.weight.detach().double().numpy(), w, atol=1e-5)


def test_pair_structure_of_each_scheme():
    kwargs = dict(in_channels=4, out_channels=6, kernel_size=(3, 5), stride=(2, 3), padding=(1, 2), dilation=(2, 1))
    channel = decompose(nn.Conv2d(**kwargs), scheme="channel")
    factored_weights(channel)["weight"].keep_(3)
    first, second = compact(channel, forms={"weight": "pair"})
    assert (first.kernel_size, first.stride, first.padding, first.dilation) == ((3, 5), (2, 3), (1, 2), (2, 1))
    assert (first.in_channels, first.out_channels, first.bias) == (4, 3, None)
    assert (second.kernel_size, second.stride, second.padding) == ((1, 1), (1, 1), (0, 0))
    assert (second.in_channels, second.out_channels) == (3, 6) and second.bias is not None

    spatial = decompose(nn.Conv2d(**kwargs), scheme="spatial")
    factored_weights(spatial)["weight"].keep_(3)
    first, second = compact(spatial, forms={"weight": "pair"})
    assert (first.kernel_size, first.stride, first.padding, first.dilation) == ((3, 1), (2, 1), (1, 0), (2, 1))
    assert (second.kernel_size, second.stride, second.padding, second.dilation) == ((1, 5), (1, 3), (0, 2), (1, 1))
    assert (first.out_channels, second.in_channels) == (3, 3)
    assert all(type(part) is nn.Conv2d and not parametrize.is_parametrized(part) for part in (first, second))


def test_pair_parts_keep_the_padding_mode():
    conv = decompose(nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular"), scheme="spatial")
    factored_weights(conv)["weight"].keep_(1)
    first, second = compact(conv, forms={"weight": "pair"})
    assert first.padding_mode == second.padding_mode == "circular"
    assert (first.padding, second.padding) == ((1, 0), (0, 1))


def test_grouped_conv_is_unsupported():
    conv = nn.Conv2d(4, 4, 3, groups=2)
    with pytest.raises(UnsupportedLayer, match="grouped convolution"):
        kind_for(conv).weight_names(conv)
    with pytest.raises(ValueError, match=r"no weight to decompose.*weight \(grouped convolution \(groups=2\)"):
        decompose(conv)
    with pytest.raises(ValueError, match=r"cannot factor 'weight': grouped convolution"):
        decompose(conv, weights=["weight"])
    assert not parametrize.is_parametrized(conv)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_same_padding_with_a_non_zero_mode_trains_low_rank_and_deploys_dense(mode):
    conv = nn.Conv2d(2, 3, 3, padding="same", padding_mode=mode)
    x = torch.randn(1, 2, 5, 5)
    ref = conv(x)
    decompose(conv)
    _close(conv(x), ref)
    handle = factored_weights(conv)["weight"]
    handle.keep_(1)
    assert kind_for(conv).pair_macs(conv, "weight", x.shape, 1) is None
    assert pair_saving(handle, x.shape) == 0
    low_rank = conv(x)
    for deployed in (compact(conv), compact(conv, x)):
        assert type(deployed) is nn.Conv2d and deployed.padding_mode == mode
        assert torch.linalg.matrix_rank(deployed.weight.detach().reshape(3, -1)) == 1
        _close(deployed(x), low_rank)
    assert count_macs(conv, x) == 25 * 3 * 2 * 9  # dense, whatever the rank


def test_conv_subclass_is_factored_but_keeps_its_type_when_deployed():
    class MyConv(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * 2

    conv = MyConv(2, 4, 3)
    x = torch.randn(1, 2, 6, 6)
    ref = conv(x)
    decompose(conv)
    assert isinstance(conv, MyConv) and plain_type(conv) is MyConv
    _close(conv(x), ref)
    factored_weights(conv)["weight"].keep_(1)
    low_rank = conv(x)
    deployed = compact(conv, x)  # a subclass may not be swapped for a pair: its forward is its own
    assert type(deployed) is MyConv
    _close(deployed(x), low_rank)


def test_conv3d_has_no_entry():
    with pytest.raises(ValueError, match=r"no weight to decompose.*0\.weight \(no svdtrain entry for Conv3d\)"):
        decompose(nn.Sequential(nn.Conv3d(2, 2, 3)))


def test_bad_scheme_and_init_raise_value_error():
    conv = nn.Conv2d(2, 3, 3)
    with pytest.raises(ValueError, match=r"unknown scheme 'row'.*channel, spatial"):
        decompose(conv, scheme="row")
    with pytest.raises(ValueError, match=r"unknown init 'orthogonal'.*svd, svd_lowrank, random"):
        decompose(conv, init="orthogonal")
    assert not parametrize.is_parametrized(conv)


@pytest.mark.parametrize("scheme, m, n", [("channel", 6, 27), ("spatial", 9, 18)])
def test_random_init_shapes_and_trainable(scheme, m, n):
    conv = decompose(nn.Conv2d(3, 6, 3, padding=1), scheme=scheme, init="random")
    handle = factored_weights(conv)["weight"]
    r = min(m, n)
    assert handle.U.shape == (m, r) and handle.s.shape == (r,) and handle.Vh.shape == (r, n)
    assert conv.weight.shape == (6, 3, 3, 3)
    conv(torch.randn(2, 3, 5, 5)).square().mean().backward()
    for p in (handle.U, handle.s, handle.Vh, conv.bias):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_spatial_view_of_a_1d_kernel_is_refused():
    with pytest.raises(ValueError, match="spatial scheme needs a 2-d kernel"):
        SVDWeight("spatial", (2, 3, 2)).right_inverse(torch.randn(2, 3, 2))


def test_spatial_low_rank_structure_is_exact():
    # A separable kernel W[n, c, h, w] = a[c, h] * b[n, w] has spatial rank 1.
    a, b = torch.randn(3, 4), torch.randn(5, 2)
    weight = torch.einsum("ch,nw->nchw", a, b)
    conv = nn.Conv2d(3, 5, (4, 2), bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight)
    x = torch.randn(1, 3, 7, 6)
    ref = conv(x)
    decompose(conv, scheme="spatial")
    handle = factored_weights(conv)["weight"]
    assert handle.s[1:].abs().max().item() < 1e-5 * handle.s[0].item()
    handle.keep_(1)
    _close(conv(x), ref)
    pair = compact(conv, x)
    assert type(pair) is nn.Sequential
    _close(pair(x), ref)


@pytest.mark.parametrize("rank, factored", [(3, True), (4, False), (5, False), (6, False)])
def test_compact_without_shape_bounds_the_spatial_first_part_width(rank, factored):
    # (1, 5) kernel, no padding: a width-5 input gives one output column, so the first
    # (1x1) part runs on 5 columns per output column. Per output position: dense 8*8*5 =
    # 320; factored r * (8 * 5 + 8 * 5) = 80 r. Without an input shape the choice must
    # assume that worst case (stride + dilation*(kw-1) - 2*pw = 5 columns).
    conv = decompose(nn.Conv2d(8, 8, (1, 5)), scheme="spatial")
    handle = factored_weights(conv)["weight"]
    handle.keep_(rank)
    kind, x = kind_for(conv), torch.randn(1, 8, 3, 5)
    assert kind.dense_macs(conv, "weight", x.shape) == 3 * 320
    assert kind.pair_macs(conv, "weight", x.shape, rank) == 3 * 80 * rank
    assert kind.pair_macs(conv, "weight", None, rank) == 80 * rank
    assert (pair_saving(handle, None) > 0) is factored
    deployed = compact(conv)
    assert isinstance(deployed, nn.Sequential) is factored
    _close(deployed(x), conv(x))
