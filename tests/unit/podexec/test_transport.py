"""The exec transport's policy (limit, timeout, retry, error mapping) with an injected single attempt."""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import threading
import time
from collections.abc import Callable

import pytest

from processcontrol.exceptions import ExecError, ExecFailed, ExecForbidden, ExecTimeout, PodGone
from processcontrol.podexec.transport import (
    ExecCall,
    ExecResult,
    ExecUnavailable,
    KubernetesPodExecutor,
    PodExecutor,
    StreamHandle,
    _exit_status,
    classify_exec_error,
)

CALL = ExecCall("kubecf", "database-0", "pxc-mysql", ("sh", "-c", "true"), 5.0)


def executor(exec_once: Callable[[ExecCall, StreamHandle], ExecResult], **kwargs: object) -> KubernetesPodExecutor:
    options: dict[str, object] = {"max_concurrency": 4, "timeout_s": 5.0, "retries": 0, "backoff_s": 0.0}
    options.update(kwargs)
    return KubernetesPodExecutor(None, exec_once=exec_once, **options)  # type: ignore[arg-type]


def ok(call: ExecCall, handle: StreamHandle) -> ExecResult:
    return ExecResult(stdout=f"{call.pod}\n", stderr="", returncode=0, duration_s=0.0)


async def test_is_a_pod_executor() -> None:
    # mypy checks the assignment; the call checks that `run` is the protocol's coroutine, by its parameter names.
    ex: PodExecutor = executor(ok)
    assert list(inspect.signature(ex.run).parameters) == list(inspect.signature(PodExecutor.run).parameters)[1:]
    result = await ex.run(namespace="ns", pod="p", container="c", command=["true"])
    assert result == ExecResult("p\n", "", 0, 0.0)


async def test_run_returns_the_result() -> None:
    seen: list[ExecCall] = []

    def once(call: ExecCall, handle: StreamHandle) -> ExecResult:
        seen.append(call)
        return ExecResult("out", "err", 3, 0.1)

    result = await executor(once).run("ns", "pod", "c", ["sh", "-c", "x"])
    assert result == ExecResult("out", "err", 3, 0.1)
    assert seen == [ExecCall("ns", "pod", "c", ("sh", "-c", "x"), 5.0)]


async def test_concurrency_is_bounded() -> None:
    lock = threading.Lock()
    running = 0
    peak = 0

    def once(call: ExecCall, handle: StreamHandle) -> ExecResult:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return ok(call, handle)

    ex = executor(once, max_concurrency=3)
    results = await asyncio.gather(*(ex.run("ns", f"p{i}", "c", ["true"]) for i in range(15)))
    assert [r.stdout for r in results] == [f"p{i}\n" for i in range(15)]
    assert peak == 3


async def test_the_blocking_attempt_runs_off_the_event_loop() -> None:
    # The attempt blocks until a coroutine on the loop answers: run on the loop, it could never be answered.
    answered = threading.Event()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def once(call: ExecCall, handle: StreamHandle) -> ExecResult:
        loop.call_soon_threadsafe(started.set)
        assert answered.wait(10), "the event loop did not run while the attempt blocked"
        return ok(call, handle)

    async def answer() -> None:
        await started.wait()
        answered.set()

    answering = asyncio.create_task(answer())
    result = await executor(once, timeout_s=20.0).run("ns", "p", "c", ["true"])
    await answering
    assert result.stdout == "p\n"


async def test_a_hanging_exec_times_out_and_is_closed_without_holding_up_others() -> None:
    closed = threading.Event()

    attached = threading.Event()

    def once(call: ExecCall, handle: StreamHandle) -> ExecResult:
        if call.pod == "hangs":
            handle.attach(closed.set)  # what the real attempt does with the websocket's close
            attached.set()
            closed.wait(30)
            raise ExecTimeout("closed from outside")
        return ok(call, handle)

    ex = executor(once, max_concurrency=2, timeout_s=0.5, grace_s=0.1)
    hanging = asyncio.create_task(ex.run("ns", "hangs", "c", ["true"]))
    await until_set(attached, "the hanging exec's start")
    fast = await asyncio.wait_for(asyncio.gather(*(ex.run("ns", f"p{i}", "c", ["true"]) for i in range(6))), 2)
    assert len(fast) == 6
    assert not hanging.done()
    with pytest.raises(ExecTimeout, match="hangs"):
        await hanging
    assert closed.wait(2)


async def test_timeout_from_the_attempt_itself() -> None:
    once, calls = flaky([ExecTimeout("deadline passed in the thread")])
    with pytest.raises(ExecTimeout, match="deadline passed in the thread"):
        await executor(once, retries=3, backoff_s=0.001).run("ns", "p", "c", ["true"])
    assert len(calls) == 1  # a timeout is not retried unless asked (retry_timeouts)


async def test_cancellation_closes_the_stream() -> None:
    closed = threading.Event()

    attached = threading.Event()

    def once(call: ExecCall, handle: StreamHandle) -> ExecResult:
        handle.attach(closed.set)
        attached.set()
        closed.wait(30)
        raise ExecTimeout("closed")

    task = asyncio.create_task(executor(once).run("ns", "p", "c", ["true"]))
    await until_set(attached, "the exec's start")  # cancelled while the attempt is in its exec, not before it began
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.wait(2)


async def until_set(event: threading.Event, what: str) -> None:
    """Wait, without blocking the loop, for an event an attempt in the pool sets."""
    assert await asyncio.to_thread(event.wait, 10), f"{what} never happened"


def flaky(failures: list[Exception]) -> tuple[Callable[[ExecCall, StreamHandle], ExecResult], list[float]]:
    calls: list[float] = []

    def once(call: ExecCall, handle: StreamHandle) -> ExecResult:
        calls.append(time.monotonic())
        if failures:
            raise failures.pop(0)
        return ok(call, handle)

    return once, calls


async def test_transient_errors_are_retried_with_backoff() -> None:
    once, calls = flaky([ExecUnavailable("502"), ExecUnavailable("connection reset")])
    result = await executor(once, retries=3, backoff_s=0.05).run("ns", "p", "c", ["true"])
    assert result.stdout == "p\n"
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.05 * 0.5 * 0.9
    assert calls[2] - calls[1] >= 0.1 * 0.5 * 0.9


async def test_retries_are_bounded() -> None:
    once, calls = flaky([ExecUnavailable(str(i)) for i in range(10)])
    with pytest.raises(ExecUnavailable) as caught:
        await executor(once, retries=2, backoff_s=0.001).run("ns", "p", "c", ["true"])
    assert isinstance(caught.value, ExecFailed)
    assert len(calls) == 3


@pytest.mark.parametrize(
    "error", [ExecForbidden("403"), PodGone("404"), ExecFailed("400"), ExecTimeout("slow")], ids=type
)
async def test_permanent_errors_are_not_retried(error: ExecError) -> None:
    once, calls = flaky([error])
    with pytest.raises(type(error)):
        await executor(once, retries=5, backoff_s=0.001).run("ns", "p", "c", ["true"])
    assert len(calls) == 1


async def test_timeouts_are_retried_when_asked() -> None:
    once, calls = flaky([ExecTimeout("slow")])
    await executor(once, retries=1, backoff_s=0.001, retry_timeouts=True).run("ns", "p", "c", ["true"])
    assert len(calls) == 2


async def test_unexpected_exceptions_are_mapped() -> None:
    # An error the transport does not know is taken as passing (retried), named, and keeps its cause.
    once, calls = flaky([RuntimeError("boom")])
    result = await executor(once, retries=1, backoff_s=0.001).run("ns", "p", "c", ["true"])
    assert result.stdout == "p\n"
    assert len(calls) == 2

    once, calls = flaky([RuntimeError("boom")])
    with pytest.raises(ExecUnavailable, match=r"exec into ns/p container c: RuntimeError: boom") as caught:
        await executor(once).run("ns", "p", "c", ["true"])
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_backoff_is_exponential_with_jitter() -> None:
    ex = executor(ok, backoff_s=1.0, rng=random.Random(7))
    for attempt in range(6):
        for _ in range(20):
            delay = ex.backoff(attempt)
            assert 0.5 * 2**attempt <= delay <= 2**attempt
    assert len({ex.backoff(0) for _ in range(10)}) > 1


async def test_on_exec_hook() -> None:
    seen: list[tuple[float, bool]] = []
    once, _ = flaky([ExecUnavailable("x")])
    await executor(once, retries=1, on_exec=lambda d, good: seen.append((d, good))).run("ns", "p", "c", ["true"])
    assert [good for _, good in seen] == [False, True]
    assert all(d >= 0 for d, _ in seen)


async def test_a_failing_hook_does_not_fail_the_exec() -> None:
    def hook(duration_s: float, good: bool) -> None:
        raise ValueError("metrics broke")

    assert (await executor(ok, on_exec=hook).run("ns", "p", "c", ["true"])).returncode == 0


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        executor(ok, max_concurrency=0)
    with pytest.raises(ValueError, match="timeout"):
        executor(ok, timeout_s=0)


def test_stream_handle_closes_late_attachments() -> None:
    handle = StreamHandle()
    closed: list[int] = []
    handle.close()
    handle.attach(lambda: closed.append(1))
    assert closed == [1]
    handle.close()
    assert closed == [1]


# --- error mapping -------------------------------------------------------------------------------------------


def handshake_error(status: int, body: bytes) -> Exception:
    """What `kubernetes.stream` raises for a refused websocket handshake: ApiException(status=0) around it."""
    from kubernetes.client.exceptions import ApiException
    from websocket import WebSocketBadStatusException

    try:
        try:
            raise WebSocketBadStatusException(
                f"Handshake status {status} X -+-+- {{}} -+-+- {body.decode()}", status, "X", {}, body
            )
        except Exception as inner:
            raise ApiException(status=0, reason=str(inner))  # noqa: B904 (as the client does it)
    except ApiException as outer:
        return outer


STATUS_403 = b'{"kind":"Status","status":"Failure","message":"pods \\"database-0\\" is forbidden: User \\"system:serviceaccount:x:y\\" cannot create resource \\"pods/exec\\"","reason":"Forbidden","code":403}'  # noqa: E501


def test_forbidden_names_the_missing_rbac() -> None:
    error = classify_exec_error(handshake_error(403, STATUS_403), CALL)
    assert isinstance(error, ExecForbidden)
    assert "create" in str(error)
    assert "pods/exec" in str(error)
    assert "cannot create resource" in str(error)


def test_not_found_is_pod_gone() -> None:
    body = b'{"kind":"Status","status":"Failure","message":"pods \\"database-0\\" not found","code":404}'
    error = classify_exec_error(handshake_error(404, body), CALL)
    assert isinstance(error, PodGone)
    assert 'pods "database-0" not found' in str(error)


def test_completed_pod_is_gone() -> None:
    body = b'{"message":"cannot exec into a container in a completed pod; current phase is Succeeded","code":400}'
    assert isinstance(classify_exec_error(handshake_error(400, body), CALL), PodGone)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_server_errors_are_transient(status: int) -> None:
    error = classify_exec_error(handshake_error(status, b"upstream connect error"), CALL)
    assert isinstance(error, ExecUnavailable)
    assert str(status) in str(error)


def test_unreachable_kubelet_message_drops_the_exec_url_query() -> None:
    """Seen on the real node with its kubelet stopped: the API server's message carries the whole exec URL, whose
    query is the URL-encoded in-pod script (15 KB), which overflowed the pod status message (4096) and crashed the
    suspension loop. The message keeps the cause and the URL's path."""
    script = "%23+processcontrol+in-pod+script" * 500
    url = f"https://10.88.7.1:37453/exec/ns/database-0/pxc-mysql?command=sh&command=-c&command={script}"
    message = f'error sending request: Post "{url}": dial tcp 10.88.7.1:37453: connect: connection refused'
    body = json.dumps({"kind": "Status", "message": f"Internal error occurred: {message}", "code": 500}).encode()
    error = classify_exec_error(handshake_error(500, body), CALL)
    assert isinstance(error, ExecUnavailable)
    assert len(str(error)) < 1000, len(str(error))
    assert "connect: connection refused" in str(error)
    assert "https://10.88.7.1:37453/exec/ns/database-0/pxc-mysql?" in str(error)
    assert "in-pod+script" not in str(error)


def test_unreachable_kubelet_on_the_error_channel_drops_the_exec_url_query() -> None:
    """The same message arriving as the exec's error-channel Status (what the API server sends on the real node
    when the pod's kubelet refuses the connection)."""
    url = "https://10.88.7.1:45811/exec/ns/database-0/pxc-mysql?command=sh&command=" + "%23+script" * 1500
    message = f'Internal error occurred: error sending request: Post "{url}": dial tcp: connect: connection refused'
    raw = json.dumps({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"})
    with pytest.raises(ExecFailed) as caught:
        _exit_status(raw, CALL)
    assert len(str(caught.value)) < 1000, len(str(caught.value))
    assert "connect: connection refused" in str(caught.value)
    assert "%23+script" not in str(caught.value)


def test_other_client_errors_are_permanent() -> None:
    body = b'{"message":"container bogus is not valid for pod database-0","code":400}'
    error = classify_exec_error(handshake_error(400, body), CALL)
    assert type(error) is ExecFailed
    assert "not valid" in str(error)


def test_plain_api_exception_status() -> None:
    from kubernetes.client.exceptions import ApiException

    assert isinstance(classify_exec_error(ApiException(status=403, reason="Forbidden"), CALL), ExecForbidden)
    assert isinstance(classify_exec_error(ApiException(status=404, reason="Not Found"), CALL), PodGone)


def test_connection_errors_are_transient() -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise ApiException(status=0, reason=str(inner))  # noqa: B904
    except ApiException as outer:
        error = classify_exec_error(outer, CALL)
    assert isinstance(error, ExecUnavailable)


def test_socket_timeouts_are_timeouts() -> None:
    from websocket import WebSocketTimeoutException

    assert isinstance(classify_exec_error(WebSocketTimeoutException("timed out"), CALL), ExecTimeout)
    assert isinstance(classify_exec_error(TimeoutError("timed out"), CALL), ExecTimeout)


def test_our_errors_pass_through() -> None:
    error = PodGone("gone")
    assert classify_exec_error(error, CALL) is error


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ('{"metadata":{},"status":"Success"}', 0),
        (
            '{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing'
            ' command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":'
            '[{"reason":"ExitCode","message":"3"}]}}',
            3,
        ),
        ("", None),
        ("not json", None),
    ],
)
def test_exit_status(raw: str, code: int | None) -> None:
    assert _exit_status(raw, CALL) == code


def test_exit_status_of_a_command_that_never_ran() -> None:
    raw = (
        '{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing command in container:'
        ' failed to exec in container: exec: \\"sh\\": executable file not found in $PATH","reason":"InternalError"}'
    )
    with pytest.raises(ExecFailed, match="executable file not found"):
        _exit_status(raw, CALL)
