"""The ``svdtrain`` command: one small dispatcher, one module per subcommand."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from svdtrain.cli import demo, pipeline, presets, sweep
from svdtrain.train.loop import TrainingDiverged

SUBCOMMANDS = (demo, pipeline, sweep, presets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="svdtrain", description="SVD training: low-rank networks that run faster.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader left (``svdtrain presets x | head``): not an error, stop quietly
        _silence_stdout()
        return 128 + 13  # what a shell reports for a writer ended by SIGPIPE
    except (ValueError, ImportError, OSError) as error:  # user mistakes: one line, exit status 2
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


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise into the pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
