"""Where a config comes from: defaults <- preset <- config file <- command line.

A source is a mapping of sections (``prune: {energy: 0.01}``) and/or flags (``energy: 0.01``);
each is reduced to ``{flag: value}`` with every key and type checked, naming the source.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from svdtrain.train.config.run_config import OPTIONS, READABLE_VERSIONS, SECTIONS, RunConfig


def _coerce(flag: str, value: Any) -> Any:
    """Check a value's type against the option's default, converting int -> float where natural."""
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


def _section_keys(section: str) -> dict[str, str]:
    """{field name within ``section``: its flag}."""
    return {o.name: flag for flag, o in OPTIONS.items() if o.section == section}


def to_flags(values: dict[str, Any], source: str) -> dict[str, Any]:
    """``values`` (sections and/or flags) as ``{flag: value}``, checked; unknown keys raise."""
    if not isinstance(values, dict):
        raise ValueError(f"{source} must hold a mapping of config keys")
    flags: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in values.items():
        if key == "version":
            if value not in READABLE_VERSIONS:
                raise ValueError(f"{source}: config version {value!r} is not supported (this svdtrain reads "
                                 f"{', '.join(map(str, READABLE_VERSIONS))})")  # fmt: skip
        elif key in SECTIONS and isinstance(value, dict):
            names = _section_keys(key)
            unknown += [f"{key}.{name}" for name in value if name not in names]
            flags.update({names[name]: v for name, v in value.items() if name in names})
        elif key in OPTIONS:
            flags[key] = value
        else:
            unknown.append(key)
    if unknown:
        valid = ", ".join([*SECTIONS, *OPTIONS])
        raise ValueError(f"unknown config key(s) in {source}: {', '.join(unknown)}; valid keys: {valid}")
    return {flag: _coerce(flag, value) for flag, value in flags.items()}


def merge(base: dict[str, Any], updates: dict[str, Any], source: str) -> dict[str, Any]:
    """``base`` ({flag: value}) updated with ``updates`` (sections and/or flags) from ``source``."""
    return {**base, **to_flags(updates, source)}


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError as missing:
        raise ImportError("config files need PyYAML: pip install 'svdtrain[pipeline]'") from missing
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read config file {path}: {error}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config keys")
    return data


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("svdtrain.presets").iterdir()
                  if p.name.endswith(".yaml"))  # fmt: skip


def preset_path(name: str) -> Path:
    if name not in preset_names():
        raise ValueError(f"unknown preset {name!r}; see 'svdtrain presets' for the list")
    return Path(str(resources.files("svdtrain.presets") / f"{name}.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset's options as ``{flag: value}``."""
    return to_flags(read_yaml(preset_path(name)), f"preset {name}")


def resolve_config(
    preset: str | None = None, config_file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Defaults <- preset <- config file <- overrides, validated."""
    values: dict[str, Any] = {}
    if preset:
        values = merge(values, load_preset(preset), f"preset {preset}")
    if config_file:
        values = merge(values, read_yaml(Path(config_file)), str(config_file))
    if overrides:
        values = merge(values, overrides, "the command line")
    return RunConfig.from_flags(values)
