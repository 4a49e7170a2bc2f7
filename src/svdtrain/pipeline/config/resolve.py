"""One config from its sources: defaults < preset < config file < command line, nothing else.

A resumed run starts from its saved config instead of the defaults. A recipe is a base layer
placed where the source that names it stands: it overrides the sources before that one, and
every value set explicitly (by that source or a later one) overrides it. A later source that
names another recipe replaces the earlier one as a whole, so no value of the recipe it replaces
stays behind (Hydra's and OmegaConf's layering). Each value remembers the source it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from svdtrain.models import is_language_model
from svdtrain.pipeline.config.recipe import check_recipe, recipe_values
from svdtrain.pipeline.config.run_config import OPTIONS, RunConfig
from svdtrain.pipeline.config.sources import load_preset, read_yaml, to_flags

if TYPE_CHECKING:
    from svdtrain.pipeline.run_folder import RunFolder

DEFAULT = "the default"


def resolve_config(
    preset: str | None = None, config_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
    saved: dict[str, Any] | None = None,
) -> RunConfig:
    """The config ``preset`` < ``config_file`` < ``overrides`` (flags or sections) give, over
    ``saved`` (a resumed run's flags) or the defaults, validated. Its ``origin`` maps each
    option's flag to the source of its value (:func:`origins`)."""
    sources = [("the resumed run's config.json", dict(saved))] if saved else []
    if preset:
        sources.append((f"preset {preset}", load_preset(preset)))
    if config_file:
        sources.append((str(config_file), to_flags(read_yaml(Path(config_file)), str(config_file), file=True)))
    if overrides:
        sources.append(("the command line", to_flags(overrides, "the command line")))
    named = max((i for i, (_, flags) in enumerate(sources) if "recipe" in flags), default=None)
    layers: list[tuple[str, dict[str, Any]]] = []
    for index, (source, flags) in enumerate(sources):
        if index == named:  # the recipe in force, at the place of the source naming it; earlier ones are gone
            name = flags["recipe"]
            layers.append((f"recipe {name} (named by {source})", recipe_values(name)))
        layers.append((source, flags))
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, flags in layers:
        values.update(flags)
        origin.update(dict.fromkeys(flags, source))
    check_recipe(values, origin)
    config = RunConfig.from_flags(values)
    config.origin = {flag: origin.get(flag, DEFAULT) for flag in OPTIONS}
    return config


def recipe_overrides(config: RunConfig) -> dict[str, dict[str, Any]]:
    """The options whose value differs from what the config's recipe sets, with both values and
    the source that set them: what config.json records beside the recipe."""
    flat, origin = config.flat(), getattr(config, "origin", {})
    return {flag: {"recipe": wanted, "value": flat[flag], "set by": origin.get(flag, DEFAULT)}
            for flag, wanted in recipe_values(config.svd_train.recipe).items() if flat[flag] != wanted}  # fmt: skip


def config_record(config: RunConfig) -> dict[str, Any]:
    """What config.json holds: the sections, and under ``provenance`` the source of every value a
    source set and the values that override the recipe's."""
    origin = getattr(config, "origin", {})
    return {**config.to_dict(), "provenance": {
        "sources": {flag: source for flag, source in origin.items() if source != DEFAULT},
        "recipe_overrides": recipe_overrides(config)}}  # fmt: skip


def saved_config(folder: RunFolder) -> RunConfig | None:
    """The config a run folder was started with, read as this version reads configs."""
    saved = folder.read_config()
    if saved is None:
        return None
    if "task" not in saved:  # written before the task option (issue 22), when the model decided it
        saved = {**saved, "task": "language_modeling" if is_language_model(saved.get("model", "")) else "classification"}
    return RunConfig.from_flags(to_flags(saved, str(folder.config)))
