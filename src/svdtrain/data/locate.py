"""Where a run's input files are: as given, or looked up in the data folders.

Presets name their files by bare name (``tinyshakespeare.txt``, ``resnet20-12fca82f.th``), so
that they run the same from any directory and from an installed wheel. A relative path is
taken from the current directory where it exists there, else from the first data folder
holding it: each folder of ``$SVDTRAIN_DATA`` (several separated by ``os.pathsep``, as in
``PATH``), then ``~/.cache/svdtrain/data``. An absolute path, ``~/...``, or one starting with
``./`` or ``../`` is used as given: that is how to name a file here and nowhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "SVDTRAIN_DATA"
CACHE = Path("~/.cache/svdtrain/data")


def data_folders() -> list[Path]:
    """The folders a relative path is looked up in after the current directory, in order."""
    listed = [Path(part).expanduser() for part in os.environ.get(ENV, "").split(os.pathsep) if part]
    return [*listed, CACHE.expanduser()]


def _as_given(path: str) -> bool:
    return Path(path).expanduser().is_absolute() or path.startswith(("./", "../", ".\\", "..\\"))


def locate(path: str | Path, *, what: str, hint: str = "", create: bool = False) -> Path:
    """The file or folder ``path`` names: as given where it is absolute, ``~/...``, ``./...`` or
    ``../...`` (whoever reads it says if it is missing), else the first of the current directory
    and :func:`data_folders` that holds it.

    Args:
        path: as a config gives it.
        what: what the file is, for the error ("data of dataset text_char").
        hint: how else to provide it, for the error ("give --data PATH").
        create: where it is nowhere, return where to make it (in the first data folder): for a
            download.

    Raises:
        FileNotFoundError: a relative ``path`` is nowhere; one line naming the folders tried,
            ``$SVDTRAIN_DATA`` and ``hint``.

    >>> locate("/no/such/file", what="a file")
    PosixPath('/no/such/file')
    """
    path = str(path)
    if _as_given(path):
        return Path(path).expanduser()
    folders = data_folders()
    for place in (Path(path), *(folder / path for folder in folders)):
        if place.exists():
            return place
    if create:
        return folders[0] / path
    unset = "" if os.environ.get(ENV) else f" (${ENV} is not set)"
    raise FileNotFoundError(
        f"{what} not found: {path} is in none of {Path.cwd()} (the current directory), "
        f"{', '.join(map(str, folders))}{unset}; {hint + ', or ' if hint else ''}put it in a folder ${ENV} names "
        f"(several separated by {os.pathsep!r}) or in {CACHE}"
    )
