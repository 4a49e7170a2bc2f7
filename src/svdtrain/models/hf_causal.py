"""Any Hugging Face causal LM, built from its config file (nothing downloaded), as a model
that maps token ids (B, T) to logits (B, T, V) like the rest of the zoo."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


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
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"Hugging Face config not found: {file}")
        config = AutoConfig.from_pretrained(str(file))
        if getattr(config, "vocab_size", vocab) < vocab:
            raise ValueError(f"{file}: vocab_size {config.vocab_size} is smaller than the data's {vocab} tokens")
        longest = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if context and longest and longest < context:
            raise ValueError(f"{file}: the model takes {longest} positions, the data's blocks are {context} tokens")
        return cls(AutoModelForCausalLM.from_config(config))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids, use_cache=False).logits  # (B, T, V)
