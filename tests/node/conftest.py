"""The real-node tier: a kubelet with Debian's containerd and runc joined to the local control plane
(tests/harness/realnode.py), images built here (tests/harness/images.py), the operator installed from deploy/ through
hack/realnode-overlay (only the image differs) and running as a pod. Nothing is faked, nothing skipped: a component
that cannot start fails the session with its own one-line cause.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from harness import images, realnode
from harness.base import ROOT, state_dir

from .node_helpers import install_operator

# Its own control plane and node state, apart from the kwok tier's and the demos'.
os.environ.setdefault("PROCESSCONTROL_STATE", "/tmp/processcontrol-node")


@pytest.fixture(scope="session")
def real_node() -> Iterator[realnode.RealNode]:
    """Binaries and images (cached), then the control plane and the node; all of it stopped at the end."""
    node = realnode.RealNode(state_dir())
    try:
        node.check_host()
    except realnode.NodeError as exc:
        pytest.fail(f"real node: {exc}", pytrace=False)
    subprocess.run(["bash", str(ROOT / "hack" / "build-node.sh")], check=True)
    try:
        built = images.ensure()
    except images.ImageError as exc:
        pytest.fail(f"images: {exc}", pytrace=False)
    try:
        node.up([built[name].archive for name in ("pause", "operator", "workload")])
    except realnode.NodeError as exc:
        node.down(quiet=True)
        pytest.fail(f"real node: {exc}", pytrace=False)
    yield node
    if os.environ.get("PROCESSCONTROL_KEEP") != "1":
        node.down()


@pytest.fixture(scope="session")
def operator_pod(real_node: realnode.RealNode) -> str:
    """`kubectl apply -k hack/realnode-overlay` (deploy/ with the local image); the name of the Ready pod."""
    return install_operator()
