"""The `processcontrol` command line: every subcommand's arguments, here; its code, imported only when it runs.

`processcontrol send` runs inside pods on every suspension (the in-pod script's first sender), so building the
parser must cost nothing: this module imports the standard library only (and containerrun's socket protocol,
which does too), and each subcommand names its handler as `module:function`, as a console script entry point
does; `main` imports the handler of the one command that runs. Handler modules import what they use at their
top (kopf, the kubernetes client, pydantic), except the in-pod commands' (`containerrun.client`): the standard
library only.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias, cast

from processcontrol.containerrun.protocol import command_names

EXIT_CODES = """exit status:
  0  done (with --wait: the requested state is reached and verified; with --preview: nothing stands in the way)
  1  not verified: stalled, timed out, or the operator is not running (with --preview: some pod stands in the way)
  2  invalid arguments or spec (nothing was sent)
  3  the ProcessSuspension CRD is not installed
  4  forbidden by RBAC
  5  not found
  6  any other API, connection or kubeconfig error
"""

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler = Callable[[argparse.Namespace], int]


PLUGIN = "kubectl-processcontrol"
# kubectl's completion of a plugin runs this executable with the words typed so far (kubectl >= 1.26).
PLUGIN_COMPLETION = "kubectl_complete-processcontrol"
COMPLETE = "__complete"
# The cluster flags not given anywhere: the subcommands' are SUPPRESSed (so that an absent one does not overwrite
# the same flag given before the command, in the plugin), and a subcommand's own default (the operator's -n) wins.
CLUSTER_DEFAULTS = {"namespace": None, "context": None, "kubeconfig": None, "all_namespaces": False}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="processcontrol",
        description="Suspend and resume containerrun processes in Kubernetes pods.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_crd(subparsers)
    _add_socket_commands(subparsers)
    _add_operator(subparsers)
    _add_suspension_commands(subparsers)
    _add_completion(subparsers, "processcontrol")
    parser.set_defaults(**CLUSTER_DEFAULTS)
    return parser


def build_plugin_parser() -> argparse.ArgumentParser:
    """The parser of `kubectl processcontrol`: the cluster commands only, with kubectl's flags before or after them."""
    parser = argparse.ArgumentParser(
        prog="kubectl processcontrol",
        description="Suspend and resume containerrun processes in Kubernetes pods (the processcontrol CLI as a "
        "kubectl plugin).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _cluster_flags(parser, top_level=True)
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace (get only)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_suspension_commands(subparsers)
    _add_completion(subparsers, PLUGIN)
    parser.set_defaults(**CLUSTER_DEFAULTS)
    return parser


def handler(args: argparse.Namespace) -> Handler:
    """Import the parsed subcommand's handler (`module:function`)."""
    module, _, function = str(args.handler).partition(":")
    return cast(Handler, getattr(importlib.import_module(module), function))


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == [COMPLETE]:
        return _print_completions(parser, words[1:])
    args = parser.parse_args(words)
    if args.all_namespaces and args.command in ("suspend", "resume", "describe"):
        parser.error(f"-A/--all-namespaces applies to get only, not to {args.command}: use -n")
    return handler(args)(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    return _run(build_parser(), argv)


def kubectl_main(argv: Sequence[str] | None = None) -> int:
    """`kubectl processcontrol`: kubectl runs the executable kubectl-processcontrol with the words after its name."""
    return _run(build_plugin_parser(), argv)


def kubectl_complete(argv: Sequence[str] | None = None) -> int:
    """`kubectl_complete-processcontrol WORD... CURRENT`: kubectl's completion of the plugin, in cobra's format
    (one candidate a line, then `:4`, cobra's ShellCompDirectiveNoFileComp)."""
    words = list(sys.argv[1:] if argv is None else argv)
    from processcontrol.commands.completion import candidates

    for candidate in candidates(build_plugin_parser(), words or [""]):
        print(candidate)
    print(":4")
    return 0


def _print_completions(parser: argparse.ArgumentParser, words: list[str]) -> int:
    from processcontrol.commands.completion import candidates

    for candidate in candidates(parser, words or [""]):
        print(candidate)
    return 0


# processcontrol completion ------------------------------------------------------------------------------------


def _add_completion(subparsers: Subparsers, program: str) -> None:
    parser = subparsers.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description=f"Print a script that completes {program}'s commands, flags, namespaces, contexts and "
        "suspension names in bash, zsh or fish.\n\n"
        "examples:\n"
        f"  source <({program} completion bash)                  # bash, this shell\n"
        f'  {program} completion zsh > "${{fpath[1]}}/_{program}"   # zsh, every new shell\n'
        f"  {program} completion fish > ~/.config/fish/completions/{program}.fish"
        + (
            "\n\n`kubectl processcontrol ...` is completed by kubectl's own completion (kubectl completion bash),\n"
            f"through the executable {PLUGIN_COMPLETION} installed next to {PLUGIN}."
            if program == PLUGIN
            else ""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell")
    parser.set_defaults(handler="processcontrol.commands.completion:print_script", program=program)


# processcontrol crd -------------------------------------------------------------------------------------------


def _add_crd(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "crd",
        help="print the ProcessSuspension CustomResourceDefinition generated from the models",
        description="Print the ProcessSuspension CRD (YAML) generated from the pydantic models; "
        "crds/processsuspensions.yaml is this output.",
    )
    parser.set_defaults(handler="processcontrol.api.crd:print_crd")


# processcontrol send | status: in pods ------------------------------------------------------------------------


def _add_socket_commands(subparsers: Subparsers) -> None:
    send = subparsers.add_parser(
        "send",
        help="send STOP, START or QUIT to containerrun sockets",
        description=(
            "Send a command to containerrun sockets at once and report, per socket, sent, refused (stale: "
            "nobody listens) or missing. Name sockets, or select them under BASE/data with --all, --job and "
            "--process. Exit status: 0 when every send succeeded, 1 when some failed, 2 on usage errors."
        ),
    )
    send.add_argument("action", choices=command_names(), metavar="{STOP,START,QUIT}")
    send.add_argument("sockets", nargs="*", type=Path, metavar="SOCKET", help="socket paths")
    send.add_argument("--all", action="store_true", help="every socket under BASE/data")
    send.add_argument("--job", action="append", default=[], metavar="JOB", help="only sockets of this job (repeatable)")
    send.add_argument(
        "--process", action="append", default=[], metavar="PROCESS", help="only this process (repeatable)"
    )
    _add_base_dir(send)
    send.set_defaults(handler="processcontrol.containerrun.client:run_send", parser=send)

    status = subparsers.add_parser(
        "status",
        help="show every containerrun socket and its state",
        description=(
            "List every containerrun socket under BASE/data with its job, process, state and pid. "
            "running: the socket answers and the .running sentinel exists; stopped: the socket answers, "
            "no sentinel; stale: the socket refuses (containerrun is gone); unknown: it cannot be told."
        ),
    )
    _add_base_dir(status)
    status.add_argument("-o", "--output", choices=("table", "json"), default="table")
    status.set_defaults(handler="processcontrol.containerrun.client:run_status")


def _add_base_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where data/ is (default: $CONTAINERRUN_BASE_DIR, else /var/vcap)",
    )


# processcontrol operator --------------------------------------------------------------------------------------


def _add_operator(subparsers: Subparsers) -> None:
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
    parser.set_defaults(handler="processcontrol.reconcile.main:run_operator")


# processcontrol suspend | resume | get | describe: the imperative side for incidents, as flux suspend/resume --


def _cluster_flags(parser: argparse.ArgumentParser, top_level: bool = False) -> None:
    group = parser.add_argument_group("cluster")
    # SUPPRESS on the subcommands: an absent flag there must not overwrite the same flag given before the command.
    default = None if top_level else argparse.SUPPRESS
    group.add_argument(
        "-n", "--namespace", default=default, help="the namespace (default: the kube context's, else default)"
    )
    group.add_argument("--context", default=default, help="the kubeconfig context to use (default: the current one)")
    group.add_argument(
        "--kubeconfig", default=default, help="the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)"
    )


def _common(parser: argparse.ArgumentParser) -> None:
    _cluster_flags(parser)


def _wait(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--wait", action="store_true", help=f"show progress per pod until {what} is verified")
    parser.add_argument(
        "--timeout", default="5m", metavar="DURATION", help="how long --wait waits, e.g. 90s or 10m (default: 5m)"
    )


def _parser(subparsers: Subparsers, name: str, help_: str, description: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=help_,
        description=description,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_suspension_commands(subparsers: Subparsers) -> None:
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
        "  processcontrol suspend database --jobs pxc-mysql --preview   # what it would stop, and what is in the way\n"
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
        "--probes",
        choices=("Warn", "Skip", "Refuse"),
        help="where a stopped process would fail its container's liveness probe: stop it anyway and warn "
        "(Warn, the default), leave it running (Skip), or stop nothing in that pod (Refuse)",
    )
    suspend.add_argument(
        "--name", help="the ProcessSuspension's name (default: the instance group, plus a hash of any filters)"
    )
    suspend.add_argument(
        "--preview",
        action="store_true",
        help="stop nothing: have the operator look into every target pod (a preview, spec.preview: true, under a "
        "name of its own), print what it would stop, skip and why, then delete the preview; exit 1 when some pod "
        "stands in the way (see --timeout)",
    )
    suspend.add_argument("--dry-run", action="store_true", help="print the object (see -o) and send nothing")
    suspend.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="format for --dry-run")
    _wait(suspend, "the suspension")
    _common(suspend)
    suspend.set_defaults(handler="processcontrol.commands.run:suspend", parser=suspend)

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
    resume.set_defaults(handler="processcontrol.commands.run:resume", parser=resume)

    get = _parser(
        subparsers,
        "get",
        "list suspensions",
        "List ProcessSuspensions with the columns of `kubectl get processsuspensions`.",
    )
    get.add_argument("name", nargs="?", metavar="NAME", help="only this one")
    get.add_argument("-A", "--all-namespaces", action="store_true", default=argparse.SUPPRESS, help="every namespace")
    get.add_argument("-o", "--output", choices=("wide", "yaml", "json"), help="more columns, or the whole objects")
    _common(get)
    get.set_defaults(handler="processcontrol.commands.run:get", parser=get)

    describe = _parser(
        subparsers,
        "describe",
        "show a suspension: conditions, and every pod and process",
        "Show a ProcessSuspension: target, filters, times, conditions with reasons, and every pod with its\n"
        "processes, their state and pid.",
    )
    describe.add_argument("name", metavar="NAME", help="the ProcessSuspension")
    describe.add_argument(
        "-o", "--output", choices=("yaml", "json"), help="the whole object instead, as get -o prints it"
    )
    _common(describe)
    describe.set_defaults(handler="processcontrol.commands.run:describe", parser=describe)


if __name__ == "__main__":
    sys.exit(main())
