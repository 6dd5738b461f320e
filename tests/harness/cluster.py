"""What the e2e tests (and the soak) do on the real control plane, in the words of a user: kubectl, pods,
processes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import fakepods
from harness.base import kubectl
from harness.operator import PROCESSCONTROL, OperatorProcess
from processcontrol.ledger import HOLDS_ANNOTATION


@dataclass
class Cluster:
    """One test's namespace on the real control plane, and the operator serving it."""

    namespace: str
    operator: OperatorProcess

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """kubectl in this namespace, as the admin user."""
        return kubectl("-n", self.namespace, *args, input_text=input_text, check=check)

    def apply(self, manifest: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        """kubectl apply -f - of one manifest."""
        return self.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(manifest), check=check)

    def suspension(self, name: str, **spec: Any) -> dict[str, Any]:
        """A ProcessSuspension manifest in this namespace."""
        return {
            "apiVersion": "processcontrol.dev/v1alpha1",
            "kind": "ProcessSuspension",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """One object as JSON."""
        result: dict[str, Any] = json.loads(self.kubectl("get", kind, name, "-o", "json").stdout)
        return result

    def ledger(self, pod: str) -> dict[str, Any]:
        """The pod's hold ledger as JSON ({} when there is none)."""
        raw = self.get("pod", pod)["metadata"].get("annotations", {}).get(HOLDS_ANNOTATION)
        return json.loads(raw) if raw else {}

    def wait(self, name: str, condition: str = "Ready", timeout: int = 60) -> None:
        """kubectl wait --for=condition=... on a suspension; show its status when it does not come."""
        result = self.kubectl(
            "wait", f"psus/{name}", f"--for=condition={condition}", f"--timeout={timeout}s", check=False
        )
        if result.returncode != 0:
            status = self.kubectl("get", "psus", name, "-o", "yaml", check=False).stdout
            raise AssertionError(
                f"{name} not {condition}: {result.stderr}\n{status}\noperator log:\n{self.operator.log_tail(30)}"
            )

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        """One condition of a suspension (empty when absent)."""
        conditions = self.get("psus", name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == type_), {})

    def group(
        self, name: str, pods: int = 2, jobs: str = "pxc-mysql/mysql,pxc-mysql/galera-agent", **kwargs: Any
    ) -> list[str]:
        """A fake kubecf instance group with real containerrun processes."""
        return fakepods.create_group(name, self.namespace, pods, jobs, **kwargs)

    def running(self, pod: str, job_process: str) -> bool:
        """The process is running: its containerrun's sentinel exists."""
        return fakepods.running_path(self.namespace, pod, fakepods.JobProcess.parse(job_process)).exists()

    def main_pid(self, pod: str, job_process: str) -> int | None:
        """The pid of the process's main child, from containerrun's pid file."""
        path = fakepods.pid_path(self.namespace, pod, fakepods.JobProcess.parse(job_process))
        try:
            return int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def all_states(self, pods: Sequence[str], job_processes: Sequence[str]) -> dict[tuple[str, str], bool]:
        """Running or not, per (pod, job/process)."""
        return {(p, jp): self.running(p, jp) for p in pods for jp in job_processes}

    def events(self, name: str) -> list[dict[str, Any]]:
        """Kubernetes events about one suspension."""
        items: list[dict[str, Any]] = json.loads(
            self.kubectl(
                "get",
                "events",
                "-o",
                "json",
                f"--field-selector=involvedObject.kind=ProcessSuspension,involvedObject.name={name}",
            ).stdout
        )["items"]
        return items

    def restrict_exec_path(self, pod: str, path: str | None) -> None:
        """Make exec into a pod run with this PATH, as an image without those tools would (None: the host's
        again)."""
        exec_obj = self.get("exec.kwok.x-k8s.io", pod)
        for entry in exec_obj["spec"]["execs"]:
            envs = [env for env in entry["local"].get("envs", []) if env["name"] != "PATH"]
            entry["local"]["envs"] = envs + ([{"name": "PATH", "value": path}] if path is not None else [])
        self.kubectl("replace", "-f", "-", input_text=json.dumps(exec_obj))

    def send(self, pod: str, job_process: str, command: str, tool: str = "processcontrol") -> None:
        """What a person does inside the pod: `processcontrol send STOP <socket>`, or the seed's
        `echo STOP | nc -w 1 -uU <socket>` (OpenBSD netcat)."""
        socket = fakepods.socket_path(self.namespace, pod, fakepods.JobProcess.parse(job_process))
        if tool == "nc":
            argv, given = ["nc", "-w", "1", "-uU", str(socket)], f"{command}\n"
        else:
            argv, given = [str(PROCESSCONTROL), "send", command, str(socket)], None
        subprocess.run(argv, input=given, text=True, check=True, capture_output=True)


def slow_shell(directory: Path, seconds: float, phase: str = "all") -> str:
    """A PATH whose `perl` (the in-pod script's prober and first sender) waits first: on every call (`phase`
    "all": the look too, so the exec outlasts its timeout before any go-ahead) or only when it sends a STOP or START
    ("send": after the go-ahead, so the command lands late if at all). kwok finds the exec's `sh` on its own PATH,
    so the script itself cannot be wrapped. The command inside is not killed when the exec is cut off, as in a
    container whose exec outlives its client."""
    if phase not in ("all", "send"):
        raise ValueError(f"slow_shell: phase must be 'all' or 'send', not {phase!r}")
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "perl"
    # The script runs `perl -e PROGRAM -- PAYLOAD DEADLINE SOCKET...`; the look's probe has an empty payload.
    wait = f"sleep {seconds}" if phase == "all" else f'case "$4" in STOP | START) sleep {seconds} ;; esac'
    # Each exec leaves a line in `started` and, when done, in `ended` (see execs_done).
    wrapper.write_text(
        f'#!/bin/sh\necho $$ >>{directory}/started\n{wait}\n/usr/bin/perl "$@"\nstatus=$?\n'
        f"echo $$ >>{directory}/ended\nexit $status\n"
    )
    wrapper.chmod(0o755)
    return f"{directory}:{os.environ['PATH']}"


def execs_done(directory: Path) -> bool:
    """Every exec that went through slow_shell(directory) has finished."""

    def lines(name: str) -> int:
        path = directory / name
        return len(path.read_text().split()) if path.exists() else 0

    return lines("started") == lines("ended")
