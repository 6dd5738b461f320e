"""`processcontrol operator`: run the kopf operator with our handlers (its arguments are in `processcontrol.cli`)."""

from __future__ import annotations

import argparse

import kopf

import processcontrol.reconcile.handlers  # noqa: F401  (registers the handlers)


def run_operator(args: argparse.Namespace) -> int:
    """Start kopf with our handlers until interrupted."""
    kopf.configure(verbose=args.verbose, debug=args.debug)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=args.peering is None,
        peering_name=args.peering,
        liveness_endpoint=args.liveness,
    )
    return 0
