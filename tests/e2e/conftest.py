"""The real local control plane for the e2e tests: etcd, kube-apiserver, kube-controller-manager and kwok,
built from the Go module proxy (hack/build-controlplane.sh), `deploy/` installed with kubectl, and the operator
running as its own process with the ServiceAccount token and RBAC from `deploy/`.

Nothing here is faked: a missing component fails the session with the component's own message.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import controlplane, fakepods
from harness.base import kubectl
from harness.cluster import Cluster
from harness.operator import (
    E2E_OPERATOR_ENV,
    OperatorProcess,
    ensure_control_plane,
    install,
    service_account_kubeconfig,
)

# The e2e run owns its own control plane, apart from `make demo`'s (the harness reads it when called, not imported).
os.environ.setdefault("PROCESSCONTROL_STATE", "/tmp/processcontrol-e2e")


@pytest.fixture(scope="session")
def control_plane() -> Iterator[Path]:
    """Build (cached) and start the control plane; stop it at the end unless PROCESSCONTROL_KEEP=1."""
    kubeconfig = ensure_control_plane()
    install()
    yield kubeconfig
    fakepods.stop_all_host_processes()
    if os.environ.get("PROCESSCONTROL_KEEP") != "1":
        controlplane.main(["down"])


@pytest.fixture(scope="session")
def operator(control_plane: Path) -> Iterator[OperatorProcess]:
    """The operator, authenticated as its own ServiceAccount."""
    process = OperatorProcess(service_account_kubeconfig(), env=E2E_OPERATOR_ENV).start()
    # Alone, it leads at once (or once a Lease left by an earlier run's operator has expired).
    process.wait_leading()
    yield process
    process.stop()


@pytest.fixture
def cluster(request: pytest.FixtureRequest, operator: OperatorProcess) -> Iterator[Cluster]:
    """A fresh namespace per test; its suspensions are deleted (and so resumed) and its pods removed after."""
    short = request.node.name.removeprefix("test_").replace("_", "-")[:30].strip("-")
    namespace = f"e2e-{short}-{uuid.uuid4().hex[:5]}"
    fakepods.ensure_namespace(namespace)
    yield Cluster(namespace, operator)
    kubectl("delete", "psus", "--all", "-n", namespace, "--timeout=60s", check=False)
    for pod in kubectl("get", "pods", "-n", namespace, "-o", "name", check=False).stdout.split():
        fakepods.stop_pod_processes(namespace, pod.removeprefix("pod/"))
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)
