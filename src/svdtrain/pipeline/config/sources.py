"""Reading a config's sources: presets, config files and command-line flags (resolve.py layers them).

A source is a mapping of sections (``prune: {energy: 0.01}``) and/or flags (``energy: 0.01``);
each is reduced to ``{flag: value}`` with every key and type checked, naming the source.
"""

from __future__ import annotations

import difflib
import warnings
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from svdtrain.bounds import CONFIG_BYTES, brief, read_file
from svdtrain.pipeline.config.run_config import OPTIONS, READABLE_VERSIONS, SECTIONS


def _section_keys(section: str) -> dict[str, str]:
    """{field name within ``section``: its flag}."""
    return {o.name: flag for flag, o in OPTIONS.items() if o.section == section}


def to_flags(values: dict[str, Any], source: str, *, file: bool = False) -> dict[str, Any]:
    """``values`` (sections and/or flags) as ``{flag: value}``, checked; unknown keys raise.

    In a section an option is named by its field (``start: {epochs: 3}``), at the top by its
    flag (``start_epochs: 3``, as config.json of version 1 held them all); an empty section is
    no change; one option given twice (``dataset:`` and ``data: {dataset:}``) is an error.
    A config ``file`` has one spelling, the sections: a flag at its top still reads, with a
    DeprecationWarning naming the section spelling."""
    if not isinstance(values, dict):
        raise ValueError(f"{source} must hold a mapping of config keys")
    flags: dict[str, Any] = {}
    unknown: list[str] = []

    def put(flag: str, value: Any, key: str) -> None:
        if flag in flags:
            raise ValueError(f"{source} gives {key} twice (as {flag!r} and in its section)")
        flags[flag] = value

    for key, value in values.items():
        if key == "version":
            if isinstance(value, bool) or value not in READABLE_VERSIONS:
                raise ValueError(f"{source}: config version {brief(value)} is not supported (this svdtrain reads "
                                 f"{', '.join(map(str, READABLE_VERSIONS))})")  # fmt: skip
        elif key in SECTIONS and (isinstance(value, dict) or value is None or key not in OPTIONS):
            if not isinstance(value, (dict, type(None))):
                raise ValueError(f"{source}: section {key!r} needs a mapping of its options, got {brief(value)}")
            names = _section_keys(key)
            for name, option_value in (value or {}).items():
                flag = names.get(name)
                if flag is None:
                    unknown.append(f"{key}.{name}")
                else:
                    put(flag, option_value, f"{key}.{name}")
        elif key in OPTIONS:
            put(key, value, key)
            if file and OPTIONS[key].section:
                option = OPTIONS[key]
                warnings.warn(f"{source}: write {key} as {option.section}: {{{option.name}: ...}}; a flag at the top "
                              f"of a config file is the spelling of config version 1", DeprecationWarning,
                              stacklevel=2)  # fmt: skip
        else:
            unknown.append(key)
    if unknown:
        shown = ", ".join(_with_suggestion(key[:80]) for key in map(str, unknown[:SHOWN]))
        more = f" and {len(unknown) - SHOWN:,} more" if len(unknown) > SHOWN else ""
        raise ValueError(f"unknown config key(s) in {source}: {shown}{more}; `svdtrain run --help` lists the options")
    return {flag: OPTIONS[flag].convert(value) for flag, value in flags.items()}


SHOWN = 10  # unknown keys an error names (a file of 400,000 took a minute and a 3 MB line)


def _with_suggestion(key: str) -> str:
    """``key`` as shown in an error, with the closest valid name where one is close."""
    section, _, name = key.rpartition(".")
    names = list(_section_keys(section)) if section in SECTIONS else [*SECTIONS, *OPTIONS]
    close = difflib.get_close_matches(name, names, n=1)
    shown = key if key.isprintable() else repr(key)
    return f"{shown} (did you mean {section + '.' if section else ''}{close[0]}?)" if close else shown


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping a config file holds. The file is a regular one of at most a few MiB, and holds no
    YAML aliases (``*name``): each alias repeats a whole value, so nine of them nested nine deep make
    a file of a few hundred bytes stand for a list of a billion items."""
    try:
        import yaml
    except ImportError as missing:
        raise ImportError("config files need PyYAML: pip install 'svdtrain[pipeline]'") from missing
    try:
        text = read_file(path, what="config file", limit=CONFIG_BYTES).decode("utf-8")
        data = yaml.load(text, Loader=_loader_without_aliases(yaml))  # noqa: S506  (a SafeLoader)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read config file {path}: {error}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise ValueError(f"{path} nests too deep to be a config (lists or mappings thousands of levels deep)") from None
    except _AliasFound as alias:
        raise ValueError(f"{path} uses a YAML alias (*{alias.anchor[:40]}, line {alias.line}); config "
                         "files take none, as one can stand for a value of any size: write the value out") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config keys")
    return data


class _AliasFound(Exception):
    def __init__(self, anchor: str, line: int) -> None:
        super().__init__(anchor)
        self.anchor, self.line = anchor, line


@cache
def _loader_without_aliases(yaml: Any) -> type:
    """PyYAML's SafeLoader, refusing an alias as it meets one, before anything is expanded."""

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise _AliasFound(str(event.anchor), event.start_mark.line + 1)
            return super().compose_node(parent, index)

    return Loader


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
