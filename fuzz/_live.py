"""Fuzzing a live ``pollama serve`` over real sockets (shared by fuzz_http.py and
fuzz_handlers.py).

A raw HTTP/1.1 client that keeps the exact bytes it sent, the response invariant of issue 9,
the server under test, and the case loop with its counts and reproductions.

Invariant: every request gets a 4xx whose body is ``{"error": "..."}`` (the registry's
``{"errors": [...]}`` under ``/v2``; ``text/plain`` ``404 page not found`` / ``405 method not
allowed`` for unknown routes and methods, as Ollama's gin router answers), or a valid 2xx. Never
a 5xx, a connection closed without an answer, or a hang; after every case the server still
answers ``GET /api/version``. A 2xx NDJSON stream that carries an ``{"error": ...}`` line is a
500 in disguise for input the server could have refused up front, and error texts must not
carry Python internals (``KeyError: 'prefixItems'``, ``bytearray(b'...')``).

Cases are deterministic: case ``k`` of seed ``s`` is generated from ``random.Random(f"{s}:{k}")``
alone, so ``--seed s --case k`` replays one case, and every failure prints the bytes sent as a
Python expression that can be pasted into a socket test.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

HANG_SECONDS = 120.0  # generous: a request that gets no complete answer in this long is hung
# RLIMIT_AS of a server we start, inherited by its runners (a runner maps ~0.8 GB): a runaway
# allocation (a grammar spelt out a million times) fails there instead of taking the machine.
MEMORY_LIMIT = 3 << 30
BODY_KEEP = 4 << 20  # bytes of a response body kept for checks (the rest is only counted)
MODEL = "smol"

# Python exception names and reprs that must never reach a client.
_LEAK_RE = re.compile(
    r"Traceback \(most recent|_ssl\.c:|\.py\", line \d|\bbytearray\(|\bStopIteration\b|"
    r"\b(?:Key|Value|Type|Overflow|Recursion|Runtime|Attribute|Index|Memory|Assertion|"
    r"UnicodeDecode|UnicodeEncode|ZeroDivision|NotImplemented|Lookup|OS|Name)Error\b|"
    r"\b(?:Remote|Local)ProtocolError\b")


# ---------------------------------------------------------------------------------------------
# A connection of a case, and what came back


@dataclass
class Reply:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes  # the first BODY_KEEP bytes
    body_len: int
    interim: list[int] = field(default_factory=list)
    cut: bool = False  # the client stopped reading a long stream on purpose

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def short(self) -> str:
        body = self.body[:600]
        more = f" (+{self.body_len - len(body)} bytes)" if self.body_len > len(body) else ""
        ctype = self.header("content-type") or "-"
        return f"{self.status} [{ctype}] {body!r}{more}"


@dataclass
class Conn:
    """One TCP connection of a case: the parts sent, and the requests whose answers to read.

    ``requests`` lists (method, target) of each request in ``parts`` in order (several for
    pipelining). ``half_close`` shuts our sending side after the last part, for requests whose
    end only EOF can tell (a body cut short). With ``wait_100`` the client sends the first part
    (the head, with ``Expect: 100-continue``) and waits for ``100 Continue`` or a final answer
    before the body, as curl does. ``stream_lines`` caps the NDJSON lines read from a stream.
    """

    parts: list[bytes]
    requests: list[tuple[str, str]]
    half_close: bool = False
    wait_100: bool = False
    stream_lines: int = 64
    # filled in by run_conn
    replies: list[Reply] = field(default_factory=list)
    end: str = ""  # "done", "closed", "hang", "reset", "garbage", "no-100-continue"
    detail: str = ""

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


class _Hang(Exception):
    pass


class _Garbage(Exception):
    pass


class _Reader:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = bytearray()
        self.eof = False

    def fill(self) -> bool:
        """Read more; False at EOF. Raises _Hang past the deadline, ConnectionResetError."""
        if self.eof:
            return False
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Hang()
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 16)
        except socket.timeout:
            raise _Hang() from None
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def until(self, sep: bytes, limit: int) -> bytes | None:
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise _Garbage(f"no {sep!r} in the first {limit} bytes")
            start = max(0, len(self.buf) - len(sep))
            if not self.fill():
                return None

    def exactly(self, n: int, keep: bytearray) -> bool:
        while n > 0:
            if not self.buf and not self.fill():
                return False
            take = min(n, len(self.buf))
            if len(keep) < BODY_KEEP:
                keep += self.buf[:take]
            del self.buf[:take]
            n -= take
        return True


_STATUS_RE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: (.*))?")


def _read_reply(r: _Reader, method: str, stream_lines: int) -> Reply | None:
    """One response; None when the connection ended cleanly before it began."""
    interim: list[int] = []
    while True:
        head = r.until(b"\r\n\r\n", 1 << 20)
        if head is None:
            if r.buf:
                raise _Garbage(f"connection closed inside a response head: {bytes(r.buf)[:200]!r}")
            return None
        lines = head.split(b"\r\n")
        m = _STATUS_RE.fullmatch(lines[0])
        if m is None:
            raise _Garbage(f"not a status line: {lines[0][:200]!r}")
        status = int(m.group(1))
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise _Garbage(f"bad response header line {line[:200]!r}")
            headers.append((name.decode("latin-1").strip().lower(),
                            value.decode("latin-1").strip()))
        if 100 <= status < 200 and status != 101:
            interim.append(status)
            continue
        break
    reply = Reply(status=status, reason=(m.group(2) or b"").decode("latin-1"), headers=headers,
                  body=b"", body_len=0, interim=interim)
    te = (reply.header("transfer-encoding") or "").lower()
    cl = reply.header("content-length")
    keep = bytearray()
    if status == 101:
        reply.cut = True  # the connection now speaks another protocol (a WebSocket): stop here
    elif method == "HEAD" or status in (204, 304):
        pass
    elif "chunked" in te:
        ctype = reply.header("content-type") or ""
        ndjson = "ndjson" in ctype or "event-stream" in ctype
        while True:
            size_line = r.until(b"\r\n", 4096)
            if size_line is None:
                raise _Garbage("connection closed inside a chunked body")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _Garbage(f"bad chunk size line {size_line[:100]!r}") from None
            if size == 0:
                while True:  # trailers, then the blank line
                    t = r.until(b"\r\n", 1 << 16)
                    if t is None:
                        raise _Garbage("connection closed inside the chunked trailer")
                    if not t:
                        break
                break
            reply.body_len += size
            if not r.exactly(size, keep):
                raise _Garbage("connection closed inside a chunk")
            if r.until(b"\r\n", 16) != b"":
                raise _Garbage("chunk not followed by CRLF")
            if ndjson and keep.count(b"\n") >= stream_lines * (2 if "event" in ctype else 1):
                reply.cut = True
                break
    elif cl is not None:
        try:
            n = int(cl)
        except ValueError:
            raise _Garbage(f"bad Content-Length {cl!r}") from None
        reply.body_len = n
        if not r.exactly(n, keep):
            raise _Garbage(f"connection closed inside a {n}-byte body")
    else:  # until EOF
        while r.fill() or r.buf:
            reply.body_len += len(r.buf)
            if len(keep) < BODY_KEEP:
                keep += r.buf
            r.buf.clear()
    reply.body = bytes(keep)
    return reply


def run_conn(conn: Conn, host: str, port: int, *, timeout: float = HANG_SECONDS,
             expect_timeout: float = 10.0) -> Conn:
    """Send a connection's parts and read its answers; fills ``replies``, ``end``, ``detail``."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        conn.end, conn.detail = "reset", f"connect failed: {exc}"
        return conn
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = _Reader(sock, time.monotonic() + timeout)
    send_error: list[BaseException] = []

    def send(parts: list[bytes], half_close: bool) -> None:
        try:
            for part in parts:
                sock.sendall(part)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError as exc:  # the server answered and closed early: read what it sent
            send_error.append(exc)

    sender: threading.Thread | None = None
    try:
        parts = list(conn.parts)
        if conn.wait_100 and len(parts) > 1:
            send(parts[:1], False)
            reader.deadline = time.monotonic() + expect_timeout
            try:
                # A final answer instead of 100 is allowed (RFC 9110 §10.1.1); then no body.
                while b"\r\n\r\n" not in reader.buf and reader.fill():
                    pass
            except _Hang:
                conn.end = "no-100-continue"
                conn.detail = f"no 100 Continue (or final answer) within {expect_timeout:g} s"
            reader.deadline = time.monotonic() + timeout
            if reader.buf.startswith(b"HTTP/1.1 100") or conn.end:
                parts = parts[1:]
            else:
                parts = []
        if parts or conn.half_close:
            # From a thread: a server that answers before reading everything must not deadlock
            # us on a full send buffer.
            sender = threading.Thread(target=send, args=(parts, conn.half_close), daemon=True)
            sender.start()
        for method, _target in conn.requests:
            reply = _read_reply(reader, method, conn.stream_lines)
            if reply is None:
                if not conn.end:
                    conn.end = "closed"
                    conn.detail = (f"connection closed with no answer to request "
                                   f"{len(conn.replies) + 1} of {len(conn.requests)}")
                break
            conn.replies.append(reply)
            if reply.cut or (reply.header("connection") or "").lower() == "close":
                break
        if not conn.end:
            conn.end = "done"
    except _Hang:
        conn.end = "hang"
        conn.detail = f"no complete answer within {timeout:g} s"
    except _Garbage as exc:
        conn.end, conn.detail = "garbage", str(exc)
    except ConnectionResetError as exc:
        conn.end, conn.detail = "reset", f"connection reset: {exc}"
    except OSError as exc:
        conn.end, conn.detail = "reset", f"socket error: {exc}"
    finally:
        sock.close()
        if sender is not None:
            sender.join(5)
    return conn


def needs_eof(data: bytes, max_head: int = 64 * 1024) -> bool:
    """Whether a server parsing ``data`` with h11 (as pollama does) can only find the end of a
    request in it at EOF: then the client half-closes. A request h11 sees complete, or refuses,
    is answered without EOF, and a server may take EOF as the client leaving (Go cancels the
    request's context), so those are not half-closed."""
    import h11

    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
    conn.receive_data(data)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return True
            if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                return False
            if isinstance(event, h11.EndOfMessage):
                conn.send(h11.Response(status_code=204, headers=[]))
                conn.send(h11.EndOfMessage())
                if conn.our_state is h11.MUST_CLOSE or not conn.trailing_data[0]:
                    return False
                conn.start_next_cycle()
    except (h11.RemoteProtocolError, h11.LocalProtocolError):
        return False


# ---------------------------------------------------------------------------------------------
# The invariant


def _error_text(reply: Reply) -> str | None:
    try:
        value = json.loads(reply.body)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    error = value.get("error")
    if isinstance(error, str) and error:
        return error
    # OpenAI's {"error": {"message", ...}} and Anthropic's {"type": "error", "error": {...}}
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        return str(error["message"])
    return None


def _oci_errors(reply: Reply) -> str | None:
    try:
        value = json.loads(reply.body)
    except ValueError:
        return None
    errors = value.get("errors") if isinstance(value, dict) else None
    if isinstance(errors, list) and errors and all(
            isinstance(e, dict) and isinstance(e.get("code"), str) for e in errors):
        return json.dumps(errors)
    return None


def _check_sse(reply: Reply, s: int) -> str | None:
    """An SSE stream (/v1): every ``data:`` is JSON or ``[DONE]``, and none is an error, which
    after validation would be a 500 in disguise."""
    events = reply.body.replace(b"\r\n", b"\n").split(b"\n\n")
    if reply.cut or reply.body_len > len(reply.body):
        events = events[:-1]  # possibly partial
    for event in events:
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                continue
            try:
                obj = json.loads(data)
            except ValueError:
                return f"{s} SSE data is not JSON: {line[:200]!r}"
            if isinstance(obj, dict) and ("error" in obj or obj.get("type") in (
                    "error", "response.failed")):
                return f"{s} SSE stream carries an error: {line[:300]!r}"
    return None


def check_reply(method: str, target: str, reply: Reply) -> str | None:
    """Why ``reply`` breaks the invariant, or None."""
    s = reply.status
    ctype = (reply.header("content-type") or "").lower()
    if s == 101:
        # Only a valid WebSocket handshake to /api/ws may switch protocols.
        if target.split("?", 1)[0] == "/api/ws" and \
                (reply.header("upgrade") or "").lower() == "websocket":
            return None
        return f"101 switching protocols on {target!r}"
    if s == 500 and target.split("?", 1)[0].rstrip("/").endswith(("/api/pull", "/api/push")):
        # Without streaming, a pull or push whose work fails (the registry refuses, speaks no
        # TLS, is down) answers 500 as Ollama does; the stream form of the same failure is an
        # error line (below). Its text must still be clean.
        text = _error_text(reply)
        if text is not None and not _LEAK_RE.search(text):
            return None
    if s >= 500 and s != 501:
        return f"{s} server error"
    if 200 <= s < 300:
        if method == "HEAD" or not reply.body:
            return None
        if "ndjson" in ctype:
            lines = reply.body.split(b"\n")
            if reply.cut or reply.body_len > len(reply.body):
                lines = lines[:-1]  # possibly partial
            for line in lines:
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    return f"{s} stream line is not JSON: {line[:200]!r}"
                if isinstance(obj, dict) and "error" in obj:
                    # Inference validates its input before the stream starts, so an error line
                    # there is a 500 in disguise. Create, pull and push report failures of the
                    # work itself (a registry down) that way, as Ollama does.
                    if _LEAK_RE.search(str(obj["error"])):
                        return f"{s} stream error line leaks Python internals: {line[:300]!r}"
                    if not target.split("?", 1)[0].rstrip("/").endswith(
                            ("/api/create", "/api/pull", "/api/push")):
                        return f"{s} stream carries an error line: {line[:300]!r}"
            return None
        if "event-stream" in ctype:
            return _check_sse(reply, s)
        if "json" in ctype and reply.body_len == len(reply.body):
            try:
                json.loads(reply.body)
            except ValueError:
                return f"{s} body is not the JSON its Content-Type says"
        if s == 206:
            cr = reply.header("content-range") or ""
            m = re.fullmatch(r"bytes ([0-9]+)-([0-9]+)/([0-9]+)", cr)
            if m is None or int(m.group(2)) - int(m.group(1)) + 1 != reply.body_len:
                return f"206 with Content-Range {cr!r} and {reply.body_len} body bytes"
        return None
    # 501 is what RFC 9112 §6.1 (and Go's net/http, hence Ollama) answers to a transfer coding
    # the server does not implement: a refusal of the client's request like a 4xx.
    if 400 <= s < 500 or s == 501 and "transfer" in reply.body.decode("utf-8", "replace").lower():
        if method == "HEAD":
            return None
        text = _error_text(reply)
        if text is not None:
            if _LEAK_RE.search(text):
                return f"{s} error text leaks Python internals: {text[:300]!r}"
            return None
        path = target.split("?", 1)[0]
        if path.startswith("/v2") and _oci_errors(reply) is not None:
            errors = _oci_errors(reply) or ""
            if _LEAK_RE.search(errors):
                return f"{s} registry error leaks Python internals: {errors[:300]!r}"
            return None
        if s in (404, 405) and ctype.startswith("text/plain") and reply.body in (
                b"404 page not found", b"405 method not allowed"):
            return None
        if s == 403 and reply.body_len == 0:
            return None  # Ollama's Host/Origin middleware: AbortWithStatus(403), empty body
        try:
            json.loads(reply.body)
        except ValueError:
            return f"{s} error body is not valid JSON"
        return f"{s} without a JSON error body"
    return f"{s} server error" if s >= 500 else f"unexpected status {s}"


def check_conn(conn: Conn) -> str | None:
    """Why the connection breaks the invariant, or None."""
    for (method, target), reply in zip(conn.requests, conn.replies):
        problem = check_reply(method, target, reply)
        if problem is not None:
            return problem
    if conn.end in ("hang", "reset", "garbage", "no-100-continue"):
        return f"{conn.end}: {conn.detail}"
    if conn.end == "closed" and not conn.replies:
        return f"closed: {conn.detail}"
    # closed after some answers: fine when the server asked to close or a request was refused
    if conn.end == "closed":
        last = conn.replies[-1]
        if (last.header("connection") or "").lower() != "close" and last.status < 400:
            return f"closed: {conn.detail}"
    return None


def outcome(conn: Conn) -> str:
    """A short label for counting: the statuses, or how the connection ended."""
    labels = [str(r.status) for r in conn.replies]
    if conn.end not in ("done", ""):
        labels.append(conn.end)
    return "+".join(labels) or conn.end


# ---------------------------------------------------------------------------------------------
# Reproductions


def py_bytes(data: bytes) -> str:
    """``data`` as a Python expression, with long runs of one byte written ``b'x' * n``."""
    out: list[str] = []
    lit = bytearray()
    i = 0
    while i < len(data):
        j = i
        while j < len(data) and data[j] == data[i]:
            j += 1
        if j - i >= 48:
            if lit:
                out.append(repr(bytes(lit)))
                lit.clear()
            out.append(f"{bytes(data[i:i + 1])!r} * {j - i}")
        else:
            lit += data[i:j]
        i = j
    if lit or not out:
        out.append(repr(bytes(lit)))
    text = " + ".join(out)
    if len(text) > 6000:
        return text[:3000] + f" ... <{len(data)} bytes> ... " + text[-1500:]
    return text


# ---------------------------------------------------------------------------------------------
# The server under test


class Target:
    """A ``pollama serve`` to fuzz: one we start (with the test model created as ``smol``,
    address space limited so a runaway allocation stays in it) or one at ``url``."""

    def __init__(self, url: str | None = None, *, gguf: str | None = None,
                 workdir: str | None = None, memory_limit: int | None = MEMORY_LIMIT,
                 extra_env: dict[str, str] | None = None) -> None:
        self.url = url
        self.gguf = gguf
        self.memory_limit = memory_limit
        self.extra_env = extra_env or {}
        self._own_tmp: tempfile.TemporaryDirectory[str] | None = None
        self.workdir = workdir
        self.server: Any = None  # tests.conftest.Server
        self.starts = 0
        self.host = ""
        self.port = 0
        if url is not None:
            hostport = url.split("://", 1)[-1].rstrip("/")
            self.host, _, port = hostport.rpartition(":")
            self.port = int(port)

    @property
    def owned(self) -> bool:
        return self.url is None or self.server is not None

    def start(self) -> None:
        if self.url is not None and self.server is None:
            return
        from tests.conftest import smollm2_gguf, start_server, upload_and_create

        if self.gguf is None:
            self.gguf = smollm2_gguf.__wrapped__()  # type: ignore[attr-defined]
        if self.workdir is None:
            self._own_tmp = tempfile.TemporaryDirectory(prefix="pollama-fuzz-")
            self.workdir = self._own_tmp.name
        self.starts += 1
        tmp = os.path.join(self.workdir, f"run{self.starts}")
        os.makedirs(tmp, exist_ok=True)
        self.server = start_server(tmp, self.extra_env)
        if self.memory_limit:
            resource.prlimit(self.server.proc.pid, resource.RLIMIT_AS,
                             (self.memory_limit, self.memory_limit))
        self.host, self.port = "127.0.0.1", self.server.port
        upload_and_create(self.server.url, self.gguf, MODEL,
                          parameters={"num_predict": 4, "temperature": 0})

    def stop(self) -> None:
        if self.server is not None:
            import shutil

            from tests.conftest import stop_server

            stop_server(self.server)
            # its store (a copy of the model per start) is not needed once it stopped
            shutil.rmtree(os.path.dirname(self.server.models_dir), ignore_errors=True)
            self.server = None

    def restart(self) -> bool:
        if self.url is not None and self.starts == 0:
            return False  # not ours to restart
        self.stop()
        self.start()
        return True

    def close(self) -> None:
        self.stop()
        if self._own_tmp is not None:
            self._own_tmp.cleanup()
            self._own_tmp = None

    def log_size(self) -> int:
        if self.server is None:
            return 0
        try:
            return os.path.getsize(self.server.log_path)
        except OSError:
            return 0

    def log_since(self, offset: int, limit: int = 4000) -> str:
        if self.server is None:
            return ""
        with open(self.server.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        return text if len(text) <= limit else "..." + text[-limit:]

    def request(self, method: str, target: str, body: bytes | None = None, *,
                timeout: float = HANG_SECONDS) -> Conn:
        head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        conn = Conn(parts=[(head + "Connection: close\r\n\r\n").encode() + (body or b"")],
                    requests=[(method, target)])
        return run_conn(conn, self.host, self.port, timeout=timeout)

    def probe(self, extra: Iterable[tuple[str, str, bytes | None]] = ()) -> str | None:
        """The server answers GET /api/version (and ``extra`` requests without a 5xx)."""
        conn = self.request("GET", "/api/version")
        if not conn.replies or conn.replies[0].status != 200:
            return "server does not answer GET /api/version: " + (
                conn.replies[0].short() if conn.replies else f"{conn.end}: {conn.detail}")
        for method, target, body in extra:
            c = self.request(method, target, body)
            problem = check_conn(c)
            if problem is not None:
                return f"after the case, {method} {target} breaks: {problem}" + (
                    f" -> {c.replies[0].short()}" if c.replies else "")
        return None


# ---------------------------------------------------------------------------------------------
# The case loop


@dataclass
class Case:
    name: str
    conns: Iterator[Conn] | list[Conn]  # a generator may read the replies of earlier conns
    probes: tuple[tuple[str, str, bytes | None], ...] = ()
    after: Callable[[Target], None] | None = None  # restores state a case may have broken
    # For a curated case whose right answer is known ("2xx" or "4xx", as Go's decoder and
    # Ollama's checks give), beyond the invariant: checked on the first answer.
    expect: str | None = None


@dataclass
class Failure:
    index: int
    name: str
    problem: str
    conns: list[Conn]
    log: str

    def report(self, seed: int) -> str:
        lines = [f"FAIL case {self.index} ({self.name}), replay with --seed {seed} "
                 f"--case {self.index}: {self.problem}"]
        for n, conn in enumerate(self.conns, 1):
            extra = []
            if conn.half_close:
                extra.append("then shutdown(SHUT_WR)")
            if conn.wait_100:
                extra.append("head first, then waits for 100 Continue")
            lines.append(f"  conn {n} sent{' (' + ', '.join(extra) + ')' if extra else ''}: "
                         f"{py_bytes(conn.data)}")
            for reply in conn.replies:
                lines.append(f"    got {reply.short()}")
            if conn.end not in ("done",):
                lines.append(f"    end: {conn.end} {conn.detail}")
        log = "\n".join(line for line in self.log.splitlines()
                        if "Traceback" in line or "Error" in line or " -> 5" in line
                        or "error" in line.lower())
        if log:
            lines.append("  server log:\n    " + log[-2500:].replace("\n", "\n    "))
        return "\n".join(lines)


@dataclass
class Report:
    name: str
    seed: int
    cases: int = 0
    requests: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    restarts: int = 0
    seconds: float = 0.0
    stopped: str = ""

    def summary(self) -> str:
        top = ", ".join(f"{k}: {v}" for k, v in sorted(self.outcomes.items(),
                                                       key=lambda kv: -kv[1]))
        kinds = Counter(f.problem.split(":")[0] for f in self.failures)
        out = (f"{self.name}: seed {self.seed}, {self.cases} cases, {self.requests} requests in "
               f"{self.seconds:.0f} s, {len(self.failures)} failures, {self.restarts} restarts\n"
               f"  outcomes: {top}")
        if kinds:
            out += "\n  failure kinds: " + ", ".join(f"{k}: {v}" for k, v in kinds.most_common())
        if self.stopped:
            out += f"\n  stopped early: {self.stopped}"
        return out

    def details(self) -> str:
        return "\n".join(f.report(self.seed) for f in self.failures)


def case_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"{seed}:{index}")


def run_cases(name: str, make_case: Callable[[random.Random, Target, int], Case], target: Target,
              *, seed: int, cases: int, first: int = 0, timeout: float = HANG_SECONDS,
              stop_after_hang: bool = False, verbose: bool = False,
              progress: Callable[[str], None] | None = None) -> Report:
    """Run cases ``first .. first+cases-1``; after a failure, restart an owned server whose state
    the failure broke (it no longer answers, or a probe fails) so later cases stay independent."""
    report = Report(name=name, seed=seed)
    started = time.monotonic()
    for index in range(first, first + cases):
        case = make_case(case_rng(seed, index), target, index)
        mark = target.log_size()
        case_started = time.monotonic()
        done: list[Conn] = []
        problem = None
        for conn in case.conns:
            run_conn(conn, target.host, target.port, timeout=timeout)
            done.append(conn)
            report.requests += len(conn.requests)
            report.outcomes[outcome(conn)] += 1
            problem = check_conn(conn)
            if problem is None and case.expect and len(done) == 1 and conn.replies:
                status = conn.replies[0].status
                if str(status)[0] != case.expect[0]:
                    problem = f"{status} where {case.expect} is right"
            if problem is not None:
                break
        if case.after is not None:
            case.after(target)
        probe = target.probe(case.probes)
        hung = any(c.end == "hang" for c in done)
        if problem is None and probe is not None:
            problem = probe
        report.cases += 1
        if verbose and progress is not None:
            progress(f"case {index} {case.name}: {', '.join(outcome(c) for c in done)} "
                     f"({time.monotonic() - case_started:.1f} s)"
                     + (f"  FAIL {problem}" if problem else ""))
        if problem is not None:
            time.sleep(0.2)  # let the server finish logging the case
            failure = Failure(index=index, name=case.name, problem=problem, conns=done,
                              log=target.log_since(mark))
            report.failures.append(failure)
            if progress is not None:
                progress(failure.report(seed))
            if hung and stop_after_hang:
                report.stopped = f"case {index} hung; later cases would queue behind it"
                break
            if (probe is not None or hung) and target.owned:
                target.restart()
                report.restarts += 1
            elif probe is not None:
                report.stopped = "the server broke and is not ours to restart"
                break
    report.seconds = time.monotonic() - started
    return report


def cli(name: str, make_case: Callable[[random.Random, Target, int], Case],
        argv: list[str] | None = None, *, default_cases: int = 2000) -> Report:
    """``--cases N --seed S [--case K] [--url URL] [--timeout T] [-v]``; exit 1 on failures."""
    import argparse

    ap = argparse.ArgumentParser(prog=f"python -m fuzz.{name}")
    ap.add_argument("--cases", type=int, default=default_cases)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--case", type=int, default=None, help="replay only this case index")
    ap.add_argument("--first", type=int, default=0, help="index of the first case to run")
    ap.add_argument("--url", default=None, help="fuzz a running server (127.0.0.1 only)")
    ap.add_argument("--timeout", type=float, default=HANG_SECONDS,
                    help="seconds without a complete answer that count as a hang")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.url is not None and not re.match(r"http://(127\.0\.0\.1|localhost):[0-9]+/?$",
                                             args.url):
        ap.error("--url must be http://127.0.0.1:PORT")
    target = Target(args.url)
    target.start()
    first, count = (args.case, 1) if args.case is not None else (args.first, args.cases)
    try:
        report = run_cases(name, make_case, target, seed=args.seed, cases=count, first=first,
                           timeout=args.timeout, verbose=args.verbose,
                           progress=lambda s: print(s, flush=True))
    finally:
        target.close()
    print(report.summary(), flush=True)
    if report.failures:
        raise SystemExit(1)
    return report
