"""The exec transport: run a command in a pod's container and collect its output.

`KubernetesPodExecutor` wraps the official client's websocket exec (`kubernetes.stream.stream`), which is
synchronous, so every exec runs in a worker thread of its own pool and the event loop never blocks:

- Safe in parallel: `stream()` swaps a method of the `ApiClient` it is given while it runs, so threads sharing
  one client break each other (kubernetes-client/python#928). Each worker thread has its own `ApiClient`,
  all built from the one `Configuration` passed in.
- Bounded and fair: exec slots (podexec/slots.py) cap concurrent execs, and optionally others those of each
  namespace under it (`max_per_namespace`), served in arrival order with background work (re-checks) after the
  rest; every attempt has a deadline, enforced in the thread
  (`run_forever(timeout=...)`, then the websocket is closed) and again on the event loop, so a hanging pod
  costs its own caller one timeout and never holds up the others.
- Bounded in memory: stdout and stderr together are read up to `max_output_bytes` (1 MiB by default), frame by
  frame; a container that floods its output fails that exec with `ExecOutputTooLarge` and the stream is closed.
  (`WSClient.run_forever` would keep everything, twice: per channel and in its `_all` capture.)
- Asking before acting: with a `Dialogue`, stdin is open; when the command prints its prompt line, the answer
  (decided on the event loop, which may write to the API first) is written to its stdin. The in-pod script
  sends nothing without one (podexec/inpod.sh).
- Retried: only failures that may pass (connection errors, HTTP 429 and 5xx, and optionally timeouts) are
  retried, with exponential backoff and jitter, and never once an answer was written: what the command did
  with it is then the caller's to find out.

The blocking single attempt (`ExecOnce`) is injectable, so the policy above is tested without a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import random
import re
import select
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Protocol

import kubernetes
import websocket
from kubernetes.stream import stream
from prometheus_client import Gauge

from processcontrol.exceptions import ExecError, ExecFailed, ExecForbidden, ExecTimeout, PodGone
from processcontrol.podexec.slots import Slots

logger = logging.getLogger(__name__)

# Channels of the Kubernetes exec websocket protocol (v4/v5.channel.k8s.io).
STDOUT_CHANNEL = 1
STDERR_CHANNEL = 2
ERROR_CHANNEL = 3
CHANNELS = (STDOUT_CHANNEL, STDERR_CHANNEL, ERROR_CHANNEL)
# websocket-client's opcodes (ABNF.OPCODE_*), spelled out so the module imports without it.
_OPCODE_CLOSE = 0x8
_OPCODE_DATA = (0x1, 0x2)


@dataclass(frozen=True)
class ExecResult:
    """What one exec produced; `returncode` is None when the API reported no exit status."""

    stdout: str
    stderr: str
    returncode: int | None
    duration_s: float


@dataclass(frozen=True)
class Dialogue:
    """An exec that asks before it acts: once its stdout has a line starting with `prompt`, `answer` gets the
    stdout so far and returns what to write to its stdin (None: nothing; the command gets an empty line)."""

    prompt: str
    answer: Callable[[str], Coroutine[Any, Any, str | None]]


class PodExecutor(Protocol):
    """Runs a command in a container of a pod; raises `ExecError` subclasses when it cannot."""

    async def run(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: list[str],
        dialogue: Dialogue | None = None,
        *,
        background: bool = False,
    ) -> ExecResult: ...


class ExecUnavailable(ExecFailed):
    """An exec failure that may pass by itself (connection error, HTTP 429 or 5xx): retried."""


class ExecOutputTooLarge(ExecFailed):
    """The command printed more than the transport reads; not retried (it would print as much again)."""


# What one exec may print (stdout and stderr together): the in-pod script prints ~100 bytes per socket.
MAX_OUTPUT_BYTES = 1 << 20
# The v5 protocol's channel for closing a stream; not output.
CLOSE_CHANNEL = 255

# How close the exec concurrency comes to its ceiling, and how many wait for it: what a benchmark at scale reads
# to tell an exec-bound operator from one that never has enough work in flight.
EXECS_IN_FLIGHT = Gauge("processcontrol_execs_in_flight", "Exec attempts running now (within the concurrency limit).")
EXECS_IN_FLIGHT_MAX = Gauge("processcontrol_execs_in_flight_max", "The most exec attempts ever running at once.")
EXECS_WAITING = Gauge("processcontrol_execs_waiting", "Exec attempts waiting for a free slot of the concurrency limit.")


@dataclass(frozen=True)
class ExecCall:
    """One exec attempt: where, what, and how long it may take."""

    namespace: str
    pod: str
    container: str
    command: tuple[str, ...]
    timeout_s: float
    dialogue: Dialogue | None = None
    background: bool = False  # waits for a slot behind every exec that is not

    @property
    def what(self) -> str:
        return f"exec into {self.namespace}/{self.pod} container {self.container}"


class StreamHandle:
    """Lets the event loop close an attempt's websocket from outside its thread (on timeout or cancellation)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None = None, context: contextvars.Context | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._closer: Callable[[], None] | None = None
        self.closed = False
        self.loop = loop  # where a dialogue's answer is decided
        # The caller's context vars, which the answer runs with (kopf's, for its events): the exec's thread has none.
        self.context = context
        self.answered = False  # an answer was written: the attempt must not be repeated
        self.error: BaseException | None = None  # what the answer raised: the caller's, re-raised after the exec

    def ask(self, dialogue: Dialogue, stdout: str, timeout_s: float) -> str:
        """From the exec's thread: the dialogue's answer, decided on the event loop ('' when it decided nothing or
        the attempt was given up meanwhile). Marks the handle answered before the caller writes it."""
        loop = self.loop
        assert loop is not None, "a dialogue needs the event loop the attempt runs on"
        if self.closed:
            return ""
        future: Future[str | None] = Future()
        tasks: list[asyncio.Task[str | None]] = []

        def settle(task: asyncio.Task[str | None]) -> None:
            if task.cancelled():
                future.cancel()
            elif (error := task.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(task.result())

        def start() -> None:
            task = loop.create_task(dialogue.answer(stdout), context=self.context)
            tasks.append(task)
            task.add_done_callback(settle)

        loop.call_soon_threadsafe(start)
        try:
            answer = future.result(timeout=max(0.0, timeout_s))
        except FutureTimeout:
            loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])
            return ""
        except BaseException as error:  # the answer's own failure, not the exec's: never retried as one
            self.error = error
            return ""
        if not answer:
            return ""
        with self._lock:
            # Marked before it is written, under the lock `close` takes: a caller that gave up either sees it
            # answered (and never retries) or closed the stream first (and nothing is written).
            if self.closed:
                return ""
            self.answered = True
        return answer

    def attach(self, closer: Callable[[], None]) -> None:
        """Register how to close the stream; closes it at once if the caller already gave up."""
        with self._lock:
            closed = self.closed
            if not closed:
                self._closer = closer
        if closed:
            _quietly(closer)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            closer, self._closer = self._closer, None
        if closer is not None:
            _quietly(closer)


# The blocking single attempt: returns the result or raises an `ExecError` (ExecUnavailable when transient).
ExecOnce = Callable[[ExecCall, StreamHandle], ExecResult]
OnExec = Callable[[float, bool], None]


def _quietly(func: Callable[[], None]) -> None:
    try:
        func()
    except Exception:  # closing a broken socket may fail in many ways; it is closed either way
        logger.debug("closing an exec stream failed", exc_info=True)


_HANDSHAKE_STATUS = re.compile(r"Handshake status (\d{3})")


def _status_and_body(error: BaseException) -> tuple[int | None, str]:
    """The HTTP status and body behind a failed exec, looking through the client's `ApiException(status=0)`."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        status = getattr(current, "status_code", None)
        if isinstance(status, int):
            body = getattr(current, "resp_body", None)
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
            return status, text
        current = current.__cause__ or current.__context__
    for item in seen:
        status = getattr(item, "status", None)
        if isinstance(status, int) and status >= 100:
            return status, str(getattr(item, "body", "") or getattr(item, "reason", "") or "")
        match = _HANDSHAKE_STATUS.search(str(getattr(item, "reason", None) or item))
        if match:
            return int(match.group(1)), str(item)
    return None, str(error)


# A URL's query string. The API server's message for an unreachable kubelet quotes the whole exec URL, whose query is
# the URL-encoded in-pod script (about 15 KB): it would overflow the pod status message and bury the cause.
_URL_QUERY = re.compile(r"(https?://[^\s\"?]+)\?[^\s\"]*")
MAX_MESSAGE = 600


def _api_message(body: str) -> str:
    """The `message` of a Kubernetes Status body, else the body itself; URL queries elided, shortened."""
    text = body.strip()
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(body).get("message")
        if isinstance(message, str) and message:
            text = message
    text = _URL_QUERY.sub(r"\1?...", text)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _is_timeout(error: BaseException) -> bool:
    current: BaseException | None = error
    for _ in range(8):
        if current is None:
            return False
        if isinstance(current, TimeoutError) or type(current).__name__ == "WebSocketTimeoutException":
            return True
        current = current.__cause__ or current.__context__
    return False


def classify_exec_error(error: BaseException, call: ExecCall) -> ExecError:
    """Map what the kubernetes/websocket client raised to one of our exceptions."""
    if isinstance(error, ExecError):
        return error
    status, body = _status_and_body(error)
    message = _api_message(body)
    if status == 403:
        return ExecForbidden(
            f"{call.what}: forbidden: the operator's service account needs RBAC `create` on `pods/exec`"
            f" in namespace {call.namespace}: {message}"
        )
    if status == 404:
        return PodGone(f"{call.what}: pod not found: {message}")
    if status == 400 and "completed pod" in message:
        return PodGone(f"{call.what}: {message}")
    if status is not None and (status == 429 or status >= 500):
        return ExecUnavailable(f"{call.what}: HTTP {status}: {message}")
    if status is not None:
        return ExecFailed(f"{call.what}: HTTP {status}: {message}")
    if _is_timeout(error):
        return ExecTimeout(f"{call.what}: no answer within {call.timeout_s:g}s: {error}")
    # No HTTP status: the connection itself failed (refused, reset, TLS, DNS): worth another try.
    return ExecUnavailable(f"{call.what}: {type(error).__name__}: {message or error}")


def _exit_status(raw: str, call: ExecCall) -> int | None:
    """The exit code from the error channel's Status object; raises ExecFailed when the command never ran."""
    if not raw.strip():
        return None
    try:
        status: Any = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(status, dict):
        return None
    if status.get("status") == "Success":
        return 0
    details = status.get("details") or {}
    for cause in details.get("causes") or []:
        if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
            with contextlib.suppress(TypeError, ValueError):
                return int(str(cause.get("message")))
    # A Failure without an exit code: the command could not be started (e.g. no `sh` in the image).
    raise ExecFailed(f"{call.what}: {_api_message(raw)}")


class KubernetesExec:
    """The real `ExecOnce`: one websocket exec with a per-thread `ApiClient` (kubernetes-client/python#928)."""

    def __init__(self, configuration: Any, max_output_bytes: int = MAX_OUTPUT_BYTES) -> None:
        self.configuration = configuration
        self.max_output_bytes = max_output_bytes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[Any] = []

    def _core_api(self) -> Any:
        core = getattr(self._local, "core", None)
        if core is None:
            api_client = kubernetes.client.ApiClient(self.configuration)
            core = kubernetes.client.CoreV1Api(api_client)
            self._local.core = core
            with self._lock:
                self._clients.append(api_client)
        return core

    def __call__(self, call: ExecCall, handle: StreamHandle) -> ExecResult:
        started = time.monotonic()
        deadline = started + call.timeout_s
        if handle.closed:
            raise ExecTimeout(f"{call.what}: gave up before it started")
        try:
            ws = stream(
                self._core_api().connect_get_namespaced_pod_exec,
                call.pod,
                call.namespace,
                container=call.container,
                command=list(call.command),
                stdin=call.dialogue is not None,
                stdout=True,
                stderr=True,
                tty=False,
                _preload_content=False,
                _request_timeout=call.timeout_s,
            )
        except Exception as error:
            raise classify_exec_error(error, call) from error
        handle.attach(ws.close)
        try:
            try:
                channels, finished = self._read(ws, deadline, call, handle)
            except ExecError:
                raise
            except Exception as error:
                if handle.closed:
                    raise ExecTimeout(f"{call.what}: no answer within {call.timeout_s:g}s") from error
                raise classify_exec_error(error, call) from error
            if handle.closed or not finished:
                raise ExecTimeout(f"{call.what}: no answer within {call.timeout_s:g}s")
        finally:
            _quietly(ws.close)
        stdout, stderr, status = (channels[c].decode("utf-8", "replace") for c in CHANNELS)
        returncode = _exit_status(status, call)
        return ExecResult(stdout, stderr, returncode, time.monotonic() - started)

    def _read(
        self, ws: Any, deadline: float, call: ExecCall, handle: StreamHandle
    ) -> tuple[dict[int, bytearray], bool]:
        """Read frames until the server closes the stream (True) or the deadline passes (False); answer the
        dialogue's prompt on the way.

        One frame at a time, counting output as it comes: `WSClient.update` drains every frame already
        available before it returns, so a fast flood would grow without bound inside one call.
        """
        sock = ws.sock
        channels: dict[int, bytearray] = {c: bytearray() for c in CHANNELS}
        output = 0
        asked = call.dialogue is None
        while True:
            buffered = isinstance(sock.sock, ssl.SSLSocket) and sock.sock.pending()
            if not buffered:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return channels, False
                readable, _, _ = select.select([sock.sock], [], [], remaining)
                if not readable:
                    continue
            opcode, frame = sock.recv_data_frame(True)
            if opcode == _OPCODE_CLOSE:
                return channels, True
            data = frame.data if isinstance(frame.data, bytes) else str(frame.data).encode()
            if opcode not in _OPCODE_DATA or not data or data[0] not in channels:
                continue  # pings, the v5 close channel, channels we did not ask for
            channel, payload = data[0], data[1:]
            if channel != ERROR_CHANNEL:
                output += len(payload)
                if output > self.max_output_bytes:
                    raise ExecOutputTooLarge(
                        f"{call.what}: the command printed more than {self.max_output_bytes} bytes;"
                        " stopped reading (does the container's sh print on start-up?)"
                    )
            elif len(channels[channel]) + len(payload) > self.max_output_bytes:
                raise ExecOutputTooLarge(f"{call.what}: the exit status is larger than {self.max_output_bytes} bytes")
            channels[channel] += payload
            if not asked and channel == STDOUT_CHANNEL and prompted(channels[channel], call.dialogue):
                asked = True
                assert call.dialogue is not None
                stdout = channels[channel].decode("utf-8", "replace")
                answer = handle.ask(call.dialogue, stdout, deadline - time.monotonic())
                ws.write_stdin(answer or "\n")

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for api_client in clients:
            _quietly(api_client.close)


class KubernetesPodExecutor:
    """`PodExecutor` over the Kubernetes exec API: bounded, timed out, retried; see the module docstring."""

    def __init__(
        self,
        configuration: Any,
        *,
        max_concurrency: int,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        retry_timeouts: bool = False,
        on_exec: OnExec | None = None,
        exec_once: ExecOnce | None = None,
        grace_s: float = 2.0,
        rng: random.Random | None = None,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        max_per_namespace: int = 0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if max_per_namespace < 0:
            raise ValueError("max_per_namespace must be 0 (no limit of its own) or more")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.max_concurrency = max_concurrency
        # Execs of one namespace at once, under the global cap (0: only the global cap): one tenant's large
        # suspension or hanging pods then leave slots to the others.
        self.max_per_namespace = max_per_namespace
        self._namespaces: dict[str, Slots] = {}
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.backoff_s = max(0.0, backoff_s)
        self.retry_timeouts = retry_timeouts
        self.on_exec = on_exec
        self.grace_s = grace_s
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self._kubernetes_exec: KubernetesExec | None = None
        if exec_once is None:
            self._kubernetes_exec = KubernetesExec(configuration, max_output_bytes)
            exec_once = self._kubernetes_exec
            _bound_websocket_handshake(timeout_s)
        self._exec_once: ExecOnce = exec_once
        self._slots: Slots | None = None
        self._in_flight = 0
        self._in_flight_max = 0
        # Twice the limit: a timed-out attempt may still hold its thread for a moment while its socket closes.
        self._pool = ThreadPoolExecutor(max_workers=2 * max_concurrency, thread_name_prefix="podexec")

    def _limit(self) -> Slots:
        if self._slots is None:
            self._slots = Slots(self.max_concurrency)
        return self._slots

    def _namespace_limit(self, namespace: str) -> Slots | None:
        if not self.max_per_namespace:
            return None
        limit = self._namespaces.get(namespace)
        if limit is None:
            limit = self._namespaces[namespace] = Slots(self.max_per_namespace)
        return limit

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (0-based): exponential, with jitter between half and all of it."""
        base: float = self.backoff_s * (2**attempt)
        return base * (0.5 + 0.5 * self._rng.random())

    def _retryable(self, error: ExecError) -> bool:
        if isinstance(error, ExecUnavailable):
            return True
        return self.retry_timeouts and isinstance(error, ExecTimeout)

    async def run(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: list[str],
        dialogue: Dialogue | None = None,
        *,
        background: bool = False,
    ) -> ExecResult:
        """Run `command` in the container; raise ExecForbidden, PodGone, ExecTimeout or ExecFailed. A `background`
        exec waits for a slot behind every other."""
        call = ExecCall(namespace, pod, container, tuple(command), self.timeout_s, dialogue, background)
        attempt = 0
        while True:
            handle = StreamHandle(asyncio.get_running_loop(), contextvars.copy_context())
            try:
                result = await self._attempt(call, handle)
            except ExecError as error:
                if handle.error is not None:
                    raise handle.error from error
                if attempt >= self.retries or not self._retryable(error) or handle.answered:
                    raise
                delay = self.backoff(attempt)
                logger.info(f"{error}; retry {attempt + 1}/{self.retries} in {delay:.2f}s")
                attempt += 1
                # The semaphore is not held while waiting: other pods go ahead.
                await asyncio.sleep(delay)
                continue
            if handle.error is not None:
                raise handle.error
            return result

    async def _attempt(self, call: ExecCall, handle: StreamHandle) -> ExecResult:
        # The namespace's slot first: its execs queue there without holding global slots others could use.
        namespace = self._namespace_limit(call.namespace)
        if namespace is not None:
            await namespace.acquire(background=call.background)
        try:
            return await self._attempt_in_namespace(call, handle)
        finally:
            if namespace is not None:
                namespace.release()

    async def _attempt_in_namespace(self, call: ExecCall, handle: StreamHandle) -> ExecResult:
        EXECS_WAITING.inc()
        try:
            await self._limit().acquire(background=call.background)
        finally:
            EXECS_WAITING.dec()
        self._in_flight += 1
        EXECS_IN_FLIGHT.inc()
        if self._in_flight > self._in_flight_max:
            self._in_flight_max = self._in_flight
            EXECS_IN_FLIGHT_MAX.set(self._in_flight_max)
        try:
            return await self._attempt_within_limit(call, handle)
        finally:
            self._in_flight -= 1
            EXECS_IN_FLIGHT.dec()
            self._limit().release()

    async def _attempt_within_limit(self, call: ExecCall, handle: StreamHandle) -> ExecResult:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        future = loop.run_in_executor(self._pool, self._exec_once, call, handle)
        # Retrieve a late outcome of an abandoned attempt, so it is never logged as "never retrieved".
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        ok = False
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result when a cancellation comes
            # as the attempt ends, and a pod worker cancelled at shutdown then ran on (the operator never exited).
            async with asyncio.timeout(call.timeout_s + self.grace_s):
                result = await asyncio.shield(future)
            ok = True
            return result
        except TimeoutError:
            raise ExecTimeout(f"{call.what}: no answer within {call.timeout_s:g}s") from None
        except ExecError:
            raise
        except Exception as error:
            raise classify_exec_error(error, call) from error
        finally:
            if not future.done():
                handle.close()  # timed out or cancelled: free the thread and the API server's stream
            self._report(time.monotonic() - started, ok)

    def _report(self, duration_s: float, ok: bool) -> None:
        if self.on_exec is None:
            return
        try:
            self.on_exec(duration_s, ok)
        except Exception:
            logger.exception("the on_exec hook failed")

    def close(self) -> None:
        """Release the worker threads and API clients; running attempts finish in the background."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._kubernetes_exec is not None:
            self._kubernetes_exec.close()


def prompted(stdout: bytes | bytearray, dialogue: Dialogue | None) -> bool:
    """Whether the output so far has the dialogue's prompt as a whole line."""
    if dialogue is None:
        return False
    prompt = dialogue.prompt.encode()
    start = 0 if stdout.startswith(prompt) else stdout.find(b"\n" + prompt)
    return start >= 0 and stdout.find(b"\n", start + 1) >= 0


def _bound_websocket_handshake(timeout_s: float) -> None:
    """Give websocket-client's blocking connect a timeout.

    `kubernetes.stream` opens the websocket without a timeout and offers no way to pass one, so an API server
    that accepts the TCP connection and never answers would hold a worker thread forever. The default is
    process-wide; only the exec transport uses websocket-client in this process.
    """
    current = websocket.getdefaulttimeout()
    if current is None or current > timeout_s:
        websocket.setdefaulttimeout(timeout_s)
