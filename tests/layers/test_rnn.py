"""LSTM / GRU / RNN: per-gate-stack factoring, preserved outputs, training, compact forms."""

import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import svdtrain
from svdtrain.deploy import StackedLSTM, StackedRNN


class Tagger(nn.Module):
    """A recurrent net whose head reads every time step (as a language model's decoder does)."""

    def __init__(self, cell=nn.LSTM, layers=2, bidirectional=False, batch_first=False, bias=True):
        super().__init__()
        self.rnn = cell(12, 24, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias)
        self.head = nn.Linear(24 * (2 if bidirectional else 1), 7)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)


def _close(out, ref):
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())


def _input(batch_first):
    return torch.randn(3, 9, 12) if batch_first else torch.randn(9, 3, 12)


CASES = [
    (cell, layers, bidirectional, batch_first, bias)
    for cell in (nn.LSTM, nn.GRU, nn.RNN)
    for layers, bidirectional, batch_first, bias in ((1, False, False, True), (2, False, True, True),
                                                     (2, True, False, True), (3, True, True, False))
]


@pytest.mark.parametrize("cell,layers,bidirectional,batch_first,bias", CASES)
def test_svd_init_preserves_outputs_and_factors_every_gate_stack(cell, layers, bidirectional, batch_first, bias):
    model = Tagger(cell, layers, bidirectional, batch_first, bias).eval()
    x = _input(batch_first)
    ref = model(x)
    svdtrain.decompose(model)
    assert isinstance(model.rnn, cell)  # the module keeps its type and its fused kernel
    names = [n for n in svdtrain.factored_weights(model) if n.startswith("rnn.")]
    suffixes = ["", "_reverse"] if bidirectional else [""]
    assert names == [f"rnn.weight_{p}_l{k}{s}" for k in range(layers) for s in suffixes for p in ("ih", "hh")]
    gates = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}[cell]
    assert svdtrain.factored_weights(model)["rnn.weight_hh_l0"].shape == (gates * 24, 24)
    _close(model(x), ref)


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_training_step_gives_finite_gradients_on_factors(cell):
    model = svdtrain.decompose(Tagger(cell, 2))
    x = _input(False)
    loss = model(x).pow(2).mean() + svdtrain.orthogonality_loss(model) + svdtrain.sparsity_loss(model, "hoyer")
    loss.backward()
    for weight in svdtrain.factored_weights(model).values():
        for factor in weight.factors:
            assert factor.grad is not None and torch.isfinite(factor.grad).all()


@pytest.mark.parametrize("cell,layers,bidirectional,batch_first,bias", CASES)
def test_compact_equals_pruned_model(cell, layers, bidirectional, batch_first, bias):
    model = svdtrain.decompose(Tagger(cell, layers, bidirectional, batch_first, bias)).eval()
    svdtrain.prune(model, svdtrain.Ranks(3))
    x = _input(batch_first)
    small = svdtrain.compact(model, x)
    _close(small(x), model(x))
    forms = svdtrain.deployed_forms(model, small)
    for name, form in forms.items():
        if name.startswith("rnn.weight_hh") or (bidirectional and name.startswith("rnn.")):
            assert form == "dense", name  # no fused kernel takes a factored W_hh or a shared bidirectional input
        elif name.startswith("rnn.weight_ih"):
            assert form == "pair", name
    expected = nn.RNNBase if bidirectional else (StackedLSTM if cell is nn.LSTM else StackedRNN)
    assert isinstance(small.rnn, expected)
    assert svdtrain.count_macs(small, x) == svdtrain.count_macs(model, x) < svdtrain.count_macs(Tagger(
        cell, layers, bidirectional, batch_first, bias), x)


def test_stacked_lstm_takes_and_returns_the_states_of_nn_lstm():
    model = svdtrain.decompose(nn.Sequential(nn.LSTM(12, 24, num_layers=2)))
    svdtrain.prune(model, svdtrain.Ranks(4))
    x = _input(False)
    h0, c0 = torch.randn(2, 3, 24), torch.randn(2, 3, 24)
    small = svdtrain.compact(model, x)
    out, (h, c) = small[0](x, (h0, c0))
    ref, (h_ref, c_ref) = model[0](x, (h0, c0))
    for got, want in ((out, ref), (h, h_ref), (c, c_ref)):
        _close(got, want)


def test_unbatched_input_runs_through_the_stacked_form():
    model = svdtrain.decompose(nn.Sequential(nn.GRU(12, 24, num_layers=2)))
    svdtrain.prune(model, svdtrain.Ranks(4))
    x = torch.randn(9, 12)
    small = svdtrain.compact(model, x)
    _close(small[0](x)[0], model[0](x)[0])
    _close(small[0](x)[1], model[0](x)[1])


def test_macs_count_every_gate_product_per_token():
    model = Tagger(nn.LSTM, 2)
    x = _input(False)  # 27 tokens
    per_token = 4 * 24 * 12 + 4 * 24 * 24 + 4 * 24 * 24 + 4 * 24 * 24
    assert svdtrain.macs_by_layer(model, x)["rnn"] == 27 * per_token


def test_low_rank_ih_saves_the_macs_it_claims():
    model = svdtrain.decompose(Tagger(nn.GRU, 1))
    svdtrain.prune(model, svdtrain.Ranks({"rnn.weight_ih_l0": 2}))
    x = _input(False)
    rnn = svdtrain.macs_by_layer(model, x)["rnn"]
    assert rnn == 27 * (2 * (12 + 3 * 24) + 3 * 24 * 24)


def test_proj_size_is_listed_by_default_and_refused_when_asked_for():
    model = nn.Sequential(nn.LSTM(12, 24, proj_size=6), nn.Linear(6, 3))
    with pytest.warns(UserWarning, match=r"0\.weight_ih_l0.*proj_size=6"):
        svdtrain.decompose(model)
    with pytest.raises(ValueError, match=r"cannot factor '0.weight_hh_l0': .*proj_size=6"):
        svdtrain.decompose(nn.Sequential(nn.LSTM(12, 24, proj_size=6)), weights=["0.weight_hh_l0"])


def test_compact_lstm_exports_and_loads_without_svdtrain(tmp_path):
    model = svdtrain.decompose(Tagger(nn.LSTM, 2, batch_first=True)).eval()
    svdtrain.prune(model, svdtrain.Ranks(4))
    x = _input(True)
    small = svdtrain.compact(model, x).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(small), str(tmp_path / "m.ts"))
    torch.export.save(torch.export.export(small, (x,)), str(tmp_path / "m.pt2"))
    torch.save(x, tmp_path / "x.pt")
    torch.save(small(x).detach(), tmp_path / "y.pt")
    script = f"""
import sys, torch
sys.modules["svdtrain"] = None  # any import of svdtrain now fails
x, y = torch.load(r"{tmp_path}/x.pt"), torch.load(r"{tmp_path}/y.pt")
for out in (torch.jit.load(r"{tmp_path}/m.ts")(x), torch.export.load(r"{tmp_path}/m.pt2").module()(x)):
    assert (out - y).abs().max() < 1e-5, (out - y).abs().max()
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_compact_lstm_exports_to_onnx_with_dynamic_batch_and_length(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model = svdtrain.decompose(Tagger(nn.LSTM, 2, batch_first=True)).eval()
    svdtrain.prune(model, svdtrain.Ranks(4))
    small = svdtrain.compact(model, _input(True)).eval()
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(small, (_input(True),), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch", 1: "time"}})  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 4, 12)  # another batch and length than exported with
    (got,) = session.run(None, {"x": x.numpy()})
    _close(torch.from_numpy(got), small(x).detach())


def test_compact_after_a_training_forward_copies_the_lstm():
    # nn.LSTM keeps the weights its last forward read; after a training forward those carry a graph.
    model = svdtrain.decompose(nn.Sequential(nn.LSTM(12, 24, num_layers=2)))
    x = _input(False)
    model[0](x)[0].sum().backward()
    svdtrain.prune(model, svdtrain.Ranks(4))
    small = svdtrain.compact(model, x)
    _close(small[0](x)[0], model[0](x)[0])
    assert (small[0].hidden_size, small[0].num_layers, small[0].batch_first) == (24, 2, False)


class Packed(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(12, 24, num_layers=2, batch_first=True)

    def forward(self, x):
        packed = nn.utils.rnn.pack_padded_sequence(x, [9, 4, 2], batch_first=True)
        return nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], batch_first=True)[0]


def test_an_rnn_fed_packed_sequences_keeps_its_type_in_compact():
    model = svdtrain.decompose(Packed()).eval()
    svdtrain.prune(model, svdtrain.Ranks(3))
    x = _input(True)
    small = svdtrain.compact(model, x)
    assert type(small.rnn) is nn.GRU  # the stacked form takes tensors only
    _close(small(x), model(x))
