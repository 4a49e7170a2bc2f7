"""compact: a plain-torch copy with the SVD model's outputs, never costlier than the dense
original; scriptable and exportable to ONNX."""

import copy
import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import svdtrain
from svdtrain import SVDLinear, compact, count_macs, decompose, prune, svd_layers


class Net(nn.Module):
    """Conv2d (reflect, strided/dilated, 'same'), Conv1d (circular) and Linear layers."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect")
        self.conv2 = nn.Conv2d(8, 16, (3, 2), stride=2, dilation=(1, 2))
        self.conv3 = nn.Conv2d(16, 12, 3, padding="same", bias=False)
        self.conv4 = nn.Conv1d(12, 8, 3, padding=1, padding_mode="circular")
        self.fc = nn.Linear(8 * 25, 10)

    def forward(self, x):  # x: (N, 3, 12, 12)
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))  # (N, 16, 5, 5)
        x = self.conv3(x).flatten(2)  # (N, 12, 25)
        x = torch.relu(self.conv4(x))  # (N, 8, 25)
        return self.fc(x.flatten(1))


def _x(batch=2):
    return torch.randn(batch, 3, 12, 12)


def _close(out, ref):
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())


def _only_torch_modules(model):
    """Every module is a torch class, except the user's own container classes of this file."""
    for module in model.modules():
        assert not isinstance(module, svdtrain.SVDLayer)
        assert not type(module).__module__.startswith("svdtrain"), type(module)
        if type(module) not in (Net, TwoInputs):
            assert type(module).__module__.startswith("torch"), type(module)


def _decomposed(scheme, seed=0):
    torch.manual_seed(seed)
    dense = Net().eval()
    model = decompose(copy.deepcopy(dense), scheme=scheme)
    return dense, model


@given(scheme=st.sampled_from(["channel", "spatial"]), data=st.data())
def test_compact_matches_svd_model_at_random_ranks_and_never_costs_more_than_dense(scheme, data):
    dense, model = _decomposed(scheme)
    ranks = {name: data.draw(st.integers(1, layer.rank), label=name) for name, layer in svd_layers(model)}
    prune(model, rank=ranks)
    x = _x()
    ref = model(x)
    dense_macs = count_macs(dense, x)
    with_shape, without = compact(model, x), compact(model)
    for c in (with_shape, without):
        _only_torch_modules(c)
        _close(c(x), ref)
    macs_with, macs_without = count_macs(with_shape, x), count_macs(without, x)
    assert macs_with <= macs_without <= dense_macs
    assert macs_with == count_macs(model, x)  # the SVD model is counted at its deployable cost
    assert all(layer.rank == ranks[name] for name, layer in svd_layers(model))  # model untouched


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
@pytest.mark.parametrize("energy", [0.0, 0.05, 0.3, 0.9])
def test_compact_after_energy_pruning(scheme, energy):
    dense, model = _decomposed(scheme)
    prune(model, energy=energy)
    x = _x()
    c = compact(model, x)
    _only_torch_modules(c)
    _close(c(x), model(x))
    assert count_macs(c, x) <= count_macs(dense, x)


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_compact_of_full_rank_model_is_the_dense_model(scheme):
    dense, model = _decomposed(scheme)
    x = _x()
    for c in (compact(model), compact(model, x)):
        assert count_macs(c, x) == count_macs(dense, x)
        for name in ["conv1", "conv2", "conv3", "conv4", "fc"]:
            assert type(getattr(c, name)) is type(getattr(dense, name))
            torch.testing.assert_close(getattr(c, name).weight, getattr(dense, name).weight, atol=1e-5, rtol=1e-4)
        _close(c(x), dense(x))


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_low_rank_layers_become_standard_pairs(scheme):
    _, model = _decomposed(scheme)
    prune(model, rank=1)
    c = compact(model, _x())
    for name in ["conv1", "conv2", "conv3", "conv4", "fc"]:
        pair = getattr(c, name)
        assert type(pair) is nn.Sequential and len(pair) == 2
        assert type(pair[0]) is type(pair[1]) is type(getattr(Net(), name))
    assert c.fc[0].weight.shape == (1, 200) and c.fc[1].weight.shape == (10, 1)
    assert c.conv3[1].bias is None and c.conv1[1].bias is not None and c.conv1[0].bias is None


def test_compact_does_not_change_the_model_and_keeps_training_mode():
    _, model = _decomposed("channel")
    model.train()
    prune(model, rank=2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    c = compact(model, _x())
    assert c is not model
    assert model.training and all(m.training for m in model.modules())
    assert c.training
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert len(svd_layers(model)) == 5
    with torch.no_grad():
        c.fc[1].bias.add_(1.0)
    assert not torch.equal(c.fc[1].bias, model.fc.bias)  # independent copy


def test_compact_pickles_without_svdtrain():
    _, model = _decomposed("spatial")
    prune(model, rank=2)
    c = compact(model)
    assert b"svdtrain" not in pickle.dumps(c)
    buffer = io.BytesIO()
    torch.save(c, buffer)
    assert b"svdtrain" not in buffer.getvalue()


def test_compact_of_bare_svd_layer():
    layer = SVDLinear.from_linear(nn.Linear(16, 12))
    layer.keep_(2)
    x = torch.randn(3, 16)
    for c in (compact(layer), compact(layer, x)):
        assert type(c) is nn.Sequential
        _only_torch_modules(c)
        _close(c(x), layer(x))


def test_compact_keeps_shared_layers_shared():
    fc = nn.Linear(6, 6)
    model = decompose(nn.Sequential(fc, nn.Tanh(), fc))
    prune(model, rank=1)
    x = torch.randn(2, 6)
    c = compact(model, x)
    assert c[0] is c[2] and type(c[0]) is nn.Sequential
    _close(c(x), model(x))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 4), nn.Linear(6, 4)

    def forward(self, x, y):
        return self.a(x) + self.b(y)


def test_compact_with_tuple_example_input():
    model = decompose(TwoInputs())
    prune(model, rank=1)
    x, y = torch.randn(2, 8), torch.randn(2, 6)
    c = compact(model, (x, y))
    _only_torch_modules(c)
    _close(c(x, y), model(x, y))


def test_compact_without_svd_layers_raises():
    with pytest.raises(ValueError, match=r"no SVD layers; call svdtrain\.decompose"):
        compact(nn.Sequential(nn.Linear(3, 3)))


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
@pytest.mark.parametrize("rank", [1, 3, None])
def test_compact_is_scriptable(scheme, rank):
    _, model = _decomposed(scheme)
    if rank is not None:
        prune(model, rank=rank)
    x = _x()
    c = compact(model, x).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in new torch
        scripted = torch.jit.script(c)
    _close(scripted(x), model(x))


def _export_onnx(model, x, path):
    """torch.onnx.export with default arguments (the torch.export-based exporter here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path))


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_compact_exports_to_onnx_and_onnxruntime_matches(scheme, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    _, model = _decomposed(scheme)
    prune(model, rank={"conv1": 2, "conv2": 3, "conv4": 1, "fc": 2})  # conv3 stays full rank: dense
    x = _x()
    c = compact(model, x).eval()
    assert type(c.conv1) is nn.Sequential and type(c.conv3) is nn.Conv2d  # both kinds are exported
    path = tmp_path / "compact.onnx"
    _export_onnx(c, x, path)
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    ref = model(x).detach().numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_measured_choice_keeps_the_function_and_picks_a_form_per_layer():
    torch.manual_seed(0)
    model = svdtrain.decompose(nn.Sequential(nn.Conv2d(8, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3)))
    svdtrain.prune(model, rank=4)
    x = torch.randn(2, 8, 12, 12)
    measured = svdtrain.compact(model, x, choose="measured", rounds=3)
    torch.testing.assert_close(measured(x), model(x), atol=1e-4, rtol=1e-4)
    assert all(isinstance(m, (nn.Conv2d, nn.Sequential)) for m in (measured[0], measured[2]))


def test_measured_choice_takes_the_faster_form(monkeypatch):
    from svdtrain.surgery import timing

    model = svdtrain.decompose(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1)))
    svdtrain.prune(model, rank=2)
    x = torch.randn(1, 16, 8, 8)
    monkeypatch.setattr(timing, "median_seconds", lambda mods, inputs, rounds: [1.0, 2.0])  # dense measured faster
    assert isinstance(svdtrain.compact(model, x, choose="measured")[0], nn.Conv2d)
    monkeypatch.setattr(timing, "median_seconds", lambda mods, inputs, rounds: [2.0, 1.0])
    assert isinstance(svdtrain.compact(model, x, choose="measured")[0], nn.Sequential)


def test_measured_choice_needs_an_example_and_a_known_rule():
    model = svdtrain.decompose(nn.Sequential(nn.Linear(8, 8)))
    with pytest.raises(ValueError, match="example_input"):
        svdtrain.compact(model, choose="measured")
    with pytest.raises(ValueError, match="unknown choose"):
        svdtrain.compact(model, torch.randn(1, 8), choose="fastest")
