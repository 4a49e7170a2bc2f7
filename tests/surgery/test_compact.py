"""compact: a plain-torch copy with the factored model's outputs, never costlier than the dense
original; the original untouched; scriptable and exportable to ONNX; compact_spec /
rebuild_compact rebuild the same structure on a fresh model."""

import copy
import io
import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from svdtrain import (
    Energy,
    Ranks,
    compact,
    compact_spec,
    count_macs,
    decompose,
    deployed_forms,
    factored_weights,
    prune,
    rebuild_compact,
)

NAMES = ["conv1", "conv2", "conv3", "conv4", "fc"]


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
    """Every module is a plain torch class (no parametrization), except the user's own
    container classes of this file."""
    for module in model.modules():
        assert not parametrize.is_parametrized(module), type(module)
        assert not type(module).__module__.startswith("svdtrain"), type(module)
        if type(module) not in (Net, TwoInputs, ReadsItsWeight, Containers):
            assert type(module).__module__.startswith("torch.nn.modules"), type(module)
    assert not factored_weights(model)


def _decomposed(scheme, seed=0):
    torch.manual_seed(seed)
    dense = Net().eval()
    model = decompose(copy.deepcopy(dense), scheme=scheme)
    return dense, model


def _ranks(model):
    return {name: handle.rank for name, handle in factored_weights(model).items()}


@given(scheme=st.sampled_from(["channel", "spatial"]), data=st.data())
def test_compact_matches_factored_model_at_random_ranks_and_never_costs_more_than_dense(scheme, data):
    dense, model = _decomposed(scheme)
    weights = factored_weights(model)
    ranks = {name: data.draw(st.integers(1, handle.rank), label=name) for name, handle in weights.items()}
    prune(model, Ranks(ranks))
    x = _x()
    ref = model(x)
    dense_macs = count_macs(dense, x)
    with_shape, without = compact(model, x), compact(model)
    for c in (with_shape, without):
        _only_torch_modules(c)
        _close(c(x), ref)
    macs_with, macs_without = count_macs(with_shape, x), count_macs(without, x)
    assert macs_with <= macs_without <= dense_macs
    assert macs_with == count_macs(model, x)  # the factored model is counted at its deployable cost
    assert _ranks(model) == ranks  # model untouched
    _close(model(x), ref)


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
@pytest.mark.parametrize("energy", [0.0, 0.05, 0.3, 0.9])
def test_compact_after_energy_pruning(scheme, energy):
    dense, model = _decomposed(scheme)
    prune(model, Energy(energy))
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
        for name in NAMES:
            assert type(getattr(c, name)) is type(getattr(dense, name))
            assert isinstance(getattr(c, name).weight, nn.Parameter)
            torch.testing.assert_close(getattr(c, name).weight, getattr(dense, name).weight, atol=1e-5, rtol=1e-4)
            assert getattr(c, name).weight.is_contiguous()
        assert sorted(n for n, _ in c.named_parameters()) == sorted(n for n, _ in dense.named_parameters())
        assert c.state_dict().keys() == dense.state_dict().keys()
        c.load_state_dict(dense.state_dict())  # the dense model's checkpoints load as they are
        _close(c(x), dense(x))


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_low_rank_layers_become_standard_pairs(scheme):
    _, model = _decomposed(scheme)
    prune(model, Ranks(1))
    c = compact(model, _x())
    for name in NAMES:
        pair = getattr(c, name)
        assert type(pair) is nn.Sequential and len(pair) == 2
        assert type(pair[0]) is type(pair[1]) is type(getattr(Net(), name))
    assert c.fc[0].weight.shape == (1, 200) and c.fc[1].weight.shape == (10, 1)
    assert c.conv3[1].bias is None and c.conv1[1].bias is not None and c.conv1[0].bias is None
    assert deployed_forms(model, c) == {f"{name}.weight": "pair" for name in NAMES}


def test_compact_does_not_change_the_model_and_keeps_training_mode():
    _, model = _decomposed("channel")
    model.train()
    prune(model, Ranks({"conv1.weight": 2, "fc.weight": 1}))  # the rest stays full rank: baked dense
    x = _x()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    classes = {name: type(getattr(model, name)) for name in NAMES}
    ref = model.eval()(x)
    model.train()
    c = compact(model, x)
    assert c is not model
    assert model.training and all(m.training for m in model.modules())
    assert c.training
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert _ranks(model) == {"conv1.weight": 2, "conv2.weight": 16, "conv3.weight": 12, "conv4.weight": 8,
                             "fc.weight": 1}  # fmt: skip
    # A deep copy shares each parametrized class with the model it was copied from: baking the
    # copy's weights must leave the model's classes (and their weight properties) alone.
    assert {name: type(getattr(model, name)) for name in NAMES} == classes
    assert all(parametrize.is_parametrized(getattr(model, name), "weight") for name in NAMES)
    assert type(c.conv2) is nn.Conv2d and "weight" not in type(c.conv2).__dict__
    assert "weight" in type(model.conv2).__dict__
    _close(model.eval()(x), ref)  # the model still runs, with its factors
    compact(model, x)  # and compacts again
    with torch.no_grad():
        c.fc[1].bias.add_(1.0)
        c.conv2.weight.mul_(2.0)
    assert not torch.equal(c.fc[1].bias, model.fc.bias)  # independent copy
    _close(model(x), ref)


def test_compact_keeps_other_parametrizations_of_a_module():
    class Double(nn.Module):
        def forward(self, bias):
            return 2 * bias

    x = torch.randn(3, 6)
    for rank in (6, 1):  # baked dense, then swapped for a pair
        model = nn.Sequential(nn.Linear(6, 6))
        parametrize.register_parametrization(model[0], "bias", Double())
        decompose(model)
        prune(model, Ranks(rank))
        ref = model(x)
        c = compact(model, x)
        _close(c(x), ref)
        _close(model(x), ref)
        assert parametrize.is_parametrized(model[0], "bias") and parametrize.is_parametrized(model[0], "weight")
        if rank == 6:  # the baked module keeps its bias parametrization, its weight is plain
            assert isinstance(c[0], nn.Linear) and parametrize.is_parametrized(c[0], "bias")
            assert not parametrize.is_parametrized(c[0], "weight") and isinstance(c[0].weight, nn.Parameter)
        else:
            assert type(c[0]) is nn.Sequential


def test_compact_pickles_without_svdtrain():
    _, model = _decomposed("spatial")
    prune(model, Ranks({"conv1.weight": 2, "fc.weight": 2}))  # pairs, and full-rank weights baked dense
    c = compact(model)
    assert b"svdtrain" not in pickle.dumps(c)
    assert b"parametriz" not in pickle.dumps(c)
    buffer = io.BytesIO()
    torch.save(c, buffer)
    assert b"svdtrain" not in buffer.getvalue()


def test_compact_of_a_bare_factored_layer():
    layer = decompose(nn.Linear(16, 12))
    factored_weights(layer)["weight"].keep_(2)
    x = torch.randn(3, 16)
    for c in (compact(layer), compact(layer, x)):
        assert type(c) is nn.Sequential
        _only_torch_modules(c)
        _close(c(x), layer(x))
    assert parametrize.is_parametrized(layer)
    full = decompose(nn.Conv2d(2, 3, 3))
    c = compact(full)
    assert type(c) is nn.Conv2d and c is not full and parametrize.is_parametrized(full)


def test_compact_keeps_shared_layers_shared():
    fc = nn.Linear(6, 6)
    model = decompose(nn.Sequential(fc, nn.Tanh(), fc))
    prune(model, Ranks(1))
    x = torch.randn(2, 6)
    c = compact(model, x)
    assert c[0] is c[2] and type(c[0]) is nn.Sequential
    _close(c(x), model(x))
    full = decompose(nn.Sequential(nn.Tanh(), nn.Linear(6, 6)))
    full.append(full[1])
    c = compact(full, x)  # baked dense: still one module
    assert c[1] is c[2] and type(c[1]) is nn.Linear


class Containers(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.again = self.fc  # one module under three names
        self.blocks = nn.ModuleList([nn.Linear(6, 6), self.fc])
        self.heads = nn.ModuleDict({"out": nn.Linear(6, 3)})

    def forward(self, x):
        return self.heads["out"](self.blocks[1](self.blocks[0](self.again(x))))


def test_compact_replaces_modules_in_containers_and_under_every_name():
    model = decompose(Containers())
    assert list(factored_weights(model)) == ["fc.weight", "blocks.0.weight", "heads.out.weight"]
    prune(model, Ranks(1))
    x = torch.randn(2, 6)
    c = compact(model, x)
    assert c.fc is c.again is c.blocks[1] and type(c.fc) is nn.Sequential
    assert type(c.blocks[0]) is nn.Sequential and type(c.heads["out"]) is nn.Sequential
    assert isinstance(c.blocks, nn.ModuleList) and isinstance(c.heads, nn.ModuleDict)
    _close(c(x), model(x))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 4), nn.Linear(6, 4)

    def forward(self, x, y):
        return self.a(x) + self.b(y)


def test_compact_with_tuple_and_dict_example_input():
    model = decompose(TwoInputs())
    prune(model, Ranks(1))
    x, y = torch.randn(2, 8), torch.randn(2, 6)
    for example in ((x, y), {"x": x, "y": y}):
        c = compact(model, example)
        _only_torch_modules(c)
        _close(c(x, y), model(x, y))


class ReadsItsWeight(nn.Module):
    """Reads ``fc.weight`` outside fc's own forward (Hugging Face's ViT reads a weight's dtype)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.out = nn.Linear(16, 16)

    def forward(self, x):
        return self.out(self.fc(x.to(self.fc.weight.dtype)))


def test_a_weight_read_outside_its_module_stays_dense():
    model = decompose(ReadsItsWeight())
    prune(model, Ranks(1))
    x = torch.randn(2, 16)
    c = compact(model, x)
    assert type(c.fc) is nn.Linear and type(c.out) is nn.Sequential
    assert torch.linalg.matrix_rank(c.fc.weight.detach()) == 1
    _only_torch_modules(c)
    _close(c(x), model(x))
    assert deployed_forms(model, c) == {"fc.weight": "dense", "out.weight": "pair"}
    with pytest.raises(AttributeError):  # without an example nothing shows the read: a pair breaks it
        compact(model)(x)


def test_forms_override_the_choice():
    _, model = _decomposed("channel")
    prune(model, Ranks({"conv1.weight": 1, "conv2.weight": 1}))
    x = _x()
    c = compact(model, x, forms={"conv1.weight": "dense", "conv4.weight": "pair"})
    assert type(c.conv1) is nn.Conv2d and type(c.conv2) is nn.Sequential  # forced dense; chosen pair
    assert type(c.conv4) is nn.Sequential and type(c.fc) is nn.Linear  # forced pair at full rank; chosen dense
    _close(c(x), model(x))
    assert deployed_forms(model, c) == {"conv1.weight": "dense", "conv2.weight": "pair", "conv3.weight": "dense",
                                        "conv4.weight": "pair", "fc.weight": "dense"}  # fmt: skip


@pytest.mark.parametrize("forms, message", [
    ({"conv1.weight": "thin"}, r"unknown form 'thin' for 'conv1\.weight'; valid forms: pair, dense"),
    ({"conv1": "pair"}, r"forms names unknown factored weight\(s\): 'conv1'"),
    ({"conv9.weight": "dense", "a": "dense"}, r"unknown factored weight\(s\): 'a', 'conv9\.weight'"),
])  # fmt: skip
def test_bad_forms_raise(forms, message):
    _, model = _decomposed("channel")
    with pytest.raises(ValueError, match=message):
        compact(model, forms=forms)


def test_a_forced_pair_for_a_weight_with_no_pair_form_raises():
    model = decompose(nn.Sequential(nn.Conv2d(2, 4, 3, padding="same", padding_mode="reflect")))
    with pytest.raises(ValueError, match=r"'0\.weight' has no pair form; it deploys dense"):
        compact(model, forms={"0.weight": "pair"})


def test_compact_without_factored_weights_raises():
    with pytest.raises(ValueError, match=r"no factored weights; call svdtrain\.decompose"):
        compact(nn.Sequential(nn.Linear(3, 3)))


@pytest.mark.parametrize("factor", ["U", "s", "Vh"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_factors_are_refused_naming_the_weight(factor, bad):
    model = decompose(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3)))
    with torch.no_grad():
        getattr(factored_weights(model)["1.weight"], factor)[0] = bad
    with pytest.raises(ValueError, match=rf"^factored weight '1\.weight' holds NaN or inf in its {factor} \(did "
                                         r"training diverge\?\); nothing was compacted$"):  # fmt: skip
        compact(model, torch.randn(2, 4))


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
@pytest.mark.parametrize("rank", [1, 3, None])
def test_compact_is_scriptable(scheme, rank):
    _, model = _decomposed(scheme)
    if rank is not None:
        prune(model, Ranks(rank))
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
    prune(model, Ranks({"conv1.weight": 2, "conv2.weight": 3, "conv4.weight": 1, "fc.weight": 2}))  # conv3: dense
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
    model = decompose(nn.Sequential(nn.Conv2d(8, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3)))
    prune(model, Ranks(4))
    x = torch.randn(2, 8, 12, 12)
    measured = compact(model, x, choose="measured", rounds=3)
    torch.testing.assert_close(measured(x), model(x), atol=1e-4, rtol=1e-4)
    assert all(isinstance(m, (nn.Conv2d, nn.Sequential)) for m in (measured[0], measured[2]))
    _only_torch_modules(measured)


def test_measured_choice_takes_the_faster_form(monkeypatch):
    from svdtrain.surgery import timing

    model = decompose(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1)))
    prune(model, Ranks(2))
    x = torch.randn(1, 16, 8, 8)
    monkeypatch.setattr(timing, "median_seconds", lambda mods, inputs, rounds, compiled=False: [1.0, 2.0])  # dense measured faster
    assert type(compact(model, x, choose="measured")[0]) is nn.Conv2d
    monkeypatch.setattr(timing, "median_seconds", lambda mods, inputs, rounds, compiled=False: [2.0, 1.0])
    assert type(compact(model, x, choose="measured")[0]) is nn.Sequential
    assert parametrize.is_parametrized(model[0])  # timing ran on copies


def test_measured_choice_needs_an_example_and_a_known_rule():
    model = decompose(nn.Sequential(nn.Linear(8, 8)))
    with pytest.raises(ValueError, match="example_input"):
        compact(model, choose="measured")
    with pytest.raises(ValueError, match="unknown choose"):
        compact(model, torch.randn(1, 8), choose="fastest")


# -- compact_spec / rebuild_compact: the structure as data, rebuilt on a fresh dense model ----


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_spec_round_trip_rebuilds_the_compact_model(scheme):
    _, model = _decomposed(scheme)
    prune(model, Ranks({"conv1.weight": 2, "conv2.weight": 3, "conv4.weight": 1, "fc.weight": 2}))
    x = _x()
    c = compact(model, x)
    spec = json.loads(json.dumps(compact_spec(model, c)))  # plain JSON data
    assert spec["format"] == "svdtrain-compact" and spec["version"] == 2
    view = "channel" if scheme == "channel" else "spatial"
    assert spec["weights"]["conv1.weight"] == {"view": view, "rank": 2, "form": "pair"}
    assert spec["weights"]["conv3.weight"] == {"view": view, "rank": 12 if scheme == "channel" else 36, "form": "dense"}
    assert spec["weights"]["conv4.weight"]["view"] == "channel" and spec["weights"]["fc.weight"]["view"] == "matrix"
    rebuilt = rebuild_compact(Net(), spec)  # fresh weights: only the structure comes from the spec
    _only_torch_modules(rebuilt)
    assert rebuilt.state_dict().keys() == c.state_dict().keys()
    assert all(rebuilt.state_dict()[k].shape == v.shape for k, v in c.state_dict().items())
    rebuilt.load_state_dict(c.state_dict())
    _close(rebuilt.eval()(x), c.eval()(x))
    _close(rebuilt(x), model(x))


def test_spec_round_trip_keeps_forced_forms():
    _, model = _decomposed("channel")
    prune(model, Ranks({"conv1.weight": 1}))
    c = compact(model, _x(), forms={"conv1.weight": "dense", "fc.weight": "pair"})
    spec = compact_spec(model, c)
    assert spec["weights"]["conv1.weight"]["form"] == "dense" and spec["weights"]["fc.weight"]["form"] == "pair"
    rebuilt = rebuild_compact(Net(), spec)
    assert type(rebuilt.conv1) is nn.Conv2d and type(rebuilt.fc) is nn.Sequential
    rebuilt.load_state_dict(c.state_dict())


def _spec():
    _, model = _decomposed("channel")
    prune(model, Ranks(2))
    return compact_spec(model, compact(model))


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update(format="other"), r"not a svdtrain-compact v2 spec"),
    (lambda s: s.update(version=1), r"not a svdtrain-compact v2 spec"),
    (lambda s: s.update(weights={}), r"the spec.s .weights. must be a non-empty mapping"),
    (lambda s: s["weights"]["conv1.weight"].update(rank=99), r"'conv1\.weight' must be an integer in \[1, 8\]"),
    (lambda s: s["weights"]["conv1.weight"].update(rank=2.0), r"rank for 'conv1\.weight' must be an integer"),
    (lambda s: s["weights"]["conv1.weight"].update(view="spatial"), r"'conv2\.weight' factors as spatial here"),
    (lambda s: s["weights"].update({"head.weight": {"view": "matrix", "rank": 1, "form": "dense"}}),
     r"'head\.weight' is not a weight matrix of this model"),
])  # fmt: skip
def test_a_spec_that_does_not_fit_is_refused(edit, message):
    spec = _spec()
    edit(spec)
    with pytest.raises(ValueError, match=message):
        rebuild_compact(Net(), spec)


def test_not_a_spec_is_refused():
    with pytest.raises(ValueError, match="not a svdtrain-compact v2 spec"):
        rebuild_compact(Net(), ["conv1.weight"])


def test_a_forced_pair_for_a_module_that_must_keep_its_type_raises():
    attention = decompose(nn.Sequential(nn.MultiheadAttention(8, 2)))
    with pytest.raises(ValueError, match=r"'0\.out_proj\.weight' cannot deploy as a pair"):
        compact(attention, forms={"0.out_proj.weight": "pair"})
