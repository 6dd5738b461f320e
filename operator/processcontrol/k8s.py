"""The client layer: with podexec's transport, the only code that imports the `kubernetes` client.

The official client is synchronous; every call runs in a worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from processcontrol.api import GROUP, PLURAL, VERSION
from processcontrol.exceptions import ApiError, Conflict, Forbidden, NotFound, ProcessControlError


def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> kubernetes.client.Configuration:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    configuration = kubernetes.client.Configuration()
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    else:
        kubernetes.config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    return configuration


def translate(error: ApiException, what: str) -> ApiError:
    """Turn the client's exception into one of ours, keeping the API server's own message when it gave one
    (for a 403 it says who may not do what, where, as kubectl shows it)."""
    try:
        message = json.loads(error.body or "{}").get("message", "")
    except (ValueError, TypeError, AttributeError):
        message = ""
    if error.status == 403:
        return Forbidden(f"forbidden: {message}" if message else f"forbidden: {what}")
    if error.status == 404:
        return NotFound(f"not found: {what}")
    if error.status == 409:
        return Conflict(f"conflict: {what}: {message}" if message else f"conflict: {what}")
    return ApiError(f"{what}: {message}" if message else f"{what}: HTTP {error.status} {error.reason or ''}".strip())


# The field manager of `processcontrol suspend`/`resume`, shown in managedFields next to kubectl's and Argo CD's.
CLI_FIELD_MANAGER = "processcontrol-cli"
IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def context_namespace(kubeconfig: str | None = None, context: str | None = None) -> str | None:
    """The namespace of the kube context (as kubectl picks it), or the pod's own namespace in a cluster."""
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            with open(IN_CLUSTER_NAMESPACE) as file:
                return file.read().strip() or None
        except OSError:
            return None
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as error:
        raise ProcessControlError(f"kubeconfig: {error}") from error
    chosen = current if context is None else next((c for c in contexts if c.get("name") == context), None)
    if chosen is None:
        raise ProcessControlError(f"kubeconfig: no context named {context!r}")
    namespace = (chosen.get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def context_names(kubeconfig: str | None = None) -> list[str]:
    """The names of the kubeconfig's contexts."""
    try:
        contexts, _ = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as error:
        raise ProcessControlError(f"kubeconfig: {error}") from error
    return [str(c["name"]) for c in contexts if c.get("name")]


def connect(kubeconfig: str | None = None, context: str | None = None) -> KubeClient:
    """A client for the CLI; a broken or missing kubeconfig becomes one clear error."""
    try:
        return KubeClient(load_configuration(kubeconfig, context))
    except (kubernetes.config.ConfigException, OSError) as error:
        raise ProcessControlError(f"kubeconfig: {error}") from error


# The answer as the API server's JSON, not the client's models: building a V1Pod and turning it back into a dict
# (sanitize_for_serialization) cost a third of the operator's CPU per ledger write at 2,000 pods (py-spy,
# bench/scale_bench.py); the JSON is the same, minus nothing a caller reads.
RAW: dict[str, Any] = {"_preload_content": False}


def _json(response: Any) -> dict[str, Any]:
    """The JSON object of a raw (`_preload_content=False`) response; non-2xx answers were raised already."""
    result: dict[str, Any] = json.loads(response.data)
    return result


class KubeClient:
    """The few API calls the operator and CLI make, as coroutines, in a thread pool of their own.

    `concurrency` calls run at once (and as many pooled connections): every exec waiting for its go-ahead waits
    for a ledger write here, so the loop's default pool (cores + 4 threads) and the client's default connection
    pool would make the execs queue behind each other's writes. `urgent` calls (a go-ahead's ledger write, the
    Lease) have a pool of their own: thousands of workers' write-aheads at once must not make an exec outlive its
    go-ahead window, nor a renewal its deadline."""

    def __init__(self, configuration: kubernetes.client.Configuration, concurrency: int = 8) -> None:
        self.configuration = configuration
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, 2 * concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kube")
        self._urgent = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kube-urgent")
        self._api = kubernetes.client.ApiClient(configuration)
        self._core = kubernetes.client.CoreV1Api(self._api)
        self._custom = kubernetes.client.CustomObjectsApi(self._api)
        self._authentication = kubernetes.client.AuthenticationV1Api(self._api)
        self._coordination = kubernetes.client.CoordinationV1Api(self._api)

    async def _call(self, what: str, method: Any, *args: Any, urgent: bool = False, **kwargs: Any) -> Any:
        """Call a client method in a thread; API and connection errors become ours."""
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._urgent if urgent else self._pool, functools.partial(method, *args, **kwargs)
            )
        except ApiException as error:
            raise translate(error, what) from error
        except urllib3.exceptions.HTTPError as error:
            raise ApiError(f"{what}: cannot reach the API server at {self.configuration.host}: {error}") from error

    async def patch_suspension_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Replace the status (a merge patch: None values clear fields)."""
        await self._call(
            f"status of processsuspension {namespace}/{name}",
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": dict(status)},
        )

    async def patch_pod_labels(self, namespace: str, name: str, labels: Mapping[str, str | None]) -> None:
        """Set or (with None) remove labels on a pod."""
        body = {"metadata": {"labels": dict(labels)}}
        # Read, though unused: an unread raw answer keeps its connection out of the pool.
        await self._call(
            f"labels of pod {namespace}/{name}",
            lambda: _json(self._core.patch_namespaced_pod(name, namespace, body, **RAW)),
        )

    async def get_pod(self, namespace: str, name: str, *, urgent: bool = False) -> dict[str, Any]:
        """One pod, as JSON."""
        result: dict[str, Any] = await self._call(
            f"pod {namespace}/{name}",
            lambda: _json(self._core.read_namespaced_pod(name, namespace, **RAW)),
            urgent=urgent,
        )
        return result

    async def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        metadata: Mapping[str, Any],
        resource_version: str | None,
        uid: str | None = None,
        *,
        urgent: bool = False,
    ) -> dict[str, Any]:
        """Merge-patch a pod's metadata; with a resourceVersion the API server answers 409 (`Conflict`) when the
        pod changed since it was read, so a read-modify-write never overwrites another writer. With a uid the
        patch applies to that pod only, never to another one created under the same name (a precondition)."""
        body: dict[str, Any] = {"metadata": dict(metadata)}
        if resource_version is not None:
            body["metadata"]["resourceVersion"] = resource_version
        if uid is not None:
            body["metadata"]["uid"] = uid
        result: dict[str, Any] = await self._call(
            f"metadata of pod {namespace}/{name}",
            lambda: _json(self._core.patch_namespaced_pod(name, namespace, body, **RAW)),
            urgent=urgent,
        )
        return result

    async def list_pods(self, namespace: str) -> list[dict[str, Any]]:
        """Every pod of a namespace, as JSON."""
        api = self._api
        result: dict[str, Any] = await self._call(
            f"pods in {namespace}",
            lambda: api.sanitize_for_serialization(self._core.list_namespaced_pod(namespace)),
        )
        return list(result.get("items") or [])

    async def pod_events(self, namespace: str, pod_uid: str) -> list[dict[str, Any]]:
        """The events about one pod (the kubelet's probe failures and restarts among them), oldest first."""
        api = self._api
        result: dict[str, Any] = await self._call(
            f"events of pod {namespace}/{pod_uid}",
            lambda: api.sanitize_for_serialization(
                self._core.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={pod_uid}")
            ),
        )
        return list(result.get("items") or [])

    async def whoami(self) -> str:
        """The username the API server authenticates these credentials as (a SelfSubjectReview, which every
        authenticated user may create): what `processcontrol suspend` records as the requester."""
        api = self._api
        review = kubernetes.client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview")
        result: dict[str, Any] = await self._call(
            "selfsubjectreview",
            lambda: api.sanitize_for_serialization(self._authentication.create_self_subject_review(review)),
        )
        username = ((result.get("status") or {}).get("userInfo") or {}).get("username")
        if not username:
            raise ApiError("selfsubjectreview: the API server named no user")
        return str(username)

    async def list_namespaces(self) -> list[str]:
        """The names of every namespace."""
        api = self._api
        result: dict[str, Any] = await self._call(
            "namespaces", lambda: api.sanitize_for_serialization(self._core.list_namespace())
        )
        return [str(item["metadata"]["name"]) for item in result.get("items") or []]

    async def namespace_exists(self, name: str) -> bool | None:
        """Whether a namespace exists; None when these credentials may not tell (no `get` on namespaces)."""
        try:
            await self._call(f"namespace {name}", self._core.read_namespace, name)
        except NotFound:
            return False
        except Forbidden:
            return None
        return True

    async def suspensions_served(self) -> bool:
        """Whether the API server serves ProcessSuspensions: False when the CRD is not installed."""
        try:
            resources = await self._call(f"{GROUP}/{VERSION}", self._custom.get_api_resources, GROUP, VERSION)
        except NotFound:
            return False
        served: bool = any(r.name == PLURAL for r in resources.resources or [])
        return served

    async def apply_suspension(self, body: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Create or update a ProcessSuspension by server-side apply, as the CLI's field manager."""
        meta = body["metadata"]
        result: dict[str, Any] = await self._call(
            f"processsuspension {meta['namespace']}/{meta['name']}",
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            meta["namespace"],
            PLURAL,
            meta["name"],
            dict(body),
            field_manager=CLI_FIELD_MANAGER,
            force=force,
            _content_type="application/apply-patch+yaml",
        )
        if result is None:
            # The client's PATCH only knows a 200 body; an apply that creates answers 201 and comes back empty.
            result = await self.get_suspension(meta["namespace"], meta["name"])
        return result

    async def create_suspension(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a ProcessSuspension (never an update: a name taken is an error; metadata.generateName works)."""
        meta = body["metadata"]
        result: dict[str, Any] = await self._call(
            f"processsuspension {meta['namespace']}/{meta.get('name') or meta.get('generateName', '') + '*'}",
            self._custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            meta["namespace"],
            PLURAL,
            dict(body),
            field_manager=CLI_FIELD_MANAGER,
        )
        return result

    async def get_suspension(self, namespace: str, name: str) -> dict[str, Any]:
        """One ProcessSuspension."""
        result: dict[str, Any] = await self._call(
            f"processsuspension {namespace}/{name}",
            self._custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
        )
        return result

    async def find_suspension(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One ProcessSuspension, or None when there is none of that name (or no CRD: the next call says so)."""
        try:
            return await self.get_suspension(namespace, name)
        except NotFound:
            return None

    async def list_suspensions(self, namespace: str | None) -> list[dict[str, Any]]:
        """The ProcessSuspensions of a namespace, or of every namespace (None)."""
        if namespace is None:
            result = await self._call(
                "processsuspensions", self._custom.list_cluster_custom_object, GROUP, VERSION, PLURAL
            )
        else:
            result = await self._call(
                f"processsuspensions in {namespace}",
                self._custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
            )
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    async def set_suspend(self, namespace: str, name: str, suspend: bool) -> dict[str, Any]:
        """Set spec.suspend (a merge patch, as the CLI's field manager)."""
        result: dict[str, Any] = await self._call(
            f"processsuspension {namespace}/{name}",
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"spec": {"suspend": suspend}},
            field_manager=CLI_FIELD_MANAGER,
        )
        return result

    async def delete_suspension(self, namespace: str, name: str) -> None:
        """Delete a ProcessSuspension; its finalizer resumes the processes first."""
        await self._call(
            f"processsuspension {namespace}/{name}",
            self._custom.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
        )

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]:
        """A coordination.k8s.io/v1 Lease, as JSON (`NotFound` when there is none)."""
        api = self._api
        result: dict[str, Any] = await self._call(
            f"lease {namespace}/{name}",
            lambda: api.sanitize_for_serialization(self._coordination.read_namespaced_lease(name, namespace)),
            urgent=True,
        )
        return result

    # The client takes a JSON dict where its signatures say V1Lease (it serialises either): the Lease stays JSON here,
    # as every other object does.
    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Lease (`Conflict` when another replica created it first)."""
        api = self._api
        result: dict[str, Any] = await self._call(
            f"lease {namespace}/{body['metadata']['name']}",
            lambda: api.sanitize_for_serialization(
                self._coordination.create_namespaced_lease(namespace, cast(Any, dict(body)))
            ),
            urgent=True,
        )
        return result

    async def replace_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a Lease; its metadata.resourceVersion makes the API server answer 409 (`Conflict`) when someone
        changed it since it was read, so two replicas never both take it."""
        api = self._api
        name = body["metadata"]["name"]
        result: dict[str, Any] = await self._call(
            f"lease {namespace}/{name}",
            lambda: api.sanitize_for_serialization(
                self._coordination.replace_namespaced_lease(name, namespace, cast(Any, dict(body)))
            ),
            urgent=True,
        )
        return result

    async def create_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        """Post a core/v1 Event (kopf posts those about our own objects; this one is about the Lease)."""
        await self._call(f"event in {namespace}", self._core.create_namespaced_event, namespace, cast(Any, dict(body)))

    def close(self) -> None:
        """Release connections and threads."""
        self._api.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._urgent.shutdown(wait=False, cancel_futures=True)
