"""The real `kubernetes.stream` exec path against a small local server that speaks the exec websocket protocol.

The server answers like kube-apiserver does: a 101 upgrade to `v4.channel.k8s.io`, stdout on channel 1, the exit
status on channel 3, then a close frame; or an HTTP error with a Status body for the handshake failures.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import socket
import socketserver
import struct
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes
import pytest

from processcontrol.exceptions import ExecFailed, ExecForbidden, ExecTimeout, PodGone
from processcontrol.podexec.script import READY
from processcontrol.podexec.transport import (
    Dialogue,
    ExecOutputTooLarge,
    ExecUnavailable,
    KubernetesExec,
    KubernetesPodExecutor,
)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes, opcode: int = 0x2) -> bytes:
    header = bytes([0x80 | opcode])
    if len(payload) < 126:
        header += bytes([len(payload)])
    elif len(payload) < 65536:
        header += bytes([126]) + struct.pack("!H", len(payload))
    else:
        header += bytes([127]) + struct.pack("!Q", len(payload))
    return header + payload


def status_body(code: int, message: str) -> bytes:
    return json.dumps({"kind": "Status", "status": "Failure", "message": message, "code": code}).encode()


class Handler(socketserver.BaseRequestHandler):
    server: Server

    def handle(self) -> None:
        conn: socket.socket = self.request
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        request_line, *header_lines = head.split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
        url = urlsplit(request_line.split(" ")[1])
        pod = url.path.split("/")[-2]
        query = parse_qs(url.query)
        with self.server.lock:
            self.server.active += 1
            self.server.peak = max(self.server.peak, self.server.active)
            self.server.requests.append((url.path, query))
        self.counted = True
        try:
            self.answer(conn, pod, query, headers)
        finally:
            self.release()

    def release(self) -> None:
        """The exec is over for the client once the close frame is out; lingering here is not concurrency."""
        with self.server.lock:
            if self.counted:
                self.counted = False
                self.server.active -= 1

    def answer(self, conn: socket.socket, pod: str, query: dict[str, list[str]], headers: dict[str, str]) -> None:
        errors = {
            "forbidden": (403, "Forbidden", 'pods "forbidden" is forbidden: cannot create resource "pods/exec"'),
            "missing": (404, "Not Found", 'pods "missing" not found'),
            "broken": (500, "Internal Server Error", "error dialing backend"),
        }
        if pod in errors:
            code, reason, message = errors[pod]
            body = status_body(code, message)
            conn.sendall(
                f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            return
        if pod == "silent-handshake":
            time.sleep(5)
            return
        accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest()).decode()
        conn.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
            ).encode()
        )
        if pod == "hangs":
            time.sleep(5)
            return
        if pod.startswith("dialogue"):
            self.converse(conn, pod)
            return
        if pod.startswith("flood"):
            # A container whose sh prints without end (a profile script, a broken image): 64 KiB frames of
            # stdout until the client hangs up, or 64 MiB in all.
            chunk = frame(b"\x01" + b"y" * 65536)
            with contextlib.suppress(OSError):
                for _ in range(1024):
                    conn.sendall(chunk)
            return
        if pod == "big-but-fine":
            conn.sendall(frame(b"\x01" + b"z" * 700_000))
            conn.sendall(frame(b"\x02" + b"w" * 200_000))
            conn.sendall(frame(b"\x03" + json.dumps({"metadata": {}, "status": "Success"}).encode()))
            self.release()
            conn.sendall(frame(struct.pack("!H", 1000), opcode=0x8))
            return
        time.sleep(0.05)  # long enough for parallel execs to overlap
        command = query.get("command", [])
        stdout = f"{pod} {query.get('container', ['?'])[0]} {json.dumps(command)}\n".encode()
        conn.sendall(frame(b"\x01" + stdout))
        conn.sendall(frame(b"\x02" + b"a warning\n"))
        if pod == "nosh":
            status: dict[str, Any] = {
                "status": "Failure",
                "message": 'exec: "sh": executable file not found in $PATH',
                "reason": "InternalError",
            }
        elif pod == "exit3":
            status = {
                "status": "Failure",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
            }
        else:
            status = {"metadata": {}, "status": "Success"}
        conn.sendall(frame(b"\x03" + json.dumps(status).encode()))
        self.release()  # before the close frame: the client cannot start its next exec before this
        conn.sendall(frame(struct.pack("!H", 1000), opcode=0x8))
        time.sleep(0.05)

    def converse(self, conn: socket.socket, pod: str) -> None:
        """The in-pod script's look, its ready line split over two frames; then one stdin frame, echoed. Pod
        `dialogue-drop` drops the connection once it has the frame (no exit status, no close frame)."""
        conn.sendall(frame(b"\x01PCTL1\ttool\tperl\nPCTL1\tre"))
        time.sleep(0.05)
        conn.sendall(frame(b"\x01ady\t0\n"))
        conn.settimeout(5)
        data = read_client_frame(conn)
        with self.server.lock:
            self.server.stdin.append(data)
        if pod == "dialogue-drop":
            conn.shutdown(socket.SHUT_RDWR)
            return
        conn.sendall(frame(b"\x01got " + data[1:]))
        conn.sendall(frame(b"\x03" + json.dumps({"metadata": {}, "status": "Success"}).encode()))
        self.release()
        conn.sendall(frame(struct.pack("!H", 1000), opcode=0x8))


def read_exactly(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the client hung up")
        data += chunk
    return data


def read_client_frame(conn: socket.socket) -> bytes:
    """One websocket frame from the client (masked, as clients send them): its payload."""
    first, second = read_exactly(conn, 2)
    assert first & 0x0F in (0x1, 0x2), f"not a data frame: opcode {first & 0x0F}"
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", read_exactly(conn, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", read_exactly(conn, 8))
    mask = read_exactly(conn, 4) if second & 0x80 else b"\0\0\0\0"
    payload = read_exactly(conn, length)
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.stdin: list[bytes] = []  # what the dialogue pods got on stdin (channel byte first)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def configuration(server: Server) -> Any:
    port = server.socket.getsockname()[1]
    return kubernetes.client.Configuration(host=f"http://127.0.0.1:{port}")


def make(configuration: Any, **kwargs: Any) -> KubernetesPodExecutor:
    # 10 s: the first exec of a run also builds the API client (1-3 s on a loaded machine); the server answers at once.
    options: dict[str, Any] = {"max_concurrency": 8, "timeout_s": 10.0, "retries": 0, "backoff_s": 0.01}
    options.update(kwargs)
    return KubernetesPodExecutor(configuration, **options)


async def test_exec_returns_output_and_exit_status(server: Server, configuration: Any) -> None:
    ex = make(configuration)
    try:
        result = await ex.run("kubecf", "database-0", "pxc-mysql", ["sh", "-c", "echo $0", "a b"])
    finally:
        ex.close()
    assert result.stdout == 'database-0 pxc-mysql ["sh", "-c", "echo $0", "a b"]\n'
    assert result.stderr == "a warning\n"
    assert result.returncode == 0
    assert result.duration_s > 0
    path, query = server.requests[0]
    assert path == "/api/v1/namespaces/kubecf/pods/database-0/exec"
    assert [v.lower() for v in query["stdout"]] == ["true"]
    assert [v.lower() for v in query["stderr"]] == ["true"]
    assert [v.lower() for v in query.get("stdin", ["false"])] == ["false"]
    assert [v.lower() for v in query.get("tty", ["false"])] == ["false"]


async def test_nonzero_exit_code(configuration: Any) -> None:
    ex = make(configuration)
    try:
        assert (await ex.run("ns", "exit3", "c", ["false"])).returncode == 3
    finally:
        ex.close()


async def test_command_that_cannot_start(configuration: Any) -> None:
    ex = make(configuration)
    try:
        with pytest.raises(ExecFailed, match="executable file not found"):
            await ex.run("ns", "nosh", "c", ["sh"])
    finally:
        ex.close()


async def test_parallel_execs_do_not_break_each_other(server: Server, configuration: Any) -> None:
    """kubernetes-client/python#928: one ApiClient per thread, so parallel streams stay independent."""
    ex = make(configuration, max_concurrency=8)
    try:
        pods = [f"pod-{i}" for i in range(40)]
        results = await asyncio.gather(*(ex.run("ns", p, "c", ["echo", p]) for p in pods))
    finally:
        ex.close()
    for pod, result in zip(pods, results, strict=True):
        assert result.stdout == f'{pod} c ["echo", "{pod}"]\n'
        assert result.returncode == 0
    assert 2 <= server.peak <= 8


def test_one_api_client_per_thread(configuration: Any) -> None:
    once = KubernetesExec(configuration)
    seen: list[Any] = []

    def grab() -> None:
        seen.append(once._core_api().api_client)
        seen.append(once._core_api().api_client)

    threads = [threading.Thread(target=grab) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 6
    assert len({id(c) for c in seen}) == 3
    assert all(seen[i] is seen[i + 1] for i in range(0, 6, 2))
    assert all(c.configuration is configuration for c in seen)
    once.close()


@pytest.mark.parametrize(
    ("pod", "error", "text"),
    [
        ("forbidden", ExecForbidden, "pods/exec"),
        ("missing", PodGone, 'pods "missing" not found'),
        ("broken", ExecUnavailable, "error dialing backend"),
    ],
)
async def test_handshake_errors(configuration: Any, pod: str, error: type[Exception], text: str) -> None:
    ex = make(configuration)
    try:
        with pytest.raises(error, match=text):
            await ex.run("ns", pod, "c", ["true"])
    finally:
        ex.close()


async def test_server_errors_are_retried(server: Server, configuration: Any) -> None:
    ex = make(configuration, retries=2, backoff_s=0.01)
    try:
        with pytest.raises(ExecUnavailable):
            await ex.run("ns", "broken", "c", ["true"])
    finally:
        ex.close()
    assert len(server.requests) == 3


@pytest.mark.parametrize("pod", ["hangs", "silent-handshake"])
async def test_hanging_exec_times_out(configuration: Any, pod: str) -> None:
    ex = make(configuration, timeout_s=0.5, grace_s=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(ExecTimeout):
            await ex.run("ns", pod, "c", ["true"])
    finally:
        ex.close()
    assert time.monotonic() - started < 3


async def test_flooding_output_fails_that_exec_and_memory_stays_flat(configuration: Any) -> None:
    """Issue 13 item 4: read at most 1 MiB; before, `run_forever` kept all 64 MiB (twice) and returned it."""
    ex = make(configuration, timeout_s=20.0)
    tracemalloc.start()
    try:
        with pytest.raises(ExecOutputTooLarge, match="printed more than 1048576 bytes") as caught:
            await ex.run("ns", "flood-1", "c", ["sh", "-c", "yes"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        ex.close()
    assert isinstance(caught.value, ExecFailed)
    assert "flood-1" in str(caught.value)
    assert peak < 8 * 1024 * 1024  # the bound plus a few frames, far from the 64 MiB sent


async def test_output_under_the_bound_is_read_whole(configuration: Any) -> None:
    ex = make(configuration)
    try:
        result = await ex.run("ns", "big-but-fine", "c", ["true"])
    finally:
        ex.close()
    assert result.stdout == "z" * 700_000
    assert result.stderr == "w" * 200_000
    assert result.returncode == 0


async def test_the_bound_is_configurable(configuration: Any) -> None:
    ex = make(configuration, max_output_bytes=100_000)
    try:
        with pytest.raises(ExecOutputTooLarge, match="100000 bytes"):
            await ex.run("ns", "big-but-fine", "c", ["true"])
    finally:
        ex.close()


# --- the dialogue over the real stream -------------------------------------------------------------------------

LOOK_OUT = "PCTL1\ttool\tperl\nPCTL1\tready\t0\n"


class Answers:
    def __init__(self, reply: str | BaseException | None) -> None:
        self.reply = reply
        self.asked: list[str] = []

    async def __call__(self, stdout: str) -> str | None:
        self.asked.append(stdout)
        if isinstance(self.reply, BaseException):
            raise self.reply
        return self.reply


async def test_a_dialogue_answers_its_prompt_on_stdin(server: Server, configuration: Any) -> None:
    """stdin is asked for; the answer waits for the whole ready line (here split over two frames) and goes out
    once, on channel 0; the command's output after it is read as ever."""
    answers = Answers("STOP\t7\tj/p\n")
    ex = make(configuration, retries=3)
    try:
        result = await ex.run("ns", "dialogue", "c", ["sh"], Dialogue(READY, answers))
    finally:
        ex.close()
    assert answers.asked == [LOOK_OUT]
    assert server.stdin == [b"\x00STOP\t7\tj/p\n"]
    assert result.stdout == LOOK_OUT + "got STOP\t7\tj/p\n"
    assert result.returncode == 0
    _, query = server.requests[0]
    assert [v.lower() for v in query["stdin"]] == ["true"]


async def test_no_answer_writes_an_empty_line(server: Server, configuration: Any) -> None:
    ex = make(configuration)
    try:
        result = await ex.run("ns", "dialogue", "c", ["sh"], Dialogue(READY, Answers(None)))
    finally:
        ex.close()
    assert server.stdin == [b"\x00\n"]
    assert result.stdout == LOOK_OUT + "got \n"


async def test_a_stream_lost_after_the_answer_is_not_retried(server: Server, configuration: Any) -> None:
    """The go-ahead is out, then the connection drops: the script may have acted, so no second exec."""
    answers = Answers("START\t2\tj/p\n")
    ex = make(configuration, retries=3)
    try:
        with pytest.raises(ExecUnavailable):
            await ex.run("ns", "dialogue-drop", "c", ["sh"], Dialogue(READY, answers))
    finally:
        ex.close()
    assert len(server.requests) == 1
    assert answers.asked == [LOOK_OUT]
    assert server.stdin == [b"\x00START\t2\tj/p\n"]


async def test_a_stream_lost_after_an_empty_line_is_retried(server: Server, configuration: Any) -> None:
    """Nothing was told (an empty line): the attempt is retried as without a dialogue, and asks again."""
    answers = Answers(None)
    ex = make(configuration, retries=2)
    try:
        with pytest.raises(ExecUnavailable):
            await ex.run("ns", "dialogue-drop", "c", ["sh"], Dialogue(READY, answers))
    finally:
        ex.close()
    assert len(server.requests) == 3
    assert answers.asked == [LOOK_OUT] * 3
    assert server.stdin == [b"\x00\n"] * 3


@pytest.mark.parametrize("pod", ["dialogue", "dialogue-drop"])
async def test_an_answer_that_raises_is_reraised_not_retried(server: Server, configuration: Any, pod: str) -> None:
    boom = RuntimeError("the ledger write failed")
    ex = make(configuration, retries=3)
    try:
        with pytest.raises(RuntimeError) as caught:
            await ex.run("ns", pod, "c", ["sh"], Dialogue(READY, Answers(boom)))
    finally:
        ex.close()
    assert caught.value is boom
    assert len(server.requests) == 1
    assert server.stdin == [b"\x00\n"]  # the command was told nothing
