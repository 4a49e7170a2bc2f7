"""RunConfig: one experiment's settings, grouped by concern, each option with one flat flag.

Config files and ``config.json`` hold the sections (``optim: {lr: 0.01}``); the command line
and flat config files use each option's flag (``--lr 0.01``, ``lr: 0.01``), unique across
sections, which is also how configs written before the sections existed still read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from svdtrain.models import check_model_name, is_language_model
from svdtrain.pipeline.config.options import check_fields, default_of, flag_of, option
from svdtrain.pipeline.config.sections import (
    IMAGE_DATASETS, TEXT_DATASETS, DataConfig, ExportConfig, FinetuneConfig, OptimConfig, PruneConfig, RunSettings,
    StartConfig, SVDTrainConfig,
)  # fmt: skip
from svdtrain.tasks import TASKS

CONFIG_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: the same options as flat keys


def _model(_flag: str, value: str) -> None:
    check_model_name(value)


@dataclass
class RunConfig:
    model: str = option("resnet20", "resnet20/32/44/56/110 (CIFAR), imagenet_resnet18/50, digits_cnn; language "
                        "models: char_lstm, paper_lstm, gpt_small, tiny_lstm, tiny_gpt, or hf:PATH/config.json; masked: "
                        "tiny_bert",
                        check=_model)  # fmt: skip
    task: str = option("classification", "what the model learns: classification (images), language_modeling "
                       "(next token), masked_lm (BERT's masked tokens; model tiny_bert)", choices=tuple(TASKS))
    data: DataConfig = field(default_factory=DataConfig)
    start: StartConfig = field(default_factory=StartConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    svd_train: SVDTrainConfig = field(default_factory=SVDTrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    run: RunSettings = field(default_factory=RunSettings)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        check_fields(self)
        reads = TASKS[self.task].inputs
        if (reads == "tokens") != self.data.is_text:
            fits = [name for name, task in TASKS.items() if (task.inputs == "tokens") == self.data.is_text]
            raise ValueError(f"task {self.task} reads {reads}; dataset {self.data.dataset!r} does not fit it: set "
                             f"task ({', '.join(fits)}) or a dataset of {reads} (text: {', '.join(TEXT_DATASETS)}; "
                             f"images: {', '.join(IMAGE_DATASETS)})")  # fmt: skip
        if (reads == "tokens") != is_language_model(self.model):
            raise ValueError(f"task {self.task} reads {reads}; model {self.model!r} does not fit it: pick a model "
                             "that reads them (`svdtrain run --help` lists them)")
        if self.data.dataset != "digits" and not self.data.path:
            raise ValueError(f"dataset {self.data.dataset!r} needs a data path (--data PATH, or path: under data:)")
        if self.svd_train.gradual and not self.prune.target_reduction:
            raise ValueError("gradual pruning prunes towards target_reduction: set it (> 1)")
        if self.svd_train.budget_tail and not self.prune.target_reduction:
            raise ValueError("budget_tail aims at the values target_reduction drops: set it (> 1)")
        if self.svd_train.distill and not self.finetune.distill_weight:
            raise ValueError("svd_train distill uses finetune's distill_weight: set it (> 0)")
        if self.version != CONFIG_VERSION:
            raise ValueError(f"config version {self.version} is not supported (this svdtrain writes {CONFIG_VERSION})")

    @classmethod
    def from_flags(cls, values: dict[str, Any]) -> RunConfig:
        """A config from ``{flag: value}`` (types checked); options not given keep their defaults."""
        unknown = sorted(set(values) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown config key(s): {', '.join(unknown)}")
        sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        top: dict[str, Any] = {}
        for flag, value in values.items():
            where = OPTIONS[flag]
            (sections[where.section] if where.section else top)[where.name] = coerce(flag, value)
        return cls(**top, **{name: SECTIONS[name](**given) for name, given in sections.items()})

    def flat(self) -> dict[str, Any]:
        """``{flag: value}`` of every option."""
        return {flag: getattr(getattr(self, o.section) if o.section else self, o.name) for flag, o in OPTIONS.items()}

    def updated(self, **flags: Any) -> RunConfig:
        """A copy with some options changed (by flag), validated."""
        return RunConfig.from_flags({**self.flat(), **flags})

    def to_dict(self) -> dict[str, Any]:
        """The sections as nested dicts: what config.json and checkpoints hold."""
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(RunConfig)
                             if f.default_factory is not dataclasses.MISSING}  # fmt: skip


class Option(NamedTuple):
    """Where a flag lives: its section ('' for top-level), field name and field."""

    section: str
    name: str
    field: dataclasses.Field

    @property
    def default(self) -> Any:
        return default_of(self.field)

    @property
    def help(self) -> str:
        return self.field.metadata["help"]


def _options() -> dict[str, Option]:
    options: dict[str, Option] = {}
    owners = [("", RunConfig), *SECTIONS.items()]
    for section, cls in owners:
        for f in dataclasses.fields(cls):
            if "help" in f.metadata:
                assert flag_of(f) not in options, f"flag {flag_of(f)} declared twice"
                options[flag_of(f)] = Option(section, f.name, f)
    return options


OPTIONS = _options()


def coerce(flag: str, value: Any) -> Any:
    """``value`` checked against the option's type (its default's), converting int -> float and
    YAML's strings for numbers where natural; a list is copied."""
    default = OPTIONS[flag].default
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
    raise ValueError(f"config key {flag!r} expects {type(default).__name__}, got {value!r}")
