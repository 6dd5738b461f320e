"""What the benchmarks compare the operator against, on the same pods: the seed's procedure (one `kubectl exec`
per pod, one after the other, `nc -w 1` per socket) and what a careful operator scripts (`xargs -P 16 kubectl
exec`, `ncat --send-only`). bench/suspend_bench.py runs them on kwok pods, bench/node_bench.py on the real node.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from harness.base import kubeconfig_path

SEED_SCRIPT = "for sock in $(find {data} -name '*_containerrun.sock'); do echo {cmd} | nc -w 1 -uU $sock; done"
NCAT_SCRIPT = (
    "for sock in $(find {data} -name '*_containerrun.sock'); do "
    'echo {cmd} | ncat --send-only --unixsock --udp "$sock"; done'
)
PARALLELISM = 16
# Where the sockets are: a kubecf pod's /var/vcap/data; a kwok pod's base directory, which its Exec passes in.
VCAP_DATA = "/var/vcap/data"
KWOK_DATA = '"$CONTAINERRUN_BASE_DIR"/data'


def kube_env() -> dict[str, str]:
    """The environment with the admin kubeconfig of this control plane."""
    return dict(os.environ, KUBECONFIG=str(kubeconfig_path()))


@dataclass(frozen=True)
class Baselines:
    """The two baselines for the pods of one container in one namespace."""

    namespace: str
    container: str
    data: str = VCAP_DATA

    def seed_loop(self, pods: Sequence[str], command: str) -> None:
        """The seed's procedure: one kubectl exec per pod, one after the other, `nc -w 1` per socket."""
        script = SEED_SCRIPT.format(data=self.data, cmd=command)
        for pod in pods:
            subprocess.run(
                ["kubectl", "exec", "-n", self.namespace, pod, "-c", self.container, "--", "sh", "-c", script],
                env=kube_env(),
                check=True,
                capture_output=True,
                timeout=120,
            )

    def parallel_script(self, pods: Sequence[str], command: str) -> None:
        """What a careful operator scripts: xargs -P 16 kubectl exec, ncat --send-only."""
        inner = shlex.quote(NCAT_SCRIPT.format(data=self.data, cmd=command))
        line = (
            f"xargs -P {PARALLELISM} -I{{}} kubectl exec -n {self.namespace} {{}} -c {self.container} -- sh -c {inner}"
        )
        subprocess.run(
            ["bash", "-c", line], input="\n".join(pods), text=True, env=kube_env(), check=True, capture_output=True
        )
