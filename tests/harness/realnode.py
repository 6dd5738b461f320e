#!/usr/bin/env python3
"""A real node joined to the local control plane: kubelet, Debian's containerd with runc, the CNI bridge, kube-proxy
(iptables mode) and kube-scheduler, next to kwok's fake node.

    python -m harness.realnode up [--image ARCHIVE]...   control plane (on the bridge address) + the node; import images
    python -m harness.realnode down                      stop everything and remove what it made
    python -m harness.realnode status

Pods reach the API server through the in-cluster `kubernetes` Service: the bridge `pcn0` carries 10.88.7.1/24, the
API server listens and advertises there (harness.controlplane, PROCESSCONTROL_APISERVER_ADDRESS), kube-proxy maps
10.96.0.1:443 to it, and the kubelet serves exec and logs on it. Binaries come from hack/build-node.sh's cache; the
sandbox image from harness.images. State lives in $PROCESSCONTROL_STATE/node (containerd root and state, kubelet
root, CNI configuration and IPAM, logs). One real node per machine: the bridge and the KUBE-* iptables chains are
the machine's; `up` cleans what a killed run left, `down` leaves no process, mount, netns, chain, bridge or cgroup.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import controlplane
from harness.base import (
    ControlPlaneError,
    ProcessRecord,
    Progress,
    cache_dir,
    free_ports,
    kubectl,
    log_tail,
    mount_points_under,
    spawn,
    state_dir,
    stop_group,
)
from harness.controlplane import K8S_VERSION

NODE_NAME = "real-node-0"
NODE_LABEL = "processcontrol.dev/real-node"
BRIDGE = "pcn0"
GATEWAY = "10.88.7.1"
SUBNET = "10.88.7.0/24"
CNI_BIN = Path("/usr/lib/cni")
PAUSE_REF = "docker.io/local/pause:dev"
# Where containerd's CRI plugin (1.6) mounts pod network namespaces; not configurable there.
NETNS_DIR = Path("/var/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Start order; stopped in reverse (the kubelet before containerd, so it does not recreate what we remove).
COMPONENTS = ("containerd", "kubelet", "kube-proxy", "kube-scheduler")
# A machine-wide claim on the bridge and the KUBE-* chains, naming the state directory that holds them.
OWNER_FILE = Path("/run/processcontrol-realnode.owner")
# The node's host tools and the Debian package of each (hack/deps.sh's node group installs them all).
HOST_TOOLS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "ip": "iproute2",
    "conntrack": "conntrack",
    "mount": "mount",
    "umount": "mount",
}
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")


class NodeError(Exception):
    """The node cannot start; the message is one line naming the cause."""


PROGRESS = Progress("realnode")
log = PROGRESS.log
step = PROGRESS.step


def binary(name: str) -> Path:
    """kubelet, kube-proxy, kube-scheduler from hack/build-node.sh."""
    return cache_dir() / f"k8s-{K8S_VERSION}" / "bin" / name


def teardown(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str] | None:
    """Run a host tool to remove something, unchecked; None when the tool is not installed: then the node never ran
    here and there is nothing of its kind to remove."""
    if shutil.which(argv[0]) is None:
        return None
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a host tool; with check, raise NodeError with its message on failure."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise NodeError(f"{' '.join(argv)}: {message[-1] if message else f'exit {result.returncode}'}")
    return result


@dataclass
class NodePorts:
    """Ports of this node's servers (all on loopback except the kubelet's, which the API server dials)."""

    kubelet: int
    kubelet_healthz: int
    proxy_healthz: int
    proxy_metrics: int
    scheduler: int


def unmount_under(root: Path) -> int:
    """Unmount every mount point at or below root, deepest first (lazily when busy); return how many."""
    count = 0
    for _ in range(5):
        points = mount_points_under(root)
        if not points:
            break
        for point in sorted(set(points), key=len, reverse=True):
            done = teardown("umount", point)
            if done is not None and done.returncode != 0:
                teardown("umount", "-l", point)
            count += 1
    return count


class RealNode:
    """The node's processes and host objects, rooted at <state>/node."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.root = state / "node"
        self.logs = self.root / "logs"
        self.pids = self.root / "pids"
        self.containerd_root = self.root / "containerd"
        self.sock = self.root / "containerd" / "containerd.sock"
        self.kubelet_root = self.root / "kubelet"
        self.cni_conf = self.root / "cni" / "net.d"
        self.pod_logs = self.root / "pod-logs"
        self.ports_file = self.root / "ports.json"

    # -- helpers --

    def pid_file(self, component: str) -> Path:
        """Pid file of a component."""
        return self.pids / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        """Log file of a component."""
        return self.logs / f"{component}.log"

    def ports(self) -> NodePorts | None:
        """The ports of the running node."""
        try:
            return NodePorts(**json.loads(self.ports_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """ctr against this node's containerd, in the CRI namespace."""
        return sh("ctr", f"--address={self.sock}", "--namespace=k8s.io", *args, check=check, timeout=timeout)

    def wait(self, component: str, check: Callable[[], bool], timeout: float) -> None:
        """Poll until check() holds; fail with the component's last log line when it died or timed out."""
        record = ProcessRecord.read(self.pid_file(component))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if record is not None and not record.alive():
                raise NodeError(f"{component} exited at start: {self.last_error(component)}")
            with contextlib.suppress(OSError, subprocess.SubprocessError, NodeError, ControlPlaneError):
                if check():
                    return
            time.sleep(0.3)
        raise NodeError(f"{component} not ready after {timeout:.0f}s: {self.last_error(component)}")

    def last_error(self, component: str) -> str:
        """The most telling line of a component's log: the last error, else the last line."""
        lines = log_tail(self.log_file(component), 200).splitlines()
        for line in reversed(lines):
            if re.search(r"\b(E\d{4}|level=(error|fatal)|error|failed|Error)\b", line):
                return line.strip()[:400]
        return lines[-1].strip()[:400] if lines else "(no log)"

    # -- up --

    def up(self, archives: list[Path]) -> None:
        """Start the control plane on the bridge address and the node; raise NodeError on failure."""
        self.preflight()
        self.clean_stale()
        start = time.monotonic()
        OWNER_FILE.write_text(f"{self.state}\n")
        with step(f"bridge {BRIDGE} {GATEWAY}/24"):
            sh("ip", "link", "add", BRIDGE, "type", "bridge")
            sh("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
            sh("ip", "link", "set", BRIDGE, "up")
        self.start_control_plane()
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        ports = NodePorts(*free_ports(5))
        self.ports_file.write_text(json.dumps(asdict(ports)))
        self.start_containerd()
        self.import_images([Path(a) for a in archives])
        self.write_cni()
        self.start_kubelet(ports)
        self.start_kube_proxy(ports)
        self.start_scheduler(ports)
        log(f"node {NODE_NAME} up in {time.monotonic() - start:.1f}s (state {self.root})")

    def preflight(self) -> None:
        """What the node needs, each missing piece named: the machine's part, then the binaries built for it."""
        self.check_host()
        absent = [str(binary(b)) for b in ("kubelet", "kube-proxy", "kube-scheduler") if not binary(b).exists()]
        if absent:
            raise NodeError(f"missing binaries {absent}: run hack/build-node.sh")

    def check_host(self) -> None:
        """What the node needs from the machine, all missing packages in one message: before anything is built."""
        if os.geteuid() != 0:
            raise NodeError("must run as root (containerd, mounts, iptables, bridge)")
        packages = {package for tool, package in HOST_TOOLS.items() if shutil.which(tool) is None}
        if any(not (CNI_BIN / plugin).exists() for plugin in CNI_PLUGINS):
            packages.add("containernetworking-plugins")
        if packages:
            raise NodeError(
                f"missing Debian packages {' '.join(sorted(packages))}: make deps-node installs them "
                f"(apt-get install -y {' '.join(sorted(packages))})"
            )
        if not (CGROUP_ROOT / "memory").is_dir() and not (CGROUP_ROOT / "cgroup.controllers").exists():
            raise NodeError(f"no cgroup hierarchy at {CGROUP_ROOT}")
        if not Path("/proc/filesystems").read_text().count("overlay"):
            raise NodeError("the kernel has no overlay filesystem (containerd's overlayfs snapshotter needs it)")
        owner = OWNER_FILE.read_text().strip() if OWNER_FILE.exists() else ""
        if owner and Path(owner) != self.state:
            other = RealNode(Path(owner))
            if any(r is not None and r.alive() for r in other.records().values()):
                raise NodeError(f"another real node runs on this machine (state {owner}): stop it first")

    def records(self) -> dict[str, ProcessRecord | None]:
        """The recorded process of each component."""
        return {c: ProcessRecord.read(self.pid_file(c)) for c in COMPONENTS}

    def clean_stale(self) -> None:
        """Whatever a killed run (ours or another state dir's) left: processes, mounts, chains, bridge."""
        owner = OWNER_FILE.read_text().strip() if OWNER_FILE.exists() else ""
        leftovers = (
            self.root.exists()
            or Path(f"/sys/class/net/{BRIDGE}").exists()
            or (owner != "" and Path(owner) != self.state)
        )
        if not leftovers:
            return
        with step("cleaning up a previous run"):
            if owner and Path(owner) != self.state:
                RealNode(Path(owner)).down(quiet=True, control_plane=False)
            self.down(quiet=True, control_plane=False)

    def start_control_plane(self) -> None:
        """A fresh control plane on the gateway address: objects of an earlier run (pods bound to this node name)
        would otherwise come back to life on the new kubelet."""
        cp = controlplane.ControlPlane(self.state)
        if any(cp.component_states().values()):
            log("restarting the running control plane with fresh state")
            cp.down(quiet=True)
        os.environ[controlplane.APISERVER_ADDRESS_ENV] = GATEWAY
        if cp.up() != 0:
            raise NodeError(f"the control plane did not start (logs in {cp.logs})")

    def start_containerd(self) -> None:
        """Debian's containerd with its CRI plugin, private socket and directories, runc as the runtime."""
        root = self.containerd_root
        config = f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = "{root / "debug.sock"}"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_REF}"
  # This VM refuses to lower oom_score_adj, even for root; without this every sandbox fails in runc.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.cni_conf}"
    max_conf_num = 1
[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"
"""
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.toml").write_text(config)
        with step(f"containerd {self.containerd_version()} (CRI, runc) on {self.sock}"):
            spawn(
                ["containerd", f"--config={root / 'config.toml'}"],
                self.log_file("containerd"),
                self.pid_file("containerd"),
            )
            self.wait("containerd", lambda: self.ctr("version", timeout=5).returncode == 0, timeout=30)

    @staticmethod
    def containerd_version() -> str:
        """containerd's version line."""
        return sh("containerd", "--version").stdout.split()[-1]

    def import_images(self, archives: list[Path]) -> None:
        """Import `docker save` archives (the pause image must be among them)."""
        for archive in archives:
            with step(f"import {archive.name}"):
                self.ctr("images", "import", str(archive), timeout=300)
        refs = self.ctr("images", "ls", "-q").stdout.split()
        if PAUSE_REF not in refs:
            raise NodeError(f"no sandbox image {PAUSE_REF} in containerd: pass its archive (harness.images)")

    def write_cni(self) -> None:
        """The bridge network: an existing bridge (ours, with the gateway address) and host-local IPAM in our state."""
        self.cni_conf.mkdir(parents=True, exist_ok=True)
        conflist = {
            "cniVersion": "0.4.0",
            "name": "processcontrol",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.root / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.cni_conf / "10-processcontrol.conflist").write_text(json.dumps(conflist, indent=2))

    def start_kubelet(self, ports: NodePorts) -> None:
        """The kubelet: cgroupfs, no swap check, serving on the gateway address for exec and logs."""
        pki = self.state / "pki"
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": GATEWAY,
            "port": ports.kubelet,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": ports.kubelet_healthz,
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{self.sock}",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "tlsCertFile": str(pki / "admin.crt"),
            "tlsPrivateKeyFile": str(pki / "admin.key"),
            # The image filesystem is not recognised here; evicting on it would evict everything.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "maxPods": 250,
            "serializeImagePulls": False,
            "resolvConf": "/etc/resolv.conf",
            "staticPodPath": "",
            "registerNode": True,
            # Container logs in our state, not /var/log/pods (the kubelet still links them from /var/log/containers).
            "podLogsDir": str(self.pod_logs),
            "syncFrequency": "10s",
            "nodeStatusReportFrequency": "10s",
        }
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        config_path = self.root / "kubelet.yaml"
        config_path.write_text(json.dumps(config, indent=2))
        argv = [
            str(binary("kubelet")),
            f"--config={config_path}",
            f"--kubeconfig={self.state / 'kubeconfig'}",
            f"--root-dir={self.kubelet_root}",
            f"--cert-dir={self.kubelet_root / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={GATEWAY}",
            f"--node-labels={NODE_LABEL}=true",
            "--v=1",
        ]
        with step(f"kubelet {K8S_VERSION} as node {NODE_NAME} (serving on {GATEWAY}:{ports.kubelet})"):
            spawn(argv, self.log_file("kubelet"), self.pid_file("kubelet"))
            # Its own health endpoint first: a node object left Ready by an earlier kubelet proves nothing.
            healthz = f"http://127.0.0.1:{ports.kubelet_healthz}/healthz"
            self.wait("kubelet", lambda: controlplane.http_get(healthz, timeout=2)[0] == 200, timeout=90)
            self.wait("kubelet", lambda: self.node_condition("Ready") == "True", timeout=90)
            # kube-controller-manager runs without the node lifecycle controller (see controlplane.py), which would
            # otherwise lift the not-ready taint the kubelet registers with.
            kubectl("taint", "node", NODE_NAME, "node.kubernetes.io/not-ready:NoSchedule-", check=False)

    def node_condition(self, kind: str) -> str:
        """The status of one of the node's conditions ('' while unknown)."""
        path = f"jsonpath={{.status.conditions[?(@.type=='{kind}')].status}}"
        return kubectl("get", "node", NODE_NAME, "-o", path, check=False, timeout=10).stdout.strip()

    def start_kube_proxy(self, ports: NodePorts) -> None:
        """kube-proxy in iptables mode: the `kubernetes` Service -> the gateway address. Touches no sysctl."""
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.state / "kubeconfig")},
            "mode": "iptables",
            "clusterCIDR": SUBNET,
            "hostnameOverride": NODE_NAME,
            "bindAddress": GATEWAY,
            "healthzBindAddress": f"127.0.0.1:{ports.proxy_healthz}",
            "metricsBindAddress": f"127.0.0.1:{ports.proxy_metrics}",
            "nodePortAddresses": [f"{GATEWAY}/32"],
            # 0: leave the machine's conntrack table size and timeouts as they are.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            # No route_localnet sysctl for NodePorts on 127.0.0.1.
            "iptables": {"localhostNodePorts": False},
        }
        config_path = self.root / "kube-proxy.yaml"
        config_path.write_text(json.dumps(config, indent=2))
        with step("kube-proxy (iptables): default/kubernetes -> API server"):
            spawn(
                [str(binary("kube-proxy")), f"--config={config_path}", "--v=1"],
                self.log_file("kube-proxy"),
                self.pid_file("kube-proxy"),
            )
            self.wait(
                "kube-proxy",
                lambda: "default/kubernetes" in sh("iptables", "-w", "-t", "nat", "-S", "KUBE-SERVICES").stdout,
                timeout=60,
            )

    def start_scheduler(self, ports: NodePorts) -> None:
        """kube-scheduler: deploy/'s Deployment and the workloads' StatefulSets name no node."""
        kubeconfig = str(self.state / "kubeconfig")
        argv = [
            str(binary("kube-scheduler")),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.scheduler}",
            "--leader-elect=false",
        ]
        with step("kube-scheduler"):
            spawn(argv, self.log_file("kube-scheduler"), self.pid_file("kube-scheduler"))
            url = f"https://127.0.0.1:{ports.scheduler}/healthz"
            self.wait("kube-scheduler", lambda: controlplane.https_get(url, None)[0] == 200, timeout=60)

    # -- down --

    def down(self, quiet: bool = False, control_plane: bool = True) -> None:
        """Stop the node and remove everything it made; then (by default) the control plane."""
        start = time.monotonic()
        owner = OWNER_FILE.read_text().strip() if OWNER_FILE.exists() else ""
        # The bridge and the chains are the machine's: leave them to a live node of another state directory.
        machine_wide = owner in ("", str(self.state))
        netns = self.sandbox_netns()
        for component in ("kube-scheduler", "kube-proxy", "kubelet"):
            self.stop(component, quiet)
        # The kubelet's pod cgroups (/kubepods) are per machine too.
        killed = self.kill_containers() if machine_wide else 0
        self.stop_shims()
        self.stop(component="containerd", quiet=quiet)
        # With containerd gone (a killed run), the pods' namespaces are known only as unused CNI namespaces.
        netns = sorted(set(netns) | set(self.orphan_netns()))
        for ns in netns:
            teardown("umount", str(ns))
            ns.unlink(missing_ok=True)
        unmounted = unmount_under(self.root) if self.root.exists() else 0
        remove_log_links(self.pod_logs)
        chains = 0
        if machine_wide:
            if binary("kube-proxy").exists():
                # kube-proxy's own clean-up of its rules (all modes); remove_chains() then takes the kubelet's.
                subprocess.run([str(binary("kube-proxy")), "--cleanup"], capture_output=True, timeout=60, check=False)
            chains = remove_chains()
            self.remove_cgroups()
            if Path(f"/sys/class/net/{BRIDGE}").exists():
                teardown("ip", "link", "delete", BRIDGE)
        if self.root.exists():
            keep = self.state / "node-logs.prev"
            shutil.rmtree(keep, ignore_errors=True)
            if self.logs.exists():
                shutil.move(self.logs, keep)
            shutil.rmtree(self.root, ignore_errors=True)
        if OWNER_FILE.exists() and OWNER_FILE.read_text().strip() == str(self.state):
            OWNER_FILE.unlink()
        if not quiet:
            log(
                f"node down in {time.monotonic() - start:.1f}s: {killed} container process(es) killed, "
                f"{len(netns)} netns, {unmounted} mount(s), {chains} iptables chain(s) removed"
            )
        if control_plane:
            controlplane.ControlPlane(self.state).down(quiet=quiet)

    def stop(self, component: str, quiet: bool) -> None:
        """Stop a component's process group."""
        record = ProcessRecord.read(self.pid_file(component))
        if record is None:
            return
        running = record.alive()
        stop_group(record, timeout=15)
        self.pid_file(component).unlink(missing_ok=True)
        if running and not quiet:
            log(f"stopped {component} (pid {record.pid})")

    def sandbox_netns(self) -> list[Path]:
        """The network namespaces containerd made for our pods (asked while it still runs)."""
        if not self.sock.exists() or shutil.which("ctr") is None:
            return self.orphan_netns()
        found: set[Path] = set()
        result = self.ctr("containers", "ls", "-q", check=False, timeout=20)
        for cid in result.stdout.split():
            info = self.ctr("containers", "info", cid, check=False, timeout=20)
            with contextlib.suppress(ValueError, KeyError, TypeError):
                for ns in json.loads(info.stdout)["Spec"]["linux"]["namespaces"]:
                    if ns.get("type") == "network" and ns.get("path", "").startswith(str(NETNS_DIR) + "/"):
                        found.add(Path(ns["path"]))
        return sorted(found | set(self.orphan_netns()))

    def orphan_netns(self) -> list[Path]:
        """CNI namespaces (containerd's `cni-<uuid>` mounts) that no process uses any more: left by a killed
        containerd or by containers killed in down(). This machine runs no other CNI runtime."""
        if not NETNS_DIR.is_dir():
            return []
        held = set()
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError):
                    held.add(os.stat(proc / "ns" / "net").st_ino)
        orphans = []
        for ns in NETNS_DIR.glob("cni-*"):
            with contextlib.suppress(OSError):
                if os.stat(ns).st_ino not in held:
                    orphans.append(ns)
        return orphans

    def kill_containers(self) -> int:
        """SIGKILL every process in the kubelet's pod cgroups (the containers and their sandboxes)."""
        killed = 0
        for _ in range(10):
            pids = set()
            for controller in ("pids", "memory", "cpu", "freezer"):
                # os.walk, not rglob: cgroups vanish while we walk (the kubelet and runc remove them).
                for dirpath, _dirs, _files in os.walk(CGROUP_ROOT / controller / "kubepods"):
                    with contextlib.suppress(OSError, ValueError):
                        pids |= {int(p) for p in (Path(dirpath) / "cgroup.procs").read_text().split()}
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
                    killed += 1
            time.sleep(0.2)
        return killed

    def stop_shims(self) -> None:
        """containerd-shim-runc-v2 processes started by our containerd (their command line names its socket)."""
        needle = str(self.sock)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                if (
                    cmdline
                    and cmdline[0].endswith(b"containerd-shim-runc-v2")
                    and needle.encode() in b" ".join(cmdline)
                ):
                    os.kill(int(proc.name), 9)

    @staticmethod
    def remove_cgroups() -> None:
        """The kubelet's kubepods hierarchy in every cgroup v1 controller, deepest first (all are empty now)."""
        for controller in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else []:
            top = controller / "kubepods"
            if not top.is_dir() or top.is_symlink():
                continue
            # Bottom-up: a cgroup directory can only be removed once its children are.
            for dirpath, _dirs, _files in os.walk(top, topdown=False):
                with contextlib.suppress(OSError):
                    Path(dirpath).rmdir()

    # -- status --

    def status(self) -> int:
        """Each component's state and the node's Ready condition."""
        ok = True
        for component, record in self.records().items():
            running = record is not None and record.alive()
            ok &= running
            print(
                f"{component:<24} {'running' if running else 'stopped':<8} {record.pid if running and record else '-'}"
            )
        ready = self.node_condition("Ready") if ok else ""
        print(f"{'node ' + NODE_NAME:<24} {'Ready' if ready == 'True' else 'not ready'}")
        return 0 if ok and ready == "True" else 1


def remove_log_links(pod_logs: Path) -> None:
    """The kubelet's /var/log/containers links into our pod logs (and ones left dangling by a removed state)."""
    links = Path("/var/log/containers")
    for link in links.glob("*.log") if links.is_dir() else []:
        with contextlib.suppress(OSError):
            target = os.readlink(link)
            if target.startswith(str(pod_logs) + "/") or not os.path.exists(link):
                link.unlink()
    # The kubelet creates the directory; gone again when nothing else logs there.
    with contextlib.suppress(OSError):
        links.rmdir()


def remove_chains() -> int:
    """kube-proxy's, the kubelet's and CNI portmap's chains (KUBE-*, CNI-HOSTPORT-*, CNI-DN-*), IPv4 and IPv6:
    the jumps to them first, then the chains. No other chain of the machine is touched."""
    pattern = re.compile(r"^(KUBE-|CNI-HOSTPORT-|CNI-DN-)")
    removed = 0
    for tool in ("iptables", "ip6tables"):
        for table in ("nat", "filter", "mangle"):
            result = teardown(tool, "-w", "-t", table, "-S")
            if result is None or result.returncode != 0:
                continue
            ours = []
            for line in result.stdout.splitlines():
                # Rules carry quoted comments ("kubernetes service portals"): split as the shell would.
                parts = shlex.split(line)
                if line.startswith("-N ") and pattern.match(parts[1]):
                    ours.append(parts[1])
                elif line.startswith("-A ") and not pattern.match(parts[1]) and "-j" in parts:
                    target = parts[parts.index("-j") + 1]
                    if pattern.match(target):
                        teardown(tool, "-w", "-t", table, "-D", *parts[1:])
            for chain in ours:
                teardown(tool, "-w", "-t", table, "-F", chain)
            for chain in ours:
                done = teardown(tool, "-w", "-t", table, "-X", chain)
                if done is not None and done.returncode == 0:
                    removed += 1
    return removed


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="realnode.py", description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the control plane on the bridge address and the real node")
    up.add_argument("--image", action="append", default=[], help="a `docker save` archive to import (repeatable)")
    sub.add_parser("down", help="stop the node and the control plane; remove everything the node made")
    sub.add_parser("status", help="what runs; exit 0 when the node is Ready")
    args = parser.parse_args(argv)
    node = RealNode(state_dir())
    if args.command == "status":
        return node.status()
    if args.command == "down":
        node.down()
        return 0
    try:
        node.up([Path(a) for a in args.image])
    except (NodeError, ControlPlaneError, OSError, subprocess.SubprocessError) as exc:
        log(f"FAILED: {exc}")
        log("stopping what was started")
        node.down(quiet=True)
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
