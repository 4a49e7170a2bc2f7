"""Hugging Face transformers: save a compact model with ``save_pretrained`` and load it back.

``save_pretrained`` writes the config and the compact weights (safetensors); the spec beside
them (``svdtrain_compact.json``) says which weights are thin pairs of which rank. Loading
builds the model from the config (nothing downloaded), rebuilds the compact structure from
the spec and loads the weights, so ``generate()`` and the rest of the model's API work as
before. transformers and safetensors are the ``[hf]`` extra.

A folder with thin pairs also loads with transformers alone: it holds its own modeling code
(``modeling_svdtrain_compact.py``, torch and transformers only), named in config.json's
``auto_map``, so ``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)``
(or the original model's Auto class) rebuilds the pairs. Loading it any other way fails
loudly: config.json's ``model_type`` is ``svdtrain_compact``, which an Auto class refuses
without ``trust_remote_code=True``, and the weights file holds a 0-size tensor under each
pair's dense weight name, a size mismatch on which the original class
(``GPT2LMHeadModel.from_pretrained``) raises instead of returning freshly initialized layers.
The folder's modeling code also refuses a config.json edited after the save (a layer more,
which would load freshly initialized, or one fewer): config.json lists every saved weight and
its shape (``svdtrain_compact.weights``), and the model it builds must hold exactly those.

Example:
    >>> small = svdtrain.compact(model, example)
    >>> save_compact_pretrained(model, small, "out/")
    >>> again = load_compact_pretrained("out/", GPT2LMHeadModel)
    >>> same = AutoModelForCausalLM.from_pretrained("out/", trust_remote_code=True)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from svdtrain.bounds import read_json
from svdtrain.io import atomic_write_json, atomic_write_text
from svdtrain.surgery.spec import check_spec, compact_spec, rebuild_compact
from svdtrain.surgery.walk import tied_names

SPEC_FILE = "svdtrain_compact.json"
MODELING_FILE = "modeling_svdtrain_compact.py"
MODEL_TYPE = "svdtrain_compact"
_TEMPLATE_IMPORT = "from transformers import GPT2Config as BaseConfig, GPT2LMHeadModel as BaseModel"
# Auto classes whose mapping may name the original class: {Auto class: its mapping of names}.
_AUTO_NAMES = {
    "AutoModel": "MODEL_MAPPING_NAMES",
    "AutoModelForCausalLM": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "AutoModelForMaskedLM": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
    "AutoModelForSeq2SeqLM": "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "AutoModelForSequenceClassification": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "AutoModelForTokenClassification": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "AutoModelForQuestionAnswering": "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
    "AutoModelForImageClassification": "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
    "AutoModelForPreTraining": "MODEL_FOR_PRETRAINING_MAPPING_NAMES",
}
_CONV_ARGS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode")
_LAYER_ARGS = {nn.Linear: ("in_features", "out_features"), nn.Conv1d: _CONV_ARGS, nn.Conv2d: _CONV_ARGS}


def save_compact_pretrained(model: nn.Module, compact_model: nn.Module, directory: str | Path) -> dict:
    """``compact_model.save_pretrained(directory)`` plus the spec of how ``compact`` built it
    from the factored ``model``; returns the spec. Where some weights deploy as thin pairs,
    the folder also gets its modeling code and a config that only it loads (module docstring).

    Raises:
        ValueError: a pair deployed as something the folder's modeling code cannot rebuild
            (it rebuilds Sequentials of Linear, Conv1d and Conv2d layers).
    """
    directory = Path(directory)
    spec = compact_spec(model, compact_model)
    guards = sorted(name for name, entry in spec["weights"].items() if entry["form"] == "pair")
    modules = {fqn: _describe(compact_model, fqn) for fqn in dict.fromkeys(n.rpartition(".")[0] for n in guards)}
    state = dict(compact_model.state_dict())
    state.update({name: torch.zeros(0) for name in guards})
    compact_model.save_pretrained(str(directory), state_dict=state, safe_serialization=True)
    if modules:
        config = json.loads((directory / "config.json").read_text())
        autos = _auto_classes(type(compact_model), config.get("model_type"))
        weights = {name: list(tensor.shape) for name, tensor in compact_model.state_dict().items()}
        config["svdtrain_compact"] = {"base_model_type": config.get("model_type"), "modules": modules, "guards": guards,
                                      "weights": weights}  # fmt: skip
        config["model_type"], config["architectures"] = MODEL_TYPE, ["CompactModel"]
        config["auto_map"] = {"AutoConfig": "modeling_svdtrain_compact.CompactConfig",
                              **{auto: "modeling_svdtrain_compact.CompactModel" for auto in autos}}  # fmt: skip
        atomic_write_json(directory / "config.json", config)
        atomic_write_text(directory / MODELING_FILE, _modeling_code(type(compact_model.config), type(compact_model)))
    atomic_write_json(directory / SPEC_FILE, spec)
    return spec


def _describe(compact_model: nn.Module, fqn: str) -> list[dict]:
    """The layers of the pair at ``fqn`` as {"class", "args"}, for the folder's modeling code."""
    pair = compact_model.get_submodule(fqn)
    layers = list(pair) if type(pair) is nn.Sequential else [pair]
    if not all(type(layer) in _LAYER_ARGS for layer in layers):
        kinds = ", ".join(type(layer).__name__ for layer in layers)
        raise ValueError(f"{fqn!r} deploys as {kinds}: the folder's modeling code rebuilds only Sequentials of "
                         "Linear, Conv1d and Conv2d layers")  # fmt: skip
    return [
        {"class": type(layer).__name__,
         "args": {**{arg: getattr(layer, arg) for arg in _LAYER_ARGS[type(layer)]}, "bias": layer.bias is not None}}
        for layer in layers
    ]  # fmt: skip


def _auto_classes(cls: type, model_type: str | None) -> list[str]:
    """The Auto classes that map ``model_type`` to ``cls`` (AutoModelForCausalLM for GPT2LMHeadModel)."""
    from transformers.models.auto import modeling_auto

    found = []
    for auto, mapping in _AUTO_NAMES.items():
        names = getattr(modeling_auto, mapping, {}).get(model_type, ())
        if cls.__name__ in ((names,) if isinstance(names, str) else names):
            found.append(auto)
    return found


def _modeling_code(config_class: type, model_class: type) -> str:
    """hf_modeling.py importing ``config_class`` and ``model_class`` as its base classes."""
    import transformers

    def source(cls: type) -> str:
        return "transformers" if getattr(transformers, cls.__name__, None) is cls else cls.__module__

    template = Path(__file__).with_name("hf_modeling.py").read_text()
    imports = (f"from {source(config_class)} import {config_class.__name__} as BaseConfig\n"
               f"from {source(model_class)} import {model_class.__name__} as BaseModel")  # fmt: skip
    if _TEMPLATE_IMPORT not in template:
        raise RuntimeError("hf_modeling.py no longer imports its base classes as save_compact_pretrained expects")
    return template.replace(_TEMPLATE_IMPORT, imports)


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
        spec = check_spec(read_json(spec_path, what="spec"))
    except ValueError as error:
        raise ValueError(f"{spec_path}: {error}") from None
    config = _base_config(model_class.config_class, directory, config_overrides)
    model = rebuild_compact(model_class(config), spec)
    guards = {name for name, entry in spec["weights"].items() if entry["form"] == "pair"}
    state = {name: tensor for name, tensor in load_file(str(weights_path)).items() if name not in guards}
    try:
        with torch.no_grad():
            missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes that do not fit
        raise ValueError(f"{weights_path} does not match the compact model built from {spec_path.name}: "
                         f"{str(error).splitlines()[-1].strip()}") from None
    untied_missing = sorted(set(missing) - tied_names(model))
    if unexpected or untied_missing:
        what = f"unexpected key {unexpected[0]!r}" if unexpected else f"missing key {untied_missing[0]!r}"
        raise ValueError(f"{weights_path} does not match the compact model built from {spec_path.name}: {what}")
    return model.eval()


def _base_config(config_class: type, directory: Path, overrides: dict):
    """The original model's config from ``directory``, without what only the folder's own
    modeling code reads (so transformers does not warn of a model type mismatch)."""
    config_dict, _ = config_class.get_config_dict(str(directory))
    for key in ("model_type", "architectures", "auto_map", "svdtrain_compact"):
        config_dict.pop(key, None)
    return config_class.from_dict(config_dict, **overrides)
