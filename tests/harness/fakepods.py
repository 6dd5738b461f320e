#!/usr/bin/env python3
"""Fake kubecf pods on the local control plane whose containers are real `containerrun` processes on this host.

Each pod `NAME-<i>` gets kubecf's labels and one container per BOSH job process (`job-process`, mounting
/var/vcap/data), optionally a `logs` sidecar (first in the list; mounts only /var/vcap/sys). On the host, the pod
has a private base directory, its /var/vcap (`<state>/v/<hash>`, linked from `<state>/pods/<ns>/<pod>/vcap`),
where one real `containerrun --job-name J --process-name P --base-dir DIR -- sleep 100000` runs per job process,
and a kwok `Exec` object (named like the pod, owned by it) makes `kubectl exec POD -c CONTAINER -- CMD` run CMD
locally with `CONTAINERRUN_BASE_DIR` set to that directory (the `logs` sidecar gets a directory with only `sys`).

Importable (`from harness import fakepods`) and a CLI:

    python -m harness.fakepods create-group NAME -n NS --pods N --jobs job1/proc1,job2/proc2 [--sidecar logs] \
        [--containerrun CMD]  # go-v0.0.3: the Go original (hack/container-run-vcap + the cached build)
    python -m harness.fakepods restart-container NS POD JOB/PROC
    python -m harness.fakepods delete-group NAME -n NS
    python -m harness.fakepods list  # fake pods on this host and their containerrun pids
    python -m harness.fakepods reap  # stop host processes of pods deleted by other means (e.g. namespace deletion)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.base import ROOT, ControlPlaneError, ProcessRecord, kill_marked, kubectl, spawn, state_dir, stop_group

# The control plane's kwok node: the fake pods are bound to it (there is no scheduler).
NODE_NAME = "kwok-node-0"

LABEL_INSTANCE_GROUP = "quarks.cloudfoundry.org/instance-group-name"
LABEL_DEPLOYMENT = "quarks.cloudfoundry.org/deployment-name"
LABEL_POD_ORDINAL = "quarks.cloudfoundry.org/pod-ordinal"
LABEL_AZ_INDEX = "quarks.cloudfoundry.org/az-index"
LABEL_FAKE = "processcontrol.dev/fake-pod"
DEPLOYMENT = "kubecf"
DEFAULT_COMMAND = ("sleep", "100000")
# In the environment of every process of a fake container (its value: the container's pid file): containerrun starts
# its main process in a session of its own, so killing containerrun's process group would leave that process to
# init, where a real container's death takes everything in it. Stopping a container kills what carries its entry.
CONTAINER_ENV = "PROCESSCONTROL_FAKE_CONTAINER"
# Under the state directory: pid files of harness.simpods servers (one host process serving many pods' sockets).
SIM_DIR = "sim"


class FakePodError(Exception):
    """A fake pod operation failed."""


@dataclass(frozen=True)
class JobProcess:
    """One BOSH job process: raw names (underscores kept) and its kubecf container name."""

    job: str
    process: str

    @classmethod
    def parse(cls, text: str) -> JobProcess:
        """`job/process` (a bare `job` means process = job, as in BOSH)."""
        job, _, process = text.strip().partition("/")
        if not job:
            raise ValueError(f"bad job process {text!r}: expected JOB/PROCESS")
        return cls(job, process or job)

    @property
    def container(self) -> str:
        """kubecf's container name: `job-process`, underscores to dashes, lower case, at most 63 characters."""
        return f"{self.job}-{self.process}".replace("_", "-").lower()[:63].rstrip("-")

    def __str__(self) -> str:
        return f"{self.job}/{self.process}"


def parse_jobs(spec: str | Iterable[str | JobProcess]) -> list[JobProcess]:
    """`job1/proc1,job2/proc2` (or a list of such strings / JobProcess) -> JobProcess list."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return [i if isinstance(i, JobProcess) else JobProcess.parse(i) for i in items if str(i).strip()]


GO_CONTAINERRUN = "go-v0.0.3"  # the --containerrun / PROCESSCONTROL_CONTAINERRUN value that means the Go original


def go_containerrun() -> list[str]:
    """The Go original container-run v0.0.3 as a containerrun command: built (cached) by hack/build-container-run.sh
    and run by hack/container-run-vcap, which binds the container's base directory (--base-dir) on the /var/vcap
    it hard-codes, in a private mount namespace. FakePodError says why it cannot run here."""
    if os.geteuid() != 0:
        raise FakePodError("the Go container-run needs root for its /var/vcap bind mount (unshare -m)")
    done = subprocess.run([str(ROOT / "hack" / "build-container-run.sh")], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise FakePodError(f"cannot build the Go container-run: {done.stderr.strip()[-2000:]}")
    return [str(ROOT / "hack" / "container-run-vcap"), done.stdout.strip().splitlines()[-1]]


def default_containerrun() -> list[str]:
    """The containerrun command: $PROCESSCONTROL_CONTAINERRUN (`go-v0.0.3`: the Go original), else the repo's
    .venv/bin/containerrun."""
    env = os.environ.get("PROCESSCONTROL_CONTAINERRUN")
    if env == GO_CONTAINERRUN:
        return go_containerrun()
    if env:
        return shlex.split(env)
    return [str(ROOT / ".venv" / "bin" / "containerrun")]


# --- host paths ----------------------------------------------------------------------------------------------------


def pod_dir(namespace: str, pod: str, state: Path | None = None) -> Path:
    """Everything on the host that belongs to one fake pod."""
    return (state or state_dir()) / "pods" / namespace / pod


def base_dir(namespace: str, pod: str, state: Path | None = None) -> Path:
    """The pod's /var/vcap on the host: CONTAINERRUN_BASE_DIR of its job containers (data/ and sys/ inside).

    Kept short (`<state>/v/<hash of ns/pod>`, linked from `<pod_dir>/vcap`) so that socket paths stay within the
    108 bytes of a unix socket address even for long namespace and pod names."""
    digest = hashlib.sha256(f"{namespace}/{pod}".encode()).hexdigest()[:12]
    return (state or state_dir()) / "v" / digest


def sidecar_base_dir(namespace: str, pod: str, state: Path | None = None) -> Path:
    """The `logs` sidecar's /var/vcap: only `sys` (a link to the pod's), no `data`, so no sockets."""
    return pod_dir(namespace, pod, state) / "sidecar-vcap"


def socket_path(namespace: str, pod: str, jp: JobProcess, state: Path | None = None) -> Path:
    """Where containerrun listens: `<base>/data/<job>/<process>_containerrun.sock`."""
    return base_dir(namespace, pod, state) / "data" / jp.job / f"{jp.process}_containerrun.sock"


def running_path(namespace: str, pod: str, jp: JobProcess, state: Path | None = None) -> Path:
    """containerrun's sentinel: exists while the main process runs."""
    return base_dir(namespace, pod, state) / "data" / jp.job / f"{jp.process}_containerrun.running"


def pid_path(namespace: str, pod: str, jp: JobProcess, state: Path | None = None) -> Path:
    """containerrun's pid file of the main process: `<base>/sys/run/bpm/<job>/<process>.pid`."""
    return base_dir(namespace, pod, state) / "sys" / "run" / "bpm" / jp.job / f"{jp.process}.pid"


def _run_dir(namespace: str, pod: str, state: Path | None) -> Path:
    return pod_dir(namespace, pod, state) / "run"


def container_log(namespace: str, pod: str, jp: JobProcess, state: Path | None = None) -> Path:
    """Output of the container's containerrun (and its child)."""
    return _run_dir(namespace, pod, state) / f"{jp.container}.log"


# --- the API ------------------------------------------------------------------------------------------------------


def _apply(obj: dict[str, object], state: Path | None) -> dict[str, object]:
    out = kubectl("apply", "-o", "json", "-f", "-", state=state, input_text=json.dumps(obj))
    result: dict[str, object] = json.loads(out.stdout)
    return result


# --- manifests (pure) ----------------------------------------------------------------------------------------------


def pod_name(group: str, ordinal: int) -> str:
    """kubecf's pod name of an instance group member (no zones)."""
    return f"{group}-{ordinal}"


def build_pod(
    group: str,
    namespace: str,
    ordinal: int,
    jobs: Sequence[JobProcess],
    sidecar: str | None = None,
    probed: Collection[JobProcess] = (),
) -> dict[str, object]:
    """The Pod manifest of one instance group member, laid out like kubecf's (bound to the kwok node). The
    containers of the `probed` processes get a liveness probe on their sentinel, which a stopped process fails
    (kwok does not run probes: what the operator reads from the pod spec is what matters here)."""
    data = {"name": "data-directory", "mountPath": "/var/vcap/data"}
    sys_mount = {"name": "sys-directory", "mountPath": "/var/vcap/sys"}
    containers: list[dict[str, object]] = []
    if sidecar:
        containers.append(
            {
                "name": sidecar,
                "image": "fake.invalid/kubecf/logs-tailer:latest",
                "command": ["/usr/bin/tail", "-F", "/var/vcap/sys/log"],
                "volumeMounts": [sys_mount],
            }
        )
    for jp in jobs:
        container: dict[str, object] = {
            "name": jp.container,
            "image": f"fake.invalid/kubecf/{jp.job.replace('_', '-').lower()}:latest",
            "command": ["/usr/bin/dumb-init", "--", "/var/vcap/all-releases/container-run/container-run"],
            "args": ["--job-name", jp.job, "--process-name", jp.process, "--", "/var/vcap/jobs/bpm/run"],
            "volumeMounts": [data, sys_mount],
        }
        if jp in probed:
            sentinel = f"/var/vcap/data/{jp.job}/{jp.process}_containerrun.running"
            container["livenessProbe"] = {"exec": {"command": ["test", "-e", sentinel]}, "periodSeconds": 10}
        containers.append(container)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(group, ordinal),
            "namespace": namespace,
            "labels": {
                LABEL_INSTANCE_GROUP: group,
                LABEL_DEPLOYMENT: DEPLOYMENT,
                LABEL_POD_ORDINAL: str(ordinal),
                LABEL_AZ_INDEX: "0",
                LABEL_FAKE: "true",
            },
        },
        "spec": {
            # No scheduler: bind to the kwok node directly.
            "nodeName": NODE_NAME,
            "automountServiceAccountToken": False,
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": containers,
            "volumes": [{"name": "data-directory", "emptyDir": {}}, {"name": "sys-directory", "emptyDir": {}}],
        },
    }


def build_exec(
    namespace: str,
    pod: str,
    pod_uid: str,
    jobs: Sequence[JobProcess],
    sidecar: str | None,
    state: Path | None = None,
) -> dict[str, object]:
    """kwok's Exec for one pod: exec runs locally, with the pod's base directory as CONTAINERRUN_BASE_DIR."""
    base = str(base_dir(namespace, pod, state))
    execs: list[dict[str, object]] = [
        {
            "containers": [jp.container for jp in jobs],
            "local": {"workDir": base, "envs": [{"name": "CONTAINERRUN_BASE_DIR", "value": base}]},
        }
    ]
    if sidecar:
        side = str(sidecar_base_dir(namespace, pod, state))
        execs.append(
            {
                "containers": [sidecar],
                "local": {"workDir": side, "envs": [{"name": "CONTAINERRUN_BASE_DIR", "value": side}]},
            }
        )
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Exec",
        "metadata": {
            "name": pod,
            "namespace": namespace,
            "labels": {LABEL_FAKE: "true"},
            # Deleted with its pod by the garbage collector.
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": pod_uid}],
        },
        "spec": {"execs": execs},
    }


# --- host processes ------------------------------------------------------------------------------------------------


def _record_file(namespace: str, pod: str, jp: JobProcess, state: Path | None) -> Path:
    return _run_dir(namespace, pod, state) / f"{jp.container}.pid"


def _argv_file(namespace: str, pod: str, jp: JobProcess, state: Path | None) -> Path:
    return _run_dir(namespace, pod, state) / f"{jp.container}.json"


def start_container(
    namespace: str,
    pod: str,
    jp: JobProcess,
    containerrun: Sequence[str] | None = None,
    command: Sequence[str] = DEFAULT_COMMAND,
    state: Path | None = None,
) -> ProcessRecord:
    """Start the container's containerrun on the host (own process group); remembers the command for restarts."""
    base = base_dir(namespace, pod, state)
    argv_file = _argv_file(namespace, pod, jp, state)
    if containerrun is None and argv_file.exists():
        argv = json.loads(argv_file.read_text())
    else:
        argv = [
            *(containerrun or default_containerrun()),
            "--job-name",
            jp.job,
            "--process-name",
            jp.process,
            "--base-dir",
            str(base),
            "--",
            *command,
        ]
    argv_file.parent.mkdir(parents=True, exist_ok=True)
    argv_file.write_text(json.dumps(argv))
    record_file = _record_file(namespace, pod, jp, state)
    env = dict(os.environ, CONTAINERRUN_BASE_DIR=str(base), **{CONTAINER_ENV: str(record_file)})
    return spawn(argv, container_log(namespace, pod, jp, state), record_file, env=env)


def container_process(namespace: str, pod: str, jp: JobProcess, state: Path | None = None) -> ProcessRecord | None:
    """The running containerrun of a container, None when it does not run."""
    record = ProcessRecord.read(_record_file(namespace, pod, jp, state))
    return record if record is not None and record.alive() else None


def stop_container(
    namespace: str, pod: str, jp: JobProcess, state: Path | None = None, sig: signal.Signals = signal.SIGKILL
) -> None:
    """Kill the container's process group (SIGKILL by default, like a crashed/OOM-killed container), then whatever
    else of the container is left."""
    record_file = _record_file(namespace, pod, jp, state)
    record = ProcessRecord.read(record_file)
    if record is None:
        return
    if sig == signal.SIGKILL:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGKILL)
    stop_group(record)
    kill_marked(f"{CONTAINER_ENV}={record_file}")


def stop_pod_processes(namespace: str, pod: str, state: Path | None = None) -> int:
    """Stop every host process group of one pod; returns how many ran."""
    count = 0
    pid_files = sorted(_run_dir(namespace, pod, state).glob("*.pid"))
    for pid_file in pid_files:
        record = ProcessRecord.read(pid_file)
        if record is None:
            continue
        if record.alive():
            count += 1
        stop_group(record)
    # What outlived its containerrun (killed at stop_group's timeout): the main process, in a session of its own.
    kill_marked(*(f"{CONTAINER_ENV}={pid_file}" for pid_file in pid_files))
    for pid_file in pid_files:
        pid_file.unlink(missing_ok=True)
    return count


def stop_all_host_processes(state: Path | None = None) -> int:
    """Stop the host processes of every fake pod under the state directory (used by the control plane's `down`)."""
    root = (state or state_dir()) / "pods"
    count = 0
    for run in sorted(root.glob("*/*/run")):
        count += stop_pod_processes(run.parent.parent.name, run.parent.name, state)
    for pid_file in sorted(((state or state_dir()) / SIM_DIR).glob("*.pid")):
        record = ProcessRecord.read(pid_file)
        if record is not None:
            count += record.alive()
            stop_group(record, timeout=60)
        pid_file.unlink(missing_ok=True)
    return count


def listening(path: Path) -> bool:
    """A process is bound to the unix datagram socket (connect() succeeds; nothing is sent)."""
    if len(os.fsencode(path)) > 107:
        # Too long for sockaddr_un: connect through the directory's /proc/self/fd entry.
        fd = os.open(path.parent, os.O_PATH)
        try:
            return listening(Path(f"/proc/self/fd/{fd}") / path.name)
        finally:
            os.close(fd)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def wait_for_sockets(
    namespace: str, pod: str, jobs: Sequence[JobProcess], state: Path | None = None, timeout: float = 20.0
) -> None:
    """Until every containerrun of the pod listens on its socket; fails early when one exited."""
    deadline = time.monotonic() + timeout
    pending = list(jobs)
    while pending:
        pending = [jp for jp in pending if not listening(socket_path(namespace, pod, jp, state))]
        for jp in pending:
            if container_process(namespace, pod, jp, state) is None:
                log = container_log(namespace, pod, jp, state)
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise FakePodError(f"containerrun of {namespace}/{pod} {jp} is not running; log {log}:\n{tail}")
        if not pending:
            return
        if time.monotonic() > deadline:
            raise FakePodError(f"{namespace}/{pod}: no socket after {timeout:.0f}s for {[str(j) for j in pending]}")
        time.sleep(0.05)


# --- pods ----------------------------------------------------------------------------------------------------------


def ensure_namespace(namespace: str, state: Path | None = None, timeout: float = 60.0) -> None:
    """Create the namespace if needed and wait for its default ServiceAccount (pods are rejected until then)."""
    if kubectl("get", "namespace", namespace, state=state, check=False).returncode != 0:
        kubectl("create", "namespace", namespace, state=state, check=False)
    deadline = time.monotonic() + timeout
    while kubectl("get", "serviceaccount", "default", "-n", namespace, state=state, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise FakePodError(f"no default ServiceAccount in namespace {namespace} after {timeout:.0f}s")
        time.sleep(0.2)


def create_pod(
    group: str,
    namespace: str,
    ordinal: int,
    jobs: str | Sequence[str | JobProcess],
    sidecar: str | None = None,
    containerrun: Sequence[str] | None = None,
    command: Sequence[str] = DEFAULT_COMMAND,
    state: Path | None = None,
    probed: str | Sequence[str | JobProcess] = (),
) -> str:
    """One fake pod: the Pod, its containerrun processes on the host, and its kwok Exec. Returns the pod name."""
    jps = parse_jobs(jobs)
    name = pod_name(group, ordinal)
    # A previous incarnation of the same pod: its processes and files go.
    stop_pod_processes(namespace, name, state)
    _remove_pod_files(namespace, name, state)
    pod = _apply(build_pod(group, namespace, ordinal, jps, sidecar, parse_jobs(probed)), state)
    uid = str(pod["metadata"]["uid"])  # type: ignore[index]
    base = base_dir(namespace, name, state)
    for sub in ("data", "sys/log", "sys/run/bpm"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    side = sidecar_base_dir(namespace, name, state)
    side.mkdir(parents=True, exist_ok=True)
    link = side / "sys"
    if not link.is_symlink():
        link.symlink_to(base / "sys")
    (pod_dir(namespace, name, state) / "uid").write_text(uid)
    (pod_dir(namespace, name, state) / "vcap").symlink_to(base)
    for jp in jps:
        start_container(namespace, name, jp, containerrun, command, state)
    _apply(build_exec(namespace, name, uid, jps, sidecar, state), state)
    return name


def wait_ready(namespace: str, pods: Sequence[str], state: Path | None = None, timeout: float = 60.0) -> None:
    """Until kwok has marked the pods Ready."""
    if pods:
        kubectl(
            "wait",
            "-n",
            namespace,
            "--for=condition=Ready",
            f"--timeout={int(timeout)}s",
            *(f"pod/{p}" for p in pods),
            state=state,
        )


def create_group(
    name: str,
    namespace: str,
    pods: int,
    jobs: str | Sequence[str | JobProcess],
    sidecar: str | None = None,
    containerrun: Sequence[str] | None = None,
    command: Sequence[str] = DEFAULT_COMMAND,
    state: Path | None = None,
    wait: bool = True,
    first_ordinal: int = 0,
    ready_timeout: float = 60.0,
    probed: str | Sequence[str | JobProcess] = (),
) -> list[str]:
    """An instance group of `pods` fake pods NAME-<i>; with wait: pods Ready (within ready_timeout: kwok marks
    many new pods Ready within seconds on an idle machine, much later on a busy one) and every containerrun
    listening."""
    jps = parse_jobs(jobs)
    ensure_namespace(namespace, state)
    names = [
        create_pod(name, namespace, i, jps, sidecar, containerrun, command, state, probed)
        for i in range(first_ordinal, first_ordinal + pods)
    ]
    if wait:
        for pod in names:
            wait_for_sockets(namespace, pod, jps, state)
        wait_ready(namespace, names, state, timeout=ready_timeout)
    return names


def pod_jobs(namespace: str, pod: str, state: Path | None = None) -> list[JobProcess]:
    """The job processes whose containerrun this host runs for a pod (from the recorded commands)."""
    result = []
    for argv_file in sorted(_run_dir(namespace, pod, state).glob("*.json")):
        argv = json.loads(argv_file.read_text())
        result.append(JobProcess(argv[argv.index("--job-name") + 1], argv[argv.index("--process-name") + 1]))
    return result


def restart_container(
    namespace: str,
    pod: str,
    job_process: str | JobProcess,
    state: Path | None = None,
    sig: signal.Signals = signal.SIGKILL,
    wait: bool = True,
) -> ProcessRecord:
    """Like a kubecf container restart: kill the container's containerrun (and its child), start it again, and bump
    the container's restartCount (lastState terminated) in the pod status. Returns the new process."""
    jp = job_process if isinstance(job_process, JobProcess) else JobProcess.parse(job_process)
    if not _argv_file(namespace, pod, jp, state).exists():
        raise FakePodError(f"{namespace}/{pod} has no container for {jp}")
    finished = datetime.now(UTC)
    stop_container(namespace, pod, jp, state, sig)
    record = start_container(namespace, pod, jp, state=state)
    _bump_restart_count(namespace, pod, jp.container, finished, 137 if sig == signal.SIGKILL else 143, state)
    if wait:
        # After SIGKILL the old socket file stays behind (stale): wait_for_sockets waits until the new one answers.
        wait_for_sockets(namespace, pod, [jp], state)
    return record


def _bump_restart_count(
    namespace: str, pod: str, container: str, finished: datetime, exit_code: int, state: Path | None
) -> None:
    obj = json.loads(kubectl("get", "pod", pod, "-n", namespace, "-o", "json", state=state).stdout)
    statuses = obj.get("status", {}).get("containerStatuses", [])
    for index, cs in enumerate(statuses):
        if cs.get("name") != container:
            continue
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        started = cs.get("state", {}).get("running", {}).get("startedAt", now)
        new = dict(cs)
        new["restartCount"] = int(cs.get("restartCount", 0)) + 1
        new["lastState"] = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Error",
                "startedAt": started,
                "finishedAt": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "containerID": cs.get("containerID", ""),
            }
        }
        new["state"] = {"running": {"startedAt": now}}
        patch = [
            {"op": "test", "path": f"/status/containerStatuses/{index}/name", "value": container},
            {"op": "replace", "path": f"/status/containerStatuses/{index}", "value": new},
        ]
        kubectl(
            "patch",
            "pod",
            pod,
            "-n",
            namespace,
            "--subresource=status",
            "--type=json",
            "-p",
            json.dumps(patch),
            state=state,
        )
        return
    raise FakePodError(f"pod {namespace}/{pod} has no status for container {container}")


def delete_pod(namespace: str, pod: str, state: Path | None = None, wait: bool = True) -> None:
    """Delete a fake pod (its Exec goes with it) and stop its host processes; the host directory is removed."""
    kubectl("delete", "pod", pod, "-n", namespace, "--ignore-not-found", f"--wait={str(wait).lower()}", state=state)
    kubectl("delete", "exec.kwok.x-k8s.io", pod, "-n", namespace, "--ignore-not-found", state=state, check=False)
    stop_pod_processes(namespace, pod, state)
    _remove_pod_files(namespace, pod, state)


def delete_group(name: str, namespace: str, state: Path | None = None, wait: bool = True) -> list[str]:
    """Delete every pod of the instance group and stop their host processes. Returns the pods deleted."""
    selector = f"{LABEL_INSTANCE_GROUP}={name},{LABEL_FAKE}=true"
    out = kubectl(
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        selector,
        "-o",
        "jsonpath={.items[*].metadata.name}",
        state=state,
        check=False,
    )
    pods = out.stdout.split()
    # Pods recorded on the host but already gone from the API.
    root = (state or state_dir()) / "pods" / namespace
    pods += [p.name for p in sorted(root.glob(f"{name}-*")) if p.name not in pods and p.name[len(name) + 1 :].isdigit()]
    if pods:
        kubectl(
            "delete",
            "pods",
            "-n",
            namespace,
            "-l",
            selector,
            "--ignore-not-found",
            f"--wait={str(wait).lower()}",
            state=state,
        )
    for pod in pods:
        kubectl("delete", "exec.kwok.x-k8s.io", pod, "-n", namespace, "--ignore-not-found", state=state, check=False)
        stop_pod_processes(namespace, pod, state)
        _remove_pod_files(namespace, pod, state)
    return pods


def _remove_pod_files(namespace: str, pod: str, state: Path | None) -> None:
    shutil.rmtree(base_dir(namespace, pod, state), ignore_errors=True)
    shutil.rmtree(pod_dir(namespace, pod, state), ignore_errors=True)


def reap_orphans(state: Path | None = None) -> list[str]:
    """Stop the host processes of fake pods that are gone from the API (deleted pod or namespace, or a new pod
    of the same name); returns `ns/pod` of those reaped."""
    root = (state or state_dir()) / "pods"
    out = kubectl("get", "pods", "-A", "-l", f"{LABEL_FAKE}=true", "-o", "json", state=state)
    live = {
        (i["metadata"]["namespace"], i["metadata"]["name"], i["metadata"]["uid"])
        for i in json.loads(out.stdout)["items"]
    }
    reaped = []
    for pdir in sorted(p for p in root.glob("*/*") if p.is_dir()):
        ns, pod = pdir.parent.name, pdir.name
        uid_file = pdir / "uid"
        uid = uid_file.read_text().strip() if uid_file.exists() else ""
        if (ns, pod, uid) not in live:
            stop_pod_processes(ns, pod, state)
            _remove_pod_files(ns, pod, state)
            reaped.append(f"{ns}/{pod}")
    return reaped


def list_host_pods(state: Path | None = None) -> list[tuple[str, str, list[tuple[JobProcess, int | None]]]]:
    """(namespace, pod, [(job process, pid of its containerrun or None)]) for every fake pod on this host."""
    root = (state or state_dir()) / "pods"
    rows = []
    for pdir in sorted(p for p in root.glob("*/*") if p.is_dir()):
        ns, pod = pdir.parent.name, pdir.name
        procs = []
        for jp in pod_jobs(ns, pod, state):
            record = container_process(ns, pod, jp, state)
            procs.append((jp, record.pid if record else None))
        rows.append((ns, pod, procs))
    return rows


# --- CLI -----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.fakepods", description="Fake kubecf pods backed by host containerrun."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-group", help="create NAME-0..N-1 with one containerrun per job process")
    create.add_argument("name")
    create.add_argument("-n", "--namespace", default="default")
    create.add_argument("--pods", type=int, default=1)
    create.add_argument("--jobs", required=True, help="job1/proc1,job2/proc2 (BOSH names)")
    create.add_argument("--sidecar", default=None, help="name of a sidecar that mounts only /var/vcap/sys (logs)")
    create.add_argument(
        "--containerrun",
        default=None,
        help=f"containerrun command (default: .venv/bin/containerrun; {GO_CONTAINERRUN}: the Go original)",
    )
    create.add_argument("--first-ordinal", type=int, default=0)
    create.add_argument("--no-wait", action="store_true")
    restart = sub.add_parser("restart-container", help="kill and restart one container's containerrun")
    restart.add_argument("namespace")
    restart.add_argument("pod")
    restart.add_argument("job_process", metavar="JOB/PROC")
    restart.add_argument("--graceful", action="store_true", help="SIGTERM first instead of SIGKILL")
    delete = sub.add_parser("delete-group", help="delete the group's pods and stop their host processes")
    delete.add_argument("name")
    delete.add_argument("-n", "--namespace", default="default")
    sub.add_parser("list", help="fake pods on this host and their containerrun pids")
    sub.add_parser("reap", help="stop the host processes of fake pods that no longer exist in the API")
    args = parser.parse_args(argv)
    try:
        if args.command == "create-group":
            start = time.monotonic()
            cr = (
                go_containerrun()
                if args.containerrun == GO_CONTAINERRUN
                else shlex.split(args.containerrun)
                if args.containerrun
                else None
            )
            names = create_group(
                args.name,
                args.namespace,
                args.pods,
                args.jobs,
                args.sidecar,
                cr,
                wait=not args.no_wait,
                first_ordinal=args.first_ordinal,
            )
            print(f"created {' '.join(names)} in {args.namespace} in {time.monotonic() - start:.1f}s")
        elif args.command == "restart-container":
            sig = signal.SIGTERM if args.graceful else signal.SIGKILL
            record = restart_container(args.namespace, args.pod, args.job_process, sig=sig)
            print(f"restarted {args.namespace}/{args.pod} {args.job_process}: containerrun pid {record.pid}")
        elif args.command == "delete-group":
            pods = delete_group(args.name, args.namespace)
            print(f"deleted {' '.join(pods) or 'nothing'}")
        elif args.command == "reap":
            print(f"reaped {' '.join(reap_orphans()) or 'nothing'}")
        else:
            for ns, pod, procs in list_host_pods():
                desc = ", ".join(f"{jp}={pid or 'stopped'}" for jp, pid in procs)
                print(f"{ns}/{pod}: {desc}")
    except (FakePodError, ControlPlaneError, ValueError) as exc:
        print(f"fakepods: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
