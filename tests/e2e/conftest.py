"""The real local control plane for the e2e tests: etcd, kube-apiserver, kube-controller-manager and kwok,
built from the Go module proxy (hack/build-controlplane.sh), `deploy/` installed with kubectl, and the operator
running as its own process with the ServiceAccount token and RBAC from `deploy/`.

Nothing here is faked: a missing component fails the session with the component's own message.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The e2e run owns its own control plane, apart from `make demo`'s.
os.environ.setdefault("PROCESSCONTROL_STATE", "/tmp/processcontrol-e2e")
sys.path.insert(0, str(ROOT / "hack"))

import controlplane  # noqa: E402
import fakepods  # noqa: E402
import harness  # noqa: E402
from e2e_helpers import Cluster  # noqa: E402

# Short intervals so that drift, retries and expiry show within a test's patience.
OPERATOR_ENV = {
    "PROCESSCONTROL_REVERIFY_INTERVAL_S": "5",
    "PROCESSCONTROL_FAILURE_BACKOFF_S": "2",
    "PROCESSCONTROL_VERIFY_TIMEOUT_S": "20",
    "PROCESSCONTROL_EXEC_TIMEOUT_S": "10",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[Path]:
    """Build (cached) and start the control plane; stop it at the end unless PROCESSCONTROL_KEEP=1."""
    kubeconfig = harness.ensure_control_plane()
    harness.install()
    yield kubeconfig
    fakepods.stop_all_host_processes()
    if os.environ.get("PROCESSCONTROL_KEEP") != "1":
        controlplane.main(["down"])


@pytest.fixture(scope="session")
def operator(control_plane: Path) -> Iterator[harness.OperatorProcess]:
    """The operator, authenticated as its own ServiceAccount."""
    process = harness.OperatorProcess(harness.service_account_kubeconfig(), env=OPERATOR_ENV).start()
    yield process
    process.stop()


@pytest.fixture
def cluster(request: pytest.FixtureRequest, operator: harness.OperatorProcess) -> Iterator[Cluster]:
    """A fresh namespace per test; its suspensions are deleted (and so resumed) and its pods removed after."""
    short = request.node.name.removeprefix("test_").replace("_", "-")[:30].strip("-")
    namespace = f"e2e-{short}-{uuid.uuid4().hex[:5]}"
    fakepods.ensure_namespace(namespace)
    yield Cluster(namespace, operator)
    fakepods.kubectl("delete", "psus", "--all", "-n", namespace, "--timeout=60s", check=False)
    for pod in fakepods.kubectl("get", "pods", "-n", namespace, "-o", "name", check=False).stdout.split():
        fakepods.stop_pod_processes(namespace, pod.removeprefix("pod/"))
    fakepods.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
