"""The `argus` console entry point: one subcommand per module under argus.commands."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes `register(subparsers)`, which adds its subparser and sets `func`.
COMMANDS = [
    "argus.commands.up",
    "argus.commands.generate",
    "argus.commands.render",
    "argus.commands.load",
    "argus.commands.status",
    "argus.commands.solve",
    "argus.commands.profile",
    "argus.commands.train",
    "argus.commands.train_model",
    "argus.commands.simulate",
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="argus", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for mod in COMMANDS:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; domain errors exit 2 with their message on stderr."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as e:  # domain errors subclass ValueError; files give OSError
        print(f"argus {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
