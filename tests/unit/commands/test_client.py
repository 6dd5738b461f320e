"""The client layer's CLI calls, with the kubernetes client's API object replaced: what is sent, what comes back."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from processcontrol import k8s
from processcontrol.exceptions import ApiError, NotFound


class FakeCustomObjects:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.patch_result: Any = None
        self.error: ApiException | None = None

    def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("patch", args, kwargs))
        if self.error:
            raise self.error
        return self.patch_result

    def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("get", args, kwargs))
        return {"metadata": {"name": args[4], "generation": 1}}


@pytest.fixture
def fake() -> tuple[k8s.KubeClient, FakeCustomObjects]:
    client = k8s.KubeClient(kubernetes.client.Configuration())
    custom = FakeCustomObjects()
    client._custom = custom  # type: ignore[assignment]
    return client, custom


BODY = {"metadata": {"name": "db", "namespace": "kubecf"}, "spec": {"instanceGroup": "database"}}


async def test_apply_is_a_server_side_apply_by_the_cli_field_manager(fake: tuple[k8s.KubeClient, Any]) -> None:
    client, custom = fake
    custom.patch_result = {"metadata": {"name": "db", "generation": 4}}
    assert (await client.apply_suspension(BODY))["metadata"]["generation"] == 4
    _, args, kwargs = custom.calls[0]
    assert args == ("processcontrol.dev", "v1alpha1", "kubecf", "processsuspensions", "db", BODY)
    assert kwargs == {
        "field_manager": "processcontrol-cli",
        "force": True,
        "_content_type": "application/apply-patch+yaml",
    }


async def test_apply_that_creates_reads_the_object_back(fake: tuple[k8s.KubeClient, Any]) -> None:
    # The client deserialises only a 200 answer to PATCH; an apply that creates answers 201, i.e. None here.
    client, custom = fake
    assert (await client.apply_suspension(BODY))["metadata"] == {"name": "db", "generation": 1}
    assert [c[0] for c in custom.calls] == ["patch", "get"]


async def test_the_servers_message_is_kept_for_invalid_objects(fake: tuple[k8s.KubeClient, Any]) -> None:
    client, custom = fake
    error = ApiException(status=422, reason="Unprocessable Entity")
    error.body = '{"kind":"Status","message":"ProcessSuspension.processcontrol.dev \\"db\\" is invalid: spec: ..."}'
    custom.error = error
    with pytest.raises(ApiError, match=r'^processsuspension kubecf/db: ProcessSuspension.processcontrol.dev "db" is'):
        await client.apply_suspension(BODY)
    custom.error = ApiException(status=404, reason="Not Found")
    with pytest.raises(NotFound):
        await client.set_suspend("kubecf", "db", False)
