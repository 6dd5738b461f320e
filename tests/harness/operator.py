"""The operator on the local control plane: install `deploy/`, a kubeconfig with the operator's own
ServiceAccount token (so it runs with exactly the RBAC `deploy/` grants), and the operator as a process.

Used by the e2e tests, the benchmarks and `make demo`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from harness.base import ROOT, free_port, kubeconfig_path, kubectl, state_dir

DEPLOY = ROOT / "deploy"
OPERATOR_NAMESPACE = "processcontrol-system"
SERVICE_ACCOUNT = "processcontrol"
PROCESSCONTROL = Path(sys.executable).parent / "processcontrol"
# A namespace the e2e operator excludes (PROCESSCONTROL_EXCLUDED_NAMESPACES): where tests write ledgers in the
# operator's name without the operator acting on them, and where an excluded namespace is tested.
UNWATCHED_NAMESPACE = "e2e-unwatched"
# The operator's settings in the e2e tests and the soak: short intervals so that drift, retries and expiry show
# within a test's patience.
E2E_OPERATOR_ENV = {
    "PROCESSCONTROL_REVERIFY_INTERVAL_S": "5",
    "PROCESSCONTROL_FAILURE_BACKOFF_S": "2",
    "PROCESSCONTROL_VERIFY_TIMEOUT_S": "20",
    "PROCESSCONTROL_EXEC_TIMEOUT_S": "10",
    "PROCESSCONTROL_EXCLUDED_NAMESPACES": f"kube-system,{UNWATCHED_NAMESPACE}",
}


class HarnessError(Exception):
    """The operator could not be installed or started."""


def ensure_control_plane() -> Path:
    """Build the binaries if needed and start the control plane if it is not up; return the admin kubeconfig."""
    subprocess.run(["bash", str(ROOT / "hack" / "build-controlplane.sh")], check=True)
    subprocess.run([sys.executable, "-m", "harness.controlplane", "up"], check=True)
    return kubeconfig_path()


def install(kustomization: Path = DEPLOY) -> None:
    """`kubectl apply -k deploy/` and wait until the CRD is served."""
    kubectl("apply", "-k", str(kustomization))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/processsuspensions.processcontrol.dev")


def service_account_kubeconfig(
    path: Path | None = None,
    namespace: str = OPERATOR_NAMESPACE,
    account: str = SERVICE_ACCOUNT,
    state: Path | None = None,
) -> Path:
    """A kubeconfig that authenticates as the operator's ServiceAccount (a bound token, 24 h), on this control
    plane or the one rooted at `state`."""
    token = kubectl("create", "token", account, "-n", namespace, "--duration=24h", state=state).stdout.strip()
    admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json", state=state).stdout)
    cluster = admin["clusters"][0]["cluster"]
    target = path or (state or state_dir()) / f"{namespace}-{account}.kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": cluster["server"],
                    "certificate-authority-data": cluster.get("certificate-authority-data")
                    or base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "local", "user": account}}],
        "current-context": account,
    }
    target.write_text(json.dumps(config))
    target.chmod(0o600)
    return target


class OperatorProcess:
    """`processcontrol operator` as a separate process, with the given kubeconfig and settings."""

    def __init__(
        self,
        kubeconfig: Path,
        args: tuple[str, ...] = ("--all-namespaces",),
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        executable: Path = PROCESSCONTROL,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.executable = executable  # another build's `processcontrol` (bench/ab_bench.py's baseline)
        self.args = args
        self.env = env or {}
        self.log_path = log_path or state_dir() / "logs" / "operator.log"
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        # Its name in the leader election's Lease: its own for its life, as a pod's name is (started again, it
        # is the same replica, as a container restarted in its pod is).
        self.identity = self.env.get("PROCESSCONTROL_LEADER_IDENTITY") or f"{self.log_path.stem}-{uuid.uuid4().hex[:6]}"

    @property
    def metrics_url(self) -> str:
        """Where its Prometheus metrics are served."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        """Start it and wait until kopf's liveness endpoint answers."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(
            os.environ,
            KUBECONFIG=str(self.kubeconfig),
            PROCESSCONTROL_METRICS_PORT=str(self.metrics_port),
            PROCESSCONTROL_LEADER_IDENTITY=self.identity,
            # On a host, not in a pod: loopback only, as the liveness endpoint below.
            PROCESSCONTROL_METRICS_ADDRESS="127.0.0.1",
            **self.env,
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.executable),
                    "operator",
                    *self.args,
                    f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HarnessError(f"the operator exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise HarnessError(f"the operator did not become live within {timeout:.0f}s:\n{self.log_tail()}")

    @property
    def pid(self) -> int | None:
        """Its process id while it runs."""
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def leading(self) -> bool | None:
        """Whether it leads, from its `processcontrol_leader` metric (None: it does not answer)."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("processcontrol_leader "):
                return float(line.split()[1]) == 1.0
        return None

    def wait_leading(self, timeout: float = 60.0) -> None:
        """Until it leads (the Lease is free, its own, or expired)."""
        deadline = time.monotonic() + timeout
        while not self.leading():
            if self.process is None or self.process.poll() is not None:
                raise HarnessError(f"the operator exited while standing for leader:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"the operator did not lead within {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Stop it (SIGKILL after the timeout); a no-op when it is not running."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        self.stop(signal.SIGKILL)

    def lost_its_lease(self, since: int = 0) -> bool:
        """It exited as a leader does that could not renew its Lease (an API outage past the renew deadline, as
        controller-runtime's do), which the kubelet would start again; False while it runs, or when it exited
        otherwise (a crash). `since`: the log offset to read from (reliability.log_offset)."""
        if self.process is None or self.process.poll() is None or not self.log_path.exists():
            return False
        log = self.log_path.read_bytes()[since:].decode(errors="replace")
        return "leadership lost: could not renew the Lease" in log

    def log_tail(self, lines: int = 60) -> str:
        """The end of its log, for failure messages."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_soak_operator(log_name: str) -> OperatorProcess:
    """For a soak or another long run on its own: the control plane up, `deploy/` installed, and the operator as
    in the e2e tests (its ServiceAccount, the e2e settings), logging to `<state>/logs/<log_name>`."""
    ensure_control_plane()
    install()
    return OperatorProcess(
        service_account_kubeconfig(), env=E2E_OPERATOR_ENV, log_path=state_dir() / "logs" / log_name
    ).start()
