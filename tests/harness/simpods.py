#!/usr/bin/env python3
"""Many fake pods' containerrun sockets served by one host process: the scale harness's process supervisors.

For benchmarks with thousands of pods (bench/scale_bench.py), where one real `containerrun` (plus its `sleep`) per
process would need tens of thousands of host processes on a 2-core machine. Everything else stays real: the pods
are kwok pods of harness.fakepods' layout (same base directories, same kwok Exec objects), the operator is the real
one and every exec runs the real in-pod script on this host against the files this process keeps.

Per endpoint (`<base>/data/<job>/<process>_containerrun.sock`) it behaves as our containerrun does when its main
process stops at SIGTERM (`sleep`, as harness.fakepods runs), as the in-pod script and `bpm` can observe it:

- at start-up: `<base>/jobs/bpm/bin/bpm` written unless present; a leftover sentinel, pid file and socket file
  replaced; the socket bound; the main process "started": the sentinel touched and the pid file written (a number
  from a counter, no newline, as containerrun writes it);
- a datagram is trimmed and matched exactly (UTF-8, at most 256 bytes, else ignored); nothing is sent back;
- `STOP` when running: stopped at once; `stop_ms` later (the main process's exit, measured on ours: p50 1.3 ms from
  STOP to the sentinel gone, bench/results/containerrun.json) the pid file goes, then the sentinel;
- `START` when stopped: once a pending stop is done, `start_ms` later (the spawn) the sentinel and a new pid file;
  a `STOP` meanwhile cancels it, as containerrun's pending START; a repeated STOP or START is a no-op;
- `QUIT`: nothing to signal, nothing changes;
- on SIGTERM/SIGINT: every sentinel and pid file removed, every socket file of ours unlinked, then exit 0.

What it does not model: processes that ignore SIGTERM (the stop timeout), failing main processes, post-starts,
container restarts (there is no container to restart: use harness.fakepods' real containerrun for drift).

    python -m harness.simpods serve ENDPOINTS.jsonl [--stop-ms 1.3] [--start-ms 1.0]

ENDPOINTS.jsonl: one `{"base": DIR, "job": JOB, "process": PROCESS}` a line. It prints `serving N endpoints` once
every socket is bound.

From Python: `create_pods` makes kwok pods (and their Exec objects) in bulk, in harness.fakepods' layout but with
no host process; `start_server` serves their endpoints, in as many processes as the hard file limit needs (their pid
files under `<state>/sim/`, so the control plane's `down` stops them with the fake pods' processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import fakepods
from harness.base import ProcessRecord, kubectl, spawn, state_dir, stop_group
from processcontrol.containerrun.bpm import write_bpm
from processcontrol.containerrun.protocol import MAX_DATAGRAM, Command, Endpoint, parse_command

log = logging.getLogger("simpods")

# containerrun's STOP -> sentinel gone, p50 on this machine (bench/results/containerrun.json: 1.31 ms).
DEFAULT_STOP_MS = 1.3
# START -> sentinel there: one posix_spawn.
DEFAULT_START_MS = 1.0
# Fake pids: above what the host hands out in practice, so nobody mistakes them for a live host process's.
FIRST_PID = 3_000_000


@dataclass(eq=False)
class SimProcess:
    """One containerrun endpoint: the socket, its state and the timer of a stop or start under way."""

    endpoint: Endpoint
    pids: itertools.count[int]
    loop: asyncio.AbstractEventLoop
    stop_s: float
    start_s: float
    running: bool = False
    sock: socket.socket | None = None
    inode: int = 0
    # A stop under way (the main process has not exited yet), a START waiting for it, a spawn under way.
    stopping: asyncio.TimerHandle | None = None
    start_pending: bool = False
    starting: asyncio.TimerHandle | None = None
    received: int = field(default=0)

    def bind(self) -> None:
        path = self.endpoint.socket
        path.parent.mkdir(parents=True, exist_ok=True)
        self.endpoint.pidfile.parent.mkdir(parents=True, exist_ok=True)
        for leftover in (self.endpoint.sentinel, self.endpoint.pidfile, path):
            leftover.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(os.fspath(path))
        self.sock = sock
        self.inode = path.stat().st_ino

    def launch(self) -> None:
        """The main process is there: sentinel, then pid file, as containerrun's _start_processes."""
        if self.starting is not None:
            self.starting.cancel()
            self.starting = None
        self.running = True
        self.endpoint.sentinel.touch()
        self.endpoint.pidfile.write_text(str(next(self.pids)))

    def exited(self) -> None:
        """The main process (and its group) is gone: pid file, then sentinel; a waiting START goes ahead."""
        self.stopping = None
        self.endpoint.pidfile.unlink(missing_ok=True)
        self.endpoint.sentinel.unlink(missing_ok=True)
        if self.start_pending:
            self.start_pending = False
            self.starting = self.loop.call_later(self.start_s, self.launch)

    def on_command(self, command: Command) -> None:
        self.received += 1
        if self.starting is not None:
            # containerrun spawns synchronously, so a command after a START always meets the process started.
            self.launch()
        if command is Command.STOP:
            if self.start_pending:
                self.start_pending = False
            elif self.running:
                self.running = False
                self.stopping = self.loop.call_later(self.stop_s, self.exited)
        elif command is Command.START and not self.running and not self.start_pending:
            if self.stopping is not None:
                self.start_pending = True
            else:
                self.starting = self.loop.call_later(self.start_s, self.launch)

    def close(self) -> None:
        for timer in (self.stopping, self.starting):
            if timer is not None:
                timer.cancel()
        for path in (self.endpoint.sentinel, self.endpoint.pidfile):
            path.unlink(missing_ok=True)
        if self.sock is not None:
            with contextlib.suppress(OSError):
                if self.endpoint.socket.stat().st_ino == self.inode:
                    self.endpoint.socket.unlink()
            self.sock.close()
            self.sock = None


def read_endpoints(lines: Iterable[str]) -> list[Endpoint]:
    """The endpoints of an ENDPOINTS.jsonl; ValueError names the bad line."""
    found = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            found.append(Endpoint(Path(item["base"]), str(item["job"]), str(item["process"])))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"line {number}: expected {{base, job, process}}: {error}") from None
    return found


# Descriptors a server keeps besides its sockets (stdio, the event loop, logging, the file being touched).
SPARE_FILES = 256


def raise_file_limit(needed: int) -> None:
    """One descriptor per socket: lift the soft limit to what is needed (start_server keeps it under the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


async def serve(endpoints: list[Endpoint], stop_ms: float, start_ms: float, ready: asyncio.Event | None = None) -> int:
    """Serve every endpoint until SIGTERM/SIGINT; returns the exit status."""
    loop = asyncio.get_running_loop()
    raise_file_limit(len(endpoints) + SPARE_FILES)
    pids = itertools.count(FIRST_PID)
    processes = [SimProcess(e, pids, loop, stop_ms / 1000, start_ms / 1000) for e in endpoints]
    done = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)

    def readable(process: SimProcess) -> None:
        assert process.sock is not None
        while True:  # every queued datagram, as containerrun drains its socket
            try:
                data, _, flags, _ = process.sock.recvmsg(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("reading %s failed (ignored): %s", process.endpoint.socket, error)
                return
            if flags & socket.MSG_TRUNC:
                continue
            command = parse_command(data)
            if command is not None:
                process.on_command(command)

    try:
        for base in {e.base_dir for e in endpoints}:
            write_bpm(base)
        for process in processes:
            process.bind()
            assert process.sock is not None
            loop.add_reader(process.sock.fileno(), readable, process)
            process.launch()
        print(f"serving {len(processes)} endpoints", flush=True)
        if ready is not None:
            ready.set()
        await done.wait()
    finally:
        for process in processes:
            if process.sock is not None:
                loop.remove_reader(process.sock.fileno())
            process.close()
    print(f"stopped; {sum(p.received for p in processes)} commands received", flush=True)
    return 0


# --- the host side, for benchmarks ---------------------------------------------------------------------------------

# Pods per `kubectl create`: one process, one request per object, output parsed for the uids.
CREATE_CHUNK = 500


def endpoints_of(namespace: str, pods: Iterable[str], jobs: Iterable[fakepods.JobProcess]) -> list[Endpoint]:
    """The containerrun endpoints of simulated pods, at harness.fakepods' paths."""
    jps = list(jobs)
    return [Endpoint(fakepods.base_dir(namespace, pod), jp.job, jp.process) for pod in pods for jp in jps]


def create_pods(
    group: str,
    namespace: str,
    ordinals: range,
    jobs: Iterable[fakepods.JobProcess],
    state: Path | None = None,
) -> list[str]:
    """Pods GROUP-<i> with their host directories and kwok Exec objects, CREATE_CHUNK per kubectl; no process is
    started (start_server serves them). Returns the pod names."""
    jps = list(jobs)
    names: list[str] = []
    fakepods.ensure_namespace(namespace, state)
    for first in range(ordinals.start, ordinals.stop, CREATE_CHUNK):
        chunk = range(first, min(ordinals.stop, first + CREATE_CHUNK))
        items = [fakepods.build_pod(group, namespace, i, jps) for i in chunk]
        out = kubectl(
            "create",
            "-o",
            "json",
            "-f",
            "-",
            state=state,
            input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
            timeout=600,
        ).stdout
        made = list(json_objects(out))
        execs = []
        for pod in made:
            name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
            base = fakepods.base_dir(namespace, name, state)
            for sub in ("data", "sys/log", "sys/run/bpm"):
                (base / sub).mkdir(parents=True, exist_ok=True)
            pdir = fakepods.pod_dir(namespace, name, state)
            pdir.mkdir(parents=True, exist_ok=True)
            (pdir / "uid").write_text(uid)
            link = pdir / "vcap"
            if not link.is_symlink():
                link.symlink_to(base)
            execs.append(fakepods.build_exec(namespace, name, uid, jps, None, state))
            names.append(name)
        kubectl(
            "create",
            "-f",
            "-",
            state=state,
            input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": execs}),
            timeout=600,
        )
    return names


def json_objects(text: str) -> Iterable[dict[str, Any]]:
    """The objects of kubectl's `-o json` output: one document, a List, or (for `create` of a List) one after the
    other."""
    decoder = json.JSONDecoder()
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return
        obj, at = decoder.raw_decode(text, at)
        yield from obj["items"] if obj.get("kind") == "List" else [obj]


def server_pid_file(name: str, state: Path | None = None) -> Path:
    return (state or state_dir()) / fakepods.SIM_DIR / f"{name}.pid"


def shard_names(name: str, state: Path | None = None) -> list[str]:
    """The servers start_server runs under `name`: `name` itself and its shards `name.1`, `name.2`, ..."""
    directory = server_pid_file(name, state).parent
    return [name, *sorted(p.stem for p in directory.glob(f"{name}.*.pid") if p.stem.rsplit(".", 1)[1].isdigit())]


def endpoints_per_server() -> int:
    """As many endpoints as one process may hold sockets for: its hard file limit, which only a process with
    CAP_SYS_RESOURCE can raise (a container often has none)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, (hard if hard != resource.RLIM_INFINITY else 1 << 20) - SPARE_FILES)


def start_server(
    name: str,
    endpoints: list[Endpoint],
    state: Path | None = None,
    stop_ms: float = DEFAULT_STOP_MS,
    start_ms: float = DEFAULT_START_MS,
    timeout: float = 300.0,
) -> list[ProcessRecord]:
    """`serve` as detached processes (replacing those of the same name), as many as the file limit needs; returns
    once every socket is bound."""
    stop_server(name, state)
    size = endpoints_per_server()
    shards = [endpoints[at : at + size] for at in range(0, len(endpoints), size)] or [[]]
    records: list[ProcessRecord] = []
    try:
        for index, shard in enumerate(shards):
            server = name if index == 0 else f"{name}.{index}"
            records.append(_start_one(server, shard, state, stop_ms, start_ms, timeout))
    except BaseException:
        stop_server(name, state)
        raise
    return records


def _start_one(
    name: str, endpoints: list[Endpoint], state: Path | None, stop_ms: float, start_ms: float, timeout: float
) -> ProcessRecord:
    directory = server_pid_file(name, state).parent
    directory.mkdir(parents=True, exist_ok=True)
    spec = directory / f"{name}.jsonl"
    spec.write_text(
        "".join(json.dumps({"base": str(e.base_dir), "job": e.job, "process": e.process}) + "\n" for e in endpoints)
    )
    log_path = directory / f"{name}.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    argv = [sys.executable, "-m", "harness.simpods", "serve", str(spec), "--stop-ms", str(stop_ms)]
    record = spawn([*argv, "--start-ms", str(start_ms)], log_path, server_pid_file(name, state))
    deadline = time.monotonic() + timeout
    while True:
        with log_path.open("rb") as log_file:
            log_file.seek(offset)
            text = log_file.read().decode(errors="replace")
        if f"serving {len(endpoints)} endpoints" in text:
            return record
        if not record.alive() or time.monotonic() > deadline:
            stop_group(record)
            raise fakepods.FakePodError(f"simpods server {name} did not come up; {log_path}:\n{text[-2000:]}")
        time.sleep(0.1)


def stop_server(name: str, state: Path | None = None) -> None:
    """Stop the servers start_server started (their endpoints' files go with them); a no-op when none runs."""
    for server in shard_names(name, state):
        pid_file = server_pid_file(server, state)
        record = ProcessRecord.read(pid_file)
        if record is not None:
            stop_group(record, timeout=60)
        pid_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m harness.simpods", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="serve the endpoints of ENDPOINTS.jsonl until SIGTERM")
    run.add_argument("endpoints", type=Path)
    run.add_argument("--stop-ms", type=float, default=DEFAULT_STOP_MS, help="STOP -> pid file and sentinel gone")
    run.add_argument("--start-ms", type=float, default=DEFAULT_START_MS, help="START -> sentinel and pid file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        endpoints = read_endpoints(args.endpoints.read_text().splitlines())
    except (OSError, ValueError) as error:
        print(f"simpods: {args.endpoints}: {error}", file=sys.stderr)
        return 2
    if args.stop_ms < 0 or args.start_ms < 0:
        print("simpods: --stop-ms and --start-ms must not be negative", file=sys.stderr)
        return 2
    return asyncio.run(serve(endpoints, args.stop_ms, args.start_ms))


if __name__ == "__main__":
    sys.exit(main())
