"""Deletion when exec is forbidden: released only if nothing was ever stopped in the pod (found by the e2e faults)."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest

from processcontrol.api import INSTANCE_GROUP_LABEL
from processcontrol.exceptions import ExecForbidden
from processcontrol.podexec.transport import ExecResult
from processcontrol.reconcile.settings import OperatorSettings
from processcontrol.reconcile.suspension import Runtime, release_suspension
from processcontrol.reconcile.targets import PodInfo

POD = PodInfo(
    namespace="kubecf",
    name="db-0",
    uid="uid-db-0",
    labels={INSTANCE_GROUP_LABEL: "db"},
    phase="Running",
    terminating=False,
    containers=("pxc-mysql-mysql",),
    data_containers=("pxc-mysql-mysql",),
    restarts=0,
)


class ForbiddenExecutor:
    async def run(self, namespace: str, pod: str, container: str, command: list[str]) -> ExecResult:
        raise ExecForbidden(f'pods "{pod}" is forbidden: cannot create resource "pods/exec"')


class NoKube:
    async def patch_pod_labels(self, *args: Any) -> None:
        raise AssertionError("no label change expected")


def body(pod_status: dict[str, Any] | None) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "processcontrol.dev/v1alpha1",
            "kind": "ProcessSuspension",
            "metadata": {"name": "s", "namespace": "kubecf", "uid": "uid-s", "generation": 1},
            "spec": {"instanceGroup": "db", "suspend": True},
            "status": {"pods": [pod_status]} if pod_status else {},
        }
    )


async def release(pod_status: dict[str, Any] | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf, "event", lambda *args, **kwargs: None)
    runtime = Runtime(
        settings=OperatorSettings(failure_backoff_s=1),
        executor=ForbiddenExecutor(),  # type: ignore[arg-type]
        kube=NoKube(),  # type: ignore[arg-type]
    )
    await release_suspension(
        runtime,
        body(pod_status),
        {"kubecf": [POD]},  # type: ignore[arg-type]
        {"kubecf": []},  # type: ignore[arg-type]
        logging.getLogger("test"),
    )


@pytest.mark.parametrize(
    "pod_status",
    [
        {"name": "db-0", "state": "Suspended", "processes": [{"job": "j", "process": "p", "state": "Stopped"}]},
        {"name": "db-0", "state": "Suspending", "processes": []},
        {"name": "db-0", "state": "Failed", "processes": [{"job": "j", "process": "p", "state": "Stopping"}]},
    ],
)
async def test_forbidden_after_a_stop_holds_deletion_up(
    pod_status: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(kopf.TemporaryError, match="could not resume 1 pods"):
        await release(pod_status, monkeypatch)


@pytest.mark.parametrize(
    "pod_status",
    [
        None,
        {"name": "db-0", "state": "Failed", "processes": [], "message": "forbidden"},
        {"name": "db-0", "state": "Resumed", "processes": [{"job": "j", "process": "p", "state": "Running"}]},
    ],
)
async def test_forbidden_where_nothing_was_stopped_releases(
    pod_status: dict[str, Any] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    await release(pod_status, monkeypatch)
