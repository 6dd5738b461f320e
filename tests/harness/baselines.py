"""What the benchmarks compare the operator against, on the same pods: the seed's procedure (one `kubectl exec`
per pod, one after the other, `nc -w 1` per socket) and what a careful operator scripts (`xargs -P 16 kubectl
exec`, `ncat --send-only`). bench/suspend_bench.py runs them on kwok pods, bench/node_bench.py on the real node.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.base import kubeconfig_path

SEED_SCRIPT = "for sock in $(find {data} -name '*_containerrun.sock'); do echo {cmd} | nc -w 1 -uU $sock; done"
NCAT_SCRIPT = (
    "for sock in $(find {data} -name '*_containerrun.sock'); do "
    'echo {cmd} | ncat --send-only --unixsock --udp "$sock"; done'
)
PARALLELISM = 16
# The seed loop takes about 2 s per pod: a line every this many pods, so that a person can follow its minutes.
PROGRESS_EVERY = 10
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
    # Where the seed loop reports how far it is (a benchmark's own line printer).
    report: Callable[[str], None] = print

    def seed_loop(self, pods: Sequence[str], command: str) -> None:
        """The seed's procedure: one kubectl exec per pod, one after the other, `nc -w 1` per socket."""
        script = SEED_SCRIPT.format(data=self.data, cmd=command)
        began = time.monotonic()
        for done, pod in enumerate(pods, 1):
            subprocess.run(
                ["kubectl", "exec", "-n", self.namespace, pod, "-c", self.container, "--", "sh", "-c", script],
                env=kube_env(),
                check=True,
                capture_output=True,
                timeout=120,
            )
            if done % PROGRESS_EVERY == 0 and done < len(pods):
                self.report(f"  seed loop {command}: {done}/{len(pods)} pods, {time.monotonic() - began:.0f}s")

    def parallel_script(self, pods: Sequence[str], command: str) -> None:
        """What a careful operator scripts: xargs -P 16 kubectl exec, ncat --send-only."""
        inner = shlex.quote(NCAT_SCRIPT.format(data=self.data, cmd=command))
        line = (
            f"xargs -P {PARALLELISM} -I{{}} kubectl exec -n {self.namespace} {{}} -c {self.container} -- sh -c {inner}"
        )
        subprocess.run(
            ["bash", "-c", line], input="\n".join(pods), text=True, env=kube_env(), check=True, capture_output=True
        )


def exec_floor(namespace: str, container: str, pods: Sequence[str]) -> float:
    """Wall time of one `true` exec into each pod through the operator's own transport at its default concurrency:
    the least any exec-based tool can take here."""
    from processcontrol.k8s import load_configuration
    from processcontrol.podexec.transport import KubernetesPodExecutor
    from processcontrol.settings import ProcessControlSettings

    settings = ProcessControlSettings()
    executor = KubernetesPodExecutor(
        load_configuration(str(kubeconfig_path())),
        max_concurrency=settings.exec_concurrency,
        timeout_s=settings.exec_timeout_s,
        retries=settings.exec_retries,
        backoff_s=settings.exec_backoff_s,
    )

    async def all_pods() -> None:
        await asyncio.gather(*(executor.run(namespace, pod, container, ["true"]) for pod in pods))

    try:
        began = time.monotonic()
        asyncio.run(all_pods())
        return time.monotonic() - began
    finally:
        executor.close()
