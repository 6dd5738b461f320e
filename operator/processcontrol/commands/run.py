"""The handlers of suspend, resume, get and describe: talk to the API through the client layer, print, exit."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from processcontrol import k8s
from processcontrol.api.duration import parse_duration
from processcontrol.api.models import ProcessSuspensionSpec
from processcontrol.api.reasons import Reason
from processcontrol.commands import render
from processcontrol.commands.spec import (
    build_spec,
    build_suspension,
    check_name,
    default_name,
    split_names,
)
from processcontrol.exceptions import (
    ApiError,
    CrdNotInstalled,
    Forbidden,
    InvalidArguments,
    NotFound,
    ProcessControlError,
)
from processcontrol.settings import ProcessControlSettings
from processcontrol.targets import pod_info_from_body, select_targets

# Where deploy/ and the chart's default release put the operator and its Lease (PROCESSCONTROL_LEASE_NAMESPACE
# says otherwise).
DEFAULT_OPERATOR_NAMESPACE = "processcontrol-system"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_CRD, EXIT_FORBIDDEN, EXIT_NOT_FOUND, EXIT_ERROR = 0, 1, 2, 3, 4, 5, 6
EXIT_INTERRUPTED = 130
POLL_S = 1.0
# How long --wait gives the operator to write a status for our generation before saying it may not be running.
NO_STATUS_S = 30.0
INSTALL_HINT = "install it with kubectl apply -k deploy/"
# Indirections the tests replace with a fake clock.
_clock: Callable[[], float] = time.monotonic
_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


class Client(Protocol):
    """The calls the commands make (processcontrol.k8s.KubeClient has them)."""

    async def suspensions_served(self) -> bool: ...
    async def apply_suspension(self, body: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]: ...
    async def create_suspension(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def get_suspension(self, namespace: str, name: str) -> dict[str, Any]: ...
    async def find_suspension(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def list_suspensions(self, namespace: str | None) -> list[dict[str, Any]]: ...
    async def list_pods(self, namespace: str) -> list[dict[str, Any]]: ...
    async def set_suspend(self, namespace: str, name: str, suspend: bool) -> dict[str, Any]: ...
    async def delete_suspension(self, namespace: str, name: str) -> None: ...
    async def whoami(self) -> str: ...
    async def namespace_exists(self, name: str) -> bool | None: ...
    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]: ...
    def close(self) -> None: ...


def connect(args: argparse.Namespace) -> Client:
    """A client for the kube context the arguments name."""
    return k8s.connect(args.kubeconfig, args.context)


def namespace_of(args: argparse.Namespace, lenient: bool = False) -> str:
    """-n, else the kube context's namespace, else `default` (lenient: also when there is no kubeconfig)."""
    if args.namespace:
        return str(args.namespace)
    try:
        return k8s.context_namespace(args.kubeconfig, args.context) or "default"
    except ProcessControlError:
        if lenient:
            return "default"
        raise


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


INTERRUPTED = "interrupted; the suspension itself goes on (see processcontrol get)"


def execute(work: Callable[[], Coroutine[Any, Any, int]], interrupted: str = INTERRUPTED) -> int:
    """Run a command; every known failure becomes one `error:` line and its exit code."""
    try:
        return asyncio.run(work())
    except InvalidArguments as error:
        _error(str(error))
        return EXIT_USAGE
    except CrdNotInstalled as error:
        _error(str(error))
        return EXIT_NO_CRD
    except Forbidden as error:
        _error(str(error))
        return EXIT_FORBIDDEN
    except NotFound as error:
        _error(str(error))
        return EXIT_NOT_FOUND
    except ProcessControlError as error:
        _error(str(error))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _error(interrupted)
        return EXIT_INTERRUPTED


async def _with_crd_check(client: Client, call: Awaitable[Any], namespace: str | None = None) -> Any:
    """Await a call; a 404 becomes CrdNotInstalled when the API server does not serve our resource at all, and says
    so when the namespace does not exist (the API server's own 404 names only the object)."""
    try:
        return await call
    except NotFound as error:
        try:
            served = await client.suspensions_served()
        except ApiError:
            raise error from None
        if not served:
            raise CrdNotInstalled(
                f"the ProcessSuspension CRD is not installed in this cluster: {INSTALL_HINT}"
            ) from error
        if namespace is not None:
            await _check_namespace(client, namespace)
        raise


async def _check_namespace(client: Client, namespace: str) -> None:
    """NotFound naming the namespace when it does not exist; nothing when it does or we may not tell."""
    try:
        exists = await client.namespace_exists(namespace)
    except ApiError:
        return
    if exists is False:
        raise NotFound(f"not found: namespace {namespace} does not exist (kubectl get namespaces lists them)")


def _timeout_s(text: str) -> float:
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as error:
        raise InvalidArguments(f"invalid --timeout {text!r}: use a duration like 90s, 5m or 1h") from error
    if seconds <= 0:
        raise InvalidArguments(f"invalid --timeout {text!r}: must be positive")
    return seconds


async def wait_ready(
    client: Client,
    namespace: str,
    name: str,
    generation: int,
    timeout_s: float,
    *,
    poll_s: float = POLL_S,
    no_status_s: float = NO_STATUS_S,
) -> int:
    """Print each pod's progress until Ready (exit 0) or Stalled at our generation, timeout or no operator (1)."""
    start = _clock()
    view: render.PodView = {}
    last_reason = ""
    while True:
        obj = await client.get_suspension(namespace, name)
        elapsed = _clock() - start
        for line in render.progress_lines(view, obj, elapsed):
            print(line, flush=True)
        view = render.pod_view(obj)
        outcome = render.assess(obj, generation)
        if outcome.done:
            print(render.summary_line(obj, outcome, elapsed), flush=True)
            if outcome.ok:
                print(render.pods_table(obj), flush=True)
                return EXIT_OK
            return EXIT_FAILED
        if outcome.observed and not view and outcome.reason != last_reason:
            print(f"[{elapsed:5.1f}s] {outcome.reason}: {outcome.message}", flush=True)
        last_reason = outcome.reason
        if _no_operator(obj, outcome, generation, elapsed, no_status_s):
            return EXIT_FAILED
        if elapsed >= timeout_s:
            _error(f"timed out after {render.human_duration(timeout_s)}: {outcome.reason}: {outcome.message}")
            print(render.pods_table(obj), file=sys.stderr, flush=True)
            return EXIT_FAILED
        await _sleep(poll_s)


def _no_operator(
    obj: dict[str, Any], outcome: render.Assessment, generation: int, elapsed: float, no_status_s: float
) -> bool:
    """Whether the status has not answered our generation for too long: said on stderr."""
    if outcome.observed or elapsed < no_status_s:
        return False
    if (obj.get("status") or {}).get("observedGeneration") is None:
        _error(f"no status after {no_status_s:g}s: is the operator running?")
    else:
        _error(
            f"the status has not caught up with generation {generation} after {no_status_s:g}s: "
            "is the operator running?"
        )
    return True


async def wait_deleted(
    client: Client,
    namespace: str,
    name: str,
    timeout_s: float,
    *,
    poll_s: float = POLL_S,
) -> int:
    """Print each pod's progress until the object is gone: the operator's finalizer resumes first."""
    start = _clock()
    view: render.PodView = {}
    while True:
        try:
            obj = await client.get_suspension(namespace, name)
        except NotFound:
            print(f"{name}: resumed and deleted in {_clock() - start:.1f}s", flush=True)
            return EXIT_OK
        elapsed = _clock() - start
        for line in render.progress_lines(view, obj, elapsed):
            print(line, flush=True)
        view = render.pod_view(obj)
        if elapsed >= timeout_s:
            _error(
                f"still there after {render.human_duration(timeout_s)}: the operator has not released it "
                "(is the operator running? see processcontrol describe)"
            )
            return EXIT_FAILED
        await _sleep(poll_s)


async def _note_probe_conflicts(args: argparse.Namespace, body: dict[str, Any]) -> None:
    """For --dry-run: on stderr, the probes the suspension would make fail in the pods it targets now, when the
    cluster can be reached (a dry run works without one; stdout stays the manifest)."""
    spec = ProcessSuspensionSpec.model_validate(body["spec"])
    try:
        client = connect(args)
    except ProcessControlError:
        return
    try:
        pods = await client.list_pods(body["metadata"]["namespace"])
    except ProcessControlError as error:
        print(f"note: probes not checked: {error}", file=sys.stderr)
        return
    finally:
        client.close()
    for pod in select_targets(spec, [pod_info_from_body(p) for p in pods]):
        found = pod.probes.foreseen_conflicts(spec.jobs, spec.processes)
        if found:
            listed = "; ".join(probe.describe() for probe in found)
            print(
                f"note: pod {pod.name}: {listed}: fails while its process is stopped (probes: {spec.probes.value})",
                file=sys.stderr,
            )


async def requested_by(client: Client, namespace: str, name: str | None) -> dict[str, Any] | None:
    """spec.requestedBy for an apply: the user the API server authenticates us as (a SelfSubjectReview), or, on an
    object whose suspension is in force, who asked for it then (the API server refuses a change). None: not
    recorded, with a note on stderr saying why. No name: a new object (a preview)."""
    try:
        existing = await client.find_suspension(namespace, name) if name is not None else None
    except Forbidden:
        existing = None
    if existing is not None:
        spec = existing.get("spec") or {}
        if spec.get("suspend", True):
            recorded = spec.get("requestedBy")
            return dict(recorded) if recorded else None
    try:
        return {"username": await client.whoami()}
    except ApiError as error:
        print(f"note: the requester is not recorded: {error}", file=sys.stderr, flush=True)
        return None


def suspend(args: argparse.Namespace) -> int:
    """processcontrol suspend."""

    async def work() -> int:
        jobs, processes = split_names(args.jobs), split_names(args.processes)
        spec = build_spec(
            args.instance_group,
            args.selector,
            jobs=jobs,
            processes=processes,
            reason=args.reason,
            duration=args.duration,
            container=args.container,
            probes=args.probes,
        )
        name = check_name(args.name) if args.name else default_name(args.instance_group, args.selector, jobs, processes)
        timeout_s = _timeout_s(args.timeout)
        body = build_suspension(name, namespace_of(args, lenient=args.dry_run), spec)
        if args.preview:
            if args.dry_run:
                raise InvalidArguments("--preview asks the operator to look, --dry-run only prints: give one")
            return await preview(args, body, timeout_s)
        if args.dry_run:
            print(render.dump([body], args.output, single=True))
            await _note_probe_conflicts(args, body)
            return EXIT_OK
        client = connect(args)
        try:
            namespace = body["metadata"]["namespace"]
            requester = await requested_by(client, namespace, name)
            if requester is not None:
                body["spec"]["requestedBy"] = requester
            applied = await _with_crd_check(client, client.apply_suspension(body), namespace)
            generation = int(applied["metadata"].get("generation") or 1)
            print(f"processsuspension.processcontrol.dev/{name} serverside-applied in {namespace}", flush=True)
            if not args.wait:
                return EXIT_OK
            print(f"waiting up to {args.timeout} for every target process to be stopped and verified", flush=True)
            return await wait_ready(client, namespace, name, generation, timeout_s)
        finally:
            client.close()

    if args.preview:
        return execute(work, "interrupted; the preview was deleted")
    return execute(work)


async def preview(args: argparse.Namespace, body: dict[str, Any], timeout_s: float) -> int:
    """suspend --preview: create the suspension as a preview under a name of its own (never an existing
    suspension's), wait until the operator has looked into every target pod, print what it found, delete it."""
    namespace = body["metadata"]["namespace"]
    name = body["metadata"].pop("name")
    body["metadata"]["generateName"] = f"{name[: 253 - 14]}-preview-"
    body["spec"]["preview"] = True
    client = connect(args)
    created: str | None = None
    try:
        requester = await requested_by(client, namespace, None)
        if requester is not None:
            body["spec"]["requestedBy"] = requester
        made = await _with_crd_check(client, client.create_suspension(body), namespace)
        created = str(made["metadata"]["name"])
        generation = int(made["metadata"].get("generation") or 1)
        print(f"processsuspension.processcontrol.dev/{created} created in {namespace} (a preview: nothing is stopped)")
        print(f"waiting up to {args.timeout} for the operator to look into every target pod", flush=True)
        return await wait_previewed(client, namespace, created, generation, timeout_s)
    finally:
        if created is not None:
            try:
                await client.delete_suspension(namespace, created)
                print(f'processsuspension.processcontrol.dev "{created}" deleted', flush=True)
            except ApiError as error:
                _error(f"could not delete the preview {created}, delete it by hand: {error}")
        client.close()


async def wait_previewed(
    client: Client,
    namespace: str,
    name: str,
    generation: int,
    timeout_s: float,
    *,
    poll_s: float = POLL_S,
    no_status_s: float = NO_STATUS_S,
) -> int:
    """Until the Previewed condition is True at our generation: print the preview, exit 0 when the suspension
    could act in every pod, 1 when some pod stands in the way (or on a timeout, or with no operator)."""
    start = _clock()
    while True:
        obj = await client.get_suspension(namespace, name)
        elapsed = _clock() - start
        previewed = render.condition(obj, "Previewed") or {}
        current = (previewed.get("observedGeneration") or 0) >= generation
        if current and previewed.get("status") == "True":
            preview = (obj.get("status") or {}).get("preview") or {}
            print(f"{name}: previewed in {elapsed:.1f}s: {previewed.get('message', '')}", flush=True)
            print(render.preview_table(obj), flush=True)
            return EXIT_FAILED if preview.get("cannot") or not preview.get("targets") else EXIT_OK
        outcome = render.assess(obj, generation)
        # A stalled pod is looked at too, and the preview says why it stands in the way; only a spec the operator
        # cannot read ends the wait before it.
        if outcome.done and outcome.reason == Reason.INVALID_SPEC:
            print(render.summary_line(obj, outcome, elapsed), flush=True)
            return EXIT_FAILED
        if _no_operator(obj, outcome, generation, elapsed, no_status_s):
            return EXIT_FAILED
        if elapsed >= timeout_s:
            shown = previewed.get("message") or outcome.message
            _error(f"timed out after {render.human_duration(timeout_s)}: {shown}")
            return EXIT_FAILED
        await _sleep(poll_s)


def resume(args: argparse.Namespace) -> int:
    """processcontrol resume."""

    async def work() -> int:
        timeout_s = _timeout_s(args.timeout)
        client = connect(args)
        try:
            namespace = namespace_of(args)
            if args.delete:
                await _with_crd_check(client, client.delete_suspension(namespace, args.name), namespace)
                print(f'processsuspension.processcontrol.dev "{args.name}" deleted in {namespace}', flush=True)
                if not args.wait:
                    return EXIT_OK
                print(f"waiting up to {args.timeout} for the operator to resume and release it", flush=True)
                return await wait_deleted(client, namespace, args.name, timeout_s)
            patched = await _with_crd_check(client, client.set_suspend(namespace, args.name, False), namespace)
            generation = int(patched["metadata"].get("generation") or 1)
            print(
                f"processsuspension.processcontrol.dev/{args.name} resumed (suspend: false) in {namespace}", flush=True
            )
            if not args.wait:
                return EXIT_OK
            print(f"waiting up to {args.timeout} for every target process to run again, verified", flush=True)
            return await wait_ready(client, namespace, args.name, generation, timeout_s)
        finally:
            client.close()

    return execute(work)


def get(args: argparse.Namespace) -> int:
    """processcontrol get."""

    async def work() -> int:
        client = connect(args)
        try:
            namespace = None if args.all_namespaces else namespace_of(args)
            if args.name:
                if namespace is None:
                    raise InvalidArguments("a NAME needs a namespace: use -n instead of -A")
                objects = [await _with_crd_check(client, client.get_suspension(namespace, args.name), namespace)]
            else:
                objects = await _with_crd_check(client, client.list_suspensions(namespace))
                if not objects and namespace is not None:
                    await _check_namespace(client, namespace)
        finally:
            client.close()
        if not objects:
            where = "any namespace" if namespace is None else f"{namespace} namespace"
            print(f"No resources found in {where}.", file=sys.stderr)
            return EXIT_OK
        if args.output in ("yaml", "json"):
            print(render.dump(objects, args.output, single=bool(args.name)))
        else:
            now = datetime.now(UTC)
            print(render.get_table(objects, now, wide=args.output == "wide", all_namespaces=namespace is None))
        return EXIT_OK

    return execute(work)


def describe(args: argparse.Namespace) -> int:
    """processcontrol describe."""

    async def work() -> int:
        client = connect(args)
        settings = ProcessControlSettings()
        lease_namespace = settings.lease_namespace or DEFAULT_OPERATOR_NAMESPACE
        try:
            namespace = namespace_of(args)
            obj = await _with_crd_check(client, client.get_suspension(namespace, args.name), namespace)
            lease: dict[str, Any] | None = None
            trouble = ""
            if args.output not in ("yaml", "json"):
                try:
                    lease = await client.get_lease(lease_namespace, settings.lease_name)
                except ApiError as error:
                    trouble = f"lease {lease_namespace}/{settings.lease_name}: {error}"
        finally:
            client.close()
        if args.output in ("yaml", "json"):
            print(render.dump([obj], args.output, single=True))
        else:
            now = datetime.now(UTC)
            print(render.describe(obj, now, operator=render.leader(lease, now, trouble)))
        return EXIT_OK

    return execute(work)
