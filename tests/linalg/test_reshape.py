"""kernel_to_matrix / matrix_to_kernel: index layout of both schemes, round trips, errors;
weight_to_matrix / matrix_to_weight: every matrix view (matrix, transpose, the schemes)."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from svdtrain.linalg import (
    SCHEMES,
    VIEWS,
    check_scheme,
    check_view,
    kernel_to_matrix,
    matrix_to_kernel,
    matrix_to_weight,
    weight_to_matrix,
)

dims = st.integers(1, 4)


@given(out_c=dims, in_c=dims, kh=dims, kw=dims)
def test_channel_matrix_is_out_by_flattened_rest(out_c, in_c, kh, kw):
    w = torch.randn(out_c, in_c, kh, kw)
    m = kernel_to_matrix(w, "channel")
    assert m.shape == (out_c, in_c * kh * kw)
    for n, c, h, x in itertools.product(range(out_c), range(in_c), range(kh), range(kw)):
        assert m[n, (c * kh + h) * kw + x] == w[n, c, h, x]


@given(out_c=dims, in_c=dims, kh=dims, kw=dims)
def test_spatial_matrix_index_formula(out_c, in_c, kh, kw):
    w = torch.randn(out_c, in_c, kh, kw)
    m = kernel_to_matrix(w, "spatial")
    assert m.shape == (in_c * kh, out_c * kw)
    for n, c, h, x in itertools.product(range(out_c), range(in_c), range(kh), range(kw)):
        assert m[c * kh + h, n * kw + x] == w[n, c, h, x]


@given(out_c=dims, in_c=dims, kh=dims, kw=dims, scheme=st.sampled_from(SCHEMES))
def test_round_trip_is_exact_and_contiguous(out_c, in_c, kh, kw, scheme):
    w = torch.randn(out_c, in_c, kh, kw)
    back = matrix_to_kernel(kernel_to_matrix(w, scheme), scheme, w.shape)
    assert back.shape == w.shape
    assert back.is_contiguous()
    assert torch.equal(back, w)


def test_spatial_matrix_known_small_case():
    # W[n, c, h, w] = 1000 n + 100 c + 10 h + w, out=2, in=1, kh=2, kw=3.
    w = torch.tensor([[[[1000 * n + 100 * c + 10 * h + x for x in range(3)] for h in range(2)] for c in range(1)]
                      for n in range(2)], dtype=torch.float64)  # fmt: skip
    expected = np.array([[0, 1, 2, 1000, 1001, 1002], [10, 11, 12, 1010, 1011, 1012]], dtype=np.float64)
    np.testing.assert_array_equal(kernel_to_matrix(w, "spatial").numpy(), expected)


def test_conv1d_kernel_channel_round_trip():
    w = torch.randn(5, 3, 4)
    m = kernel_to_matrix(w, "channel")
    assert m.shape == (5, 12)
    assert torch.equal(matrix_to_kernel(m, "channel", w.shape), w)


def test_spatial_rejects_non_2d_kernel():
    with pytest.raises(ValueError, match="spatial scheme needs a 2-d kernel"):
        kernel_to_matrix(torch.randn(5, 3, 4), "spatial")


@pytest.mark.parametrize("fn", ["to_matrix", "to_kernel", "check"])
def test_unknown_scheme_names_valid_ones(fn):
    with pytest.raises(ValueError, match=r"unknown scheme 'diagonal'.*channel, spatial"):
        if fn == "to_matrix":
            kernel_to_matrix(torch.randn(2, 2, 3, 3), "diagonal")
        elif fn == "to_kernel":
            matrix_to_kernel(torch.randn(2, 18), "diagonal", (2, 2, 3, 3))
        else:
            check_scheme("diagonal")


# -- weight_to_matrix / matrix_to_weight: the views a factored weight is seen through ----------


@given(m=dims, n=dims)
def test_matrix_view_is_the_weight_itself(m, n):
    w = torch.randn(m, n)
    assert weight_to_matrix(w, "matrix") is w
    assert matrix_to_weight(w, "matrix", w.shape) is w


@given(m=dims, n=dims)
def test_transpose_view_factors_an_in_by_out_weight_as_out_by_in(m, n):
    w = torch.randn(m, n)  # transformers' Conv1D stores (in, out)
    matrix = weight_to_matrix(w, "transpose")
    assert matrix.shape == (n, m)
    for i, j in itertools.product(range(m), range(n)):
        assert matrix[j, i] == w[i, j]
    back = matrix_to_weight(matrix, "transpose", w.shape)
    assert back.shape == w.shape and torch.equal(back, w)


@given(out_c=dims, in_c=dims, kh=dims, kw=dims, view=st.sampled_from(SCHEMES))
def test_scheme_views_are_the_kernel_reshapes(out_c, in_c, kh, kw, view):
    w = torch.randn(out_c, in_c, kh, kw)
    matrix = weight_to_matrix(w, view)
    assert torch.equal(matrix, kernel_to_matrix(w, view))
    assert torch.equal(matrix_to_weight(matrix, view, w.shape), w)


@given(view=st.sampled_from(VIEWS), data=st.data())
def test_every_view_round_trips_and_keeps_gradients(view, data):
    shape = (3, 2, 2, 3) if view in SCHEMES else (4, 5)
    w = torch.randn(shape, requires_grad=True)
    back = matrix_to_weight(weight_to_matrix(w, view), view, shape)
    assert torch.equal(back, w)
    scale = torch.randn(shape)
    (back * scale).sum().backward()
    assert torch.equal(w.grad, scale)  # a pure re-indexing: the gradient passes through unchanged


def test_views_list_every_scheme():
    assert VIEWS == ("matrix", "transpose", "channel", "spatial")
    assert all(check_view(view) == view for view in VIEWS)


@pytest.mark.parametrize("fn", ["to_matrix", "to_weight", "check"])
def test_unknown_view_names_valid_ones(fn):
    message = r"unknown matrix view 'rows'; valid views are matrix, transpose, channel, spatial"
    with pytest.raises(ValueError, match=message):
        if fn == "to_matrix":
            weight_to_matrix(torch.randn(2, 3), "rows")
        elif fn == "to_weight":
            matrix_to_weight(torch.randn(2, 3), "rows", (2, 3))
        else:
            check_view("rows")
