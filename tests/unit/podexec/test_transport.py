"""The exec transport's policy (limit, timeout, retry, error mapping) with an injected single attempt."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import random
import threading
import time
from collections.abc import Callable

import pytest

from processcontrol.exceptions import ExecError, ExecFailed, ExecForbidden, ExecTimeout, PodGone
from processcontrol.podexec.script import READY
from processcontrol.podexec.transport import (
    Dialogue,
    ExecCall,
    ExecResult,
    ExecUnavailable,
    KubernetesPodExecutor,
    PodExecutor,
    StreamHandle,
    _exit_status,
    classify_exec_error,
    prompted,
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


async def test_a_background_exec_waits_behind_one_asked_for_after_it() -> None:
    release = threading.Event()
    order: list[str] = []

    def once(call: ExecCall, handle: StreamHandle) -> ExecResult:
        if call.pod == "busy":
            release.wait(5)
        order.append(call.pod)
        return ok(call, handle)

    ex = executor(once, max_concurrency=1)
    busy = asyncio.create_task(ex.run("ns", "busy", "c", ["true"]))
    await asyncio.sleep(0.05)
    recheck = asyncio.create_task(ex.run("ns", "recheck", "c", ["true"], background=True))
    await asyncio.sleep(0.05)
    stop = asyncio.create_task(ex.run("ns", "stop", "c", ["true"]))
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(busy, recheck, stop)
    assert order == ["busy", "stop", "recheck"]


async def test_the_metrics_show_execs_in_flight_and_waiting() -> None:
    from processcontrol.podexec import transport

    seen: list[tuple[float, float]] = []
    release = threading.Event()

    def once(call: ExecCall, handle: StreamHandle) -> ExecResult:
        assert release.wait(10)
        return ok(call, handle)

    in_flight, waiting = transport.EXECS_IN_FLIGHT, transport.EXECS_WAITING
    base_in_flight, base_waiting = in_flight._value.get(), waiting._value.get()
    ex = executor(once, max_concurrency=2)
    runs = asyncio.gather(*(ex.run("ns", f"p{i}", "c", ["true"]) for i in range(5)))
    for _ in range(100):
        await asyncio.sleep(0.01)
        seen.append((in_flight._value.get() - base_in_flight, waiting._value.get() - base_waiting))
        if seen[-1] == (2, 3):
            break
    release.set()
    await runs
    assert seen[-1] == (2, 3)
    assert (in_flight._value.get(), waiting._value.get()) == (base_in_flight, base_waiting)
    assert transport.EXECS_IN_FLIGHT_MAX._value.get() >= 2


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


@pytest.mark.parametrize("loop_turns", range(5))
async def test_a_cancellation_that_comes_as_the_attempt_ends_is_not_lost(loop_turns: int) -> None:
    """Python 3.11's wait_for returned the attempt's result to a task cancelled in the loop turns between the
    attempt's end and the task's wake-up: a pod worker stopped at shutdown ran on. Each parameter cancels one
    turn later; a task that finished before its cancellation came is fine."""
    go, ended = threading.Event(), threading.Event()

    def once(call: ExecCall, handle: StreamHandle) -> ExecResult:
        go.wait(10)
        ended.set()
        return ok(call, handle)

    task = asyncio.create_task(executor(once).run("ns", "p", "c", ["true"]))
    await asyncio.sleep(0.01)
    go.set()
    assert ended.wait(10)
    time.sleep(0.02)  # noqa: ASYNC251 (blocking on purpose: the loop must not turn while the thread hands over)
    for _ in range(loop_turns):
        await asyncio.sleep(0)
    if task.done():
        return
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


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


# --- the dialogue: asking before acting ------------------------------------------------------------------------

LOOK_OUT = "PCTL1\ttool\tperl\nPCTL1\tsocket\tj\tp\tprobed\t1\t-\t1\nPCTL1\tready\t1\n"
GO = "STOP\t1\tj/p\n"


class Conversing:
    """An `ExecOnce` that does what `KubernetesExec` does with a dialogue: prints the look, asks once, writes the
    answer (an empty line for none), then ends as the next of `endings` says: an exception raised, or the output."""

    def __init__(self, endings: list[Exception | None] | None = None, ask_timeout_s: float = 5.0) -> None:
        self.endings = list(endings or [])
        self.ask_timeout_s = ask_timeout_s
        self.attempts = 0
        self.written: list[str] = []
        self.handles: list[StreamHandle] = []

    def __call__(self, call: ExecCall, handle: StreamHandle) -> ExecResult:
        self.attempts += 1
        self.handles.append(handle)
        assert call.dialogue is not None
        assert prompted(LOOK_OUT.encode(), call.dialogue)
        answer = handle.ask(call.dialogue, LOOK_OUT, self.ask_timeout_s)
        self.written.append(answer or "\n")
        ending = self.endings.pop(0) if self.endings else None
        if ending is not None:
            raise ending
        return ExecResult(LOOK_OUT + "PCTL1\tgo\tSTOP\t1\n", "", 0, 0.0)


class Answers:
    """A dialogue's answer coroutine that records what it was asked, and where it ran."""

    def __init__(self, reply: str | BaseException | None = GO) -> None:
        self.reply = reply
        self.asked: list[str] = []
        self.threads: list[int] = []

    async def __call__(self, stdout: str) -> str | None:
        self.asked.append(stdout)
        self.threads.append(threading.get_ident())
        if isinstance(self.reply, BaseException):
            raise self.reply
        return self.reply


async def test_the_answer_is_decided_on_the_event_loop_and_written_once() -> None:
    once, answers = Conversing(), Answers()
    dialogue = Dialogue(READY, answers)
    result = await executor(once, retries=3).run("ns", "p", "c", ["sh"], dialogue)
    assert result.stdout.endswith("PCTL1\tgo\tSTOP\t1\n")
    assert answers.asked == [LOOK_OUT]
    assert answers.threads == [threading.get_ident()]  # the loop's thread (may write to the API), not the exec's
    assert once.written == [GO]
    assert once.handles[0].answered


CALLER = contextvars.ContextVar[str]("CALLER")


async def test_the_answer_runs_with_the_callers_context_vars() -> None:
    """kopf.event reads kopf's context vars: an answer that posts an event (a probe conflict, a ledger write that
    failed) must run with the worker's, not the exec thread's empty context (seen on the real node)."""
    seen: list[str] = []

    async def answer(stdout: str) -> str | None:
        seen.append(CALLER.get("none"))
        return GO

    CALLER.set("the pod worker")
    await executor(Conversing(), retries=0).run("ns", "p", "c", ["sh"], Dialogue(READY, answer))
    assert seen == ["the pod worker"]


@pytest.mark.parametrize(
    ("error", "options"),
    [(ExecUnavailable("connection reset"), {}), (ExecTimeout("slow"), {"retry_timeouts": True})],
    ids=["unavailable", "timeout"],
)
async def test_a_failure_after_the_answer_was_written_is_not_retried(
    error: ExecError, options: dict[str, object]
) -> None:
    """What the command did with the answer is the caller's to find out (a look): another attempt would look and
    ask again, and might act twice."""
    once, answers = Conversing([error]), Answers()
    ex = executor(once, retries=3, backoff_s=0.001, **options)
    with pytest.raises(type(error)):
        await ex.run("ns", "p", "c", ["sh"], Dialogue(READY, answers))
    assert once.attempts == 1
    assert len(answers.asked) == 1
    assert once.written == [GO]


async def test_a_failure_before_the_prompt_is_retried() -> None:
    asked = 0

    def once(call: ExecCall, handle: StreamHandle) -> ExecResult:
        nonlocal asked
        if asked == 0:
            asked += 1
            raise ExecUnavailable("502 before the command started")
        assert call.dialogue is not None
        handle.ask(call.dialogue, LOOK_OUT, 5)
        return ok(call, handle)

    answers = Answers()
    result = await executor(once, retries=3, backoff_s=0.001).run("ns", "p", "c", ["sh"], Dialogue(READY, answers))
    assert result.stdout == "p\n"
    assert answers.asked == [LOOK_OUT]


async def test_no_answer_writes_an_empty_line_and_a_failure_after_it_may_be_retried() -> None:
    """None: the command gets an empty line (the in-pod script sends nothing on it); nothing was told, so a failed
    attempt is retried as without a dialogue."""
    once, answers = Conversing([ExecUnavailable("reset")]), Answers(None)
    result = await executor(once, retries=3, backoff_s=0.001).run("ns", "p", "c", ["sh"], Dialogue(READY, answers))
    assert result.returncode == 0
    assert once.written == ["\n", "\n"]
    assert once.attempts == 2
    assert not any(handle.answered for handle in once.handles)


@pytest.mark.parametrize("ending", [None, ExecUnavailable("reset")], ids=["exec-ok", "exec-failed"])
async def test_an_answer_that_raises_is_reraised_and_never_retried(ending: Exception | None) -> None:
    """The answer's failure (a ledger write refused, a bug) is the caller's, not the exec's: re-raised as it is,
    never taken for a failed exec and retried; the command got an empty line meanwhile."""
    boom = RuntimeError("the ledger write failed")
    once, answers = Conversing([ending]), Answers(boom)
    with pytest.raises(RuntimeError) as caught:
        await executor(once, retries=3, backoff_s=0.001).run("ns", "p", "c", ["sh"], Dialogue(READY, answers))
    assert caught.value is boom
    if ending is not None:
        assert caught.value.__cause__ is ending
    assert once.attempts == 1
    assert once.written == ["\n"]


async def test_an_answer_slower_than_the_attempt_is_given_up() -> None:
    cancelled = asyncio.Event()

    async def never(stdout: str) -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return GO

    once = Conversing(ask_timeout_s=0.1)
    result = await executor(once).run("ns", "p", "c", ["sh"], Dialogue(READY, never))
    assert result.returncode == 0
    assert once.written == ["\n"]
    assert not once.handles[0].answered
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_no_answer_is_written_once_the_attempt_was_given_up() -> None:
    handle = StreamHandle(asyncio.get_running_loop())
    handle.close()  # timed out or cancelled meanwhile
    answer = await asyncio.to_thread(handle.ask, Dialogue(READY, Answers()), LOOK_OUT, 5)
    assert answer == ""
    assert not handle.answered


async def test_the_dialogue_reaches_the_attempt() -> None:
    seen: list[ExecCall] = []

    def once(call: ExecCall, handle: StreamHandle) -> ExecResult:
        seen.append(call)
        return ok(call, handle)

    dialogue = Dialogue(READY, Answers())
    await executor(once).run("ns", "p", "c", ["sh"], dialogue)
    await executor(once).run("ns", "p", "c", ["sh"])
    assert [call.dialogue for call in seen] == [dialogue, None]


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        (b"", False),
        (b"PCTL1\tready\t", False),  # not a whole line yet
        (b"PCTL1\tready\t2", False),
        (b"PCTL1\tready\t2\n", True),
        (b"PCTL1\ttool\tperl\nPCTL1\tready\t0\n", True),
        (b"PCTL1\ttool\tperl\nPCTL1\tready\t0", False),
        (b"PCTL1\ttool\tperl\nPCTL1\tready\t0\nPCTL1\tgo\tSTOP\t1\n", True),
        (b"say PCTL1\tready\t0\n", False),  # not at a line's start
        (b"PCTL1\ttool\tperl\n", False),
    ],
)
def test_prompted_needs_the_prompt_as_a_whole_line(stdout: bytes, expected: bool) -> None:
    dialogue = Dialogue(READY, Answers())
    assert prompted(stdout, dialogue) is expected
    assert prompted(bytearray(stdout), dialogue) is expected
    assert prompted(stdout, None) is False


async def test_a_namespace_gets_at_most_its_share_and_leaves_the_rest_to_others() -> None:
    """Issue 27: one exec pool served every namespace, so one tenant's suspensions or hanging pods starved the rest."""
    lock = threading.Lock()
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    release = threading.Event()
    other_done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def once(call: ExecCall, handle: StreamHandle) -> ExecResult:
        with lock:
            running[call.namespace] = running.get(call.namespace, 0) + 1
            peak[call.namespace] = max(peak.get(call.namespace, 0), running[call.namespace])
        if call.namespace == "busy":
            assert release.wait(10), "never released"
        with lock:
            running[call.namespace] -= 1
        return ok(call, handle)

    ex = executor(once, max_concurrency=4, max_per_namespace=2)
    busy = [asyncio.ensure_future(ex.run("busy", f"p{i}", "c", ["true"])) for i in range(10)]
    await asyncio.sleep(0.1)
    other = [asyncio.ensure_future(ex.run("other", f"q{i}", "c", ["true"])) for i in range(4)]
    gathered = asyncio.gather(*other)
    gathered.add_done_callback(lambda _: loop.call_soon(other_done.set))
    await asyncio.wait_for(other_done.wait(), 10)  # while every busy exec hangs
    release.set()
    await asyncio.gather(*busy)
    assert peak["busy"] == 2 and peak["other"] <= 2, peak
