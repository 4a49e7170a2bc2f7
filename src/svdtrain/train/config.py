"""RunConfig: every knob of one SVD-training experiment, with presets and overrides.

Defaults live in the dataclass; a preset (YAML) replaces some; command-line overrides
apply last. The resolved config is saved beside the results and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from svdtrain.linalg import check_energy, check_scheme, check_sparsity_kind, check_threshold
from svdtrain.models import check_model_name, is_language_model
from svdtrain.train.distill import check_distillation

CONFIG_VERSION = 1
IMAGE_DATASETS = ("cifar10", "image_folder", "digits")
TEXT_DATASETS = ("text_char", "text_word", "text_byte")
DATASETS = (*IMAGE_DATASETS, *TEXT_DATASETS)
OPTIMIZERS = ("adam", "sgd")
ALLOCATIONS = ("greedy", "energy")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class RunConfig:
    # model and data
    # resnet20/32/44/56/110 (CIFAR), imagenet_resnet18/50, digits_cnn; language models: char_lstm,
    # paper_lstm, gpt_small, or hf:PATH/config.json (a Hugging Face causal LM built from its config)
    model: str = "resnet20"
    # cifar10 (python pickles) | image_folder (folder or tarball) | digits | text_char (a text file,
    # characters) | text_word (train/valid/test.txt, words) | text_byte (a text file, UTF-8 bytes)
    dataset: str = "cifar10"
    data: str = ""  # path to the data; empty for digits
    block_length: int = 64  # text datasets: tokens per training sequence (the model's context)
    download: bool = False  # cifar10: fetch (checksum-verified) when not found under `data`
    cache_dir: str = "~/.cache/svdtrain"  # decoded image arrays
    image_size: int = 0  # image_folder: resize + centre-crop every image to N x N (0: images already share a size)
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    augment: bool = True  # random crop (4-pixel padding) + horizontal flip
    train_limit: int = 0  # use only the first N training images (0: all); for smoke runs
    test_limit: int = 0  # use only the first N test images (0: all)
    # start: decompose a dense model (init=svd: pretrained from checkpoint, or trained here from scratch
    # for start_epochs when no checkpoint is given) or train the SVD form from scratch (init=random)
    init: str = "random"
    checkpoint: str = ""  # dense state dict (or {"state_dict": ...}); "module." prefixes are fine
    scheme: str = "channel"  # channel | spatial
    start_epochs: int = 164  # init=svd: dense adaptation epochs; init=random: SVD-form training, ortho only
    # optimization (every training stage)
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0  # dense weights and biases only; U, s, Vh are never decayed
    grad_clip: float = 0.0  # > 0: clip the gradients' total norm to this (the paper's LSTM code: 0.25)
    batch_size: int = 100
    eval_batch_size: int = 1000
    # epochs within each stage at which lr *= lr_gamma; values below 1 are fractions of the stage's length
    lr_milestones: list[float] = field(default_factory=lambda: [81, 122])
    lr_gamma: float = 0.1
    # svd-train
    svd_epochs: int = 164
    ortho_weight: float = 1.0
    sparsity_kind: str = "hoyer"  # l1 | hoyer | hoyer_square
    sparsity_weight: float = 1e-3
    regularize_every: int = 1  # > 1: lazy regularization, both terms on one step in N, weighted by N
    # prune: the first rule set wins: target_speedup, target_reduction, threshold, energy
    target_speedup: float = 0.0  # > 1: ranks for this measured speedup over the dense model (CPU, eager)
    speed_batch_size: int = 1  # the batch size target_speedup is timed (and the export chosen) for
    target_reduction: float = 0.0  # > 1: cut MACs by this factor, ranks chosen by rank_allocation
    rank_allocation: str = "greedy"  # greedy: least relative energy lost per MAC saved | energy: one threshold
    rank_multiple: int = 1  # greedy: pruned ranks are multiples of this (8 or 16 suit conv kernels)
    threshold: float = 0.0  # > 0: drop |s| below this
    energy: float = 1e-4  # fraction of sum(s^2) a layer may lose
    bn_recalibration_batches: int = 50  # after pruning, re-estimate BatchNorm statistics (0: off)
    bn_recalibration_augment: bool = True  # on augmented batches, the distribution BN was trained on
    # fine-tune (orthogonality only)
    finetune_epochs: int = 164
    finetune_lr: float = 0.0  # 0: the same lr as the other stages
    # fine-tune with knowledge distillation from the start stage's model (the dense baseline)
    distill_weight: float = 0.0  # 0: off; else loss = (1 - w) * CE + w * T^2 * KL(teacher || student)
    distill_temperature: float = 4.0
    # bookkeeping
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    export_onnx: bool = True
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _choice("init", self.init, ("svd", "random"))
        check_scheme(self.scheme)
        check_sparsity_kind(self.sparsity_kind)
        check_energy(self.energy)
        check_threshold(self.threshold)
        _choice("dataset", self.dataset, DATASETS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("rank_allocation", self.rank_allocation, ALLOCATIONS)
        for name in ("lr", "batch_size", "eval_batch_size", "rank_multiple", "speed_batch_size", "regularize_every",
                     "block_length"):
            _positive(name, getattr(self, name))
        for name in ("start_epochs", "svd_epochs", "finetune_epochs", "train_limit", "test_limit", "weight_decay",
                     "ortho_weight", "sparsity_weight", "momentum", "lr_gamma", "target_reduction", "finetune_lr",
                     "target_speedup", "image_size", "grad_clip",
                     "bn_recalibration_batches"):  # fmt: skip
            _non_negative(name, getattr(self, name))
        check_model_name(self.model)
        if is_language_model(self.model) != (self.dataset in TEXT_DATASETS):
            kind = "a language model" if is_language_model(self.model) else "an image model"
            raise ValueError(f"model {self.model!r} is {kind}; dataset {self.dataset!r} does not fit it "
                             f"(language models take {', '.join(TEXT_DATASETS)})")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")
        if len(self.mean) != len(self.std) or not self.mean or any(s <= 0 for s in self.std):
            raise ValueError(f"mean and std need one value per channel, std > 0; got {self.mean} and {self.std}")
        check_distillation(self.distill_weight, self.distill_temperature)
        if self.target_speedup and self.target_speedup <= 1:
            raise ValueError(f"target_speedup must be > 1 (or 0 for none), got {self.target_speedup}")
        if self.target_speedup and self.target_reduction:
            raise ValueError("set target_speedup or target_reduction, not both")
        if self.target_reduction and self.target_reduction <= 1:
            raise ValueError(f"target_reduction must be > 1 (or 0 to use energy), got {self.target_reduction}")
        if any(m < 0 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones must be >= 0, got {self.lr_milestones}")
        if self.dataset != "digits" and not self.data:
            raise ValueError(f"dataset {self.dataset!r} needs a data path (data: ... or --data PATH)")
        if self.init == "svd" and not self.checkpoint and not self.start_epochs:
            raise ValueError("init 'svd' decomposes a dense model: give checkpoint: PATH, or start_epochs > 0 "
                             "to train it here first")
        if self.version != CONFIG_VERSION:
            raise ValueError(f"config version {self.version} is not supported (this svdtrain reads {CONFIG_VERSION})")

    @property
    def task(self) -> str:
        """The task the dataset poses: classification (images) or language_modeling (text)."""
        return "language_modeling" if self.dataset in TEXT_DATASETS else "classification"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid values are {', '.join(valid)}")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be >= 0, got {value!r}")


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def _coerce(name: str, value: Any) -> Any:
    """Check a value's type against the field's default, converting int -> float where natural."""
    default = getattr(RunConfig, name, None)
    if default is None:  # list fields use default_factory
        default = FIELDS[name].default_factory()
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif isinstance(default, float) and isinstance(value, str):
        try:  # PyYAML reads 1e-3 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    elif isinstance(default, list) and isinstance(value, list):
        try:  # PyYAML reads 1e2 (no dot) as a string here too
            value = [float(v) if isinstance(v, str) else v for v in value]
        except ValueError:
            pass
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return list(value)
    elif type(value) is type(default):
        return value
    raise ValueError(f"config key {name!r} expects {type(default).__name__}, got {value!r}")


def merge(base: dict[str, Any], updates: dict[str, Any], source: str) -> dict[str, Any]:
    """``base`` updated with ``updates``; unknown keys raise, naming ``source``."""
    unknown = sorted(set(updates) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown config key(s) in {source}: {', '.join(unknown)}; valid keys: {', '.join(FIELDS)}")
    return {**base, **{k: _coerce(k, v) for k, v in updates.items()}}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError as missing:
        raise ImportError("config files need PyYAML: pip install 'svdtrain[pipeline]'") from missing
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config keys")
    return data


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("svdtrain.presets").iterdir()
                  if p.name.endswith(".yaml"))  # fmt: skip


def load_preset(name: str) -> dict[str, Any]:
    if name not in preset_names():
        raise ValueError(f"unknown preset {name!r}; see 'svdtrain presets' for the list")
    path = resources.files("svdtrain.presets") / f"{name}.yaml"
    return _read_yaml(Path(str(path)))


def resolve_config(
    preset: str | None = None, config_file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Defaults <- preset <- config file <- overrides, validated."""
    values: dict[str, Any] = {}
    if preset:
        values = merge(values, load_preset(preset), f"preset {preset}")
    if config_file:
        values = merge(values, _read_yaml(Path(config_file)), str(config_file))
    if overrides:
        values = merge(values, overrides, "the command line")
    return RunConfig(**values)
