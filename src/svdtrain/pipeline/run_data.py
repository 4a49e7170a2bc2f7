"""A run's data, from its config's data section: training and test batches and one example input;
and where its input files are (the data path and the start checkpoint, looked up as
:func:`svdtrain.data.locate` says: a preset runs the same from any directory)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from svdtrain.data import (
    Corpus, ImageArrays, TensorBatches, TokenBatches, load_byte_text, load_char_text, load_cifar10, load_digits_split,
    load_image_folder, load_word_corpus, locate,
)  # fmt: skip
from svdtrain.pipeline.config import RunConfig, preset_names, preset_notes
from svdtrain.pipeline.run_folder import RunFolder

_TEXT_LOADERS = {"text_char": load_char_text, "text_word": load_word_corpus, "text_byte": load_byte_text}


@dataclass
class Data:
    train: TensorBatches | TokenBatches
    test: TensorBatches | TokenBatches
    num_classes: int  # classes, or a language model's vocabulary size
    example: torch.Tensor  # one test input: a normalized image (1, C, H, W) or a block of tokens (1, T)
    corpus: Corpus | None = None  # text datasets: the Corpus (its vocabulary decodes samples)


def load_data(config: RunConfig, device: torch.device) -> Data:
    d = config.data
    if d.is_text:
        return _text_data(config, device)
    if d.dataset == "cifar10":
        train, test = load_cifar10(data_path(config), download=d.download)
    elif d.dataset == "image_folder":
        train, test = load_image_folder(data_path(config), Path(d.cache_dir).expanduser(), d.image_size or None)
    else:
        train, test = digits_arrays(config.run.seed)
    common = dict(mean=d.mean, std=d.std, device=device, seed=config.run.seed)
    train_batches = TensorBatches(train, d.batch_size, shuffle=True, augment=d.augment,
                                  limit=d.train_limit or None, **common)  # fmt: skip
    test_batches = TensorBatches(test, d.eval_batch_size, limit=d.test_limit or None, **common)
    example = next(iter(test_batches))[0][:1]
    return Data(train_batches, test_batches, len(train.classes), example)


def _text_data(config: RunConfig, device: torch.device) -> Data:
    d = config.data
    corpus = _TEXT_LOADERS[d.dataset](data_path(config))
    common = dict(length=d.block_length, device=device, seed=config.run.seed)
    train = TokenBatches(corpus.train, d.batch_size, shuffle=True, limit=d.train_limit or None,
                         name=f"{d.path} train", **common)  # fmt: skip
    test = TokenBatches(corpus.valid, d.eval_batch_size, limit=d.test_limit or None, name=f"{d.path} valid", **common)
    example = next(iter(test))[0][:1]  # (1, T)
    return Data(train, test, len(corpus.vocab), example, corpus)


def data_path(config: RunConfig) -> Path:
    """Where ``config.data.path`` is; cifar10 with ``download``: where it will be downloaded to
    when it is nowhere (the first data folder).

    Raises:
        FileNotFoundError: nowhere; the one-line error names the places tried and ``--data``.
    """
    d = config.data
    fetch = d.dataset == "cifar10" and d.download
    hint = "give --data PATH" + (", or --download true to fetch it" if d.dataset == "cifar10" else "")
    return locate(d.path, what=f"data of dataset {d.dataset}", hint=hint, create=fetch)


def start_checkpoint(config: RunConfig) -> Path:
    """Where ``config.start.checkpoint`` is.

    Raises:
        FileNotFoundError: nowhere; the error names the command that writes it where a preset's
            ``needs:`` line does (``svdtrain start --preset cpu-resnet20-adapt --out runs/cpu/adapt``).
    """
    path = config.start.checkpoint
    try:
        return locate(path, what="start checkpoint", hint="give --checkpoint PATH")
    except FileNotFoundError:
        writer = next((n.needs for n in map(preset_notes, preset_names()) if _writes(n.needs, path)), None)
        if writer is None:
            raise
    return locate(path, what="start checkpoint", hint=f"`{writer}` writes it, or give --checkpoint PATH")


def _writes(command: str, checkpoint: str) -> bool:
    out = re.search(r"--out (\S+)", command)
    return bool(out) and RunFolder(out.group(1)).adapted_dense == Path(checkpoint)


def digits_arrays(seed: int) -> tuple[ImageArrays, ImageArrays]:
    x_train, y_train, x_test, y_test = load_digits_split(seed=seed)
    as_uint8 = lambda x: (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # noqa: E731
    classes = [str(i) for i in range(10)]
    return ImageArrays(as_uint8(x_train), y_train.numpy(), classes), ImageArrays(as_uint8(x_test), y_test.numpy(), classes)
