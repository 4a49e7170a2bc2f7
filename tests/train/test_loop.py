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
