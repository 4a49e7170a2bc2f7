"""An export choosing forms by measured time says which weights stayed dense for it."""

import importlib

import torch
import svdtrain
from svdtrain.export import export_compact
from svdtrain.models import build_model

compact_module = importlib.import_module("svdtrain.surgery.compact")  # the module, not the function it exports


def test_weights_kept_dense_because_their_pairs_measured_slower_are_named(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = svdtrain.decompose(build_model("digits_cnn", 10), init="svd")
    svdtrain.prune(model, svdtrain.Ranks(4))
    monkeypatch.setattr(compact_module, "faster_form", lambda dense, pair, *args, **kwargs: dense)  # "slower"
    x = torch.randn(2, 1, 8, 8)
    by_macs = svdtrain.compact(model, x)
    pairs = sorted(name for name, form in compact_module.deployed_forms(model, by_macs).items() if form == "pair")
    info = export_compact(model, tmp_path, x, model_name="digits_cnn", num_classes=10, onnx=False, choose="measured")
    assert pairs and info["dense_as_pairs_measured_slower"] == pairs
    plain = export_compact(model, tmp_path / "macs", x, model_name="digits_cnn", num_classes=10, onnx=False)
    assert "dense_as_pairs_measured_slower" not in plain
