"""The `containerrun` command: a drop-in for the Go `container-run`, with `--base-dir` and `--stop-timeout`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from processcontrol.containerrun.bpm import write_bpm
from processcontrol.containerrun.protocol import Endpoint, default_base_dir, valid_name
from processcontrol.containerrun.supervisor import Config, Supervisor

# Flags that take a value. Like the Go original (pflag), a value may start with "-": `--post-start-arg -v`.
VALUE_FLAGS = frozenset(
    {
        "--job-name",
        "--process-name",
        "--post-start-name",
        "--post-start-arg",
        "--post-start-condition-name",
        "--post-start-condition-arg",
        "--base-dir",
        "--stop-timeout",
    }
)

EPILOG = """\
Files: <base>/data/<job>/<process>_containerrun.sock (unix datagram socket: STOP, START, QUIT),
<base>/data/<job>/<process>_containerrun.running (exists while the main process runs),
<base>/sys/run/bpm/<job>/<process>.pid (pid of the main process),
<base>/jobs/bpm/bin/bpm (written at start-up unless it exists: bpm start|stop|term|quit|pid|running JOB [-p PROCESS]).
Exit status: the main process's status when it fails (128 + N when killed by signal N, 127 when it
cannot be started), 0 after SIGTERM/SIGINT once every child is gone.
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser for every flag of the Go `container-run`, plus ours."""
    parser = argparse.ArgumentParser(
        prog="containerrun",
        usage="containerrun --job-name JOB --process-name PROCESS [options] -- COMMAND [ARGS...]",
        description="Run a command and its post-start; STOP, START and QUIT them through a unix datagram socket.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--job-name", required=True, help="the controlling BOSH job")
    parser.add_argument("--process-name", required=True, help="the main process")
    parser.add_argument("--post-start-name", default="", help="the post-start command name")
    parser.add_argument("--post-start-arg", action="append", default=[], help="a post-start command arg")
    parser.add_argument("--post-start-condition-name", default="", help="the post-start condition command name")
    parser.add_argument(
        "--post-start-condition-arg", action="append", default=[], help="a post-start condition command arg"
    )
    parser.add_argument("--debug", action="store_true", help="enable debug logging")
    parser.add_argument("--errand", action="store_true", help="exit when the main process exits, even with status 0")
    parser.add_argument(
        "--base-dir",
        type=Path,
        default=None,
        help="where data/ and sys/ are (default: $CONTAINERRUN_BASE_DIR, else /var/vcap)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="after STOP, SIGKILL what is left after this long (default: 20)",
    )
    parser.add_argument("command", nargs="*", metavar="COMMAND", help=argparse.SUPPRESS)
    return parser


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split at the first `--` into flags and the command; join `--flag value` pairs into `--flag=value`."""
    argv = list(argv)
    command: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1 :]
    flags: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in VALUE_FLAGS and i + 1 < len(argv):
            flags.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            flags.append(argv[i])
            i += 1
    return flags, command


def parse_config(argv: Sequence[str]) -> tuple[Config, bool]:
    """Parse the command line into a supervisor config and the debug flag; exit 2 on usage errors."""
    parser = build_parser()
    flags, command = split_argv(argv)
    args = parser.parse_args(flags)
    command = args.command + command
    if not command:
        parser.error("a command is required after --")
    for flag, name in (("--job-name", args.job_name), ("--process-name", args.process_name)):
        if not valid_name(name):
            parser.error(f"{flag} must be a non-empty name without '/': {name!r}")
    if args.stop_timeout < 0:
        parser.error("--stop-timeout must not be negative")
    endpoint = Endpoint(args.base_dir or default_base_dir(), args.job_name, args.process_name)
    config = Config(
        endpoint=endpoint,
        command=command,
        post_start=[args.post_start_name, *args.post_start_arg] if args.post_start_name else [],
        post_start_condition=(
            [args.post_start_condition_name, *args.post_start_condition_arg] if args.post_start_condition_name else []
        ),
        stop_timeout=args.stop_timeout,
        errand=args.errand,
    )
    return config, args.debug


def setup_logging(endpoint: Endpoint, debug: bool) -> None:
    """One line per event on stderr, naming the job and process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s containerrun[{endpoint.job}/{endpoint.process}] %(levelname)s %(message)s")
    )
    logger = logging.getLogger("containerrun")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run containerrun; return its exit status."""
    config, debug = parse_config(sys.argv[1:] if argv is None else argv)
    setup_logging(config.endpoint, debug)
    log = logging.getLogger("containerrun")
    try:  # as the Go original: for drain scripts; a failure here does not keep the process from running
        written = write_bpm(config.endpoint.base_dir)
        if written is not None:
            log.info("wrote %s", written)
    except OSError as error:
        log.warning("cannot write the bpm command: %s", error)
    try:
        return Supervisor(config).run()
    except OSError as error:  # cannot create the directories or bind the socket
        log.error("cannot run: %s", error)
        return 1
