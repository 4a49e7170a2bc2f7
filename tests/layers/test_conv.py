"""SVDConv: function preservation over random Conv1d/Conv2d configurations, both schemes,
both forward paths, pruning, conversions and exact MAC formulas."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from svdtrain import SVDConv
from svdtrain.layers import UnsupportedLayer
from svdtrain.linalg import kernel_to_matrix

MODES = ["zeros", "reflect", "replicate", "circular"]


def _close(out, ref):
    tol = 1e-4 * max(1.0, ref.abs().max().item())
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= tol, (out - ref).abs().max().item()


def _min_len(kernel, dilation, pad):
    """Smallest input length giving >= 1 output and a legal reflect/circular pad."""
    return max(1, dilation * (kernel - 1) + 1 - 2 * pad, pad + 1)


@st.composite
def conv2d_cases(draw, max_channels=(4, 5)):
    in_c, out_c = draw(st.integers(1, max_channels[0])), draw(st.integers(1, max_channels[1]))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    mode = draw(st.sampled_from(MODES))
    kinds = ["int", "tuple", "valid"] + (["same"] if mode == "zeros" else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "same":
        stride, padding = (1, 1), "same"
    else:
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        if kind == "int":
            padding = draw(st.integers(0, 2))
        elif kind == "tuple":
            padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        else:
            padding = "valid"
    pads = (0, 0) if isinstance(padding, str) else ((padding, padding) if isinstance(padding, int) else padding)
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
    kind = draw(st.sampled_from(["int", "valid"] + (["same"] if mode == "zeros" else [])))
    stride = 1 if kind == "same" else draw(st.integers(1, 3))
    padding = draw(st.integers(0, 3)) if kind == "int" else kind
    length = _min_len(k, dilation, padding if kind == "int" else 0) + draw(st.integers(0, 5))
    conv = dict(in_channels=in_c, out_channels=out_c, kernel_size=k, stride=stride, padding=padding,
                dilation=dilation, bias=draw(st.booleans()), padding_mode=mode)  # fmt: skip
    return conv, (draw(st.integers(1, 2)), in_c, length), draw(st.integers(0, 2**16))


def _all_outputs(layer, x):
    return {
        "forward": layer(x),
        "forward_dense": layer.forward_dense(x),
        "forward_factored": layer.forward_factored(x),
        "to_dense": layer.to_dense()(x),
        "to_factored": layer.to_factored()(x),
        "to_compact(shape)": layer.to_compact(x.shape)(x),
        "to_compact()": layer.to_compact()(x),
    }


@given(conv2d_cases(), st.sampled_from(["channel", "spatial"]))
def test_conv2d_svd_init_preserves_function(case, scheme):
    kwargs, shape, seed = case
    torch.manual_seed(seed)
    conv = nn.Conv2d(**kwargs)
    x = torch.randn(shape)
    ref = conv(x)
    layer = SVDConv.from_conv(conv, scheme=scheme)
    assert layer.scheme == scheme and layer.rank == layer.full_rank
    for out in _all_outputs(layer, x).values():
        _close(out, ref)


@given(conv1d_cases(), st.sampled_from(["channel", "spatial"]))
def test_conv1d_svd_init_preserves_function(case, scheme):
    kwargs, shape, seed = case
    torch.manual_seed(seed)
    conv = nn.Conv1d(**kwargs)
    x = torch.randn(shape)
    ref = conv(x)
    layer = SVDConv.from_conv(conv, scheme=scheme)
    assert layer.scheme == "channel"  # a 1-d kernel has only the channel reshape
    for out in _all_outputs(layer, x).values():
        _close(out, ref)
    _close(layer(x[0]), conv(x[0]))  # unbatched input


@given(conv2d_cases(), st.sampled_from(["channel", "spatial"]), st.data())
def test_conv2d_paths_agree_after_pruning(case, scheme, data):
    kwargs, shape, seed = case
    torch.manual_seed(seed)
    layer = SVDConv.from_conv(nn.Conv2d(**kwargs), scheme=scheme)
    layer.keep_(data.draw(st.integers(1, layer.rank)))
    x = torch.randn(shape)
    ref = layer.forward_dense(x)
    for out in _all_outputs(layer, x).values():
        _close(out, ref)


@given(conv1d_cases(), st.data())
def test_conv1d_paths_agree_after_pruning(case, data):
    kwargs, shape, seed = case
    torch.manual_seed(seed)
    layer = SVDConv.from_conv(nn.Conv1d(**kwargs))
    layer.keep_(data.draw(st.integers(1, layer.rank)))
    x = torch.randn(shape)
    ref = layer.forward_dense(x)
    for out in _all_outputs(layer, x).values():
        _close(out, ref)


def _conv_macs(conv, x):
    y = conv(x)
    return y.numel() * conv.in_channels // conv.groups * math.prod(conv.kernel_size), y


@given(conv2d_cases(max_channels=(16, 16)), st.sampled_from(["channel", "spatial"]), st.data())
def test_mac_formulas_match_the_deployed_layers(case, scheme, data):
    kwargs, shape, seed = case
    torch.manual_seed(seed)
    layer = SVDConv.from_conv(nn.Conv2d(**kwargs), scheme=scheme)
    layer.keep_(data.draw(st.integers(1, layer.rank)))
    x = torch.randn(shape)
    dense_macs, _ = _conv_macs(layer.to_dense(), x)
    first, second = layer.to_factored()
    first_macs, h = _conv_macs(first, x)
    second_macs, _ = _conv_macs(second, h)
    assert layer.dense_macs(x.shape) == dense_macs
    assert layer.factored_macs(x.shape) == first_macs + second_macs
    assert layer.inference_macs(x.shape) == min(dense_macs, first_macs + second_macs)
    # Without an input shape the choice may only err towards the dense layer.
    if layer.factored_is_cheaper(None):
        assert first_macs + second_macs <= dense_macs
    compact = layer.to_compact(x.shape)
    assert isinstance(compact, nn.Sequential) == (first_macs + second_macs < dense_macs)


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_singular_values_match_numpy_of_the_scheme_reshape(scheme):
    conv = nn.Conv2d(3, 5, (2, 3))
    layer = SVDConv.from_conv(conv, scheme=scheme)
    w = conv.weight.detach().double().numpy()
    matrix = w.reshape(5, -1) if scheme == "channel" else w.transpose(1, 2, 0, 3).reshape(3 * 2, 5 * 3)
    assert matrix.shape == tuple(kernel_to_matrix(conv.weight, scheme).shape)
    expected = np.linalg.svd(matrix, compute_uv=False)
    s = layer.s.detach().double().numpy()
    assert s.shape == (min(matrix.shape),)
    np.testing.assert_allclose(s, expected, rtol=1e-5, atol=1e-6)
    assert np.all(s >= 0) and np.all(np.diff(s) <= 0)
    assert layer.U.shape == (matrix.shape[0], s.size) and layer.Vh.shape == (s.size, matrix.shape[1])


def test_factored_structure_of_each_scheme():
    conv = nn.Conv2d(4, 6, (3, 5), stride=(2, 3), padding=(1, 2), dilation=(2, 1))
    channel = SVDConv.from_conv(conv, scheme="channel")
    channel.keep_(3)
    first, second = channel.to_factored()
    assert (first.kernel_size, first.stride, first.padding, first.dilation) == ((3, 5), (2, 3), (1, 2), (2, 1))
    assert (first.in_channels, first.out_channels, first.bias) == (4, 3, None)
    assert (second.kernel_size, second.stride, second.padding) == ((1, 1), (1, 1), (0, 0))
    assert (second.in_channels, second.out_channels) == (3, 6) and second.bias is not None

    spatial = SVDConv.from_conv(conv, scheme="spatial")
    spatial.keep_(3)
    first, second = spatial.to_factored()
    assert (first.kernel_size, first.stride, first.padding, first.dilation) == ((3, 1), (2, 1), (1, 0), (2, 1))
    assert (second.kernel_size, second.stride, second.padding, second.dilation) == ((1, 5), (1, 3), (0, 2), (1, 1))
    assert (first.out_channels, second.in_channels) == (3, 3)


def test_grouped_conv_is_unsupported():
    with pytest.raises(UnsupportedLayer, match="grouped convolution"):
        SVDConv.from_conv(nn.Conv2d(4, 4, 3, groups=2))


def test_same_padding_with_reflect_mode_is_unsupported():
    conv = nn.Conv2d(2, 3, 3, padding="same", padding_mode="reflect")
    with pytest.raises(UnsupportedLayer, match="padding='same' with padding_mode='reflect'"):
        SVDConv.from_conv(conv)


def test_conv_subclass_and_3d_conv_are_unsupported():
    class MyConv(nn.Conv2d):
        pass

    with pytest.raises(UnsupportedLayer, match="subclass"):
        SVDConv.from_conv(MyConv(2, 2, 3))
    with pytest.raises(UnsupportedLayer):
        SVDConv.from_conv(nn.Conv3d(2, 2, 3))


def test_bad_scheme_and_init_raise_value_error():
    conv = nn.Conv2d(2, 3, 3)
    with pytest.raises(ValueError, match=r"unknown scheme 'row'.*channel, spatial"):
        SVDConv.from_conv(conv, scheme="row")
    with pytest.raises(ValueError, match=r"unknown init 'orthogonal'.*svd, svd_lowrank, random"):
        SVDConv.from_conv(conv, init="orthogonal")


@pytest.mark.parametrize("scheme, m, n", [("channel", 6, 27), ("spatial", 9, 18)])
def test_random_init_shapes_and_trainable(scheme, m, n):
    conv = nn.Conv2d(3, 6, 3, padding=1)
    layer = SVDConv.from_conv(conv, scheme=scheme, init="random")
    r = min(m, n)
    assert layer.U.shape == (m, r) and layer.s.shape == (r,) and layer.Vh.shape == (r, n)
    layer(torch.randn(2, 3, 5, 5)).square().mean().backward()
    for p in (layer.U, layer.s, layer.Vh, layer.bias):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_spatial_scheme_rejected_for_1d_kernel_in_constructor():
    with pytest.raises(ValueError, match="spatial scheme needs a 2-d convolution"):
        SVDConv(torch.randn(6, 2), torch.randn(2), torch.randn(2, 6), None, kernel_shape=(2, 3, 2),
                stride=(1,), padding=(0,), dilation=(1,), scheme="spatial")  # fmt: skip


def test_spatial_low_rank_structure_is_exact():
    # A separable kernel W[n, c, h, w] = a[c, h] * b[n, w] has spatial rank 1.
    a, b = torch.randn(3, 4), torch.randn(5, 2)
    weight = torch.einsum("ch,nw->nchw", a, b)
    conv = nn.Conv2d(3, 5, (4, 2), bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight)
    layer = SVDConv.from_conv(conv, scheme="spatial")
    assert layer.s[1:].abs().max().item() < 1e-5 * layer.s[0].item()
    layer.keep_(1)
    x = torch.randn(1, 3, 7, 6)
    _close(layer.forward_factored(x), conv(x))
    _close(layer.to_compact(x.shape)(x), conv(x))


@pytest.mark.parametrize("rank, factored", [(3, True), (4, False), (5, False), (6, False)])
def test_compact_without_shape_bounds_the_spatial_first_part_width(rank, factored):
    # (1, 5) kernel, no padding: a width-5 input gives one output column, so the first
    # (1x1) part runs on 5 columns per output column. Per output position: dense 8*8*5 =
    # 320; factored r * (8 * 5 + 8 * 5) = 80 r. Without an input shape the choice must
    # assume that worst case (stride + dilation*(kw-1) - 2*pw = 5 columns).
    layer = SVDConv.from_conv(nn.Conv2d(8, 8, (1, 5)), scheme="spatial")
    layer.keep_(rank)
    x = torch.randn(1, 8, 3, 5)
    assert layer.dense_macs(x.shape) == 3 * 320
    assert layer.factored_macs(x.shape) == 3 * 80 * rank
    assert layer.factored_is_cheaper(None) is factored
    assert isinstance(layer.to_compact(), nn.Sequential) is factored
    _close(layer.to_compact()(x), layer.forward_dense(x))
