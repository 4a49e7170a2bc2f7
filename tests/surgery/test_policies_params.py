"""ParamsBudget: a lean start, the SVD form held to a share of the dense weights' parameters."""

import pytest
import torch
from torch import nn

import svdtrain
from svdtrain import ParamsBudget, SVDTraining, SVDTrainingConfig


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))


def _factor_params(model: nn.Module) -> int:
    return sum(p.numel() for handle in svdtrain.factored_weights(model).values() for p in handle.factors)


DENSE = 64 * 64 + 64 * 256 + 256 * 10


@pytest.mark.parametrize("share", [1.0, 0.5, 0.1])
def test_the_factors_hold_at_most_the_share_and_the_cut_keeps_the_most_energy_per_parameter(share):
    model = svdtrain.decompose(_model())
    assert _factor_params(model) > DENSE  # full rank: more than dense (the reason for a lean start)
    energy = {name: handle.s.detach().square() for name, handle in svdtrain.factored_weights(model).items()}
    ranks = svdtrain.prune(model, ParamsBudget(share))
    assert share * DENSE - max(m + n + 1 for m, n in [(64, 64), (256, 64), (10, 256)]) < _factor_params(model)
    assert _factor_params(model) <= share * DENSE
    kept = [float(energy[name][:rank].sum() / energy[name].sum()) for name, rank in ranks.items()]
    assert all(0 < k <= 1 for k in kept)


def test_a_share_the_model_already_meets_changes_nothing_and_bad_shares_are_refused():
    model = svdtrain.decompose(_model())
    full = {name: handle.rank for name, handle in svdtrain.factored_weights(model).items()}
    assert svdtrain.prune(model, ParamsBudget(2.0)) == full
    with pytest.raises(ValueError, match="out of reach"):
        svdtrain.prune(model, ParamsBudget(0.001))
    for share in (0, -1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="share must be a number > 0"):
            ParamsBudget(share)


def test_svd_training_with_a_lean_start_trains_no_more_parameters_than_dense():
    model = _model()
    dense = sum(p.numel() for p in model.parameters())
    SVDTraining(model, SVDTrainingConfig(lean_start=1.0))
    assert sum(p.numel() for p in model.parameters()) <= dense
    with pytest.raises(ValueError, match="lean_start must be a finite number >= 0"):
        SVDTrainingConfig(lean_start=-1.0)
