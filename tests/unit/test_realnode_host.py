"""The real node's checks and teardown on a machine without its tools: the check names every missing package at
once, before anything is built; `down` with nothing to tear down succeeds and removes the state directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import realnode

ROOT = Path(__file__).resolve().parents[2]


def bare_env(tmp_path: Path) -> dict[str, str]:
    """No host tool on PATH, an empty cache (no kube-proxy to run --cleanup), the state under tmp_path."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    return {
        **os.environ,
        "PATH": str(tmp_path / "bin"),
        "PROCESSCONTROL_CACHE": str(tmp_path / "cache"),
        "PROCESSCONTROL_STATE": str(tmp_path / "state"),
    }


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_check_host_names_every_missing_package_in_one_line(tmp_path: Path) -> None:
    done = python(
        "from pathlib import Path; from harness import realnode\n"
        "try:\n    realnode.RealNode(Path('/nonexistent')).check_host()\n"
        "except realnode.NodeError as exc:\n    print(exc)\n",
        bare_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    if os.geteuid() != 0:
        assert line == "must run as root (containerd, mounts, iptables, bridge)"
        return
    packages = set(realnode.HOST_TOOLS.values())
    if not all((realnode.CNI_BIN / plugin).exists() for plugin in realnode.CNI_PLUGINS):
        packages.add("containernetworking-plugins")
    names = " ".join(sorted(packages))
    assert line == f"missing Debian packages {names}: make deps-node installs them (apt-get install -y {names})"


@pytest.mark.parametrize("leftovers", [False, True], ids=["nothing-there", "a-stopped-node's-state"])
def test_demo_node_down_without_the_tools_succeeds_and_removes_the_state(tmp_path: Path, leftovers: bool) -> None:
    state = tmp_path / "state"
    if leftovers:
        for path in ("kubeconfig", "pids/etcd.pid", "node/logs/kubelet.log", "node-logs.prev/kubelet.log"):
            (state / path).parent.mkdir(parents=True, exist_ok=True)
            (state / path).write_text("left by an earlier run\n")
        (tmp_path / "state-logs.prev").mkdir()
    done = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "demo_node.py"), "down"],
        env=bare_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert not state.exists()
    assert not (tmp_path / "state-logs.prev").exists()
    assert ("removed " in done.stdout) == leftovers
