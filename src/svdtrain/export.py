"""Export a pruned SVD model as plain torch layers: weights + JSON spec, TorchScript,
torch.export, ONNX.

The TorchScript, torch.export (.pt2) and ONNX files load with torch / onnxruntime alone; the
state dict + ``spec.json`` pair rebuilds the compact model exactly with :func:`load_compact`.
``spec.json`` is :func:`svdtrain.compact_spec` (each factored weight's view, rank and deployed
form) plus the model zoo name and class count the dense architecture is built from.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from svdtrain.bounds import check_file, read_json
from svdtrain.io import atomic_write, atomic_write_json
from svdtrain.models import build_model
from svdtrain.surgery import compact, compact_spec, rebuild_compact

EXPORT_FILES = ("weights.pt", "spec.json", "model.torchscript.pt", "model.pt2", "model.onnx")


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, sequence: bool) -> float | None:
    """Write ONNX with a dynamic batch axis (and time axis for ``sequence`` models); returns the
    onnxruntime max |difference|."""
    try:
        import onnxruntime
    except ImportError:
        return None
    buffer = io.BytesIO()
    axes = {0: "batch", 1: "time"} if sequence else {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), buffer, dynamo=False, input_names=["input"], output_names=["output"],
            dynamic_axes={"input": axes, "output": axes},
        )  # fmt: skip
    atomic_write(path, lambda f: f.write(buffer.getvalue()), mode="wb")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": example.cpu().numpy()})
    with torch.no_grad():
        return _max_abs_diff(torch.from_numpy(got), model(example).cpu())


def _script(model: nn.Module) -> torch.jit.ScriptModule | None:
    """TorchScript of ``model``, or None where TorchScript cannot compile it (it cannot compile
    Hugging Face models; torch.export and ONNX still export those)."""
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; still the widest-read format
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return torch.jit.script(model)
        except Exception:  # compilation errors come in many types
            return None


def export_compact(
    model: nn.Module, out_dir: str | Path, example: torch.Tensor, *, model_name: str, num_classes: int,
    context: int | None = None, sequence: bool = False, onnx: bool = True, choose: str = "macs",
    timing_input: torch.Tensor | None = None, timing_device: str | None = None, timing_dtype: torch.dtype | None = None,
    timing_compiled: bool = False,
) -> dict:  # fmt: skip
    """Write ``out_dir``/{weights.pt, spec.json, model.torchscript.pt, model.pt2, model.onnx}; returns
    the file names and the max output difference of each reloaded export. ``choose`` and
    ``timing_input`` (default ``example``), timed on ``timing_device`` in ``timing_dtype``
    (compiled if ``timing_compiled``), pick each layer's form as in ``compact``. A
    ``sequence`` model (token ids (B, T) in) exports with dynamic batch and time axes;
    ``context`` (its longest sequence) goes into the spec to rebuild it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    example = example.cpu()
    timed_on = example if timing_input is None else timing_input.cpu()
    small = compact(model, timed_on, choose=choose, device=timing_device, dtype=timing_dtype,
                    compiled=timing_compiled).eval()  # fmt: skip
    spec = {**compact_spec(model, small), "model": model_name, "num_classes": num_classes, "context": context}
    atomic_write(out_dir / "weights.pt", lambda f: torch.save(small.state_dict(), f), mode="wb")
    atomic_write_json(out_dir / "spec.json", spec)
    scripted = _script(small)  # None for models TorchScript cannot compile (Hugging Face ones)
    if scripted is not None:
        atomic_write(out_dir / "model.torchscript.pt", lambda f: torch.jit.save(scripted, f), mode="wb")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            reloaded_script = torch.jit.load(str(out_dir / "model.torchscript.pt"))
    # torch.export needs a batch > 1 to keep the batch dimension dynamic.
    pair = torch.cat([example, example])
    dims = {0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO} if sequence else {0: torch.export.Dim.AUTO}
    program = torch.export.export(small, (pair,), dynamic_shapes=(dims,))
    atomic_write(out_dir / "model.pt2", lambda f: torch.export.save(program, f), mode="wb")
    with torch.no_grad():
        reference = small(example)
        result = {
            "files": ["weights.pt", "spec.json", "model.pt2"],
            "weights": len(spec["weights"]),
            "torch_export_max_abs_diff": _max_abs_diff(torch.export.load(out_dir / "model.pt2").module()(example), reference),
            "reload_max_abs_diff": _max_abs_diff(load_compact(out_dir)(example), reference),
        }  # fmt: skip
        if choose == "measured":  # the layers whose pair, cheaper in MACs, measured slower: kept dense
            by_macs = compact_spec(model, compact(model, timed_on))["weights"]
            result["dense_as_pairs_measured_slower"] = sorted(
                name for name, entry in spec["weights"].items() if entry["form"] == "dense"
                and by_macs[name]["form"] == "pair")  # fmt: skip
        if scripted is not None:
            result["files"].insert(2, "model.torchscript.pt")
            result["torchscript_max_abs_diff"] = _max_abs_diff(reloaded_script(example), reference)
    if onnx:
        diff = _export_onnx(small, example, out_dir / "model.onnx", sequence)
        if diff is not None:
            result["files"].append("model.onnx")
            result["onnx_max_abs_diff"] = diff
    return result


def load_compact(export_dir: str | Path) -> nn.Module:
    """Rebuild the compact model from ``weights.pt`` + ``spec.json`` (needs svdtrain's model zoo):
    the spec's model built dense, its compact structure rebuilt (:func:`svdtrain.rebuild_compact`),
    then the weights loaded."""
    export_dir = Path(export_dir)
    path = export_dir / "spec.json"
    try:
        spec = read_json(path, what="spec")
    except FileNotFoundError:
        raise FileNotFoundError(f"no spec.json in {export_dir}") from None
    zoo = isinstance(spec, dict) and isinstance(spec.get("model"), str) and isinstance(spec.get("num_classes"), int)
    if not zoo:
        raise ValueError(f"{path} names no model zoo architecture (its 'model' and 'num_classes'); "
                         "rebuild it with svdtrain.rebuild_compact on your own dense model")  # fmt: skip
    try:
        model = rebuild_compact(build_model(spec["model"], spec["num_classes"], spec.get("context")), spec)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    weights = check_file(export_dir / "weights.pt", what="exported weights")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{export_dir / 'weights.pt'} does not fit {path.name}: {str(error).splitlines()[0]}") from None
    return model.eval()
