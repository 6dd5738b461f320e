"""A kubecf-like instance group on the real node (harness.realnode): a StatefulSet laid out as quarks-operator lays
out a BOSH instance group, running the image harness.images builds (hack/images/kubecf-like).

Each pod: a `logs` sidecar first (mounts only /var/vcap/sys, as kubecf's), then one container per BOSH process,
`tini -- containerrun --job-name J --process-name P -- CMD`, all sharing /var/vcap/data and /var/vcap/sys
(emptyDirs). The processes are real long-running programs, so a stopped one is visibly gone from `ps`:
`web/http` a Python HTTP server, `web/worker` a shell with two sleeping children.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.realnode import NODE_LABEL

WORKLOAD_IMAGE = "docker.io/local/kubecf-like:dev"
LABEL_INSTANCE_GROUP = "quarks.cloudfoundry.org/instance-group-name"


@dataclass(frozen=True)
class Process:
    """One BOSH process: its container and how its main program's command line starts in `ps -o args` (tini's and
    containerrun's own command lines contain it too, but later)."""

    job: str
    process: str
    command: tuple[str, ...]
    marker: str

    @property
    def container(self) -> str:
        """kubecf's container name: job-process."""
        return f"{self.job}-{self.process}"

    @property
    def sentinel(self) -> str:
        """containerrun's `.running` file, present while the main process runs."""
        return f"/var/vcap/data/{self.job}/{self.process}_containerrun.running"


PROCESSES = (
    Process("web", "http", ("python3", "-m", "http.server", "8080"), "python3 -m http.server 8080"),
    Process("web", "worker", ("sh", "-c", "sleep 100000 & sleep 100001 & wait"), "sleep 100001"),
)


# Liveness probes that fail once the process is stopped, as kubecf jobs have them: one on the main program's HTTP
# port, one testing containerrun's sentinel. Checked every second, so a stopped process is noticed at once (its
# probe fails at once: the port refuses, the file is gone). The timeout is generous: a running process whose probe is
# merely slow on a loaded node (an exec through runc, a busy http.server) must not be killed for it.
_QUICK = {"initialDelaySeconds": 2, "periodSeconds": 1, "timeoutSeconds": 5, "failureThreshold": 1}
LIVENESS: dict[str, dict[str, object]] = {
    "web-http": {"httpGet": {"port": 8080, "path": "/"}, **_QUICK},
    "web-worker": {"exec": {"command": ["test", "-f", "/var/vcap/data/web/worker_containerrun.running"]}, **_QUICK},
}


# A `perl` that never returns, first on PATH: the in-pod script's first sender, so its STOP hangs in this container.
HANG_SETUP = "mkdir -p /hang && printf '#!/bin/sh\\nexec sleep 100000\\n' >/hang/perl && chmod +x /hang/perl"
HANG_PATH = "/hang:/opt/processcontrol/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# slow_look: perl, the in-pod script's prober and sender, waits this long first when it only probes (its first
# argument after `--`, its 4th, is the empty payload), so a look that probes a stopped process takes that long.
SLOW_LOOK_S = 17


def _slow_look_setup(seconds: int) -> str:
    wrapper = f'#!/bin/sh\\n[ -z "$4" ] && sleep {seconds}\\nexec /usr/bin/perl "$@"\\n'
    return f"mkdir -p /hang && printf '{wrapper}' >/hang/perl && chmod +x /hang/perl"


def instance_group(
    name: str,
    namespace: str,
    replicas: int,
    group: str | None = None,
    hang_exec: bool = False,
    liveness: Mapping[str, Mapping[str, object]] | None = None,
    slow_look: bool = False,
) -> dict[str, object]:
    """The StatefulSet (pods NAME-0..N-1 on the real node; nothing pulled), in instance group `group` (default:
    NAME; several StatefulSets may share one). hang_exec: every exec into its first process container hangs.
    slow_look: a look into it that probes takes SLOW_LOOK_S. liveness: a liveness probe per process container name
    (see LIVENESS)."""
    labels = {
        LABEL_INSTANCE_GROUP: group or name,
        "quarks.cloudfoundry.org/deployment-name": "kubecf",
        "processcontrol.dev/statefulset": name,
    }
    mounts = [
        {"name": "data", "mountPath": "/var/vcap/data"},
        {"name": "sys", "mountPath": "/var/vcap/sys"},
    ]
    containers: list[dict[str, object]] = [
        {
            "name": "logs",
            "image": WORKLOAD_IMAGE,
            "imagePullPolicy": "Never",
            "args": ["sh", "-c", "mkdir -p /var/vcap/sys/log && exec tail -n0 -F /var/vcap/sys/log/all.log"],
            "volumeMounts": [{"name": "sys", "mountPath": "/var/vcap/sys"}],
        }
    ]
    for index, process in enumerate(PROCESSES):
        args = ["containerrun", "--job-name", process.job, "--process-name", process.process, "--", *process.command]
        container: dict[str, object] = {
            "name": process.container,
            "image": WORKLOAD_IMAGE,
            "imagePullPolicy": "Never",
            "args": args,
            "volumeMounts": mounts,
        }
        if liveness and process.container in liveness:
            container["livenessProbe"] = dict(liveness[process.container])
        if (hang_exec or slow_look) and index == 0:
            setup = HANG_SETUP if hang_exec else _slow_look_setup(SLOW_LOOK_S)
            container["args"] = ["sh", "-c", f'{setup} && exec "$@"', "sh", *args]
            container["env"] = [{"name": "PATH", "value": HANG_PATH}]
        containers.append(container)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"processcontrol.dev/statefulset": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {NODE_LABEL: "true"},
                    # containerrun stops its process on SIGTERM at once; no need for the default 30 s.
                    "terminationGracePeriodSeconds": 5,
                    "enableServiceLinks": False,
                    "containers": containers,
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "sys", "emptyDir": {}}],
                },
            },
        },
    }
