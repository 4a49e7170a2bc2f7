"""The ``svdtrain`` command: one small dispatcher, one module per subcommand."""

from __future__ import annotations

import argparse
import os
import select
import sys
import warnings

import torch

from svdtrain.train.watch import TrainingDiverged


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (imported here: they need the CLI's extras, the core does not)."""
    from svdtrain.cli import compare, demo, parallel, pipeline, presets, probe, sweep

    parser = argparse.ArgumentParser(prog="svdtrain", description="SVD training: low-rank networks that run faster.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (demo, pipeline, sweep, compare, parallel, presets, probe):
        module.add_parser(subparsers)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A library warning as the CLI's other messages are: one line, no source file or line."""
    return f"svdtrain: warning: {' '.join(str(message).splitlines()) or category.__name__}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    warnings.filterwarnings("default", category=DeprecationWarning, module=r"svdtrain\.")  # our renames: say them
    try:
        parser = build_parser()
    except ImportError as missing:  # a core install: the command line needs an extra
        print(f"svdtrain: error: {missing}; the command line needs an extra: pip install 'svdtrain[demo]' "
              "(svdtrain demo) or 'svdtrain[pipeline]' (everything else)", file=sys.stderr)  # fmt: skip
        return 2
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, ImportError, OSError) as error:  # user mistakes: one line, exit status 2
        if isinstance(error, BrokenPipeError) and _reader_left():
            return 128 + 13  # ``svdtrain presets x | head``: what a shell reports for a writer SIGPIPE ended
        print(f"svdtrain {args.command}: error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:  # the run, not the input: one line, exit status 3
        print(f"svdtrain {args.command}: error: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"svdtrain {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _reader_left() -> bool:
    """Whether stdout's own reader closed the pipe (not some other pipe breaking). If so, stdout is
    pointed at /dev/null, so the interpreter's final flush does not raise into it again."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0)):
            return False  # a writer with no reader polls as an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
        return True
    except (OSError, ValueError, AttributeError):  # no file descriptor (captured), or no poll (Windows)
        return False


if __name__ == "__main__":
    sys.exit(main())
