"""Hugging Face transformers: save a compact model with ``save_pretrained`` and load it back.

``save_pretrained`` writes the config and the compact weights (safetensors); the spec beside
them (``svdtrain_compact.json``) says which weights are thin pairs of which rank. Loading
builds the model from the config (nothing downloaded), rebuilds the compact structure from
the spec and loads the weights, so ``generate()`` and the rest of the model's API work as
before. transformers and safetensors are the ``[hf]`` extra.

Example:
    >>> small = svdtrain.compact(model, example)
    >>> save_compact_pretrained(model, small, "out/")
    >>> again = load_compact_pretrained("out/", GPT2LMHeadModel)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from svdtrain.io import atomic_write_json
from svdtrain.surgery.spec import check_spec, compact_spec, rebuild_compact

SPEC_FILE = "svdtrain_compact.json"


def save_compact_pretrained(model: nn.Module, compact_model: nn.Module, directory: str | Path) -> dict:
    """``compact_model.save_pretrained(directory)`` plus the spec of how ``compact`` built it
    from the factored ``model``; returns the spec."""
    spec = compact_spec(model, compact_model)
    compact_model.save_pretrained(str(directory), safe_serialization=True)
    atomic_write_json(Path(directory) / SPEC_FILE, spec)
    return spec


def _tied_names(model: nn.Module) -> set[str]:
    """Parameter names that share their tensor with another name (saved once)."""
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    return {name for group in names.values() if len(group) > 1 for name in group}


def load_compact_pretrained(directory: str | Path, model_class: type, **config_overrides) -> nn.Module:
    """The compact model saved by :func:`save_compact_pretrained`, in eval mode.

    ``model_class`` is the transformers class it was (``GPT2LMHeadModel``, ...); the model is
    built from the saved config, so no hub access is needed.

    Raises:
        FileNotFoundError: no spec or weights in ``directory``.
        ValueError: a spec or weights that do not fit the model built from the config.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    spec_path, weights_path = directory / SPEC_FILE, directory / "model.safetensors"
    for path in (spec_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a directory written by save_compact_pretrained")
    try:
        spec = check_spec(json.loads(spec_path.read_text()))
    except (json.JSONDecodeError, ValueError) as error:
        raise ValueError(f"{spec_path}: {error}") from None
    config = model_class.config_class.from_pretrained(str(directory), **config_overrides)
    model = rebuild_compact(model_class(config), spec)
    state = load_file(str(weights_path))
    try:
        with torch.no_grad():
            missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes that do not fit
        raise ValueError(f"{weights_path} does not match the compact model built from {spec_path.name}: "
                         f"{str(error).splitlines()[-1].strip()}") from None
    untied_missing = sorted(set(missing) - _tied_names(model))
    if unexpected or untied_missing:
        what = f"unexpected key {unexpected[0]!r}" if unexpected else f"missing key {untied_missing[0]!r}"
        raise ValueError(f"{weights_path} does not match the compact model built from {spec_path.name}: {what}")
    return model.eval()
