"""Issue 27's attacks from inside a pod, on the pod workers and the status daemon, with real containerrun processes.

A hostile container only needs to write files under /var/vcap/data: sockets with names no BOSH release has, more
sockets than the status lists, a long probe. Each case: that pod says what is wrong, its other processes and the
other pod are suspended and given back as usual, and a deletion completes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import selectors
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aioenums
from kopf._core.intents import stoppers

from processcontrol import ledger as ledger_module
from processcontrol.api import MAX_LISTED_PODS, ProcessSuspensionStatus
from processcontrol.containerrun.protocol import parse_command
from processcontrol.exceptions import PodFailure
from processcontrol.ledger import HOLDS_ANNOTATION
from processcontrol.podexec.transport import ExecResult
from processcontrol.reconcile import holding as holding_module
from processcontrol.reconcile import plan, suspension
from processcontrol.reconcile.outcomes import OutcomeBoard
from processcontrol.reconcile.pods import look
from processcontrol.reconcile.runtime import Runtime
from processcontrol.reconcile.suspension import StatusDaemon, pods_holding
from processcontrol.targets import pod_info_from_body

from .conftest import JOBS, NAMESPACE, FakePod, LocalExecutor, World, eventually, pod_body

World3 = tuple[World, LocalExecutor, Runtime]


def state(runtime: Runtime, suspension: str, pod: str) -> str | None:
    record = runtime.board.outcomes.get((NAMESPACE, suspension), {}).get(pod)
    return None if record is None else f"{record.mode.value}:{record.state.value}"


def running(pod: FakePod) -> bool:
    return all(pod.running(*key) for key in JOBS)


def stopped(pod: FakePod) -> bool:
    return not any(pod.running(*key) for key in JOBS)


class Sinks:
    """Datagram sockets at chosen paths of a pod, served by one thread, each keeping its `.running` sentinel as
    containerrun does (STOP removes it, START creates it): what a container can fake with a few files."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.received: dict[Path, list[bytes]] = {}
        self.sentinels: dict[Path, Path] = {}
        self.reader, self.waker = socket.socketpair()
        self.selector.register(self.reader, selectors.EVENT_READ, None)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def add(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert len(os.fsencode(path)) < 108, path
        sentinel = path.with_name(path.name.removesuffix("_containerrun.sock") + "_containerrun.running")
        sentinel.touch()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.setblocking(False)
        self.received[path] = []
        self.sentinels[path] = sentinel
        self.selector.register(sock, selectors.EVENT_READ, path)

    def _serve(self) -> None:
        while True:
            for key, _ in self.selector.select():
                if key.data is None:
                    return
                path: Path = key.data
                data = key.fileobj.recv(4096)  # type: ignore[union-attr]
                self.received[path].append(data)
                command = parse_command(data)
                if command is not None and command.value == "STOP":
                    self.sentinels[path].unlink(missing_ok=True)
                elif command is not None and command.value == "START":
                    self.sentinels[path].touch()

    def close(self) -> None:
        self.waker.send(b"x")
        self.thread.join(5)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.waker.close()


@pytest.fixture
def sinks() -> Iterator[Sinks]:
    made = Sinks()
    yield made
    made.close()


async def deleted(api: World, runtime: Runtime, name: str) -> None:
    """The deletion completes: no pod's ledger names the suspension any more (what the finalizer waits for)."""
    api.suspend(name, deleting=True)
    await eventually(lambda: not pods_holding(api.dispatch, NAMESPACE, f"uid-{name}"), "every hold given back", 30)
    api.forget(name)


async def test_sockets_whose_names_are_no_bosh_names_fail_that_pod_and_nothing_else(
    world: World3, pods: dict[str, FakePod], sinks: Sinks, events: list[tuple[str, str, str]]
) -> None:
    """Why 2: `_containerrun.sock` (an empty process name) crashed the release: the pod's real processes stayed
    stopped and the deletion hung. Now such sockets (and any other name that is no BOSH name) are left alone."""
    api, _executor, runtime = world
    data = pods["db-0"].base / "data"
    hostile = [data / "pxc-mysql" / "_containerrun.sock", data / "pxc-mysql" / "a b_containerrun.sock"]
    for path in hostile:
        sinks.add(path)
    api.suspend("restore")

    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Failed", "db-0 failed")
    await eventually(lambda: state(runtime, "restore", "db-1") == "Suspend:Suspended", "db-1 suspended")
    record = runtime.board.outcomes[(NAMESPACE, "restore")]["db-0"]
    assert record.reason == "InvalidSocketNames"
    assert "left alone 2 sockets" in record.message and "'pxc-mysql/'" in record.message, record.message
    await eventually(lambda: stopped(pods["db-0"]), "db-0's real processes stopped all the same")
    assert set(api.ledger("db-0").processes) == {"pxc-mysql/mysql", "pxc-mysql/galera-agent"}
    assert any(reason == "InvalidSocketNames" for _, reason, _ in events)

    await deleted(api, runtime, "restore")
    await eventually(lambda: running(pods["db-0"]) and running(pods["db-1"]), "every real process runs again")
    assert api.annotation("db-0") is None and api.label("db-0") is None
    assert all(received == [] for received in sinks.received.values()), "nothing is ever sent to them"


async def test_more_sockets_than_the_status_lists_are_cut_and_said(
    world: World3, pods: dict[str, FakePod], sinks: Sinks, events: list[tuple[str, str, str]]
) -> None:
    """Why 2: more than 256 sockets in a pod made the status fail validation and the status daemon crash."""
    api, _executor, runtime = world
    for index in range(300):
        sinks.add(pods["db-0"].base / "data" / "j" / f"p{index}_containerrun.sock")
    info = api.suspend("restore")

    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Suspended", "db-0 suspended", 60)
    await eventually(lambda: state(runtime, "restore", "db-1") == "Suspend:Suspended", "db-1 suspended")
    assert len(api.ledger("db-0").processes) == 302
    daemon = StatusDaemon(api.dispatch, suspension_body(info.uid), logging.getLogger("test"))
    await daemon.publish()

    status = ProcessSuspensionStatus.model_validate(api.statuses[-1])
    [listed] = [p for p in status.pods if p.name == "db-0"]
    assert len(listed.processes) == 256
    assert "256 of 302 processes listed" in listed.message, listed.message
    assert status.summary == "2/2"

    await deleted(api, runtime, "restore")
    await eventually(lambda: all(s.exists() for s in sinks.sentinels.values()), "every socket started again", 30)
    assert running(pods["db-0"])


async def test_a_probe_description_longer_than_the_status_allows_is_cut(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """Why 2: a probe description over 256 characters (a long exec command) crashed the status daemon."""
    api, _executor, runtime = world
    container = api.pods["db-0"]["spec"]["containers"][0]
    # The longest container name there is, running mysql, with a long exec probe: 278 characters described.
    container["name"] = "c" * 63
    container["command"] = ["containerrun", "--job-name", "pxc-mysql", "--process-name", "mysql", "--", "mysqld"]
    container["startupProbe"] = {"exec": {"command": ["sh", "-c", "x" * 400]}}
    api.changed("db-0")
    info = api.suspend("restore", probes="Skip")
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Suspended", "db-0 suspended")
    assert max(len(c) for c in runtime.board.outcomes[(NAMESPACE, "restore")]["db-0"].probe_conflicts) > 256

    daemon = StatusDaemon(api.dispatch, suspension_body(info.uid), logging.getLogger("test"))
    await daemon.publish()

    status = ProcessSuspensionStatus.model_validate(api.statuses[-1])
    [listed] = [p for p in status.pods if p.name == "db-0"]
    assert listed.probe_conflicts and all(len(c) <= 256 for c in listed.probe_conflicts)
    assert listed.probe_conflicts[0].endswith("...")
    assert len(status.pods) <= MAX_LISTED_PODS


def suspension_body(uid: str) -> kopf.Body:
    raw: dict[str, Any] = {
        "apiVersion": "processcontrol.dev/v1alpha1",
        "kind": "ProcessSuspension",
        "metadata": {"name": "restore", "namespace": NAMESPACE, "uid": uid, "generation": 1},
        "spec": {"instanceGroup": "db", "suspend": True},
        "status": {},
    }
    return kopf.Body(raw)  # type: ignore[arg-type]


async def test_the_status_daemon_reports_a_failed_publish_and_goes_on(
    world: World3, pods: dict[str, FakePod], monkeypatch: pytest.MonkeyPatch, events: list[tuple[str, str, str]]
) -> None:
    """Why 2: whatever a pod reports that nobody foresaw (a bug), the daemon logs it, writes the status again a
    moment later, and lives on: it used to die with the first exception."""
    api, _executor, runtime = world
    info = api.suspend("restore")
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Suspended", "db-0 suspended")
    await eventually(lambda: state(runtime, "restore", "db-1") == "Suspend:Suspended", "db-1 suspended")
    real = plan.build_status
    failures: list[int] = []

    def failing_once(*args: Any, **kwargs: Any) -> ProcessSuspensionStatus:
        if not failures:
            failures.append(1)
            raise ValueError("something no pod should be able to cause")
        return real(*args, **kwargs)

    monkeypatch.setattr(suspension, "build_status", failing_once)
    monkeypatch.setattr(suspension, "WRITE_RETRY_S", 0.05)
    stopper = aioenums.FlagSetter[stoppers.DaemonStoppingReason]()
    daemon = asyncio.create_task(
        suspension.run_status_daemon(
            api.dispatch, suspension_body(info.uid), stopper.async_waiter, logging.getLogger("t")
        )
    )
    try:
        await eventually(lambda: bool(api.statuses) or daemon.done(), "a status written after the failure")
        assert not daemon.done(), daemon
        assert failures == [1]
        assert ProcessSuspensionStatus.model_validate(api.statuses[-1]).summary == "2/2"
    finally:
        stopper.set(stoppers.DaemonStoppingReason.DAEMON_SIGNALLED)
        await asyncio.wait_for(daemon, 10)


class Printing:
    """An executor whose in-pod `sh` is someone else's: it prints what it likes."""

    def __init__(self, stdout: str, stderr: str = "") -> None:
        self.stdout, self.stderr = stdout, stderr

    async def run(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: list[str],
        dialogue: Any = None,
        *,
        background: bool = False,
    ) -> Any:
        return ExecResult(self.stdout, self.stderr, 1, 0.01)


@pytest.mark.parametrize(
    ("stdout", "stderr"),
    [
        ("", "forged event text " * 40 + "\x1b[2J\u202e"),
        ("PCTL1\ttool\tperl\n" + "x" * 300, ""),
        ("PCTL1\terror\tno-sender-tool\t" + "\x07y" * 500 + "\nPCTL1\tend\t0\n", ""),
        ("PCTL1\terror\tno-base-dir\t" + "z" * 5000 + "\nPCTL1\tend\t0\n", ""),
    ],
)
async def test_what_a_replaced_shell_prints_reaches_a_message_short_and_printable(stdout: str, stderr: str) -> None:
    """Why 2: a replaced sh/perl/python could put 300 characters of its choosing into status, events and logs."""
    pod = pod_info_from_body(pod_body("db-0"))
    with pytest.raises(PodFailure) as caught:
        await look(Printing(stdout, stderr), pod, "c", [], [])
    message = caught.value.message
    assert message.isascii() and message.isprintable(), message
    quoted = max(len(part) for part in message.replace("(", " ").split(" "))
    assert quoted <= 200, message
    assert len(message) <= 400, len(message)


async def test_an_unreadable_ledger_that_mentions_a_suspension_does_not_hold_up_its_deletion(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """Why 1: a ledger that could not be read but contained the suspension's uid as text blocked its deletion for
    ever (the finalizer has no retry limit); a key without `/` raised in the worker. Now the ledger's `holds` must
    name the uid, the pod says LedgerUnreadable, its worker lives on, and the deletion completes."""
    api, executor, runtime = world
    forged = {
        "v": 1,
        "holds": {"x": {"name": "uid-restore", "jobs": []}},
        "processes": {"no-slash": {"holders": ["x"], "wasRunning": True}},
    }
    api.edit_annotations("db-0", {HOLDS_ANNOTATION: json.dumps(forged)})
    api.suspend("restore")

    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Failed", "db-0 failed")
    await eventually(lambda: state(runtime, "restore", "db-1") == "Suspend:Suspended", "db-1 suspended")
    assert runtime.board.outcomes[(NAMESPACE, "restore")]["db-0"].reason == "LedgerUnreadable"
    worker = api.dispatch.workers[(NAMESPACE, "db-0")]
    assert worker._task is not None and not worker._task.done(), "the worker lives on"

    await deleted(api, runtime, "restore")
    await eventually(lambda: running(pods["db-1"]), "db-1 given back")
    assert running(pods["db-0"]) and executor.actions("db-0") == [], "nothing was done in db-0"


async def test_a_forged_ledger_makes_no_long_log_line(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """Why 4: a 175 KB forged ledger produced a 1.45 MB log line (and as much in the status and an event)."""
    api, _executor, runtime = world
    processes = {f"j/p{i}": {"holders": ["x" * 40], "wasRunning": "maybe"} for i in range(2500)}
    forged = json.dumps({"v": 1, "holds": {"u": {"name": "n"}}, "processes": processes})
    assert len(forged) > 175_000
    api.edit_annotations("db-0", {HOLDS_ANNOTATION: forged})
    caplog.set_level(logging.INFO)
    api.suspend("restore")
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Failed", "db-0 failed")
    record = runtime.board.outcomes[(NAMESPACE, "restore")]["db-0"]
    assert record.reason == "LedgerUnreadable" and len(record.message) < 600, len(record.message)
    longest = max(len(r.getMessage()) for r in caplog.records)
    assert longest < 2000, longest
    assert all(len(message) <= 1000 for _, _, message in events)


async def test_a_step_that_fails_is_reported_on_the_pod_and_tried_again(
    world: World3, pods: dict[str, FakePod], monkeypatch: pytest.MonkeyPatch, events: list[tuple[str, str, str]]
) -> None:
    """Every worker step is caught (it was already) and now reported: the pod shows why, instead of nothing."""
    api, _executor, runtime = world
    real = ledger_module.take_hold
    failed: list[str] = []
    shown: list[str] = []

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        if not failed:
            failed.append("x")
            raise RuntimeError("a bug " + "\x1b" * 5000)
        return real(*args, **kwargs)

    def spy(namespace: str, suspension_name: str, pod: str, record: Any) -> None:
        if record is not None:
            shown.append(f"{pod}:{record.state.value}:{record.reason}:{record.message}")
        OutcomeBoard.report(runtime.board, namespace, suspension_name, pod, record)

    monkeypatch.setattr(holding_module, "take_hold", failing_once)
    monkeypatch.setattr(runtime.board, "report", spy)
    api.suspend("restore")
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Suspended", "db-0 suspended", 30)
    await eventually(lambda: state(runtime, "restore", "db-1") == "Suspend:Suspended", "db-1 suspended", 30)
    reported = [s for s in shown if "the operator failed here" in s]
    assert reported and all(len(s) < 500 and s.isprintable() for s in reported), reported
