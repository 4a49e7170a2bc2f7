"""orthogonality_loss, sparsity_loss, singular_values on whole models (keyed by weight name);
a training sanity run."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from svdtrain import Ranks, decompose, factored_weights, orthogonality_loss, prune, singular_values, sparsity_loss


def _two_linear_model():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 3, bias=False))
    return decompose(model)


def _h(model, index):
    return factored_weights(model)[f"{index}.weight"]


def _set(handle, U, s, Vh):
    with torch.no_grad():
        handle.U.copy_(torch.tensor(U))
        handle.s.copy_(torch.tensor(s))
        handle.Vh.copy_(torch.tensor(Vh))


def test_orthogonality_loss_zero_after_svd_init_and_positive_after_random_init():
    model = decompose(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 5)), scheme="spatial")
    assert orthogonality_loss(model).item() < 1e-10
    random_model = decompose(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 5)), init="random")
    assert orthogonality_loss(random_model).item() > 1e-2


def test_orthogonality_loss_hand_computed_sum_over_layers_and_factors():
    model = _two_linear_model()
    # layer 0: U = [[1, 1], [0, 1]] (square -> A A^T): 3/4; Vh = I: 0
    _set(_h(model, 0), [[1.0, 1.0], [0.0, 1.0]], [1.0, 1.0], [[1.0, 0.0], [0.0, 1.0]])
    # layer 1: U (3x2) = [[1, 0], [1, 1], [0, 1]] -> A^T A = [[2, 1], [1, 2]]: 4/4;
    #          Vh (2x2) = 2 I -> A A^T = 4 I: (9 + 9)/4
    _set(_h(model, 1), [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], [1.0, 1.0], [[2.0, 0.0], [0.0, 2.0]])
    loss = orthogonality_loss(model)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(3 / 4 + 0 + 1 + 18 / 4, rel=1e-6)
    assert _h(model, 0).orthogonality_penalty().item() == pytest.approx(3 / 4, rel=1e-6)


def test_orthogonality_loss_gradient_reaches_factors_only():
    model = decompose(nn.Sequential(nn.Linear(4, 3)), init="random")
    orthogonality_loss(model).backward()
    layer = _h(model, 0)
    assert torch.isfinite(layer.U.grad).all() and layer.U.grad.abs().sum() > 0
    assert torch.isfinite(layer.Vh.grad).all() and layer.Vh.grad.abs().sum() > 0
    assert layer.s.grad is None


@pytest.mark.parametrize("kind, per_layer", [("l1", 7.0), ("hoyer", 0.4), ("hoyer_square", 0.96)])
def test_sparsity_loss_hand_computed_and_summed(kind, per_layer):
    model = _two_linear_model()
    with torch.no_grad():
        _h(model, 0).s.copy_(torch.tensor([3.0, 4.0]))
        _h(model, 1).s.copy_(torch.tensor([-4.0, 3.0]))
    assert sparsity_loss(model, kind).item() == pytest.approx(2 * per_layer, rel=1e-6)


def test_sparsity_loss_default_is_hoyer():
    model = _two_linear_model()
    assert sparsity_loss(model).item() == pytest.approx(sparsity_loss(model, "hoyer").item())


@pytest.mark.parametrize("kind", ["l1", "hoyer", "hoyer_square"])
@pytest.mark.parametrize("s0", [[0.0, 0.0], [0.0, 2.0], [1e-30, 3e-30], [1e30, 0.0]])
def test_sparsity_loss_gradients_finite_with_zero_tiny_huge_and_rank1(kind, s0):
    model = _two_linear_model()
    prune(model, Ranks({"1.weight": 1}))  # weight 1 has rank 1
    with torch.no_grad():
        _h(model, 0).s.copy_(torch.tensor(s0))
    loss = sparsity_loss(model, kind)
    loss.backward()
    assert torch.isfinite(loss)
    for handle in factored_weights(model).values():
        assert torch.isfinite(handle.s.grad).all()
    if s0 == [0.0, 0.0]:
        assert torch.equal(_h(model, 0).s.grad, torch.zeros(2))


@pytest.mark.parametrize("kind", ["hoyer", "hoyer_square"])
@pytest.mark.parametrize("scale", [1e-30, 1e-10, 1e10, 1e30])
def test_sparsity_loss_scale_invariant_for_hoyer_kinds(kind, scale):
    model = _two_linear_model()
    base = sparsity_loss(model, kind).item()
    with torch.no_grad():
        for handle in factored_weights(model).values():
            handle.s.mul_(scale)
    value = sparsity_loss(model, kind).item()
    assert math.isfinite(value)
    assert value == pytest.approx(base, rel=1e-5)


def test_sparsity_loss_l1_scales_linearly():
    model = _two_linear_model()
    base = sparsity_loss(model, "l1").item()
    with torch.no_grad():
        for handle in factored_weights(model).values():
            handle.s.mul_(-3.0)
    assert sparsity_loss(model, "l1").item() == pytest.approx(3 * base, rel=1e-6)


def test_unknown_sparsity_kind_raises():
    model = _two_linear_model()
    with pytest.raises(ValueError, match=r"unknown sparsity kind 'hoyer2'; valid kinds are l1, hoyer, hoyer_square"):
        sparsity_loss(model, "hoyer2")


@pytest.mark.parametrize("fn", [orthogonality_loss, sparsity_loss, singular_values])
def test_losses_need_factored_weights(fn):
    with pytest.raises(ValueError, match=r"no factored weights; call svdtrain\.decompose"):
        fn(nn.Sequential(nn.Linear(3, 3)))


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_singular_values_match_numpy_and_are_detached_copies(scheme):
    model = nn.Sequential(nn.Conv2d(3, 4, (3, 2)), nn.Flatten(), nn.Linear(4, 6))
    weights = [model[0].weight.detach().double().numpy(), model[2].weight.detach().double().numpy()]
    decompose(model, scheme=scheme)
    values = singular_values(model)
    assert list(values) == ["0.weight", "2.weight"]
    w = weights[0]
    matrix = w.reshape(4, -1) if scheme == "channel" else w.transpose(1, 2, 0, 3).reshape(3 * 3, 4 * 2)
    np.testing.assert_allclose(values["0.weight"].double().numpy(), np.linalg.svd(matrix, compute_uv=False), rtol=1e-5)
    expected = np.linalg.svd(weights[1], compute_uv=False)
    np.testing.assert_allclose(values["2.weight"].double().numpy(), expected, rtol=1e-5)
    for s in values.values():
        assert not s.requires_grad and torch.all(s >= 0) and torch.all(s[:-1] >= s[1:])
    values["2.weight"].zero_()
    assert _h(model, 2).s.abs().sum() > 0  # the model is untouched


@pytest.mark.parametrize("kind", ["l1", "hoyer", "hoyer_square"])
def test_training_sanity_with_both_regularizers(kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 3))
    decompose(model, scheme="channel", init="random")
    x, y = torch.randn(16, 2, 4, 4), torch.randint(0, 3, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) + 0.1 * orthogonality_loss(model)
        loss = loss + 1e-3 * sparsity_loss(model, kind)
        loss.backward()
        assert torch.isfinite(loss)
        for handle in (_h(model, 0), _h(model, 3)):
            for p in handle.factors:
                assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # prune, rebuild the optimizer, keep training
    prune(model, Ranks(2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = nn.functional.cross_entropy(model(x), y) + orthogonality_loss(model) + sparsity_loss(model, kind)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and _h(model, 0).U.shape[1] == 2 and torch.isfinite(_h(model, 0).U).all()
    assert torch.isfinite(model[0].weight).all()
    assert torch.linalg.matrix_rank(model[0].weight.detach().flatten(1)) <= 2


def test_factors_are_listed_for_the_optimizer():
    model = decompose(nn.Sequential(nn.Linear(5, 3)))
    names = [n for n, _ in model.named_parameters()]
    factors = [f"0.parametrizations.weight.original{i}" for i in range(3)]
    assert names == ["0.bias", *factors]
    handle = _h(model, 0)
    params = dict(model.named_parameters())
    assert [params[n] for n in factors] == [handle.U, handle.s, handle.Vh]
    assert isinstance(model[0], nn.Linear)
