"""A small Hugging Face BERT encoder with its masked-LM head, built from a config (nothing
downloaded), as a model that maps token ids (B, T) to logits (B, T, V + 1): the extra id is
the mask token (svdtrain.tasks.masked_lm)."""

from __future__ import annotations

import torch
from torch import nn


class HFMaskedLM(nn.Module):
    """Wraps ``BertForMaskedLM``; ``self.lm`` is the transformers model (``save_pretrained`` works on it)."""

    def __init__(self, vocab: int, context: int, *, width: int = 64, layers: int = 2, heads: int = 2) -> None:
        super().__init__()
        try:
            from transformers import BertConfig, BertForMaskedLM
        except ImportError as missing:
            raise ImportError("tiny_bert needs transformers: pip install 'svdtrain[hf]'") from missing
        config = BertConfig(vocab_size=vocab + 1, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=4 * width, max_position_embeddings=context, type_vocab_size=1,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
        self.lm = BertForMaskedLM(config)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids).logits  # (B, T, V + 1)
