"""The `processcontrol` command: one parser, subcommands contributed by the modules that implement them."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module exposes `add_commands(subparsers)` and sets `handler` (args -> exit code) on its parsers.
# They are imported lazily by name so that `processcontrol send`, which runs inside pods on every
# suspension, never pays for importing kopf or the kubernetes client.
COMMAND_MODULES: tuple[str, ...] = (
    "processcontrol.api.crd",
    "processcontrol.containerrun.client",
    "processcontrol.reconcile.main",
    "processcontrol.commands",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="processcontrol",
        description="Suspend and resume containerrun processes in Kubernetes pods.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
