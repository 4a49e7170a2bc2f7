"""Model zoo for experiments; any other nn.Module works through the Python API."""

from __future__ import annotations

from typing import Callable

from torch import nn

from svdtrain.bounds import brief

from svdtrain.models.cifar_resnet import DEPTHS, CifarResNet, cifar_resnet
from svdtrain.models.digits_cnn import DigitsCNN
from svdtrain.models.gpt import GPT
from svdtrain.models.imagenet_resnet import ImageNetResNet, resnet18, resnet50
from svdtrain.models.lstm_lm import LSTMLanguageModel

MODELS: dict[str, Callable[..., nn.Module]] = {
    **{f"resnet{depth}": (lambda n, d=depth: cifar_resnet(d, n)) for depth in DEPTHS},
    "imagenet_resnet18": resnet18,
    "imagenet_resnet50": resnet50,
    "digits_cnn": lambda n: DigitsCNN(num_classes=n),
}
# Language models: (vocabulary size, context length) -> model.
LANGUAGE_MODELS: dict[str, Callable[[int, int], nn.Module]] = {
    "char_lstm": lambda vocab, context: LSTMLanguageModel(vocab, embedding=256, hidden=512, layers=2, dropout=0.2),
    # The official WikiText-2 setting of the paper's code.
    "paper_lstm": lambda vocab, context: LSTMLanguageModel(vocab, embedding=1500, hidden=1500, layers=2,
                                                           dropout=0.65),
    "gpt_small": lambda vocab, context: GPT(vocab, context=context),
    "tiny_lstm": lambda vocab, context: LSTMLanguageModel(vocab, embedding=16, hidden=24, layers=2, dropout=0.0),
    "tiny_gpt": lambda vocab, context: GPT(vocab, context=context, layers=1, heads=2, width=16),
    "tiny_bert": lambda vocab, context: _masked_lm(vocab, context),  # masked LM (task masked_lm): a BERT encoder
}  # fmt: skip
HF_PREFIX = "hf:"
# The tasks each model serves (svdtrain.tasks names them): a language model predicting the next token must not see it,
# which a BERT encoder does, and a masked LM has one output more than its data has tokens (the mask), which the others
# lack. A pairing that does not fit fails before anything trains, not as an index error inside the first batch.
CLASSIFICATION, LANGUAGE_MODELING, MASKED_LM = ("classification",), ("language_modeling",), ("masked_lm",)
SERVES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(MODELS, CLASSIFICATION),
    **dict.fromkeys(LANGUAGE_MODELS, LANGUAGE_MODELING),
    "tiny_bert": MASKED_LM,
}


def _masked_lm(vocab: int, context: int) -> nn.Module:
    from svdtrain.models.hf_masked_lm import HFMaskedLM  # transformers: imported only when asked for

    return HFMaskedLM(vocab, context)


def check_model_name(name: str) -> str:
    if name in MODELS or name in LANGUAGE_MODELS or (name.startswith(HF_PREFIX) and len(name) > len(HF_PREFIX)):
        return name
    valid = ", ".join([*MODELS, *LANGUAGE_MODELS, f"{HF_PREFIX}PATH/config.json"])
    raise ValueError(f"unknown model {brief(name)}; valid models are {valid}")


def build_model(name: str, num_classes: int, context: int | None = None) -> nn.Module:
    """A fresh model by name. ``num_classes`` is the number of outputs: classes, or the
    vocabulary size of a language model, whose ``context`` is its longest sequence."""
    check_model_name(name)
    if name.startswith(HF_PREFIX):
        from svdtrain.models.hf_causal import HFCausalLM

        return HFCausalLM.from_config_file(name.removeprefix(HF_PREFIX), vocab=num_classes, context=context)
    if name in LANGUAGE_MODELS:
        return LANGUAGE_MODELS[name](num_classes, context or 64)
    return MODELS[name](num_classes)


def tasks_served(name: str) -> tuple[str, ...]:
    """The tasks model ``name`` serves; ``hf:`` models are causal LMs (language_modeling)."""
    check_model_name(name)
    return LANGUAGE_MODELING if name.startswith(HF_PREFIX) else SERVES[name]


def models_serving(task: str) -> list[str]:
    """The names of the models that serve ``task``, as an error lists them."""
    return [name for name, tasks in SERVES.items() if task in tasks] + [f"{HF_PREFIX}PATH/config.json"] * (
        task in LANGUAGE_MODELING)


def is_language_model(name: str) -> bool:
    return name in LANGUAGE_MODELS or name.startswith(HF_PREFIX)


__all__ = [
    "DEPTHS", "GPT", "HF_PREFIX", "LANGUAGE_MODELS", "MODELS", "SERVES", "check_model_name", "is_language_model",
    "models_serving", "tasks_served", "CifarResNet", "DigitsCNN", "ImageNetResNet", "LSTMLanguageModel", "build_model",
    "cifar_resnet", "resnet18", "resnet50",
]  # fmt: skip
