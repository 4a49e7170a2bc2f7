"""The config's sections, one per concern: data, start, optim, svd_train, prune, finetune, export.

A stage reads its own section; options used by several stages (the optimizer, the
orthogonality weight) live in the section that defines them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BeforeValidator

from svdtrain.bounds import brief
from svdtrain.linalg import SCHEMES, SPARSITY_KINDS, check_energy, check_threshold
from svdtrain.pipeline.config.options import (
    Epochs, ImageSize, NonNegative, NonNegativeInt, Positive, PositiveInt, Target, checked, option, validate_options,
)  # fmt: skip
from svdtrain.train.distill import check_distillation
from svdtrain.train.step import COMPILE_MODES

IMAGE_DATASETS = ("cifar10", "image_folder", "digits")
TEXT_DATASETS = ("text_char", "text_word", "text_byte")
RECIPES = ("paper", "budget", "truncation")  # presets/recipes/NAME.yaml; see recipe.py
# The budget recipe's svd_train levers: they act only in SVD training, which the truncation recipe skips.
SVD_TRAINING_LEVERS = ("gradual", "gradual_cuts", "macs_weighted", "s_lr_scale", "distill", "budget_tail",
                       "proximal")
LR_SCHEDULES = ("stage", "run")  # see schedule.py
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def check_recipe_name(value: str) -> str:
    if value == "auto":
        raise ValueError("recipe auto is gone (it chose in silence): `svdtrain probe` measures the cut and "
                         "recommends a recipe; name it with --recipe")
    if value not in RECIPES:
        raise ValueError(f"unknown recipe {brief(value)}; valid values are {', '.join(RECIPES)}")
    return value


def _device(value: str) -> None:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N, got {brief(value)}")


def _speed_device(value: str) -> None:
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", value):
        raise ValueError(f"speed_device must be cpu, mps, cuda or cuda:N (where the model will run), "
                         f"got {brief(value)}")


class Section:
    """Checks every option on construction, then what ties options of the section together."""

    def __post_init__(self) -> None:
        validate_options(self)
        self.validate()

    def validate(self) -> None:
        pass


@dataclass
class DataSection(Section):
    """data: what the model learns from, and in which batches"""

    dataset: Literal[IMAGE_DATASETS + TEXT_DATASETS] = option(
        "cifar10", "cifar10 (pickles), image_folder (folder or tarball), digits, or text: text_char, text_word "
        "(train/valid/test.txt), text_byte")  # fmt: skip
    path: str = option("", "where the data is (file, folder or tarball); not needed for digits. A relative path "
                       "not in the current directory is looked up in $SVDTRAIN_DATA's folders, then "
                       "~/.cache/svdtrain/data", flag="data")  # fmt: skip
    block_length: PositiveInt = option(64, "text: tokens per training sequence, the model's context")
    download: bool = option(False, "cifar10: fetch it (checksum-verified) when it is found nowhere: a relative path "
                            "into the first data folder ($SVDTRAIN_DATA's, else ~/.cache/svdtrain/data)")
    cache_dir: str = option("~/.cache/svdtrain", "image_folder: where decoded image arrays are cached")
    image_size: ImageSize = option(0, "image_folder: resize and centre-crop to N x N (0: images share a size)")
    mean: list[float] = option(IMAGENET_MEAN, "per-channel mean subtracted from images")
    std: list[float] = option(IMAGENET_STD, "per-channel standard deviation images are divided by")
    augment: bool = option(True, "images: random crop (4-pixel padding) and horizontal flip in training")
    train_limit: NonNegativeInt = option(0, "use only the first N training examples (0: all); for smoke runs")
    test_limit: NonNegativeInt = option(0, "use only the first N test examples (0: all)")
    batch_size: PositiveInt = option(100, "training batch size (sequences for text)")
    eval_batch_size: PositiveInt = option(1000, "evaluation batch size")

    def validate(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean or not all(s > 0 and math.isfinite(s) for s in self.std) \
                or not all(math.isfinite(m) for m in self.mean):
            raise ValueError(f"mean and std need one value per channel, std > 0; got {self.mean} and {self.std}")

    @property
    def is_text(self) -> bool:
        return self.dataset in TEXT_DATASETS


@dataclass
class StartSection(Section):
    """start: how the SVD model is obtained"""

    init: Literal["svd", "random"] = option("random", "svd: decompose a dense model (pretrained, or trained here "
                                            "first); random: train the SVD form from scratch")  # fmt: skip
    checkpoint: str = option("", "init svd: the pretrained dense state dict ('module.' prefixes are fine); looked up "
                             "as the data path is")
    scheme: Literal[SCHEMES] = option("channel", "how conv kernels become matrices: channel (out x in*k*k) or "
                                      "spatial (in*kh x out*kw)")  # fmt: skip
    lean_start: NonNegative = option(0.0, "> 0: once decomposed, cut the factors to at most this share of the "
                                     "dense weights' parameters, by least energy lost per parameter (1.0: the SVD "
                                     "form trains with no more parameters, gradients and optimizer state than "
                                     "dense); SVD training prunes on from there")  # fmt: skip
    epochs: Epochs = option(164, "init svd: dense epochs before decomposing (adapts a checkpoint, or trains "
                                    "from scratch); init random: SVD-form epochs, orthogonality only",
                                    flag="start_epochs")  # fmt: skip

    def validate(self) -> None:
        if self.init == "svd" and not self.checkpoint and not self.epochs:
            raise ValueError("init 'svd' decomposes a dense model: give checkpoint: PATH, or start_epochs > 0 "
                             "to train it here first")


@dataclass
class OptimSection(Section):
    """optim: how every training stage steps"""

    optimizer: Literal["adam", "sgd"] = option("adam", "adam or sgd")
    lr: Positive = option(1e-3, "learning rate")
    momentum: NonNegative = option(0.9, "sgd momentum")
    weight_decay: NonNegative = option(0.0, "L2 on dense weights and biases; U, s and Vh are never decayed")
    grad_clip: NonNegative = option(0.0, "> 0: clip the gradients' total norm to this (the paper's LSTM: 0.25)")
    lr_milestones: list[NonNegative] = option([81, 122], "epochs of each stage where lr is multiplied by lr_gamma; "
                                              "values below 1 are fractions of the stage, counted in steps (0.75 of "
                                              "a 1-epoch stage: three quarters into it)")  # fmt: skip
    lr_gamma: Positive = option(0.1, "learning-rate factor at each milestone")
    lr_schedule: Literal[LR_SCHEDULES] = option("stage", "stage: lr_milestones restart in every stage (the paper's); "
                                                "run: SVD training and fine-tuning share one schedule, the milestones "
                                                "counted over both (fine-tuning goes on from where SVD training left "
                                                "the rate)")  # fmt: skip
    precision: Literal["fp32", "bf16"] = option("fp32", "bf16: train under bfloat16 autocast (the factor products, "
                                                "Gram matrices and Hoyer ratio stay float32); evaluation stays "
                                                "float32")  # fmt: skip
    compile: bool = option(False, "torch.compile each training step's forward, loss and regularizers in one graph "
                           "(the first steps compile)")
    compile_mode: Literal[COMPILE_MODES] = option("default", "with compile: torch.compile's mode; reduce-overhead "
                                                  "replays the step as CUDA graphs on a GPU")  # fmt: skip
    channels_last: bool = option(False, "images: train on NHWC batches, which convolutions run faster in (oneDNN, "
                                 "cuDNN); measured in BENCHMARKS.md section 3.2")  # fmt: skip

    def validate(self) -> None:
        if self.compile_mode != "default" and not self.compile:
            raise ValueError(f"compile_mode {self.compile_mode!r} takes effect only with compile: set it true")


@dataclass
class SVDTrainSection(Section):
    """svd_train: training with the orthogonality and sparsity regularizers"""

    epochs: Epochs = option(164, "SVD-training epochs", flag="svd_epochs")
    ortho_weight: NonNegative = option(1.0, "weight of the orthogonality term on U and Vh (every stage with SVD "
                                       "factors)")  # fmt: skip
    sparsity_kind: Literal[SPARSITY_KINDS] = option("hoyer", "sparsity term on s: l1, hoyer (|s|_1/|s|_2) or "
                                                    "hoyer_square")  # fmt: skip
    sparsity_weight: NonNegative = option(1e-3, "weight of the sparsity term")
    regularize_every: PositiveInt = option(1, "> 1: lazy regularization, both terms on one step in N, weighted by N")
    s_lr_scale: Positive = option(1.0, "the singular values' learning rate, as a multiple of lr (Adam moves each "
                                  "by about lr per step, whatever the sparsity weight)")  # fmt: skip
    proximal: bool = option(False, "l1 (or budget_tail): apply the L1 term as a soft-threshold of s by s's lr x "
                            "sparsity_weight after each step (exact zeros) instead of as a gradient; under Adam, whose "
                            "steps are about lr whatever the weight, that takes a weight near 1 or more")  # fmt: skip
    macs_weighted: bool = option(False, "weigh each weight's sparsity term by the MACs one of its singular values "
                                 "costs, so the pull falls where a MACs budget is spent")  # fmt: skip
    budget_tail: bool = option(False, "make the sparsity term an L1 on just the singular values the MACs target "
                               "would drop (re-chosen every epoch), so training empties what pruning cuts")  # fmt: skip
    gradual: bool = option(False, "prune towards target_reduction after every SVD-training epoch (a geometric "
                           "schedule reaching it at the last), instead of once after training")  # fmt: skip
    gradual_cuts: Epochs = option(0, "with gradual: cut after each of the first N SVD-training epochs, "
                                          "reaching the target at the N-th, so the epochs after it train at the "
                                          "target's ranks before fine-tuning (0: a cut after every epoch)")  # fmt: skip
    distill: bool = option(False, "distill from the dense baseline during SVD training too (finetune's "
                           "distill_weight and temperature)")  # fmt: skip
    recipe: Annotated[Literal[RECIPES], BeforeValidator(check_recipe_name)] = option(
        "paper", "a named set of option values, shown in config.json and by `svdtrain presets`: paper (the options as "
        "set), budget (SVD training with gradual, MACs-weighted cuts, s at 10x, distillation, whitened cuts), "
        "truncation (no SVD training: the whitened cut, fine-tuned); a base layer: a value you set overrides it, and a "
        "later source naming another recipe replaces it whole. `svdtrain probe` recommends one")  # fmt: skip

    def validate(self) -> None:
        if self.gradual_cuts and not self.gradual:
            raise ValueError("gradual_cuts counts gradual cuts: set gradual true (or gradual_cuts 0)")
        if self.gradual_cuts > self.epochs:
            raise ValueError(f"gradual_cuts {self.gradual_cuts} needs as many SVD-training epochs (one cut after each), "
                             f"got svd_epochs {self.epochs}")


@dataclass
class PruneSection(Section):
    """prune: which singular values to keep: by a speed or MACs target, else a threshold, else energy"""

    target_speedup: Target = option(0.0, "> 1: ranks for this measured speedup over dense (on speed_device in "
                                    "speed_dtype, eager unless speed_compiled)")  # fmt: skip
    speed_batch_size: PositiveInt = option(1, "the batch size target_speedup is timed (and the export chosen) at")
    speed_device: Annotated[str, checked(_speed_device)] = option(
        "cpu", "where target_speedup times the layers and the export chooses their forms: the deployment's device "
        "(cpu, cuda, cuda:N)")  # fmt: skip
    speed_dtype: Literal["fp32", "bf16", "fp16"] = option("fp32", "the dtype target_speedup and the export time the "
                                                          "layers in: the deployment's")  # fmt: skip
    speed_compiled: bool = option(False, "time target_speedup, rank_multiple 0 and the export's forms under "
                                  "torch.compile, for a deployment that runs compiled (a compile per timed form)")  # fmt: skip
    target_reduction: Target = option(0.0, "> 1: cut MACs by this factor, ranks chosen by rank_allocation")  # fmt: skip
    rank_allocation: Literal["greedy", "energy"] = option("greedy", "greedy: least relative energy lost per MAC saved; "
                                                          "energy: one threshold for all weights")  # fmt: skip
    rank_multiple: NonNegativeInt = option(
        1, "greedy: kept ranks are multiples of this (8 or 16 suit conv kernels); 0: the one of 1, 8, 16, 32, 64 whose "
        "compact model measures fastest at the target, on speed_device in speed_dtype at speed_batch_size")  # fmt: skip
    threshold: Annotated[float, checked(check_threshold)] = option(0.0, "> 0: drop singular values below this")
    energy: Annotated[float, checked(check_energy)] = option(
        1e-4, "otherwise: the fraction of sum(s^2) each weight may lose")  # fmt: skip
    calibration: Literal["none", "whiten", "scale"] = option(
        "none", "activation-aware truncation: whiten (SVD-LLM) or scale (ASVD) keeps what matters for each weight's "
        "outputs on training batches; none: by |s|")  # fmt: skip
    calibration_batches: PositiveInt = option(8, "training batches (unaugmented) the calibration sees")
    bn_recalibration_batches: NonNegativeInt = option(50, "after pruning, re-estimate BatchNorm statistics on N batches"
                                                      " (0: off)")  # fmt: skip
    bn_recalibration_augment: bool = option(True, "recalibrate on augmented batches, as BatchNorm was trained")

    # The rules tying these options together are the engine's (SVDTrainingConfig), checked by RunConfig.


@dataclass
class FinetuneSection(Section):
    """finetune: training the pruned model (orthogonality only), optionally distilled from dense"""

    epochs: Epochs = option(164, "fine-tuning epochs", flag="finetune_epochs")
    lr: NonNegative = option(0.0, "fine-tuning learning rate (0: optim's lr)", flag="finetune_lr")
    distill_weight: float = option(0.0, "0: off; else loss = (1 - w) * task loss + w * T^2 * KL(teacher || "
                                   "student), the teacher being the dense baseline")  # fmt: skip
    distill_temperature: float = option(4.0, "distillation temperature T")

    def validate(self) -> None:
        check_distillation(self.distill_weight, self.distill_temperature)


@dataclass
class ExportSection(Section):
    """export: the deployed files"""

    onnx: bool = option(True, "also write model.onnx (needs onnx and onnxruntime)", flag="export_onnx")


@dataclass
class RunSection(Section):
    """run: where and how reproducibly it runs"""

    seed: NonNegativeInt = option(0, "seed of every random choice: data order, initialization, samples")
    device: Annotated[str, checked(_device)] = option("auto", "auto, cpu, mps, cuda or cuda:N")
    flush_denormals: bool = option(True, "treat subnormal floats as zero on CPU: weights decaying towards zero "
                                   "reach them, and x86 computes with them more slowly")  # fmt: skip
