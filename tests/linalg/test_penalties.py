"""orthogonality_penalty and sparsity_penalty: hand-computed values, gradients, stability."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from svdtrain.linalg import (
    SPARSITY_KINDS,
    check_sparsity_kind,
    orthogonality_penalty,
    random_factors,
    sparsity_penalty,
    svd_factors,
)

# -- orthogonality -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4), (1, 6), (6, 1)])
def test_orthonormal_factors_have_zero_penalty(shape):
    m, n = shape
    q, _ = torch.linalg.qr(torch.randn(max(m, n), min(m, n), dtype=torch.float64))
    factor = q if m >= n else q.T  # orthonormal columns (tall) or rows (wide)
    assert factor.shape == shape
    assert orthogonality_penalty(factor).item() == pytest.approx(0.0, abs=1e-24)


@pytest.mark.parametrize(
    "factor, expected",
    [
        # square 2x2: G = A A^T = [[2, 1], [1, 1]], G - I = [[1, 1], [1, 0]] -> 3 / 2^2
        ([[1.0, 1.0], [0.0, 1.0]], 3 / 4),
        # tall 3x1: G = A^T A = [[4]] -> (4 - 1)^2 / 1^2
        ([[2.0], [0.0], [0.0]], 9.0),
        # wide 2x3: G = A A^T = diag(1, 4) -> (0 + 9) / 2^2
        ([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], 9 / 4),
        # tall 3x2 with non-orthogonal columns: G = A^T A = [[2, 1], [1, 2]] -> (1+1+1+1) / 4
        ([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], 1.0),
        # zero matrix 2x2: G = 0 -> ||I||^2 / 4
        ([[0.0, 0.0], [0.0, 0.0]], 2 / 4),
    ],
)
def test_orthogonality_penalty_hand_computed(factor, expected):
    value = orthogonality_penalty(torch.tensor(factor, dtype=torch.float64))
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_orthogonality_penalty_uses_smaller_gram_for_both_orientations():
    a = torch.randn(7, 3, dtype=torch.float64)
    assert orthogonality_penalty(a).item() == pytest.approx(orthogonality_penalty(a.T).item(), rel=1e-12)
    gram = a.T @ a
    expected = ((gram - torch.eye(3, dtype=torch.float64)) ** 2).sum() / 9
    assert orthogonality_penalty(a).item() == pytest.approx(expected.item(), rel=1e-12)


def test_orthogonality_penalty_gradient_finite_and_matches_analytic():
    a = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    orthogonality_penalty(a).backward()
    # d/dA ||A^T A - I||^2 / k^2 = 4 A (A^T A - I) / k^2
    with torch.no_grad():
        expected = 4 * a @ (a.T @ a - torch.eye(3, dtype=torch.float64)) / 9
    torch.testing.assert_close(a.grad, expected)


def test_svd_factors_are_orthonormal_and_reconstruct():
    m = torch.randn(6, 4)
    U, s, Vh = svd_factors(m)
    assert U.shape == (6, 4) and s.shape == (4,) and Vh.shape == (4, 4)
    assert U.dtype == s.dtype == Vh.dtype == torch.float32
    assert orthogonality_penalty(U).item() < 1e-12
    assert orthogonality_penalty(Vh).item() < 1e-12
    assert torch.all(s[:-1] >= s[1:]) and torch.all(s >= 0)
    torch.testing.assert_close((U * s) @ Vh, m, atol=1e-5, rtol=1e-5)


def test_random_factors_follow_kaiming_normal_scales():
    torch.manual_seed(1)
    m, n = 300, 400
    U, s, Vh = random_factors(m, n)
    r = 300
    # Kaiming normal with fan-in: Var U = 2 / r, Var Vh = 2 / n; s ~ N(0, 1)
    assert U.var().item() == pytest.approx(2 / r, rel=0.05)
    assert Vh.var().item() == pytest.approx(2 / n, rel=0.05)
    assert U.mean().abs().item() < 0.01 and Vh.mean().abs().item() < 0.01
    assert s.std().item() == pytest.approx(1.0, rel=0.15)
    assert abs(s.mean().item()) < 0.2 and (s < 0).any() and len(set(s.tolist())) == r
    # the product has roughly a Kaiming dense layer's scale: Var W = r * (2/r) * 1 * (2/n) = 4/n
    w = (U * s) @ Vh
    assert w.var().item() == pytest.approx(4 / n, rel=0.25)


@pytest.mark.parametrize("m, n", [(6, 4), (4, 6), (5, 5), (1, 3)])
def test_random_factors_shapes_and_dtype(m, n):
    U, s, Vh = random_factors(m, n, dtype=torch.float64)
    r = min(m, n)
    assert U.shape == (m, r) and s.shape == (r,) and Vh.shape == (r, n)
    assert U.dtype == s.dtype == Vh.dtype == torch.float64
    assert torch.isfinite(U).all() and torch.isfinite(s).all() and torch.isfinite(Vh).all()


# -- sparsity ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, expected", [("l1", 7.0), ("hoyer", 7 / 5 - 1), ("hoyer_square", 49 / 25 - 1)]
)
@pytest.mark.parametrize("s", [[3.0, 4.0], [-3.0, 4.0], [4.0, -3.0]])
def test_sparsity_hand_computed(s, kind, expected):
    value = sparsity_penalty(torch.tensor(s, dtype=torch.float64), kind)
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_sparsity_default_kind_is_hoyer():
    s = torch.tensor([3.0, 4.0])
    assert sparsity_penalty(s).item() == pytest.approx(0.4, rel=1e-6)


@pytest.mark.parametrize("kind", ["hoyer", "hoyer_square"])
def test_hoyer_is_zero_for_one_sparse_and_max_for_flat(kind):
    assert sparsity_penalty(torch.tensor([0.0, 5.0, 0.0]), kind).item() == pytest.approx(0.0, abs=1e-7)
    n = 4
    flat = sparsity_penalty(torch.ones(n, dtype=torch.float64), kind).item()
    assert flat == pytest.approx(math.sqrt(n) - 1 if kind == "hoyer" else n - 1, rel=1e-12)


@pytest.mark.parametrize("kind", SPARSITY_KINDS)
@pytest.mark.parametrize(
    "s",
    [[0.0, 0.0, 0.0], [0.0], [3.0, 0.0, 4.0, 0.0], [2.5], [-2.0], [1e-30, 0.0, 3e-30], [1e30, 2e30, 0.0]],
)
def test_sparsity_value_and_gradient_finite_with_zeros_rank1_and_extreme_scales(s, kind):
    t = torch.tensor(s, requires_grad=True)  # float32 on purpose
    value = sparsity_penalty(t, kind)
    value.backward()
    assert torch.isfinite(value)
    assert t.grad is not None and torch.isfinite(t.grad).all()


@pytest.mark.parametrize("kind", SPARSITY_KINDS)
def test_all_zero_s_gives_zero_with_zero_gradient(kind):
    t = torch.zeros(5, requires_grad=True)
    value = sparsity_penalty(t, kind)
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(t.grad, torch.zeros(5))


@pytest.mark.parametrize("kind", ["hoyer", "hoyer_square"])
def test_rank1_hoyer_is_zero_with_zero_gradient(kind):
    t = torch.tensor([3.7], requires_grad=True)
    value = sparsity_penalty(t, kind)
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-7)
    assert torch.isfinite(t.grad).all()
    assert t.grad.abs().max().item() < 1e-6


def _naive(s: torch.Tensor, kind: str) -> torch.Tensor:
    a = s.abs()
    if kind == "l1":
        return a.sum()
    if kind == "hoyer":
        return a.sum() / a.pow(2).sum().sqrt() - 1
    return a.sum().pow(2) / a.pow(2).sum() - 1


@given(
    values=st.lists(st.floats(-10, 10, allow_nan=False).filter(lambda v: abs(v) > 1e-3), min_size=1, max_size=8),
    kind=st.sampled_from(SPARSITY_KINDS),
)
def test_sparsity_value_and_gradient_match_naive_formula(values, kind):
    s1 = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    s2 = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    v1, v2 = sparsity_penalty(s1, kind), _naive(s2, kind)
    v1.backward()
    v2.backward()
    assert v1.item() == pytest.approx(v2.item(), rel=1e-9, abs=1e-12)
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-8, atol=1e-12)


@given(
    values=st.lists(st.floats(0.1, 10), min_size=1, max_size=6),
    scale=st.sampled_from([1e-30, 1e-20, 1e-3, 1.0, 7.0, 1e20, 1e30]),
    kind=st.sampled_from(["hoyer", "hoyer_square"]),
)
def test_hoyer_is_scale_invariant_in_float32(values, scale, kind):
    base = sparsity_penalty(torch.tensor(values, dtype=torch.float64), kind).item()
    t = torch.tensor(values, dtype=torch.float32) * scale
    t.requires_grad_(True)
    value = sparsity_penalty(t, kind)
    value.backward()
    assert math.isfinite(value.item())
    assert value.item() == pytest.approx(base, rel=1e-5, abs=1e-6)
    assert torch.isfinite(t.grad).all()
    # the gradient of a degree-0 homogeneous function scales like 1/scale
    ref = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    sparsity_penalty(ref, kind).backward()
    torch.testing.assert_close((t.grad.double() * scale), ref.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bad", ["L1", "hoyer-square", "", "l2"])
def test_unknown_sparsity_kind_raises(bad):
    with pytest.raises(ValueError, match=r"unknown sparsity kind .*l1, hoyer, hoyer_square"):
        sparsity_penalty(torch.ones(3), bad)
    with pytest.raises(ValueError, match="unknown sparsity kind"):
        check_sparsity_kind(bad)
