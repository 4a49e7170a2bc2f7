"""RunConfig: one experiment's settings, grouped by concern, each option with one flat flag.

Config files and ``config.json`` hold the sections (``optim: {lr: 0.01}``); the command line
and flat config files use each option's flag (``--lr 0.01``, ``lr: 0.01``), unique across
sections, which is also how configs written before the sections existed still read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple

from svdtrain.bounds import brief
from svdtrain.models import check_model_name, models_serving, tasks_served
from svdtrain.pipeline.config.options import checked, convert, default_of, flag_of, option, validate_options
from svdtrain.pipeline.config.sections import (
    IMAGE_DATASETS, TEXT_DATASETS, DataSection, ExportSection, FinetuneSection, OptimSection, PruneSection, RunSection,
    StartSection, SVDTrainSection,
)  # fmt: skip
from svdtrain.tasks import TASKS
from svdtrain.train.svd_config import SVDTrainingConfig

CONFIG_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: the same options as flat keys (their flags), read by the same path
TASK_NAMES = tuple(TASKS)


@dataclass
class RunConfig:
    model: Annotated[str, checked(check_model_name)] = option(
        "resnet20", "resnet20/32/44/56/110 (CIFAR), imagenet_resnet18/50, digits_cnn; language models: char_lstm, "
        "paper_lstm, gpt_small, tiny_lstm, tiny_gpt, or hf:PATH/config.json; masked: tiny_bert")  # fmt: skip
    task: Literal[TASK_NAMES] = option("classification", "what the model learns: classification (images), "
                                       "language_modeling (next token), masked_lm (BERT's masked tokens; model "
                                       "tiny_bert)")  # fmt: skip
    data: DataSection = field(default_factory=DataSection)
    start: StartSection = field(default_factory=StartSection)
    optim: OptimSection = field(default_factory=OptimSection)
    svd_train: SVDTrainSection = field(default_factory=SVDTrainSection)
    prune: PruneSection = field(default_factory=PruneSection)
    finetune: FinetuneSection = field(default_factory=FinetuneSection)
    export: ExportSection = field(default_factory=ExportSection)
    run: RunSection = field(default_factory=RunSection)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        validate_options(self)
        reads = TASKS[self.task].inputs
        if (reads == "tokens") != self.data.is_text:
            fits = [name for name, task in TASKS.items() if (task.inputs == "tokens") == self.data.is_text]
            raise ValueError(f"task {self.task} reads {reads}; dataset {self.data.dataset!r} does not fit it: set "
                             f"task ({', '.join(fits)}) or a dataset of {reads} (text: {', '.join(TEXT_DATASETS)}; "
                             f"images: {', '.join(IMAGE_DATASETS)})")  # fmt: skip
        served = tasks_served(self.model)
        if self.task not in served:
            raise ValueError(f"model {brief(self.model)} does not serve task {self.task} (it serves "
                             f"{', '.join(served)}): models for {self.task} are {', '.join(models_serving(self.task))}")
        if self.data.dataset != "digits" and not self.data.path:
            raise ValueError(f"dataset {self.data.dataset!r} needs a data path (--data PATH, or path: under data:)")
        if self.svd_train.gradual and not self.prune.target_reduction:
            raise ValueError("gradual pruning prunes towards target_reduction: set it (> 1)")
        if self.svd_train.budget_tail and not self.prune.target_reduction:
            raise ValueError("budget_tail aims at the values target_reduction drops: set it (> 1)")
        if self.svd_train.distill and not self.finetune.distill_weight:
            raise ValueError("svd_train distill uses finetune's distill_weight: set it (> 0)")
        self.svd_training  # noqa: B018  (the engine's own rules, checked once here)
        if self.version != CONFIG_VERSION:
            raise ValueError(f"config version {self.version} is not supported (this svdtrain writes {CONFIG_VERSION})")

    @property
    def svd_training(self) -> SVDTrainingConfig:
        """What the engine (:class:`svdtrain.SVDTraining`) runs: the svd_train and prune sections,
        finetune's distillation and start's scheme, under the same option names. ``gradual``
        with ``gradual_cuts`` 0 is a cut after every SVD-training epoch."""
        s, t, p, f = self.start, self.svd_train, self.prune, self.finetune
        engine = {name for name in SVDTrainingConfig.__dataclass_fields__ if name != "version"}
        values = {name: getattr(section, name) for section in (s, t, p, f) for name in engine
                  if name in section.__dataclass_fields__ and name != "gradual_cuts"}  # fmt: skip
        values["gradual_cuts"] = (t.gradual_cuts or t.epochs) if t.gradual else 0
        return SVDTrainingConfig(**values)

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
            (sections[where.section] if where.section else top)[where.name] = value
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
    """Where a flag lives: its section ('' for top-level), the dataclass declaring it, its field."""

    section: str
    owner: type
    field: dataclasses.Field

    @property
    def name(self) -> str:
        return self.field.name

    def convert(self, value: Any) -> Any:
        """``value`` checked and converted by the option's type (options.convert)."""
        return convert(self.owner, self.name, flag_of(self.field), value)

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
                options[flag_of(f)] = Option(section, cls, f)
    return options


OPTIONS = _options()
