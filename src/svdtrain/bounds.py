"""Bounds on what svdtrain reads and repeats: files that must be regular (and, where small by
nature, small), and values shown in error messages cut to a line.

``/dev/zero``, a FIFO or a directory named where a file belongs would otherwise be read without
end or wait forever; a value built by a hostile file (a YAML alias bomb, a pickle reusing one list
a billion times) would otherwise take minutes and gigabytes to format into a message.
"""

from __future__ import annotations

import json
import os
import reprlib
import stat
from pathlib import Path
from typing import Any

MiB = 1 << 20
CONFIG_BYTES = 4 * MiB  # config files, config.json, spec.json, report.json: a few KiB in practice

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip


def _check(path: Path, info: os.stat_result, what: str, limit: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "a special file")
        raise ValueError(f"{what} {path} is {kind}, not a regular file")
    if limit is not None and info.st_size > limit:
        raise ValueError(f"{what} {path} is too large: {info.st_size:,} bytes, at most {limit:,}")


def check_file(path: str | Path, *, what: str, limit: int | None = None) -> Path:
    """``path``, checked to be a regular file of at most ``limit`` bytes, for code that opens it
    itself (``torch.load``, ``tarfile``, transformers).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: a directory, device, FIFO or socket, or a file over ``limit``.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    _check(path, info, what, limit)
    return path


def read_file(path: str | Path, *, what: str, limit: int | None = None) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them.

    ``what`` names the file in errors ("config file"). The file is opened without blocking, so a
    FIFO is refused rather than waited on, and never more than ``limit`` + 1 bytes are read, so a
    file that grows as it is read is refused too.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: a directory, device, FIFO or socket, or a file over ``limit``.

    >>> read_file("/dev/zero", what="config file")
    Traceback (most recent call last):
    ...
    ValueError: config file /dev/zero is a character device, not a regular file
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    try:
        _check(path, os.fstat(fd), what, limit)
    except ValueError:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        data = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ValueError(f"{what} {path} is too large: over {limit:,} bytes")
    return data


def read_json(path: str | Path, *, what: str, limit: int = CONFIG_BYTES) -> Any:
    """The JSON value of the file at ``path``, read as :func:`read_file` reads (``limit``: a few MiB).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: not a regular file, over ``limit``, or not JSON (nested thousands deep included).
    """
    data = read_file(path, what=what, limit=limit)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{path} is not valid JSON: {str(error)[:200]}") from None


_SHORT = reprlib.Repr()
_SHORT.maxlevel = 2
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = _SHORT.maxfrozenset = 4
_SHORT.maxstring = _SHORT.maxother = 160


def brief(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, computed from a bounded part of it:
    how an error shows a value that came from a file or a flag.

    >>> brief(list(range(10**6)))
    '[0, 1, 2, 3, ...]'
    """
    try:
        text = _SHORT.repr(value)
    except ValueError:  # an int past Python's 4,300-digit limit on conversion to text
        return f"an {type(value).__name__} too long to show"
    return text if len(text) <= limit else text[: limit - 3] + "..."
