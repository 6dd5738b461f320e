#!/usr/bin/env python3
"""Start, stop and inspect a real local Kubernetes control plane on 127.0.0.1, with kwok as the kubelet.

Components: etcd, kube-apiserver (RBAC), kube-controller-manager and kwok (which answers `kubectl exec` by running
the command on this host, see tests/harness/fakepods.py). Binaries come from hack/build-controlplane.sh's cache.

    python -m harness.controlplane up|down|status|env

State (certificates, etcd data, logs, pids, kubeconfig) lives in ${PROCESSCONTROL_STATE:-/tmp/processcontrol-cp}.
There is no scheduler: pods must set spec.nodeName (kwok-node-0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from harness import fakepods
from harness.base import (
    ControlPlaneError,
    ProcessRecord,
    Progress,
    cache_dir,
    free_ports,
    kubeconfig_path,
    kubectl,
    log_tail,
    mount_points_under,
    spawn,
    state_dir,
    stop_group,
    wait_until,
)
from harness.fakepods import NODE_NAME

K8S_VERSION = os.environ.get("K8S_VERSION", "v1.33.13")
ETCD_VERSION = os.environ.get("ETCD_VERSION", "v3.5.35")
KWOK_VERSION = os.environ.get("KWOK_VERSION", "v0.7.0")
# Patch level of our kwok build (exit codes and stdin EOF of local exec; see hack/build-controlplane.sh).
KWOK_PATCH = "pc1"

SERVICE_CIDR = "10.96.0.0/12"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Where kube-apiserver listens and what it advertises (the `kubernetes` Service's endpoint). Loopback by default; the
# real node (tests/harness/realnode.py) sets its bridge's gateway address, the one address both host and pods can reach.
APISERVER_ADDRESS_ENV = "PROCESSCONTROL_APISERVER_ADDRESS"
# Start order; stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kwok")


def binary(name: str) -> Path:
    """Path of a control plane binary in the build cache."""
    cache = cache_dir()
    return {
        "etcd": cache / f"etcd-{ETCD_VERSION}" / "bin" / "etcd",
        "kube-apiserver": cache / f"k8s-{K8S_VERSION}" / "bin" / "kube-apiserver",
        "kube-controller-manager": cache / f"k8s-{K8S_VERSION}" / "bin" / "kube-controller-manager",
        "kwok": cache / f"kwok-{KWOK_VERSION}-{KWOK_PATCH}" / "bin" / "kwok",
    }[name]


def kwok_crds() -> list[Path]:
    """The Exec and ClusterExec CRDs copied from the kwok module by the build script."""
    crds = cache_dir() / f"kwok-{KWOK_VERSION}-{KWOK_PATCH}" / "crds"
    return [crds / "kwok.x-k8s.io_execs.yaml", crds / "kwok.x-k8s.io_clusterexecs.yaml"]


@dataclass
class Ports:
    """Loopback ports of one control plane instance."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    kwok: int
    address: str = "127.0.0.1"


PROGRESS = Progress("controlplane")
log = PROGRESS.log
step = PROGRESS.step


# --- certificates and kubeconfig ---------------------------------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    """Run openssl quietly; raise with its output on failure."""
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def make_pki(pki: Path, address: str = "127.0.0.1") -> None:
    """A CA and one admin pair (O=system:masters, serverAuth+clientAuth) used for every TLS endpoint and as SA key."""
    pki.mkdir(parents=True, exist_ok=True)
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=processcontrol-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=pki,
    )
    sans = [
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        f"DNS:{NODE_NAME}",
        "IP:127.0.0.1",
        "IP:0:0:0:0:0:0:0:1",
        "IP:10.96.0.1",
    ]
    if address != "127.0.0.1":
        sans.append(f"IP:{address}")
    (pki / "admin.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        f"subjectAltName={','.join(sans)}\n"
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "admin.key",
        "-out",
        "admin.csr",
        "-subj",
        "/O=system:masters/CN=processcontrol-admin",
        cwd=pki,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "admin.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "admin.crt",
        "-days",
        "3650",
        "-extfile",
        "admin.ext",
        cwd=pki,
    )
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def write_kubeconfig(path: Path, pki: Path, apiserver_port: int, address: str = "127.0.0.1") -> None:
    """A self-contained admin kubeconfig (certificates embedded)."""
    import base64

    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "processcontrol",
                "cluster": {
                    "server": f"https://{address}:{apiserver_port}",
                    "certificate-authority-data": b64("ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": "processcontrol-admin",
                "user": {"client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key")},
            }
        ],
        "contexts": [
            {"name": "processcontrol", "context": {"cluster": "processcontrol", "user": "processcontrol-admin"}}
        ],
        "current-context": "processcontrol",
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)


# --- probes --------------------------------------------------------------------------------------------------------


def https_get(url: str, pki: Path | None, timeout: float = 3.0) -> tuple[int, str]:
    """GET over TLS; with pki: verify against the CA and present the admin certificate, else do not verify."""
    if pki is not None:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    else:
        ctx = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def http_get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    """Plain HTTP GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_ready(component: str, check: Callable[[], bool], timeout: float, record: ProcessRecord | None = None) -> None:
    """Poll check() until true; fail early when the component's process died."""

    def probe() -> bool:
        if record is not None and not record.alive():
            raise ControlPlaneError(f"{component} exited during start-up")
        return check()

    try:
        wait_until(
            probe,
            timeout,
            f"{component} to be ready",
            tolerate=(OSError, ValueError, ssl.SSLError, subprocess.SubprocessError),
        )
    except AssertionError as exc:
        raise ControlPlaneError(str(exc)) from None


# --- the control plane ---------------------------------------------------------------------------------------------


class ControlPlane:
    """One control plane instance rooted at a state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pki = root / "pki"
        self.logs = root / "logs"
        self.pids = root / "pids"
        self.kubeconfig = root / "kubeconfig"
        self.ports_file = root / "ports.json"
        # The previous run's logs, next to the state directory (up() starts it afresh).
        self.prev_logs = root.parent / f"{root.name}-logs.prev"

    def pid_file(self, component: str) -> Path:
        """Pid file of a component."""
        return self.pids / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        """Log file of a component."""
        return self.logs / f"{component}.log"

    def records(self) -> dict[str, ProcessRecord | None]:
        """The recorded process of each component (None when there is none)."""
        return {c: ProcessRecord.read(self.pid_file(c)) for c in COMPONENTS}

    def ports(self) -> Ports | None:
        """The ports of the running instance."""
        try:
            return Ports(**json.loads(self.ports_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def component_states(self) -> dict[str, bool]:
        """Which components run."""
        return {c: r is not None and r.alive() for c, r in self.records().items()}

    def apiserver_ready(self) -> bool:
        """GET /readyz answers ok."""
        ports = self.ports()
        if ports is None:
            return False
        try:
            code, _ = https_get(f"https://{ports.address}:{ports.apiserver}/readyz", self.pki)
        except (OSError, ssl.SSLError):
            return False
        return code == 200

    # -- up --

    def up(self) -> int:
        """Start everything; idempotent."""
        states = self.component_states()
        if all(states.values()) and self.apiserver_ready():
            log(f"already up (state {self.root}); {export_line()}")
            return 0
        if any(states.values()):
            log("partly running: stopping the leftovers first")
            self.down(quiet=True)
        missing = [c for c in COMPONENTS if not binary(c).exists()] + [str(p) for p in kwok_crds() if not p.exists()]
        if missing:
            log(f"missing binaries {missing}: run hack/build-controlplane.sh first")
            return 1
        total = time.monotonic()
        component = "setup"
        try:
            component = "pki"
            self._prepare()
            for component in COMPONENTS:
                getattr(self, "_start_" + component.replace("-", "_"))()
            component = "cluster objects"
            self._bootstrap_objects()
        except (ControlPlaneError, OSError, subprocess.SubprocessError) as exc:
            log(f"FAILED at {component}: {exc}")
            if component in COMPONENTS:
                log(f"last lines of {self.log_file(component)}:")
                print(log_tail(self.log_file(component)), file=sys.stderr, flush=True)
            log("stopping what was started")
            self.down(quiet=True)
            return 1
        log(f"up in {time.monotonic() - total:.1f}s (state {self.root})")
        log(export_line())
        return 0

    def _prepare(self) -> None:
        with step("fresh state directory, certificates and kubeconfig"):
            # Keep the previous logs for post-mortems; everything else starts fresh.
            if self.logs.exists():
                shutil.rmtree(self.prev_logs, ignore_errors=True)
                shutil.move(self.logs, self.prev_logs)
            for child in ("etcd-data", "pki", "pids", "pods", "v", "kubeconfig", "ports.json"):
                path = self.root / child
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
            self.root.mkdir(parents=True, exist_ok=True)
            self.logs.mkdir()
            self.pids.mkdir()
            address = os.environ.get(APISERVER_ADDRESS_ENV, "127.0.0.1")
            make_pki(self.pki, address)
            etcd_client, etcd_peer, apiserver, controller_manager, kwok = free_ports(5)
            ports = Ports(etcd_client, etcd_peer, apiserver, controller_manager, kwok, address)
            self.ports_file.write_text(json.dumps(asdict(ports)))
            write_kubeconfig(self.kubeconfig, self.pki, ports.apiserver, address)

    def _require_ports(self) -> Ports:
        ports = self.ports()
        if ports is None:
            raise ControlPlaneError(f"no {self.ports_file}")
        return ports

    def _start_etcd(self) -> None:
        p = self._require_ports()
        with step(f"etcd {ETCD_VERSION} on 127.0.0.1:{p.etcd_client}"):
            peer = f"http://127.0.0.1:{p.etcd_peer}"
            client = f"http://127.0.0.1:{p.etcd_client}"
            argv = [
                str(binary("etcd")),
                "--name=node0",
                f"--data-dir={self.root / 'etcd-data'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=node0={peer}",
                "--initial-cluster-state=new",
                "--auto-compaction-retention=1",
                "--quota-backend-bytes=4294967296",
                # Throw-away test data: fsync only slows the tests down.
                "--unsafe-no-fsync=true",
            ]
            record = spawn(argv, self.log_file("etcd"), self.pid_file("etcd"))
            wait_ready("etcd", lambda: '"health":"true"' in http_get(f"{client}/health")[1], timeout=30, record=record)

    def _start_kube_apiserver(self) -> None:
        p = self._require_ports()
        with step(f"kube-apiserver {K8S_VERSION} on https://{p.address}:{p.apiserver}"):
            pki = self.pki
            argv = [
                str(binary("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{p.etcd_client}",
                "--etcd-prefix=/registry",
                f"--bind-address={p.address}",
                f"--advertise-address={p.address}",
                f"--secure-port={p.apiserver}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--tls-cert-file={pki / 'admin.crt'}",
                f"--tls-private-key-file={pki / 'admin.key'}",
                f"--service-account-key-file={pki / 'admin.key'}",
                f"--service-account-signing-key-file={pki / 'admin.key'}",
                f"--service-account-issuer={SA_ISSUER}",
                # The fake node has only an InternalIP (127.0.0.1): exec/logs go to kwok's server there.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki / 'admin.crt'}",
                f"--kubelet-client-key={pki / 'admin.key'}",
                "--profiling=false",
            ]
            record = spawn(argv, self.log_file("kube-apiserver"), self.pid_file("kube-apiserver"))
            wait_ready("kube-apiserver", self.apiserver_ready, timeout=120, record=record)

    def _start_kube_controller_manager(self) -> None:
        p = self._require_ports()
        with step(f"kube-controller-manager {K8S_VERSION} (service accounts, tokens, namespaces, GC)"):
            pki = self.pki
            kubeconfig = str(self.kubeconfig)
            argv = [
                str(binary("kube-controller-manager")),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p.controller_manager}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'admin.key'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                # No pod network, no cloud: node IPAM has nothing to allocate. No node lifecycle either: when the
                # fake node's lease renewal lags on a loaded machine, it would mark every pod NotReady, then evict.
                "--controllers=*,-node-ipam-controller,-node-lifecycle-controller",
                "--profiling=false",
            ]
            record = spawn(argv, self.log_file("kube-controller-manager"), self.pid_file("kube-controller-manager"))
            url = f"https://127.0.0.1:{p.controller_manager}/healthz"
            wait_ready("kube-controller-manager", lambda: https_get(url, None)[0] == 200, timeout=60, record=record)

    def _start_kwok(self) -> None:
        p = self._require_ports()
        with step(f"kwok {KWOK_VERSION} (kubelet for its nodes, exec server on https://127.0.0.1:{p.kwok})"):
            args = ["apply", "--server-side", "--force-conflicts"]
            for crd in kwok_crds():
                args += ["-f", str(crd)]
            kubectl(*args)
            kubectl(
                "wait",
                "--for=condition=Established",
                "--timeout=30s",
                "crd/execs.kwok.x-k8s.io",
                "crd/clusterexecs.kwok.x-k8s.io",
            )
            pki = self.pki
            argv = [
                str(binary("kwok")),
                f"--kubeconfig={self.kubeconfig}",
                # Only its own nodes: a real kubelet may join (harness.realnode), and kwok must not take its pods.
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--server-address=127.0.0.1:{p.kwok}",
                f"--node-port={p.kwok}",
                "--node-ip=127.0.0.1",
                "--cidr=10.0.0.1/16",  # pod IPs: room for benchmarks with many pods
                f"--tls-cert-file={pki / 'admin.crt'}",
                f"--tls-private-key-file={pki / 'admin.key'}",
                # Per-pod Exec objects are created while running (tests/harness/fakepods.py): kwok watches them.
                "--enable-crds=Exec,ClusterExec",
            ]
            record = spawn(argv, self.log_file("kwok"), self.pid_file("kwok"))
            url = f"https://127.0.0.1:{p.kwok}/healthz"
            wait_ready("kwok", lambda: https_get(url, None)[0] == 200, timeout=60, record=record)

    def _bootstrap_objects(self) -> None:
        p = self._require_ports()
        with step(f"node {NODE_NAME} (kwok, InternalIP 127.0.0.1, kubelet port {p.kwok})"):
            kubectl("apply", "-f", "-", input_text=json.dumps(node_manifest(p.kwok)))
            record = ProcessRecord.read(self.pid_file("kwok"))
            wait_ready(
                "kwok",
                lambda: (
                    kubectl(
                        "get", "node", NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
                    ).stdout
                    == "True"
                ),
                timeout=60,
                record=record,
            )
            endpoint = kubectl(
                "get", "node", NODE_NAME, "-o", "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}"
            )
            if endpoint.stdout.strip() != str(p.kwok):
                raise ControlPlaneError(f"node kubelet port is {endpoint.stdout!r}, expected {p.kwok}")
        with step("service account default/default (kube-controller-manager works)"):
            record = ProcessRecord.read(self.pid_file("kube-controller-manager"))
            wait_ready(
                "kube-controller-manager",
                lambda: kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
                timeout=60,
                record=record,
            )

    # -- down --

    def down(self, quiet: bool = False) -> int:
        """Stop every process (fake pods first, then the control plane in reverse order); leave nothing behind."""
        total = time.monotonic()
        # The fake pods' host processes (containerrun ...) belong to this state dir too.
        stopped = fakepods.stop_all_host_processes(self.root)
        if stopped and not quiet:
            log(f"stopped {stopped} fake pod process group(s)")
        for component in reversed(COMPONENTS):
            record = ProcessRecord.read(self.pid_file(component))
            if record is None:
                continue
            start = time.monotonic()
            running = record.alive()
            stop_group(record)
            self.pid_file(component).unlink(missing_ok=True)
            if running and not quiet:
                log(f"stopped {component} (pid {record.pid}) in {time.monotonic() - start:.1f}s")
        self.ports_file.unlink(missing_ok=True)
        if not quiet:
            log(f"down in {time.monotonic() - total:.1f}s (logs kept in {self.logs})")
        return 0

    def remove(self) -> None:
        """After down(): remove the state directory (whatever the control plane, the fake pods, a real node and its
        image builds put there) and the previous logs next to it. Only below the temporary directory, where every
        default state lives: one chosen elsewhere with PROCESSCONTROL_STATE may hold more than ours. Never across a
        mount point."""
        paths = [p for p in (self.root, self.prev_logs) if p.exists()]
        if not paths:
            return
        temp = Path(tempfile.gettempdir()).resolve()
        root = self.root.resolve()
        if root == temp or not root.is_relative_to(temp):
            log(f"kept {self.root}: not below {temp}, so it may hold more than this control plane's state")
            return
        mounted = mount_points_under(root)
        if mounted:
            log(f"kept {self.root}: {mounted[0]} is still mounted")
            return
        size = sum((Path(d) / f).lstat().st_size for path in paths for d, _, files in os.walk(path) for f in files)
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
        left = [str(p) for p in paths if p.exists()]
        if left:
            log(f"could not remove all of {', '.join(left)}")
        else:
            log(f"removed {', '.join(map(str, paths))} ({size / 1e6:.0f} MB)")

    # -- status --

    def status(self) -> int:
        """Print each component's state; exit 0 only when everything runs and the apiserver is ready."""
        states = self.component_states()
        records = self.records()
        for component, running in states.items():
            record = records[component]
            pid = f"pid {record.pid}" if record is not None and running else "-"
            print(f"{component:<24} {'running' if running else 'stopped':<8} {pid}")
        ready = self.apiserver_ready()
        ports = self.ports()
        where = f"https://{ports.address}:{ports.apiserver}" if ports else "-"
        print(f"{'apiserver /readyz':<24} {'ok' if ready else 'not ready':<8} {where}")
        print(f"{'kubeconfig':<24} {self.kubeconfig}")
        return 0 if ready and all(states.values()) else 1


def node_manifest(kubelet_port: int) -> dict[str, object]:
    """The fake node: kwok conventions, only an InternalIP address, kubelet endpoint = kwok's server."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "spec": {"taints": [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]},
        "status": {
            # No Hostname address: the apiserver would prefer it and it does not resolve to 127.0.0.1.
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "1000"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "1000"},
        },
    }


def export_line() -> str:
    """What `env` prints."""
    return f"export KUBECONFIG={kubeconfig_path()}"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.controlplane", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start etcd, kube-apiserver, kube-controller-manager, kwok and the fake node")
    sub.add_parser("down", help="stop everything (fake pod processes too)")
    sub.add_parser("status", help="show what runs; exit 0 when the control plane is ready")
    sub.add_parser("env", help="print `export KUBECONFIG=...`")
    args = parser.parse_args(argv)
    cp = ControlPlane(state_dir())
    if args.command == "up":
        return cp.up()
    if args.command == "down":
        return cp.down()
    if args.command == "status":
        return cp.status()
    print(export_line())
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
