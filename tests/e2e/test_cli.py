"""`processcontrol suspend|resume|get|describe` on the real control plane, run as a user would: the installed
command as a subprocess, KUBECONFIG = the admin kubeconfig, against the session's operator and real containerrun
processes. The errors too: forbidden (a ServiceAccount without rights), not found, and, on a second short-lived
control plane of its own, the CRD not installed and the operator not running.

With PROCESSCONTROL_RECORD_FIXTURES=1 the status objects these runs pass through are written to
tests/fixtures/status/<state>.e2e.cli[.detail].json for the Argo CD and kstatus unit tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import fakepods
from harness.base import kubeconfig_path, pid_alive, state_dir, wait_until
from harness.cluster import Cluster
from harness.operator import service_account_kubeconfig

ROOT = Path(__file__).resolve().parents[2]
PROCESSCONTROL = Path(sys.executable).parent / "processcontrol"
FIXTURES = ROOT / "tests" / "fixtures" / "status"
RECORD = os.environ.get("PROCESSCONTROL_RECORD_FIXTURES") == "1"

MYSQL = "pxc-mysql/mysql"
AGENT = "pxc-mysql/galera-agent"
BOTH = (MYSQL, AGENT)
# A main process that takes its time to stop, as a database flushing to disk does: on SIGTERM it exits 3 s later.
SLOW_TO_STOP = ("sh", "-c", "trap 'sleep 3; exit 0' TERM; sleep 100000 & wait")
CRD_MISSING = "the ProcessSuspension CRD is not installed in this cluster: install it with kubectl apply -k deploy/"
PROGRESS = re.compile(r"^\[\s*(?P<elapsed>\d+\.\d)s\] (?P<pod>\S+)\s+(?P<state>\S+)(?:\s+(?P<message>.*))?$")


def cli(*args: str, kubeconfig: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`processcontrol ARGS` with KUBECONFIG set, as a user runs it."""
    return subprocess.run(
        [str(PROCESSCONTROL), *args],
        capture_output=True,
        text=True,
        env=_env(kubeconfig),
        timeout=timeout,
        check=False,
    )


def cli_background(*args: str, kubeconfig: Path | None = None) -> subprocess.Popen[str]:
    """The same, started and left running (for watching what happens during a --wait)."""
    return subprocess.Popen(
        [str(PROCESSCONTROL), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(kubeconfig),
    )


def _env(kubeconfig: Path | None) -> dict[str, str]:
    return dict(os.environ, KUBECONFIG=str(kubeconfig or kubeconfig_path()))


def finish(process: subprocess.Popen[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Wait for a background command and return what it printed."""
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must have succeeded."""
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def progress(stdout: str) -> list[tuple[float, str, str, str]]:
    """The progress lines of a --wait: (seconds, pod, state, message)."""
    found = []
    for line in stdout.splitlines():
        if match := PROGRESS.match(line):
            found.append((float(match["elapsed"]), match["pod"], match["state"], match["message"] or ""))
    return found


def states_of(stdout: str, pod: str) -> list[str]:
    """The states one pod went through in a --wait's progress, in order."""
    return [state for _, name, state, _ in progress(stdout) if name == pod]


def record(obj: dict[str, Any], name: str) -> None:
    """Keep a real status object as a fixture (only with PROCESSCONTROL_RECORD_FIXTURES=1)."""
    if not RECORD:
        return
    meta = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    (FIXTURES / f"{name}.json").write_text(json.dumps({**obj, "metadata": meta}, indent=2) + "\n")


def watch_for(cluster: Cluster, name: str, pod_state: str, timeout: float = 20) -> dict[str, Any]:
    """Poll the object until one of its pods is in this state; return the object as it was then."""
    seen: dict[str, Any] = {}

    def check() -> bool:
        nonlocal seen
        answer = cluster.kubectl("get", "psus", name, "-o", "json", check=False)
        if answer.returncode != 0:  # not created yet
            return False
        seen = json.loads(answer.stdout)
        return pod_state in {p.get("state") for p in seen.get("status", {}).get("pods", [])}

    wait_until(check, timeout, f"a pod of {name} in state {pod_state}")
    return seen


@contextmanager
def paused(cluster: Cluster, pod: str, job_process: str) -> Iterator[None]:
    """SIGSTOP a container's containerrun (a busy, slow pod): datagrams queue up, nothing is acted on until SIGCONT."""
    record_ = fakepods.container_process(cluster.namespace, pod, fakepods.JobProcess.parse(job_process))
    assert record_ is not None
    os.kill(record_.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(record_.pid, signal.SIGCONT)


def kill_main_processes(cluster: Cluster, pods: list[str]) -> None:
    """SIGKILL the main processes (their whole process groups): the cleanup need not wait for slow shutdowns."""
    for pod in pods:
        for job_process in BOTH:
            pid = cluster.main_pid(pod, job_process)
            if pid is not None:
                with suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


# --- a cluster without the CRD, then without the operator -----------------------------------------------------------


@dataclass
class BarePlane:
    """A second, short-lived control plane: no CRD at first, and never an operator."""

    kubeconfig: Path
    crd_missing: dict[str, subprocess.CompletedProcess[str]]
    without_operator: subprocess.Popen[str]
    started: float


@pytest.fixture(scope="module")
def bare_plane(control_plane: Path) -> Iterator[BarePlane]:
    """Up a second control plane with its own state (about 8 s), try the CLI before the CRD is installed, install
    only the CRD, and start a `suspend --wait` that no operator will answer (it needs 30 s: it runs meanwhile)."""
    state = Path(f"{state_dir()}-bare")
    env = dict(os.environ, PROCESSCONTROL_STATE=str(state))
    started_up = subprocess.run(
        [sys.executable, "-m", "harness.controlplane", "up"], env=env, capture_output=True, text=True, timeout=180
    )
    assert started_up.returncode == 0, f"second control plane did not come up:\n{started_up.stderr}"
    try:
        kubeconfig = state / "kubeconfig"
        crd_missing = {
            " ".join(args): cli(*args, kubeconfig=kubeconfig)
            for args in (
                ["get"],
                ["get", "-A"],
                ["describe", "database"],
                ["suspend", "database", "-n", "default"],
                ["resume", "database"],
            )
        }
        kubectl = ["kubectl", "--kubeconfig", str(kubeconfig)]
        subprocess.run(
            [*kubectl, "apply", "-f", str(ROOT / "crds" / "processsuspensions.yaml")], check=True, capture_output=True
        )
        subprocess.run(
            [*kubectl, "wait", "--for=condition=Established", "crd/processsuspensions.processcontrol.dev"],
            check=True,
            capture_output=True,
        )
        started = time.monotonic()
        process = cli_background("suspend", "database", "-n", "default", "--wait", kubeconfig=kubeconfig)
        try:
            yield BarePlane(kubeconfig, crd_missing, process, started)
        finally:
            process.kill()
            process.wait()
    finally:
        subprocess.run(
            [sys.executable, "-m", "harness.controlplane", "down"],
            env=env,
            check=False,
            capture_output=True,
            timeout=60,
        )


def test_crd_not_installed(bare_plane: BarePlane) -> None:
    for args, result in bare_plane.crd_missing.items():
        assert result.returncode == 3, (args, result)
        assert result.stderr == f"error: {CRD_MISSING}\n", (args, result.stderr)


# --- suspend, get, describe, resume ---------------------------------------------------------------------------------


def test_suspend_wait_get_describe_and_resume_wait(cluster: Cluster) -> None:
    ns = cluster.namespace
    pods = cluster.group("database", pods=2)
    others = cluster.group("api", pods=1)
    pids = {(p, jp): cluster.main_pid(p, jp) for p in pods for jp in BOTH}

    result = cli("suspend", "database", "-n", ns, "--reason", "restoring from backup, OPS-1234", "--wait")
    out = ok(result)
    lines = out.splitlines()
    assert lines[0] == f"processsuspension.processcontrol.dev/database serverside-applied in {ns}"
    assert lines[1] == "waiting up to 5m for every target process to be stopped and verified"
    assert {pod for _, pod, _, _ in progress(out)} == set(pods)
    for pod in pods:
        assert states_of(out, pod)[-1] == "Suspended"
    assert re.search(r"^database: 2/2 pods suspended and verified in \d+\.\ds \(Suspended\)$", out, re.M), out
    table = out.split("(Suspended)\n", 1)[1].splitlines()
    assert table[0].split() == ["POD", "STATE", "PROCESS", "PROCESS", "STATE", "PID", "MESSAGE"]
    assert table[1].split() == [pods[0], "Suspended", AGENT, "Stopped", "-", "2", "processes", "stopped"]
    assert table[2].split() == [MYSQL, "Stopped", "-"]
    # Really stopped, and only the target: exit 0 means verified.
    assert not any(cluster.all_states(pods, BOTH).values())
    assert not any(pid_alive(pid) for pid in pids.values() if pid)
    assert all(cluster.all_states(others, BOTH).values())

    obj = cluster.get("psus", "database")
    admin = json.loads(cluster.kubectl("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]["username"]
    # probes: Warn and preview: false are the CRD's defaults, filled in by the API server; requestedBy is who the
    # API server saw, as the CLI asked it (a SelfSubjectReview): nobody typed it.
    assert obj["spec"] == {
        "instanceGroup": "database",
        "suspend": True,
        "reason": "restoring from backup, OPS-1234",
        "probes": "Warn",
        "preview": False,
        "requestedBy": {"username": admin},
    }
    fields = json.loads(cluster.kubectl("get", "psus", "database", "-o", "json", "--show-managed-fields").stdout)
    assert [m["manager"] for m in fields["metadata"]["managedFields"] if m["operation"] == "Apply"] == [
        "processcontrol-cli"
    ]

    # get: the CRD's columns, in the namespace given, in every namespace, and one by name.
    got = ok(cli("get", "-n", ns)).splitlines()
    assert got[0].split() == ["NAME", "SUSPEND", "READY", "PODS", "STATUS", "REQUESTER", "REASON", "AGE"]
    assert got[1].split()[:6] == ["database", "true", "True", "2/2", "Suspended", admin]
    assert "restoring from backup, OPS-1234" in got[1]
    by_name = ok(cli("get", "database", "-n", ns)).splitlines()
    assert [row.split()[:-1] for row in by_name] == [row.split()[:-1] for row in got], "the same, but for AGE"
    everywhere = ok(cli("get", "-A")).splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [ns, "database", "true", "True", "2/2"] in [row.split()[:5] for row in everywhere[1:]]
    wide = ok(cli("get", "-n", ns, "-o", "wide")).splitlines()
    assert wide[0].split() == [
        "NAME", "SUSPEND", "READY", "PODS", "STATUS", "REQUESTER", "REASON", "AGE", "TARGET", "EXPIRES", "STAGE",
        "VIA", "MESSAGE",
    ]  # fmt: skip
    assert "instance group database" in wide[1]
    assert wide[1].endswith("2/2 pods suspended, verified")
    # kubectl get shows the same from the CRD's printer columns.
    header, row = cluster.kubectl("get", "psus", "database").stdout.splitlines()
    assert header.split() == ["NAME", "SUSPEND", "READY", "PODS", "STATUS", "REQUESTER", "REASON", "AGE"]
    assert row.split()[:6] == ["database", "true", "True", "2/2", "Suspended", admin]
    as_json = json.loads(ok(cli("get", "-n", ns, "-o", "json")))
    assert as_json["kind"] == "List"
    [item] = as_json["items"]
    assert item["status"]["summary"] == "2/2"
    assert "managedFields" not in item["metadata"]
    one = json.loads(ok(cli("get", "database", "-n", ns, "-o", "json")))
    assert one["kind"] == "ProcessSuspension"
    assert one["metadata"]["uid"] == obj["metadata"]["uid"]
    as_yaml = yaml.safe_load(ok(cli("get", "database", "-n", ns, "-o", "yaml")))
    assert as_yaml["status"]["conditions"] == obj["status"]["conditions"]

    described = ok(cli("describe", "database", "-n", ns))
    assert re.search(r"^Target:\s+instance group database$", described, re.M)
    assert re.search(r"^Reason:\s+restoring from backup, OPS-1234$", described, re.M)
    assert re.search(rf"^Requested By:\s+{re.escape(admin)}$", described, re.M)
    assert re.search(r"^Pods:\s+2/2 suspended$", described, re.M)
    assert re.search(r"^Generation:\s+1 \(observed: 1\)$", described, re.M)
    assert re.search(r"^\s+Ready\s+True\s+Suspended\s+\d+s\s+2/2 pods suspended, verified$", described, re.M)
    for pod in pods:
        assert re.search(rf"^\s+{pod}\s+Suspended\s+{AGENT}\s+Stopped\s+-\s+2 processes stopped$", described, re.M)

    # resume --wait: suspend: false, the object stays, every process runs again (new pids), verified.
    out = ok(cli("resume", "database", "-n", ns, "--wait"))
    assert out.splitlines()[0] == f"processsuspension.processcontrol.dev/database resumed (suspend: false) in {ns}"
    for pod in pods:
        assert states_of(out, pod)[-1] == "Resumed"
    assert re.search(r"^database: 2/2 pods resumed and verified in \d+\.\ds \(Resumed\)$", out, re.M), out
    assert all(cluster.all_states(pods, BOTH).values())
    for key, old in pids.items():
        new = cluster.main_pid(*key)
        assert new is not None and new != old and pid_alive(new)
        assert re.search(rf"\s{key[1]}\s+Running\s+{new}(\s|$)", out, re.M), out
    obj = cluster.get("psus", "database")
    assert obj["spec"]["suspend"] is False
    assert ok(cli("get", "-n", ns)).splitlines()[1].split()[:4] == ["database", "false", "True", "2/2"]
    # The operator's events about it name who asked.
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=database", "-o", "json")
    messages = {e["reason"]: e["message"] for e in json.loads(events.stdout)["items"]}
    assert messages["Suspending"].endswith(f"(reason: restoring from backup, OPS-1234; requested by {admin})")

    # Suspending again flips it back (the CLI applies suspend: true explicitly).
    out = ok(cli("suspend", "database", "-n", ns, "--wait", "--timeout", "60s"))
    assert "waiting up to 60s" in out
    assert "database: 2/2 pods suspended and verified" in out
    assert not any(cluster.all_states(pods, BOTH).values())


def test_resume_delete_wait(cluster: Cluster) -> None:
    ns = cluster.namespace
    pods = cluster.group("database", pods=2)
    # --dry-run sends nothing; what it prints is a manifest for Git, as good as the command itself.
    manifest = ok(cli("suspend", "database", "-n", ns, "--reason", "from Git", "--dry-run", "-o", "yaml"))
    assert cluster.kubectl("get", "psus", "-o", "name").stdout.strip() == ""
    cluster.kubectl("apply", "-f", "-", input_text=manifest)
    cluster.wait("database")
    assert not any(cluster.all_states(pods, BOTH).values())

    out = ok(cli("resume", "database", "-n", ns, "--delete", "--wait"))
    lines = out.splitlines()
    assert lines[0] == f'processsuspension.processcontrol.dev "database" deleted in {ns}'
    assert lines[1] == "waiting up to 5m for the operator to resume and release it"
    assert re.search(r"^database: resumed and deleted in \d+\.\ds$", lines[-1]), out
    # Gone only after the operator's finalizer resumed everything.
    assert cluster.kubectl("get", "psus", "-o", "name").stdout.strip() == ""
    assert all(cluster.all_states(pods, BOTH).values())
    assert cli("get", "-n", ns).stderr.strip() == f"No resources found in {ns} namespace."


def test_selector_filters_reason_duration_and_name(cluster: Cluster) -> None:
    ns = cluster.namespace
    pods = cluster.group("database", pods=2)
    out = ok(
        cli(
            "suspend",
            "-l",
            f"{fakepods.LABEL_INSTANCE_GROUP}=database,{fakepods.LABEL_POD_ORDINAL}!=0",
            "--jobs",
            "pxc-mysql",
            "--processes",
            "galera-agent",
            "--reason",
            "agent upgrade, OPS-99",
            "--duration",
            "1h",
            "--name",
            "agent-freeze",
            "-n",
            ns,
            "--wait",
        )
    )
    assert f"processsuspension.processcontrol.dev/agent-freeze serverside-applied in {ns}" in out
    assert states_of(out, pods[1])[-1] == "Suspended"
    assert states_of(out, pods[0]) == [], "pod 0 is not a target"
    assert "agent-freeze: 1/1 pods suspended and verified" in out
    assert cluster.all_states(pods, BOTH) == {
        (pods[0], MYSQL): True,
        (pods[0], AGENT): True,
        (pods[1], MYSQL): True,
        (pods[1], AGENT): False,
    }
    obj = cluster.get("psus", "agent-freeze")
    assert obj["spec"] == {
        "selector": {
            "matchLabels": {fakepods.LABEL_INSTANCE_GROUP: "database"},
            "matchExpressions": [{"key": fakepods.LABEL_POD_ORDINAL, "operator": "NotIn", "values": ["0"]}],
        },
        "jobs": ["pxc-mysql"],
        "processes": ["galera-agent"],
        "suspend": True,
        "reason": "agent upgrade, OPS-99",
        "duration": "1h",
        "probes": "Warn",
        "preview": False,
        "requestedBy": obj["spec"]["requestedBy"],  # the admin's name: test_suspend_wait_get_describe_... checks it
    }
    status = obj["status"]
    assert status["expiresAt"] > status["suspendedAt"]
    wide = ok(cli("get", "agent-freeze", "-n", ns, "-o", "wide"))
    assert f"selector {fakepods.LABEL_INSTANCE_GROUP}=database,{fakepods.LABEL_POD_ORDINAL} notin (0)" in wide
    assert status["expiresAt"] in wide
    described = ok(cli("describe", "agent-freeze", "-n", ns))
    assert re.search(r"^Jobs:\s+pxc-mysql$", described, re.M)
    assert re.search(r"^Processes:\s+galera-agent$", described, re.M)
    assert re.search(r"^Duration:\s+1h$", described, re.M)
    assert re.search(rf"^Expires At:\s+{status['expiresAt']} \(in (59|60)m\)$", described, re.M), described

    # Without --name: the instance group's name plus a hash of the filters, so it does not replace another one.
    out = ok(cli("suspend", "database", "--processes", "mysql", "-n", ns))
    [name] = re.findall(r"processsuspension.processcontrol.dev/(\S+) serverside-applied", out)
    assert re.fullmatch(r"database-[0-9a-f]{6}", name)
    assert sorted(cluster.kubectl("get", "psus", "-o", "name").stdout.split()) == sorted(
        [f"processsuspension.processcontrol.dev/{n}" for n in ("agent-freeze", name)]
    )
    cluster.wait(name)
    assert not any(cluster.all_states(pods, [MYSQL]).values())


def test_wait_follows_a_slow_pod(cluster: Cluster) -> None:
    """Processes that take seconds to stop, and a containerrun slow to act: --wait shows the way, not just the end."""
    ns = cluster.namespace
    pods = cluster.group("database", pods=2, command=SLOW_TO_STOP)
    process = cli_background("suspend", "database", "-n", ns, "--reason", "slow shutdown", "--wait")
    try:
        suspending = watch_for(cluster, "database", "Suspending")
    finally:
        result = finish(process)
    out = ok(result)
    for pod in pods:
        states = states_of(out, pod)
        assert states[0] == "Suspending" and states[-1] == "Suspended", out
    waiting = {message for _, _, state, message in progress(out) if state == "Suspending"}
    assert any(message.startswith("waiting for ") for message in waiting), out
    elapsed = float(re.findall(r"pods suspended and verified in (\d+\.\d)s", out)[0])
    assert elapsed >= 2.5, "the main processes take 3 s to stop"
    assert not any(cluster.all_states(pods, BOTH).values())
    assert suspending["status"]["conditions"][0]["type"] == "Ready"
    record(suspending, "suspending.e2e.cli")

    # A containerrun that does not answer at once: START waits in its socket, the pod shows Resuming meanwhile.
    with paused(cluster, pods[1], MYSQL):
        process = cli_background("resume", "database", "-n", ns, "--wait")
        try:
            resuming = watch_for(cluster, "database", "Resuming")
            time.sleep(1.5)
        except BaseException:
            process.kill()
            raise
    out = ok(finish(process))
    assert states_of(out, pods[1])[-2:] == ["Resuming", "Resumed"], out
    assert states_of(out, pods[0])[-1] == "Resumed"
    assert "database: 2/2 pods resumed and verified" in out
    assert all(cluster.all_states(pods, BOTH).values())
    record(resuming, "resuming.e2e.cli")
    kill_main_processes(cluster, pods)


def test_stalled_and_no_sockets_exit_1(cluster: Cluster) -> None:
    ns = cluster.namespace
    result = cli("suspend", "webapp", "-n", ns, "--wait")
    assert result.returncode == 1, result
    assert result.stdout.splitlines()[-1] == "webapp: stalled (NoMatchingPods): no running pod matches the target"
    assert ok(cli("get", "webapp", "-n", ns, "-o", "wide")).splitlines()[1].split()[:5] == [
        "webapp",
        "true",
        "False",
        "0/0",
        "NoMatchingPods",
    ]
    # kubectl itself says why, from the CRD's printer columns.
    header, row = cluster.kubectl("get", "psus", "webapp").stdout.splitlines()
    cells = dict(zip(header.split(), row.split(), strict=False))
    assert (cells["READY"], cells["PODS"], cells["STATUS"]) == ("False", "0/0", "NoMatchingPods"), row

    [pod] = cluster.group("database", pods=1)
    for jp in BOTH:
        fakepods.stop_container(ns, pod, fakepods.JobProcess.parse(jp), sig=signal.SIGTERM)
    result = cli("suspend", "database", "-n", ns, "--wait")
    assert result.returncode == 1, result
    assert re.search(r"^database: stalled \(NoSockets\): pod database-0: no containerrun sockets", result.stdout, re.M)
    described = ok(cli("describe", "database", "-n", ns))
    assert re.search(r"^\s+Stalled\s+True\s+NoSockets\s", described, re.M), described
    assert re.search(rf"^\s+{pod}\s+Failed\s+-\s+-\s+-\s+no containerrun sockets", described, re.M), described
    record(cluster.get("psus", "database"), "stalled.e2e.cli.no-sockets")


# --- errors ---------------------------------------------------------------------------------------------------------


def test_not_found_and_invalid_arguments(cluster: Cluster) -> None:
    ns = cluster.namespace
    for args in (["get", "nope"], ["describe", "nope"], ["resume", "nope"], ["resume", "nope", "--delete", "--wait"]):
        result = cli(*args, "-n", ns)
        assert result.returncode == 5, (args, result)
        assert result.stderr.startswith("error: not found: ") and "nope" in result.stderr, result.stderr
        assert result.stdout == ""
    assert cli("get", "-n", ns).stderr.strip() == f"No resources found in {ns} namespace."

    for args in (["database", "-l", "a=b"], ["database", "--jobs", "a;rm -rf /"], ["database", "--duration", "soon"]):
        result = cli("suspend", *args, "-n", ns)
        assert result.returncode == 2, (args, result)
        assert result.stderr.startswith("error: "), result.stderr
    assert cluster.kubectl("get", "psus", "-o", "name").stdout.strip() == "", "nothing was sent"


def test_a_namespace_that_does_not_exist_says_so(cluster: Cluster) -> None:
    for args in (["describe", "database"], ["get", "database"], ["get"], ["resume", "database"], ["suspend", "x"]):
        result = cli(*args, "-n", "nosuchns")
        assert result.returncode == 5, (args, result)
        assert result.stderr == (
            "error: not found: namespace nosuchns does not exist (kubectl get namespaces lists them)\n"
        ), (args, result.stderr)


def test_the_cli_records_the_user_the_api_server_saw(cluster: Cluster) -> None:
    """A ServiceAccount that may write suspensions: its own name is recorded, and bob's patch cannot change it."""
    ns = cluster.namespace
    cluster.kubectl("create", "serviceaccount", "oncall")
    cluster.kubectl("create", "role", "psus-writer", "--verb=get,list,create,patch", "--resource=processsuspensions")
    cluster.kubectl("create", "rolebinding", "oncall-writes", "--role=psus-writer", f"--serviceaccount={ns}:oncall")
    kubeconfig = service_account_kubeconfig(namespace=ns, account="oncall")
    account = f"system:serviceaccount:{ns}:oncall"
    wait_until(lambda: cli("get", "-n", ns, kubeconfig=kubeconfig).returncode == 0, 10, "the Role to take effect")
    ok(cli("suspend", "webapp", "-n", ns, "--reason", "who asked", kubeconfig=kubeconfig))
    assert cluster.get("psus", "webapp")["spec"]["requestedBy"] == {"username": account}
    assert re.search(rf"^Requested By:\s+{re.escape(account)}$", ok(cli("describe", "webapp", "-n", ns)), re.M)
    # The admin changes the reason with the CLI: the suspension is still the one oncall asked for.
    ok(cli("suspend", "webapp", "-n", ns, "--reason", "longer"))
    assert cluster.get("psus", "webapp")["spec"]["requestedBy"] == {"username": account}
    # Resumed, then suspended again by the admin: a new suspension, a new requester.
    ok(cli("resume", "webapp", "-n", ns))
    ok(cli("suspend", "webapp", "-n", ns))
    assert cluster.get("psus", "webapp")["spec"]["requestedBy"]["username"] != account


def plugin_env(cluster: Cluster) -> dict[str, str]:
    """kubectl's environment with the installed plugin on PATH, as `pip install` leaves it in a venv."""
    return dict(os.environ, KUBECONFIG=str(kubeconfig_path()), PATH=f"{PROCESSCONTROL.parent}:{os.environ['PATH']}")


def test_kubectl_finds_and_runs_the_plugin(cluster: Cluster) -> None:
    ns = cluster.namespace
    env = plugin_env(cluster)

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env, timeout=120, check=False)

    listed = kubectl("plugin", "list")
    assert str(PROCESSCONTROL.parent / "kubectl-processcontrol") in listed.stdout, listed
    cluster.group("database", pods=1)
    out = ok(kubectl("processcontrol", "suspend", "database", "-n", ns, "--reason", "plugin", "--wait"))
    assert "database: 1/1 pods suspended and verified" in out
    got = ok(kubectl("processcontrol", "get", "-n", ns)).splitlines()
    assert got[1].split()[:5] == ["database", "true", "True", "1/1", "Suspended"]
    # kubectl's flags before the command too, and -o for describe.
    described = json.loads(ok(kubectl("processcontrol", "-n", ns, "describe", "database", "-o", "json")))
    assert described["status"]["summary"] == "1/1"
    everywhere = ok(kubectl("processcontrol", "get", "-A")).splitlines()
    assert [ns, "database"] in [row.split()[:2] for row in everywhere[1:]]
    # kubectl's own completion of the plugin asks kubectl_complete-processcontrol (kubectl >= 1.26).
    completed = kubectl("__complete", "processcontrol", "describe", "-n", ns, "")
    assert completed.stdout.splitlines()[0] == "database", completed
    ok(kubectl("processcontrol", "resume", "database", "-n", ns, "--delete", "--wait"))


def test_forbidden(cluster: Cluster) -> None:
    """A ServiceAccount without any RBAC in the namespace, then one that may read but not write."""
    ns = cluster.namespace
    cluster.group("database", pods=1)
    ok(cli("suspend", "database", "-n", ns))
    cluster.kubectl("create", "serviceaccount", "oncall")
    kubeconfig = service_account_kubeconfig(namespace=ns, account="oncall")
    account = f"system:serviceaccount:{ns}:oncall"
    for args, verb in (
        (["get"], "list"),
        (["get", "database"], "get"),
        (["describe", "database"], "get"),
        (["suspend", "database"], "patch"),
        (["resume", "database"], "patch"),
        (["resume", "database", "--delete"], "delete"),
    ):
        result = cli(*args, "-n", ns, kubeconfig=kubeconfig)
        assert result.returncode == 4, (args, result)
        # The API server's words, as kubectl shows them: who may not do what, where.
        named = ' "database"' if len(args) > 1 else ""
        assert result.stderr == (
            f"error: forbidden: processsuspensions.processcontrol.dev{named} is forbidden: User "
            f'"{account}" cannot {verb} resource "processsuspensions" in API group "processcontrol.dev" '
            f'in the namespace "{ns}"\n'
        ), result.stderr
    result = cli("get", "-A", kubeconfig=kubeconfig)
    assert result.returncode == 4, result
    # --kubeconfig and --context win over $KUBECONFIG (here the admin's), as with kubectl.
    result = cli("get", "-n", ns, "--kubeconfig", str(kubeconfig), "--context", "oncall")
    assert result.returncode == 4, result
    result = cli("get", "-n", ns, "--context", "nowhere")
    assert result.returncode == 6, result
    assert result.stderr.startswith("error: kubeconfig: ") and "nowhere" in result.stderr, result.stderr

    cluster.kubectl("create", "role", "psus-reader", "--verb=get,list", "--resource=processsuspensions")
    cluster.kubectl("create", "rolebinding", "oncall-reads", "--role=psus-reader", f"--serviceaccount={ns}:oncall")
    wait_until(lambda: cli("get", "-n", ns, kubeconfig=kubeconfig).returncode == 0, 10, "the Role to take effect")
    assert "database" in ok(cli("describe", "database", "-n", ns, kubeconfig=kubeconfig))
    for args in (["suspend", "database", "--reason", "x"], ["resume", "database"], ["resume", "database", "--delete"]):
        result = cli(*args, "-n", ns, kubeconfig=kubeconfig)
        assert result.returncode == 4, (args, result)
        assert f'User "{account}" cannot ' in result.stderr, result.stderr
    assert cluster.get("psus", "database")["spec"]["suspend"] is True, "nothing changed"


def test_operator_not_running(bare_plane: BarePlane) -> None:
    """Last in the file: its 30 s ran while the other tests did."""
    result = finish(bare_plane.without_operator, timeout=90)
    assert result.returncode == 1, result
    assert time.monotonic() - bare_plane.started >= 30
    assert result.stdout.splitlines() == [
        "processsuspension.processcontrol.dev/database serverside-applied in default",
        "waiting up to 5m for every target process to be stopped and verified",
    ]
    assert result.stderr == "error: no status after 30s: is the operator running?\n"
    described = ok(cli("describe", "database", "-n", "default", kubeconfig=bare_plane.kubeconfig))
    assert "<none> (the operator has not written a status yet)" in described
    assert re.search(r"^Generation:\s+1 \(observed: none\)$", described, re.M)
