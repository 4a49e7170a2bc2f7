"""What a preset's header comment says about it: a one-line description, the expected time, the
step that must run before it. Comments, not config keys: a config holds only options.

A preset file starts::

    # <one-line description>
    # time: <expected time, on 2 CPU cores or a GPU>
    # needs: <the command writing its start checkpoint>     (a preset that starts from another's)
    # <more prose, as many lines as it takes>
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from svdtrain.pipeline.config.sources import preset_path


@dataclass(frozen=True)
class PresetNotes:
    description: str  # the header's first line
    time: str  # expected time and where: "15 min on 2 CPU cores", "GPU, about 6 h (estimated)"
    needs: str = ""  # a command to run first (it writes the start checkpoint), or ""


def preset_notes(name: str) -> PresetNotes:
    """The notes in preset ``name``'s header comment.

    Raises:
        ValueError: the header lacks a description or a ``time:`` line.
    """
    header = []
    for line in preset_path(name).read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.removeprefix("#").strip())
    keyed = dict(m.groups() for m in map(re.compile(r"(time|needs): (.+)").fullmatch, header[1:]) if m)
    if not header or not header[0] or "time" not in keyed:
        raise ValueError(f"preset {name}: its header needs a description on the first line and a 'time:' line")
    return PresetNotes(header[0], keyed["time"], keyed.get("needs", ""))

