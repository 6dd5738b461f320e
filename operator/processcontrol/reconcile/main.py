"""`processcontrol operator`: run the kopf operator."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register `operator`."""
    parser = subparsers.add_parser(
        "operator",
        help="run the operator (watches ProcessSuspension objects)",
        description="Run the kopf operator. Settings come from PROCESSCONTROL_* environment variables (see README).",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], metavar="NS", help="watch this namespace (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    parser.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="serve kopf's liveness probe here, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--peering",
        metavar="NAME",
        default=None,
        help="coordinate replicas through kopf's peering object NAME (default: standalone, one replica)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("--debug", action="store_true", help="log everything, including kopf's internals")
    parser.set_defaults(handler=run_operator)


def run_operator(args: argparse.Namespace) -> int:
    """Start kopf with our handlers until interrupted."""
    import kopf

    import processcontrol.reconcile.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=args.verbose, debug=args.debug)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=args.peering is None,
        peering_name=args.peering,
        liveness_endpoint=args.liveness,
    )
    return 0
