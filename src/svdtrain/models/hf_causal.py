"""Any Hugging Face causal LM, built from its config file (nothing downloaded), as a model
that maps token ids (B, T) to logits (B, T, V) like the rest of the zoo."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

import torch
from torch import nn

from svdtrain.bounds import CONFIG_BYTES, check_file

T = TypeVar("T")


class HFCausalLM(nn.Module):
    """Wraps ``AutoModelForCausalLM.from_config``; ``self.lm`` is the transformers model, so
    ``generate()`` and ``save_pretrained`` stay one attribute away."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    @classmethod
    def from_config_file(cls, path: str, *, vocab: int, context: int | None = None) -> HFCausalLM:
        try:
            from transformers import AutoConfig, AutoModelForCausalLM
        except ImportError as missing:
            raise ImportError("hf: models need transformers: pip install 'svdtrain[hf]'") from missing
        file = check_file(Path(path).expanduser(), what="Hugging Face config", limit=CONFIG_BYTES)
        config = _built(file, "a config", lambda: AutoConfig.from_pretrained(str(file)))
        if getattr(config, "vocab_size", vocab) < vocab:
            raise ValueError(f"{file}: vocab_size {config.vocab_size} is smaller than the data's {vocab} tokens")
        longest = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if context and longest and longest < context:
            raise ValueError(f"{file}: the model takes {longest} positions, the data's blocks are {context} tokens")
        return cls(_built(file, "a causal LM", lambda: AutoModelForCausalLM.from_config(config)))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids, use_cache=False).logits  # (B, T, V)


def _built(file: Path, what: str, build: Callable[[], T]) -> T:
    """``build()``, its failure one line naming ``file``: a value in a user's config (a negative
    width, a head count that does not divide it) fails deep in transformers or torch, in any type."""
    try:
        return build()
    except ImportError:  # a missing package, not a bad file
        raise
    except Exception as error:
        detail = (str(error).splitlines() or [""])[0][:200]
        raise ValueError(f"{file} does not give {what} transformers can build ({type(error).__name__}: {detail})") \
            from None
