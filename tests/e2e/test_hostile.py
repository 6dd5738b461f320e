"""Hostile input on the real control plane: generated invalid manifests, shell metacharacters in names on both sides of
the exec, oversized objects, garbage and floods on containerrun sockets. Nothing gets through, nothing changes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import string
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from harness import fakepods
from harness.base import pid_alive, wait_until
from harness.cluster import Cluster
from harness.operator import PROCESSCONTROL
from harness.reliability import assert_converged, log_offset
from processcontrol.containerrun.protocol import parse_command

MYSQL = "pxc-mysql/mysql"
GROUP, VERSION, PLURAL = "processcontrol.dev", "v1alpha1", "processsuspensions"
INVALID_MANIFESTS = 200

# --- 200 generated invalid manifests ----------------------------------------------------------------------------------

# Characters outside the BOSH name pattern, shell metacharacters first.
BAD_CHARS = st.sampled_from([*";|&$`()<>*?!\\'\" \t\n{}[]#~=%^,:@+/", "\u00e9", "\u202e", "\x00"])


def _bad_bosh_name() -> st.SearchStrategy[str]:
    """A job or process name the CRD must refuse: a forbidden character, a bad first character, empty, too long."""
    with_bad_char = st.tuples(st.text(string.ascii_letters, max_size=8), BAD_CHARS, st.text(max_size=8)).map(
        lambda t: t[0] + t[1] + t[2]
    )
    bad_start = st.tuples(st.sampled_from(["-", ".", "_"]), st.text(string.ascii_letters, max_size=8)).map("".join)
    return st.one_of(
        with_bad_char,
        bad_start,
        st.just(""),
        st.integers(129, 400).map(lambda n: "a" * n),
        st.sampled_from(["$(touch /tmp/pwned)", "`id`", "a;rm -rf /", "x|nc evil 1", "-e", "--all"]),
    )


def _bad_label_value() -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(st.text(string.ascii_letters, min_size=1, max_size=5), BAD_CHARS).map("".join),
        st.integers(64, 200).map(lambda n: "v" * n),
        st.sampled_from(["-a", "a-", ".a"]),
    )


# Each mutation: (field that the message must name, function making the spec invalid). Every one breaks the schema
# or a CEL rule, so none of them can be accepted.
def _mutations() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    def spec(**extra: Any) -> dict[str, Any]:
        return {"instanceGroup": "database", **extra}

    wrong_type = st.one_of(
        st.integers(), st.just("true"), st.just("no"), st.lists(st.integers(), max_size=2), st.just({"a": 1})
    )
    return st.one_of(
        st.just(("instanceGroup", {"jobs": ["pxc-mysql"]})),  # neither target
        st.just(("instanceGroup", spec(selector={"matchLabels": {"a": "b"}}))),  # both targets
        _bad_label_value().map(lambda v: ("instanceGroup", {"instanceGroup": v})),
        _bad_bosh_name().map(lambda v: ("jobs", spec(jobs=["pxc-mysql", v]))),
        _bad_bosh_name().map(lambda v: ("processes", spec(processes=[v]))),
        st.integers(65, 200).map(lambda n: ("jobs", spec(jobs=[f"j{i}" for i in range(n)]))),
        st.sampled_from(["2 hours", "-5m", "1d", "90", "h", "0s", "0m0s", "1h;reboot", "$(sleep 1)", "P1D"]).map(
            lambda d: ("duration", spec(duration=d))
        ),
        st.integers(257, 5000).map(lambda n: ("reason", spec(reason="r" * n))),
        st.sampled_from(["Mysql", "my_sql", "-c", "c-", "a" * 64, "c;id"]).map(
            lambda c: ("container", spec(container=c))
        ),
        wrong_type.map(lambda v: ("suspend", spec(suspend=v))),
        st.one_of(st.integers(), st.just("pxc-mysql"), st.just({"a": 1})).map(lambda v: ("jobs", spec(jobs=v))),
        st.one_of(st.integers(), st.lists(st.text(max_size=3), max_size=2)).map(
            lambda v: ("instanceGroup", {"instanceGroup": v})
        ),
        st.just(("selector", {"selector": {}})),
        st.just(("selector", {"selector": {"matchLabels": {}}})),
        _bad_label_value().map(lambda v: ("matchLabels", {"selector": {"matchLabels": {"app": v}}})),
        st.sampled_from(["-bad", "a/b/c", "UPPER.example.com/x", "x" * 64, "a b"]).map(
            lambda k: ("matchLabels", {"selector": {"matchLabels": {k: "v"}}})
        ),
        st.sampled_from(["In", "NotIn"]).map(
            lambda op: ("matchExpressions", {"selector": {"matchExpressions": [{"key": "a", "operator": op}]}})
        ),
        st.sampled_from(["Exists", "DoesNotExist"]).map(
            lambda op: (
                "matchExpressions",
                {"selector": {"matchExpressions": [{"key": "a", "operator": op, "values": ["x"]}]}},
            )
        ),
        st.sampled_from(["Equals", "in", "", "Gt"]).map(
            lambda op: ("operator", {"selector": {"matchExpressions": [{"key": "a", "operator": op, "values": ["x"]}]}})
        ),
    )


def _merge(mutations: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """Several mutations in one spec; one that would overwrite an earlier one's key is left out, so that every
    mutation kept still carries its invalid value (and "no target" is only ever joined by another violation)."""
    merged: dict[str, Any] = {}
    kept = []
    for field, spec in mutations:
        if not set(spec) & set(merged):
            merged.update(spec)
            kept.append(field)
    return (kept[0] if len(kept) == 1 else "spec", merged)


def _manifests() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(field the rejection must name, manifest): one or more spec mutations, or no spec, or a bad object name."""
    from_spec = st.lists(_mutations(), min_size=1, max_size=3).map(_merge)
    return st.one_of(
        from_spec.map(lambda fm: (fm[0], {"spec": fm[1]})),
        st.just(("spec", {})),  # no spec at all
        st.sampled_from(["Upper", "under_score", "a" * 254, "-lead", "dot..dot"]).map(
            lambda n: ("metadata.name", {"name": n, "spec": {"instanceGroup": "database"}})
        ),
    )


@pytest.fixture
def admin_api(control_plane: Path) -> Iterator[Any]:
    """The kubernetes client's CustomObjectsApi as the admin user: 200 requests without 200 kubectl processes."""
    import kubernetes

    client = kubernetes.config.new_client_from_config(config_file=str(control_plane))
    yield kubernetes.client.CustomObjectsApi(client)
    client.close()


@pytest.mark.timeout(600)
def test_generated_invalid_manifests_are_all_rejected_with_a_message_and_never_reach_the_operator(
    cluster: Cluster, admin_api: Any
) -> None:
    from kubernetes.client.exceptions import ApiException

    cluster.group("database", pods=1, jobs=MYSQL)
    since = log_offset(cluster.operator.log_path)
    sent: list[tuple[str, int, str]] = []
    accepted: list[str] = []
    counter = iter(range(10**6))

    @settings(
        max_examples=INVALID_MANIFESTS,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(_manifests())
    def submit(field_body: tuple[str, dict[str, Any]]) -> None:
        field, body = field_body
        manifest = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ProcessSuspension",
            "metadata": {"name": body.get("name", f"bad-{next(counter)}"), "namespace": cluster.namespace},
        }
        if "spec" in body:
            manifest["spec"] = body["spec"]
        try:
            admin_api.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, manifest)
        except ApiException as error:
            message = json.loads(error.body).get("message", "") if error.body else ""
            sent.append((field, error.status, message))
            return
        except ValueError as error:  # the client refuses a NUL byte itself: never sent, also fine
            sent.append((field, 0, str(error)))
            return
        accepted.append(json.dumps(manifest)[:300])

    submit()
    assert accepted == [], f"accepted invalid manifests: {accepted}"
    assert len(sent) >= INVALID_MANIFESTS
    for field, status, message in sent:
        assert status in (0, 400, 422), (field, status, message)
        # A message a person understands: it names the field (or the rule) that is wrong.
        leaf = field.split(".")[-1]
        assert leaf in message or field in message or "exactly one of" in message, (field, message)
    fields = {f for f, _, _ in sent}
    assert len(fields) >= 10, f"too few kinds of invalid manifests: {fields}"

    # None reached the operator: nothing stored, no events, not a word in its log about this namespace. The API
    # server refused each one in its answer, so there is nothing for a pause to bring: nothing was ever stored.
    assert cluster.kubectl("get", "psus", "-o", "name").stdout.strip() == ""
    events = json.loads(cluster.kubectl("get", "events", "-o", "json").stdout)["items"]
    assert [e for e in events if e["involvedObject"].get("kind") == "ProcessSuspension"] == []
    log = cluster.operator.log_path.read_bytes()[since:].decode(errors="replace")
    assert cluster.namespace not in log
    assert all(cluster.all_states(["database-0"], [MYSQL]).values())


def test_oversized_objects_are_rejected(cluster: Cluster, admin_api: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    def create(name: str, **extra: Any) -> tuple[int, str]:
        manifest = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ProcessSuspension",
            "metadata": {"name": name, "namespace": cluster.namespace, **extra.pop("metadata", {})},
            "spec": {"instanceGroup": "database", **extra},
        }
        try:
            admin_api.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, manifest)
        except ApiException as error:
            return error.status, error.body or ""
        return 201, ""

    status, body = create("long-reason", reason="x" * 100_000)
    assert status == 422 and "spec.reason" in body, body[:300]
    status, body = create("many-jobs", jobs=[f"job{i}" for i in range(10_000)])
    assert status == 422 and "spec.jobs" in body, body[:300]
    status, body = create("fat-annotation", metadata={"annotations": {"a": "x" * 300_000}})
    assert status == 422 and "metadata.annotations" in body, body[:300]
    # Beyond the API server's 3 MiB request limit: refused before any validation or storage.
    status, body = create("huge", padding="x" * (4 * 1024 * 1024))
    assert status == 413, (status, body[:300])
    assert cluster.kubectl("get", "psus", "-o", "name").stdout.strip() == ""


# --- shell metacharacters inside the pod ------------------------------------------------------------------------------

SENDERS = ("processcontrol", "ncat", "nc", "socat", "python3", "perl")


def _only_tool(directory: Path, tool: str) -> str:
    """A PATH where the in-pod script finds every usual command but exactly one sender tool: `tool`."""
    directory.mkdir(parents=True, exist_ok=True)
    for bin_dir in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in Path(bin_dir).iterdir() if Path(bin_dir).is_dir() else []:
            link = directory / entry.name
            if entry.name in SENDERS or entry.name.startswith("python") or link.exists() or link.is_symlink():
                continue
            link.symlink_to(entry)
    real = {"processcontrol": str(PROCESSCONTROL), "python3": shutil.which("python3") or sys.executable}
    target = real.get(tool) or shutil.which(tool)
    assert target, f"{tool} is not installed"
    (directory / tool).symlink_to(Path(target).resolve() if tool == "python3" else target)
    return str(directory)


class DatagramSink:
    """A containerrun stand-in bound at a hostile path in a pod: records what arrives and keeps the `.running`
    sentinel as containerrun does (STOP removes it, START creates it), so that the operator can verify."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert len(os.fsencode(path)) < 108, path
        self.sentinel = path.with_name(path.name.removesuffix("_containerrun.sock") + "_containerrun.running")
        self.sentinel.touch()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            self.received.append(data)
            command = parse_command(data)
            if command is not None and command.value == "STOP":
                self.sentinel.unlink(missing_ok=True)
            elif command is not None and command.value == "START":
                self.sentinel.touch()

    def close(self) -> None:
        self.sock.close()


def test_shell_metacharacters_in_socket_names_are_never_executed(cluster: Cluster, tmp_path: Path) -> None:
    """Every sender tool, in pods whose socket directories and names are shell code: the operator leaves those
    sockets alone (no BOSH name has such characters; InvalidSocketNames), holds and gives back the real process,
    and nothing is ever executed."""
    tag = uuid.uuid4().hex[:4]
    # Relative: a name is one path component, so no "/"; a shell would create them in the exec's working directory.
    markers = [f"pcm{tag}{c}" for c in "abcdefg"]
    hostile = [  # (job directory, process name): each would create a marker if any shell ever evaluated it
        (f"$(touch {markers[0]})", "p"),
        ("j", f"$(touch {markers[1]})"),
        (f"`touch {markers[2]}`", "p"),
        ("j", f";touch {markers[3]};"),
        ("j", f"'\"&&touch {markers[4]}"),
        ("k", f"|touch {markers[5]}"),
        ("-n", "-e"),  # options, not names, to a tool that took them for its own
        ("*", "?"),
        (f"a b>{markers[6]}", "p"),
        ("pxc-mysql", ""),  # `_containerrun.sock`: an empty process name crashed the release (issue 27)
    ]
    pods = cluster.group("database", pods=len(SENDERS), jobs=MYSQL)
    sinks: dict[tuple[str, str, str], DatagramSink] = {}
    with ExitStack() as stack:
        for pod, tool in zip(pods, SENDERS, strict=True):
            cluster.restrict_exec_path(pod, _only_tool(tmp_path / tool, tool))
            data = fakepods.base_dir(cluster.namespace, pod) / "data"
            for job, process in hostile:
                sink = DatagramSink(data / job / f"{process}_containerrun.sock")
                stack.callback(sink.close)
                sinks[(pod, job, process)] = sink

        cluster.apply(cluster.suspension("all-sockets", instanceGroup="database"))

        def failed_with_the_reason() -> bool:
            entries = cluster.get("psus", "all-sockets").get("status", {}).get("pods", [])
            reasons = {p["name"]: (p["state"], p.get("message", "")) for p in entries}
            return all(
                reasons.get(pod, ("", ""))[0] == "Failed" and f"left alone {len(hostile)} sockets" in reasons[pod][1]
                for pod in pods
            )

        wait_until(failed_with_the_reason, 90, "every pod Failed: InvalidSocketNames")
        status = cluster.get("psus", "all-sockets")["status"]
        assert status["counts"]["failedByReason"] == {"InvalidSocketNames": len(pods)}, status["counts"]
        assert all(not running for running in cluster.all_states(pods, [MYSQL]).values()), "the real one is held"
        cluster.kubectl("delete", "psus", "all-sockets", "--timeout=60s")
        assert_converged(cluster, pods, [MYSQL], None, stopped=False)

    for (pod, job, process), sink in sinks.items():
        assert sink.received == [], (SENDERS[pods.index(pod)], job, process, sink.received)
    places = [Path.cwd(), Path("/tmp"), *(fakepods.base_dir(cluster.namespace, p) for p in pods)]
    created = [str(place / m) for place in places for m in markers if (place / m).exists()]
    assert created == [], "a hostile name was executed"


# --- garbage and floods on a containerrun socket ----------------------------------------------------------------------


def _garbage(rng: random.Random) -> bytes:
    """A datagram that is not a command: random bytes, near misses, oversized, empty."""
    kind = rng.randrange(6)
    if kind == 0:
        payload = rng.randbytes(rng.randrange(0, 300))
    elif kind == 1:
        payload = rng.choice([b"stop", b"Stop\n", b"STOP STOP", b"STOPX", b"START;QUIT", b"QUIT\x00", b"\xffSTOP"])
    elif kind == 2:
        payload = b"STOP" + b" " * 300  # a command padded past the 256-byte limit
    elif kind == 3:
        payload = b""
    elif kind == 4:
        payload = rng.choice([b"$(reboot)", b"`id`", b"START\nSTOP\n", b"\n\n\n"])
    else:
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    return payload


def unread_datagrams(path: Path) -> int:
    """Datagrams waiting in a unix socket's receive queue (`ss`'s Recv-Q)."""
    out = subprocess.run(["ss", "-x", "-a", "-n"], capture_output=True, text=True, check=True).stdout
    fields = next(line.split() for line in out.splitlines() if f" {path} " in f"{line} ")
    return int(fields[2])


def test_garbage_and_floods_on_a_containerrun_socket_change_nothing(cluster: Cluster) -> None:
    [pod] = cluster.group("database", pods=1)
    jp = fakepods.JobProcess.parse(MYSQL)
    path = fakepods.socket_path(cluster.namespace, pod, jp)
    main_pid = cluster.main_pid(pod, MYSQL)
    supervisor = fakepods.container_process(cluster.namespace, pod, jp)
    assert main_pid and supervisor
    rng = random.Random(7)
    sent = 0
    start = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        while sent < 100_000:
            payload = _garbage(rng)
            if parse_command(payload) is not None:
                continue
            sock.send(payload)
            sent += 1
    print(f"100,000 garbage datagrams sent in {time.monotonic() - start:.1f}s")
    # Not a pause: containerrun has read every datagram once none waits in its socket.
    wait_until(lambda: unread_datagrams(path) == 0, 30, "containerrun to read the whole flood")
    # Nothing changed: the same containerrun and main process, still running, still answering.
    assert supervisor.alive(), "containerrun died"
    assert pid_alive(main_pid) and cluster.main_pid(pod, MYSQL) == main_pid
    assert cluster.running(pod, MYSQL)
    assert all(cluster.all_states([pod], ("pxc-mysql/mysql", "pxc-mysql/galera-agent")).values())
    assert fakepods.listening(path)
    # And it still obeys real commands, through the operator.
    cluster.apply(cluster.suspension("after-flood", instanceGroup="database"))
    assert_converged(cluster, [pod], [MYSQL], "after-flood", stopped=True)
    cluster.kubectl("delete", "psus", "after-flood", "--timeout=60s")
    assert_converged(cluster, [pod], [MYSQL], None, stopped=False)
