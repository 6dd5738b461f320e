"""KubeClient's pod reads and writes hand back the API server's JSON as it came (no client models in between),
and API errors still become ours: against a local HTTP server that answers as kube-apiserver does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import kubernetes
import pytest

from processcontrol import k8s
from processcontrol.exceptions import Conflict

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "p",
        "namespace": "ns",
        "uid": "u1",
        "resourceVersion": "42",
        "annotations": {"processcontrol.dev/holds": '{"v": 1}'},
        "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:metadata": {}}}],
    },
    "spec": {"containers": [{"name": "c", "image": "i"}]},
}


class Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, Any]]] = []

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, None))
        self._answer(200, POD)

    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(("PATCH", self.path, body))
        if body["metadata"].get("resourceVersion") == "stale":
            status = {"kind": "Status", "status": "Failure", "reason": "Conflict", "code": 409, "message": "changed"}
            self._answer(409, status)
            return
        pod = json.loads(json.dumps(POD))
        pod["metadata"]["annotations"].update(body["metadata"].get("annotations") or {})
        pod["metadata"]["resourceVersion"] = "43"
        self._answer(200, pod)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def client() -> Iterator[k8s.KubeClient]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    Handler.seen = []
    try:
        yield k8s.KubeClient(configuration)
    finally:
        server.shutdown()
        server.server_close()


async def test_patch_pod_metadata_returns_the_servers_json(client: k8s.KubeClient) -> None:
    written = await client.patch_pod_metadata("ns", "p", {"annotations": {"a": "b"}}, "42", uid="u1")
    assert written["metadata"]["resourceVersion"] == "43"
    assert written["metadata"]["annotations"] == {"processcontrol.dev/holds": '{"v": 1}', "a": "b"}
    assert written["metadata"]["managedFields"] == POD["metadata"]["managedFields"]  # type: ignore[index]
    method, path, body = Handler.seen[-1]
    assert (method, path) == ("PATCH", "/api/v1/namespaces/ns/pods/p")
    assert body == {"metadata": {"annotations": {"a": "b"}, "resourceVersion": "42", "uid": "u1"}}


async def test_a_conflict_is_still_a_conflict(client: k8s.KubeClient) -> None:
    with pytest.raises(Conflict):
        await client.patch_pod_metadata("ns", "p", {"annotations": {"a": "b"}}, "stale")


async def test_get_pod_returns_the_servers_json(client: k8s.KubeClient) -> None:
    assert await client.get_pod("ns", "p") == POD


async def test_patch_pod_labels_sends_the_labels(client: k8s.KubeClient) -> None:
    await client.patch_pod_labels("ns", "p", {"x": "1", "y": None})
    assert Handler.seen[-1][2] == {"metadata": {"labels": {"x": "1", "y": None}}}
