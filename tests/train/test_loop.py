import pytest
import torch
from torch import nn

from svdtrain.train import recalibrate_batchnorm


def test_batchnorm_recalibration_measures_the_data():
    model = nn.Sequential(nn.BatchNorm1d(3))
    model.eval()
    data = [(torch.randn(64, 3) * 2 + 5, torch.zeros(64)) for _ in range(4)]
    recalibrate_batchnorm(model, data, max_batches=4)
    inputs = torch.cat([x for x, _ in data])
    torch.testing.assert_close(model[0].running_mean, inputs.mean(0), atol=1e-5, rtol=0)
    assert not model.training and model[0].momentum == 0.1  # mode and momentum restored
    assert torch.allclose(model[0].running_var, inputs.var(0), rtol=0.1)


def test_batchnorm_recalibration_stops_after_max_batches():
    model = nn.Sequential(nn.BatchNorm1d(1))
    data = [(torch.full((8, 1), float(i)), None) for i in range(10)]
    recalibrate_batchnorm(model, data, max_batches=2)
    assert model[0].running_mean.item() == 0.5


def test_lazy_regularization_keeps_the_average_pull():
    import svdtrain
    from svdtrain.train import Regularization

    model = svdtrain.decompose(nn.Sequential(nn.Linear(6, 5)), init="random")
    eager = Regularization(1.0, 0.1, "hoyer")
    lazy = Regularization(1.0, 0.1, "hoyer", every=3)
    per_step = [float(lazy.loss(model, step)) for step in range(6)]
    assert per_step[1:3] == [0.0, 0.0] and per_step[4:6] == [0.0, 0.0]
    assert sum(per_step) == pytest.approx(6 * float(eager.loss(model)), rel=1e-6)


@pytest.mark.parametrize("every", [0, -2, 1.5, True])
def test_bad_lazy_interval_is_refused(every):
    from svdtrain.train import Regularization

    with pytest.raises(ValueError, match="every"):
        Regularization(1.0, every=every)
