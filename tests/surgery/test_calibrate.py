"""Activation-aware truncation: calibrate, then prune / MacsBudget with calibration=."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import svdtrain
from svdtrain.layers import kind_for


def _correlated(n_rows: int, features: int, seed: int = 0) -> torch.Tensor:
    """Inputs with a few strong directions, as real activations have."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(features, features, generator=g))[0]
    scales = torch.logspace(1, -2, features)
    return (torch.randn(n_rows, features, generator=g) * scales) @ basis.T


def _output_error(model: nn.Module, reference: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x) - reference(x)).pow(2).sum())


@pytest.mark.parametrize(("method", "at_most"), [("whiten", 0.15), ("scale", 0.9)])  # measured: 0.07 and 0.78
def test_truncation_on_the_calibration_inputs_beats_plain_truncation(method, at_most):
    torch.manual_seed(0)
    dense = nn.Linear(32, 24)
    x = _correlated(512, 32)
    plain, aware = (svdtrain.decompose(copy.deepcopy(dense)) for _ in range(2))
    svdtrain.prune(plain, svdtrain.Ranks(6))
    calibration = svdtrain.calibrate(aware, [x[:256], x[256:]], method=method)
    assert svdtrain.prune(aware, svdtrain.Ranks(6), calibration=calibration) == {"weight": 6}
    assert _output_error(aware, dense, x) < at_most * _output_error(plain, dense, x)
    layer = svdtrain.factored_weights(aware)["weight"]
    torch.testing.assert_close(layer.U.T @ layer.U, torch.eye(6), atol=1e-5, rtol=0)  # orthonormal again
    torch.testing.assert_close(layer.Vh @ layer.Vh.T, torch.eye(6), atol=1e-5, rtol=0)
    assert (layer.s[:-1] >= layer.s[1:]).all() and (layer.s > 0).all()


def _best_on_inputs(W: torch.Tensor, X: torch.Tensor, rank: int) -> torch.Tensor:
    """The rank-``rank`` matrix minimizing ||(W - W_r) X|| in closed form, through a Cholesky
    factor of X Xᵀ (SVD-LLM's own construction)."""
    L = torch.linalg.cholesky(X @ X.T)
    U, s, Vh = torch.linalg.svd(W @ L)
    return (U[:, :rank] * s[:rank]) @ Vh[:rank] @ torch.linalg.inv(L)


def test_whitening_reaches_the_optimum_of_the_output_error():
    """With an undamped Gram, no rank-r matrix does better on the calibration inputs: compare
    with the closed form through a Cholesky factor (SVD-LLM's own construction)."""
    torch.manual_seed(1)
    dense, x = nn.Linear(16, 12, bias=False), _correlated(400, 16)
    model = svdtrain.decompose(copy.deepcopy(dense))
    svdtrain.prune(model, svdtrain.Ranks(4), calibration=svdtrain.calibrate(model, [x], damping=0.0))
    best = _best_on_inputs(dense.weight.detach().double(), x.double().T, 4)
    torch.testing.assert_close(model.weight.detach().double(), best, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("layer", "x"),
    [
        (nn.Linear(6, 5), torch.randn(2, 3, 6)),
        (nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1), torch.randn(2, 3, 9, 9)),
        (nn.Conv2d(3, 4, (3, 2), padding=(1, 0), dilation=(2, 1)), torch.randn(2, 3, 8, 7)),
        (nn.Conv1d(3, 4, 3, stride=2, padding=2), torch.randn(2, 3, 11)),
        (nn.Conv2d(3, 4, 3, padding="valid"), torch.randn(1, 3, 6, 6)),
    ],
)
def test_matrix_inputs_times_the_matrix_is_the_layer_output(layer, x):
    model = svdtrain.decompose(layer)
    handle = svdtrain.factored_weights(model)["weight"]
    rows = kind_for(layer).matrix_inputs(layer, "weight", (x,), {})
    with torch.no_grad():
        product = rows @ handle.matrix().T  # (positions, out)
        expected = layer(x) - (layer.bias.view(-1, *[1] * (x.dim() - 2)) if isinstance(layer, nn.modules.conv._ConvNd)
                               else layer.bias)  # fmt: skip
        if isinstance(layer, nn.modules.conv._ConvNd):
            expected = expected.movedim(1, -1)
    torch.testing.assert_close(product, expected.reshape(-1, expected.shape[-1]), atol=1e-5, rtol=1e-5)


def test_weights_whose_inputs_are_hidden_fall_back_to_their_own_spectrum():
    torch.manual_seed(0)
    lstm = nn.LSTM(8, 16, num_layers=2)
    model = svdtrain.decompose(lstm)
    calibration = svdtrain.calibrate(model, [torch.randn(5, 3, 8)])
    assert set(calibration.stats) == {"weight_ih_l0"}  # W_hh and layer 1's W_ih run inside the fused kernel
    before = svdtrain.factored_weights(model)["weight_hh_l1"].s.detach().clone()
    svdtrain.prune(model, svdtrain.Ranks(4), calibration=calibration)
    torch.testing.assert_close(svdtrain.factored_weights(model)["weight_hh_l1"].s.detach(), before[:4])


def test_a_spatial_conv_of_width_one_is_whitened_to_the_optimum():
    """Spatial-wise, the vertical patches meet M (in*kh, out*kw) from the left; with kw = 1 they
    give the layer's output exactly, so whitening must reach the closed-form optimum."""
    torch.manual_seed(2)
    dense = nn.Conv2d(4, 6, (3, 1), stride=(2, 1), padding=(1, 0), bias=False)
    x = torch.randn(3, 4, 9, 5)
    x = x + 3 * x[:, :1]  # channels correlated
    model = svdtrain.decompose(copy.deepcopy(dense), scheme="spatial")
    rows = kind_for(dense).matrix_inputs(model, "weight", (x,), {})
    M = svdtrain.factored_weights(model)["weight"].matrix().detach()
    torch.testing.assert_close(rows @ M, dense(x).movedim(1, -1).reshape(-1, 6), atol=1e-5, rtol=1e-5)
    calibration = svdtrain.calibrate(model, [x], damping=0.0)
    assert calibration.stats["weight"].rows
    svdtrain.prune(model, svdtrain.Ranks(2), calibration=calibration)
    best = _best_on_inputs(M.double().T, rows.double().T, 2).T  # the inputs meet M from the left
    torch.testing.assert_close(svdtrain.factored_weights(model)["weight"].matrix().detach().double(), best,
                               atol=1e-4, rtol=1e-4)  # fmt: skip


def test_a_spatial_conv_truncated_on_its_inputs_beats_plain_truncation():
    torch.manual_seed(3)
    dense = nn.Conv2d(6, 8, 3, padding=1)
    mix = torch.linalg.qr(torch.randn(6, 6))[0] * torch.logspace(1, -2, 6)
    x = torch.einsum("bchw,dc->bdhw", torch.randn(4, 6, 10, 10), mix)  # a few strong channel directions
    plain, aware = (svdtrain.decompose(copy.deepcopy(dense), scheme="spatial") for _ in range(2))
    svdtrain.prune(plain, svdtrain.Ranks(4))
    svdtrain.prune(aware, svdtrain.Ranks(4), calibration=svdtrain.calibrate(aware, [x]))
    assert _output_error(aware, dense, x) < 0.2 * _output_error(plain, dense, x)  # measured: 0.05


def test_cross_attention_gets_no_statistics():
    attention = svdtrain.decompose(nn.MultiheadAttention(8, 2, batch_first=True))
    q, kv = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    assert "in_proj_weight" not in svdtrain.calibrate(attention, [{"query": q, "key": kv, "value": kv}]).stats
    assert "in_proj_weight" in svdtrain.calibrate(attention, [{"query": q, "key": q, "value": q}]).stats


def test_macs_budgets_with_a_calibration_meet_the_budget():
    torch.manual_seed(0)
    model = svdtrain.decompose(nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32)))
    x = _correlated(256, 32)
    calibration = svdtrain.calibrate(model, [x])
    budget = svdtrain.count_macs(model, x[:1]) // 3
    ranks = svdtrain.MacsBudget(x[:1], max_macs=budget).ranks(model, calibration)
    trial = copy.deepcopy(model)
    svdtrain.prune(trial, svdtrain.Ranks(ranks), calibration=calibration)
    assert svdtrain.count_macs(trial, x[:1]) <= budget
    svdtrain.prune(model, svdtrain.MacsBudget(x[:1], max_macs=budget, allocation="energy"), calibration=calibration)
    assert svdtrain.count_macs(model, x[:1]) <= budget
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_dead_inputs_stay_finite():
    model = svdtrain.decompose(nn.Linear(8, 6))
    x = torch.zeros(10, 8)
    x[:, 0] = 1.0  # seven of eight input features never fire
    for method in ("whiten", "scale"):
        trial = copy.deepcopy(model)
        svdtrain.prune(trial, svdtrain.Ranks(2), calibration=svdtrain.calibrate(trial, [x], method=method))
        assert all(torch.isfinite(p).all() for p in trial.parameters())
    zero = copy.deepcopy(model)
    svdtrain.prune(zero, svdtrain.Ranks(2), calibration=svdtrain.calibrate(zero, [torch.zeros(4, 8)], damping=0.0))
    assert all(torch.isfinite(p).all() for p in zero.parameters())


def test_bad_uses_are_named():
    model = svdtrain.decompose(nn.Linear(8, 6))
    with pytest.raises(ValueError, match="calibrate got no batches"):
        svdtrain.calibrate(model, [])
    with pytest.raises(ValueError, match="unknown calibration method 'pca'"):
        svdtrain.calibrate(model, [torch.randn(2, 8)], method="pca")
    calibration = svdtrain.calibrate(model, [torch.randn(2, 8)])
    with pytest.raises(ValueError, match="with a calibration give Energy or Ranks"):
        svdtrain.prune(model, svdtrain.Threshold(0.1), calibration=calibration)
    with pytest.raises(ValueError, match="no factored weights|not decomposed|decompose"):
        svdtrain.calibrate(nn.Linear(8, 6), [torch.randn(2, 8)])


def test_calibration_runs_in_eval_mode_and_restores_training_mode():
    model = svdtrain.decompose(nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 4)))
    model.train()
    svdtrain.calibrate(model, [(torch.randn(4, 8), torch.zeros(4))])
    assert all(m.training for m in model.modules())


def test_diverged_activations_are_a_clear_error():
    model = svdtrain.decompose(nn.Linear(4, 3))
    calibration = svdtrain.calibrate(model, [torch.full((2, 4), float("nan"))])
    for method in ("whiten", "scale"):
        calibration = svdtrain.Calibration(calibration.stats, method=method)
        with pytest.raises(ValueError, match="activations diverged"):
            svdtrain.prune(model, svdtrain.Ranks(1), calibration=calibration)
