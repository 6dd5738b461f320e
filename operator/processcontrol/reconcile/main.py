"""`processcontrol operator`: run the kopf operator with our handlers (its arguments are in `processcontrol.cli`)."""

from __future__ import annotations

import argparse
import sys

import kopf

import processcontrol.reconcile.handlers  # noqa: F401  (registers the handlers)
from processcontrol.settings import ProcessControlSettings


def run_operator(args: argparse.Namespace) -> int:
    """Start kopf with our handlers until interrupted."""
    # A namespace both watched and excluded would be watched for nothing (the handlers ignore it): say so at
    # once, not as a suspension there that never gets a status.
    excluded = sorted(set(args.namespace) & set(ProcessControlSettings().excluded_namespaces))
    if excluded:
        print(
            f"processcontrol operator: --namespace {', '.join(excluded)}: excluded by "
            "PROCESSCONTROL_EXCLUDED_NAMESPACES; remove it from one of the two",
            file=sys.stderr,
        )
        return 2
    kopf.configure(verbose=args.verbose, debug=args.debug)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=args.peering is None,
        peering_name=args.peering,
        liveness_endpoint=args.liveness,
    )
    return 0
