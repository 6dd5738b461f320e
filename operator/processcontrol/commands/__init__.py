"""`processcontrol suspend|resume|get|describe`: the imperative side for incidents, as `flux suspend/resume` is.

Only argparse here: the handlers (and with them the kubernetes client) are imported when a command runs, so that
`processcontrol send` inside pods never pays for them.
"""

from __future__ import annotations

import argparse
from typing import Any

EXIT_CODES = """exit status:
  0  done (with --wait: the requested state is reached and verified)
  1  not verified: stalled, timed out, or the operator is not running
  2  invalid arguments or spec (nothing was sent)
  3  the ProcessSuspension CRD is not installed
  4  forbidden by RBAC
  5  not found
  6  any other API, connection or kubeconfig error
"""


def _handler(name: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        from processcontrol.commands import run as commands

        code: int = getattr(commands, name)(args)
        return code

    return run


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument("-n", "--namespace", help="the namespace (default: the kube context's, else default)")
    group.add_argument("--context", help="the kubeconfig context to use (default: the current one)")
    group.add_argument("--kubeconfig", help="the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")


def _wait(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--wait", action="store_true", help=f"show progress per pod until {what} is verified")
    parser.add_argument(
        "--timeout", default="5m", metavar="DURATION", help="how long --wait waits, e.g. 90s or 10m (default: 5m)"
    )


def _parser(subparsers: Any, name: str, help_: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help_,
        description=description,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_commands(subparsers: Any) -> None:
    """Add suspend, resume, get and describe to the `processcontrol` parser."""
    suspend = _parser(
        subparsers,
        "suspend",
        "suspend the processes of an instance group or of selected pods",
        "Create (or update) a ProcessSuspension by server-side apply, as field manager processcontrol-cli.\n"
        "The spec is validated before anything is sent. With --wait, print each pod's progress until every\n"
        "process is stopped and verified.\n\n"
        "examples:\n"
        "  processcontrol suspend database -n kubecf --jobs pxc-mysql --reason 'restore, OPS-1234' --wait\n"
        "  processcontrol suspend -l app=api,tier!=canary --duration 2h --name api-freeze\n"
        "  processcontrol suspend database --dry-run -o yaml > suspension.yaml   # for Git",
    )
    suspend.add_argument("instance_group", nargs="?", metavar="INSTANCE_GROUP", help="the kubecf instance group")
    suspend.add_argument("-l", "--selector", help="a label selector instead, kubectl syntax: a=b,c!=d,e in (f,g)")
    suspend.add_argument(
        "--jobs", action="append", metavar="J,...", help="only the processes of these BOSH jobs (repeatable)"
    )
    suspend.add_argument("--processes", action="append", metavar="P,...", help="only these processes (repeatable)")
    suspend.add_argument("--reason", help="why: shown by get, describe and in events")
    suspend.add_argument("--duration", metavar="DURATION", help="resume by itself this long after, e.g. 90m or 2h")
    suspend.add_argument("--container", help="the container to exec into (default: the one mounting /var/vcap/data)")
    suspend.add_argument(
        "--name", help="the ProcessSuspension's name (default: the instance group, plus a hash of any filters)"
    )
    suspend.add_argument("--dry-run", action="store_true", help="print the object (see -o) and send nothing")
    suspend.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="format for --dry-run")
    _wait(suspend, "the suspension")
    _common(suspend)
    suspend.set_defaults(handler=_handler("suspend"), parser=suspend)

    resume = _parser(
        subparsers,
        "resume",
        "resume a suspension (spec.suspend: false), or delete it",
        "Set spec.suspend to false, keeping the object (as `flux resume` does), or with --delete delete it:\n"
        "the operator resumes the processes before the object goes. With --wait, print each pod's progress\n"
        "until every process runs again, verified (or the object is gone).",
    )
    resume.add_argument("name", metavar="NAME", help="the ProcessSuspension")
    resume.add_argument("--delete", action="store_true", help="delete the object instead of setting suspend: false")
    _wait(resume, "the resumption")
    _common(resume)
    resume.set_defaults(handler=_handler("resume"), parser=resume)

    get = _parser(
        subparsers,
        "get",
        "list suspensions",
        "List ProcessSuspensions with the columns of `kubectl get processsuspensions`.",
    )
    get.add_argument("name", nargs="?", metavar="NAME", help="only this one")
    get.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    get.add_argument("-o", "--output", choices=("wide", "yaml", "json"), help="more columns, or the whole objects")
    _common(get)
    get.set_defaults(handler=_handler("get"), parser=get)

    describe = _parser(
        subparsers,
        "describe",
        "show a suspension: conditions, and every pod and process",
        "Show a ProcessSuspension: target, filters, times, conditions with reasons, and every pod with its\n"
        "processes, their state and pid.",
    )
    describe.add_argument("name", metavar="NAME", help="the ProcessSuspension")
    _common(describe)
    describe.set_defaults(handler=_handler("describe"), parser=describe)
