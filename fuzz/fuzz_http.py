"""Fuzz target: the HTTP/1.1 layer (h11 on anyio, adapters/http_server.py) over real sockets.

Each case is one or more TCP connections to a real ``pollama serve``: request lines, methods,
targets and versions mutated; Host and Origin headers; Content-Length against chunked, garbage
chunk sizes, bodies cut short, ``Expect: 100-continue``, huge and malformed headers; pipelined
requests; ``Range`` on ``/v2/.../blobs/...``; queries; and raw byte flips of whole requests.
The invariant is ``_live.check_conn``: a 4xx with a JSON error body or a valid 2xx, never a 5xx,
a connection closed without an answer, or a hang; the server answers ``GET /api/version`` after
every case.

    python -m fuzz.fuzz_http --cases 20000 --seed 7      # starts its own server (test model)
    python -m fuzz.fuzz_http --url http://127.0.0.1:11434 --cases 500
    python -m fuzz.fuzz_http --seed 7 --case 1234 -v     # replay one case

A bounded run (fixed seed) is ``tests/e2e/test_fuzz_http.py``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _live  # noqa: E402  (the shared live-server driver next to this file)
import _loop  # noqa: E402  (the mutations the in-process harnesses use)

import hashlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from _live import Case, Conn, Target  # noqa: E402

# ---------------------------------------------------------------------------------------------
# What the server holds: the test model's manifest, config and weights digests


@dataclass
class Facts:
    config: str  # "sha256:<hex>"
    config_size: int
    model: str
    model_size: int


_FACTS: dict[tuple[int, int], Facts] = {}


def facts(target: Target) -> Facts:
    key = (target.port, target.starts)
    if key not in _FACTS:
        conn = target.request("GET", f"/v2/library/{_live.MODEL}/manifests/latest")
        assert conn.replies and conn.replies[0].status == 200, conn.replies
        manifest = json.loads(conn.replies[0].body)
        layer = next(x for x in manifest["layers"] if x["mediaType"].endswith(".model"))
        _FACTS[key] = Facts(config=manifest["config"]["digest"],
                            config_size=manifest["config"]["size"],
                            model=layer["digest"], model_size=layer["size"])
    return _FACTS[key]


# ---------------------------------------------------------------------------------------------
# A request built from parts (whether its framing is complete, so whether the client must
# half-close for the server to see its end, is decided by h11 itself: _live.needs_eof)


Header = tuple[bytes, "bytes | None"]  # None: a line without a colon


@dataclass
class Req:
    method: bytes = b"GET"
    target: bytes = b"/api/version"
    version: bytes = b"HTTP/1.1"
    headers: list[Header] = field(default_factory=list)
    body: bytes = b""
    chunked: list[bytes] | None = None  # raw chunked body (sizes included) instead of body
    eol: bytes = b"\r\n"

    def head(self) -> bytes:
        out = [self.method + b" " + self.target + b" " + self.version]
        out += [k if v is None else k + b": " + v for k, v in self.headers]
        return self.eol.join(out) + self.eol + self.eol

    def payload(self) -> bytes:
        return b"".join(self.chunked) if self.chunked is not None else self.body

    def raw(self) -> bytes:
        return self.head() + self.payload()

    def set(self, name: bytes, value: bytes) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        self.headers.append((name, value))

    def drop(self, name: bytes) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]

    @property
    def method_text(self) -> str:
        return self.method.decode("latin-1")

    @property
    def target_text(self) -> str:
        return self.target.decode("latin-1")


def _host(target: Target) -> bytes:
    return f"127.0.0.1:{target.port}".encode()


def _digest(data: bytes) -> bytes:
    return b"sha256:" + hashlib.sha256(data).hexdigest().encode()


def base_request(rng: random.Random, target: Target) -> Req:
    """A valid request to one of the routes, body and all."""
    f = facts(target)
    host: list[Header] = [(b"Host", _host(target))]
    m = _live.MODEL.encode()
    gets = [
        b"/", b"/api/version", b"/api/tags", b"/api/ps", b"/v2/", b"/v2",
        b"/v2/library/" + m + b"/manifests/latest",
        b"/v2/library/" + m + b"/blobs/" + f.config.encode(),
        b"/api/nope", b"/api/tags/", b"/v2/library/" + m + b"/tags/list",
    ]
    kind = rng.random()
    if kind < 0.45:
        method = rng.choice([b"GET", b"GET", b"GET", b"HEAD"])
        return Req(method=method, target=rng.choice(gets), headers=host)
    if kind < 0.55:
        return Req(method=b"HEAD", target=b"/api/blobs/" + rng.choice(
            [f.config, f.model, "sha256:" + "0" * 64]).encode(), headers=host)
    bodies: list[tuple[bytes, bytes, bytes]] = [
        (b"POST", b"/api/show", json.dumps({"model": _live.MODEL}).encode()),
        (b"POST", b"/api/show", b'{"model":"' + m + b'","verbose":true}'),
        (b"POST", b"/api/copy", b'{"source":"nope-x","destination":"nope-y"}'),
        (b"DELETE", b"/api/delete", b'{"model":"nope-x"}'),
        (b"POST", b"/api/generate", b'{"model":"' + m + b'","prompt":"Hi","stream":false,'
                                    b'"options":{"num_predict":1,"temperature":0}}'),
        (b"POST", b"/api/embed", b'{"model":"' + m + b'","input":"hi"}'),
    ]
    blob = rng.randbytes(rng.choice([0, 1, 17, 300]))
    bodies.append((b"POST", b"/api/blobs/" + _digest(blob), blob))
    bodies.append((b"POST", b"/v2/fuzz/blob/blobs/uploads/?digest=" + _digest(blob), blob))
    bodies.append((b"PATCH", b"/v2/fuzz/blob/blobs/uploads/" + b"0" * 32, blob))
    method, path, body = rng.choice(bodies)
    req = Req(method=method, target=path, headers=host + [
        (b"Content-Type", b"application/json"), (b"Content-Length", str(len(body)).encode())],
        body=body)
    if rng.random() < 0.3:
        _to_chunked(rng, req)
    return req


def _to_chunked(rng: random.Random, req: Req) -> None:
    req.drop(b"Content-Length")
    req.set(b"Transfer-Encoding", b"chunked")
    chunks = []
    body = req.body
    while body:
        n = rng.randint(1, max(1, len(body)))
        chunks.append(b"%x\r\n" % n + body[:n] + b"\r\n")
        body = body[n:]
    chunks.append(b"0\r\n\r\n")
    req.chunked = chunks


# ---------------------------------------------------------------------------------------------
# Mutations of a request's structure

INTERESTING_NUMBERS = [b"0", b"-1", b"+5", b" 5", b"5 ", b"0x10", b"1e3", b"18446744073709551616",
                       b"9223372036854775807", b"9" * 400, b"", b"abc", b"5,5", b"\x005"]


def m_method(rng: random.Random, req: Req) -> None:
    req.method = rng.choice([b"get", b"OPTIONS", b"CONNECT", b"TRACE", b"PROPFIND", b"G\x00T",
                             b"", b"GET GET", b"X" * rng.choice([100, 5000]), b"\xffGET",
                             b"PUT", b"DELETE", b"PATCH", b"POST"])
    if req.method in (b"CONNECT",):
        req.target = b"127.0.0.1:1"


def m_target(rng: random.Random, req: Req) -> None:
    req.target = rng.choice([
        b"*", b"", b"api/tags", b"http://127.0.0.1/api/tags", b"http://evil.example/api/tags",
        b"/api/../api/tags", b"//api/tags", b"/api/tags#frag", b"/api/tags?" + b"a" * 70000,
        b"/" + b"a" * rng.choice([1000, 66000]), b"/api/ta\x00gs", b"/api/t\xc3\xa4gs",
        b"/api/tags%00", b"/%2e%2e/%2e%2e/etc/passwd", b"/api/tags ", b"/ api/tags",
        b"/v2/library/" + b"a" * 300 + b"/manifests/latest", b"/v2/%ff/x/manifests/latest",
        b"/v2/library/smol/manifests/sha256:" + b"z" * 64, b"/v2/library/smol/blobs/sha256:",
        b"/api/blobs/sha256:" + b"0" * 63, b"/api/blobs/sha256-" + b"0" * 64,
        b"/api/blobs/..%2f..%2fmanifests", b"/\t/api/tags", b"/api/tags\r",
    ])


def m_version(rng: random.Random, req: Req) -> None:
    req.version = rng.choice([b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1",
                              b"http/1.1", b"HTTP/1.1 extra", b"", b"HTTP/11", b"HTTP/9.9"])


def m_host(rng: random.Random, req: Req) -> None:
    choice = rng.randrange(8)
    if choice == 0:
        req.drop(b"Host")
    elif choice == 1:
        req.headers.append((b"Host", b"attacker.example.com"))  # duplicated, conflicting
    else:
        req.set(b"Host", rng.choice([
            b"attacker.example.com", b"localhost", b"127.0.0.1", b"[::1]:11434", b"",
            b"127.0.0.1.nip.io", b"localhost.", b"LOCALHOST:1", b"0.0.0.0", b"127.1",
            b"a" * 300, b"127.0.0.1:99999999999999999999", b"host with space", b"\xff\xfe"]))


def m_origin(rng: random.Random, req: Req) -> None:
    req.set(b"Origin", rng.choice([
        b"https://evil.example", b"null", b"http://localhost", b"http://127.0.0.1:1",
        b"app://obsidian.md", b"file://", b"chrome-extension://abc", b"http://[::1]",
        b"http://localhost.evil.example", b"", b"*", b"https://" + b"a" * 3000, b"\xff"]))
    if rng.random() < 0.5:
        req.set(b"Content-Type", rng.choice([b"text/plain", b"application/x-www-form-urlencoded",
                                             b"multipart/form-data; boundary=x"]))
    if rng.random() < 0.3:
        req.method = b"OPTIONS"
        req.set(b"Access-Control-Request-Method", rng.choice([b"POST", b"DELETE", b"\x00"]))
        req.set(b"Access-Control-Request-Headers", b"content-type, authorization")


def m_junk_headers(rng: random.Random, req: Req) -> None:
    junk = [
        (b"X-Empty", b""), (b"X Space", b"v"), (b"X-Tab\t", b"v"), (b"", b"no-name"),
        (b"X-Nul", b"a\x00b"), (b"X-Ctl", b"a\x01\x7fb"), (b"X-High", b"\xff\xfe\xfd"),
        (b"X-Fold", b"a\r\n b"), (b"X-Colon", b":::"), (b"Connection", b"close"),
        (b"Connection", b"keep-alive, Upgrade"), (b"Upgrade", b"h2c"), (b"Upgrade", b"websocket"),
        (b"Accept-Encoding", b"gzip, br"), (b"Authorization", b"Bearer " + b"x" * 500),
        (b"Cookie", b"a=" + b"b" * 4000), (b"Te", b"trailers"), (b"X-Long", b"v" * 20000),
    ]
    for _ in range(rng.randint(1, 4)):
        req.headers.insert(rng.randint(0, len(req.headers)), rng.choice(junk))
    if rng.random() < 0.2:  # a line without a colon
        req.headers.append((b"NoColonHere", None))


def m_huge_headers(rng: random.Random, req: Req) -> None:
    shape = rng.randrange(4)
    if shape == 0:
        req.headers.append((b"X-Huge", b"a" * rng.choice([60000, 70000, 200000])))
    elif shape == 1:
        req.headers += [(b"X-H%d" % i, b"v" * 400) for i in range(rng.choice([150, 200, 400]))]
    elif shape == 2:
        req.headers += [(b"X-%d" % i, b"") for i in range(rng.choice([1000, 10000]))]
    else:
        req.headers.append((b"X-" + b"n" * 70000, b"v"))


def m_length(rng: random.Random, req: Req) -> None:
    """Content-Length against the body: wrong, garbage, duplicated, or with chunked."""
    body = req.payload()
    shape = rng.randrange(7)
    if shape == 0:  # body cut short: only EOF ends it
        req.set(b"Content-Length", str(len(body) + rng.choice([1, 10, 100000])).encode())
    elif shape == 1:  # a shorter Content-Length: the rest is garbage for the next request
        req.set(b"Content-Length", str(max(0, len(body) - rng.randint(1, 5))).encode())
    elif shape == 2:
        req.set(b"Content-Length", rng.choice(INTERESTING_NUMBERS))
    elif shape == 3:
        req.headers.append((b"Content-Length", str(len(body) + 1).encode()))
    elif shape == 4:  # both Content-Length and chunked
        if req.chunked is None:
            _to_chunked(rng, req)
        req.headers.append((b"Content-Length", str(len(req.payload())).encode()))
    elif shape == 5:
        req.drop(b"Content-Length")  # a body the server cannot see: it becomes a second request
    else:
        req.set(b"Content-Length", b"999999999999")  # huge: nothing sent, EOF ends it


def m_chunked(rng: random.Random, req: Req) -> None:
    """Transfer-Encoding and chunk framing broken in the ways h11 must refuse."""
    if req.method in (b"GET", b"HEAD"):
        req.method = b"POST"
        req.target = b"/api/show"
        req.body = b'{"model":"smol"}'
    if req.chunked is None:
        _to_chunked(rng, req)
    assert req.chunked is not None
    shape = rng.randrange(10)
    bad_sizes = [b"zz", b"-1", b"ffffffffffffffffffff", b"1 ; x=\x00", b"", b"0x10", b" 5",
                 b"5" * 400, b"\xff", b"1;" + b"e" * 70000]
    if shape <= 2:
        i = rng.randrange(len(req.chunked))
        size = rng.choice(bad_sizes)
        req.chunked[i] = size + b"\r\n" + req.chunked[i].split(b"\r\n", 1)[-1]
    elif shape == 3:  # cut short inside a chunk
        raw = b"".join(req.chunked)
        req.chunked = [raw[:rng.randint(0, max(0, len(raw) - 1))]]
    elif shape == 4:  # no final chunk
        req.chunked = req.chunked[:-1]
    elif shape == 5:  # chunk data longer than its size
        req.chunked.insert(0, b"2\r\nabcdef\r\n")
    elif shape == 6:  # trailers, some malformed
        req.chunked[-1] = b"0\r\n" + rng.choice([b"X-T: 1\r\n", b"bad trailer\r\n",
                                                 b"Content-Length: 5\r\n"]) + b"\r\n"
    elif shape == 7:
        req.set(b"Transfer-Encoding", rng.choice([b"gzip", b"gzip, chunked", b"chunked, gzip",
                                                  b"identity", b"chunked, chunked", b"CHUNKED",
                                                  b"chunked\x00", b"x"]))
    elif shape == 8:
        req.headers.append((b"Transfer-Encoding", b"chunked"))  # duplicated
    else:  # bare LF in the chunked framing
        req.chunked = [c.replace(b"\r\n", b"\n") for c in req.chunked]


def m_eol(rng: random.Random, req: Req) -> None:
    req.eol = rng.choice([b"\n", b"\r", b"\r\r\n", b"\n\r"])


def m_connection(rng: random.Random, req: Req) -> None:
    req.set(b"Connection", rng.choice([b"close", b"keep-alive", b"Close", b"close, close",
                                       b"\x00", b"upgrade"]))


STRUCTURAL = [m_method, m_target, m_version, m_host, m_origin, m_junk_headers, m_huge_headers,
              m_length, m_chunked, m_eol, m_connection]


# ---------------------------------------------------------------------------------------------
# Ranges and queries


def range_header(rng: random.Random, size: int) -> bytes:
    ends = [0, 1, 2, size - 1, size, size + 1, 2**63 - 1, 2**63, 2**64, 10**30]

    def pick() -> bytes:
        return str(rng.choice(ends)).encode()

    return rng.choice([
        b"bytes=" + pick() + b"-" + pick(), b"bytes=" + pick() + b"-", b"bytes=-" + pick(),
        b"bytes=-0", b"bytes=0-0", b"bytes=", b"bytes=-", b"bytes=5-2",
        b"bytes=0-1,5-6", b"bytes=0-0," * 200 + b"1-1", b"items=0-1", b"bytes = 0-1",
        b"bytes=0-1 ", b"bytes=" + b"9" * 400 + b"-", b"bytes=-" + b"9" * 400,
        b"bytes=0x10-0x20", b"bytes=+1-2", b"bytes=1--2", b"bytes=\x00", b"bytes=0-1\x00",
        b"bytes=" + pick() + b"-" + pick() + b", " + pick() + b"-",
    ])


def range_case(rng: random.Random, target: Target) -> Req:
    f = facts(target)
    digest, size = (f.config, f.config_size) if rng.random() < 0.8 else (f.model, f.model_size)
    req = Req(method=rng.choice([b"GET", b"GET", b"HEAD"]),
              target=f"/v2/library/{_live.MODEL}/blobs/{digest}".encode(),
              headers=[(b"Host", _host(target)), (b"Range", range_header(rng, size))])
    if rng.random() < 0.2:
        req.headers.append((b"Range", range_header(rng, size)))
    if rng.random() < 0.2:
        req.set(b"If-Range", rng.choice([b'"x"', b"Wed, 21 Oct 2015 07:28:00 GMT", b""]))
    return req


def _pct(rng: random.Random, text: bytes) -> bytes:
    out = bytearray()
    for b in text:
        if rng.random() < 0.3:
            out += b"%%%02X" % b
        else:
            out.append(b)
    return bytes(out)


def query_case(rng: random.Random, target: Target) -> Req:
    f = facts(target)
    values = [f.config.encode(), f.model.encode(), b"sha256:" + b"0" * 64, b"sha256:zz",
              b"%", b"%zz", b"%ff%fe", b"%00", b"a+b", b"=", b"&", b"", b"9" * 400, b"-1",
              b"../../x", b"\xff", b"a" * 5000, b"sha256%3A" + f.config.encode()[7:]]
    keys = [b"digest", b"mount", b"from", b"n", b"last", b"x", b"", b"%", b"digest[]"]
    pairs = []
    for _ in range(rng.randint(1, 5)):
        k, v = rng.choice(keys), rng.choice(values)
        if rng.random() < 0.3:
            v = _pct(rng, v)
        pairs.append(k + (b"=" + v if rng.random() < 0.9 else b""))
    query = b"&".join(pairs)
    method, path = rng.choice([
        (b"GET", b"/api/tags"), (b"GET", b"/api/version"), (b"GET", b"/v2/"),
        (b"GET", f"/v2/library/{_live.MODEL}/manifests/latest".encode()),
        (b"POST", b"/v2/fuzz/q/blobs/uploads/"), (b"POST", b"/v2/fuzz/q/blobs/uploads"),
        (b"PUT", b"/v2/fuzz/q/blobs/uploads/" + b"0" * 32),
        (b"GET", b"/v2/fuzz/q/blobs/" + f.config.encode()),
        (b"HEAD", b"/api/blobs/" + f.config.encode()),
    ])
    req = Req(method=method, target=path + b"?" + query, headers=[(b"Host", _host(target))])
    if method in (b"POST", b"PUT"):
        req.set(b"Content-Length", b"0")
    return req


# ---------------------------------------------------------------------------------------------
# Byte-level mutation of a whole request


# deletions, random bytes, header punctuation, CRLFs and framing headers, repeated spans
flip_bytes = _loop.byte_mutator(
    b" \t\r\n:;,=-0123456789aAzZ\x00\xff",
    [b"\r\n", b"\r\n\r\n", b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"%",
     b"\x00" * 8],
    max_edits=8, repeat=True)


def _guess_request(data: bytes) -> tuple[str, str]:
    line = data.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    parts = line.split(b" ")
    method = parts[0].decode("latin-1") if parts else ""
    target = parts[1].decode("latin-1") if len(parts) > 1 else ""
    return method, target


# ---------------------------------------------------------------------------------------------
# Cases


def _conn(req: Req, *, wait_100: bool = False) -> Conn:
    parts = [req.head(), req.payload()] if wait_100 else [req.raw()]
    return Conn(parts=[p for p in parts if p] or [b""],
                requests=[(req.method_text, req.target_text)],
                half_close=not wait_100 and _live.needs_eof(req.raw()), wait_100=wait_100)


def _req(method: bytes, path: bytes, target: Target, body: bytes | None = None,
         headers: list[Header] | None = None) -> Req:
    hs: list[Header] = [(b"Host", _host(target))] + (headers or [])
    if body is not None:
        hs += [(b"Content-Type", b"application/json"), (b"Content-Length", b"%d" % len(body))]
    return Req(method=method, target=path, headers=hs, body=body or b"")


SHOW = b'{"model":"smol"}'


def curated(target: Target) -> list[tuple[str, list[Conn]]]:
    """One case per class the issue names, run first by every run."""
    f = facts(target)
    blob = f"/v2/library/{_live.MODEL}/blobs/{f.config}".encode()
    out: list[tuple[str, list[Conn]]] = []

    def add(name: str, req: Req, **kw: bool) -> None:
        out.append((name, [_conn(req, **kw)]))

    r = _req(b"POST", b"/api/show", target, headers=[(b"Transfer-Encoding", b"chunked")])
    r.chunked = [b"zz\r\n" + SHOW + b"\r\n0\r\n\r\n"]
    add("garbage chunk size", r)
    r = _req(b"POST", b"/api/show", target, headers=[(b"Transfer-Encoding", b"chunked")])
    r.chunked = [b"ffffffffffffffffffffffff\r\n" + SHOW + b"\r\n0\r\n\r\n"]
    add("overflowing chunk size", r)
    r = _req(b"POST", b"/api/show", target, headers=[(b"Transfer-Encoding", b"chunked")])
    r.chunked = [b"10\r\n" + SHOW[:5]]
    add("chunked body cut short", r)
    r = _req(b"POST", b"/api/show", target, SHOW)
    r.set(b"Content-Length", b"100")
    add("body shorter than Content-Length", r)
    r = _req(b"POST", b"/api/show", target, SHOW)
    r.set(b"Content-Length", b"-1")
    add("negative Content-Length", r)
    r = _req(b"POST", b"/api/show", target, SHOW)
    r.headers.append((b"Content-Length", b"17"))
    add("two different Content-Lengths", r)
    r = _req(b"POST", b"/api/show", target, SHOW)
    r.headers.append((b"Transfer-Encoding", b"chunked"))
    r.chunked = [b"%x\r\n" % len(SHOW) + SHOW + b"\r\n0\r\n\r\n"]
    add("Content-Length and chunked", r)
    r = _req(b"POST", b"/api/show", target, SHOW, headers=[(b"Transfer-Encoding", b"gzip")])
    add("unsupported Transfer-Encoding", r)
    r = _req(b"POST", b"/api/show", target, SHOW, headers=[(b"Expect", b"100-continue")])
    add("Expect: 100-continue (waits for 100)", r, wait_100=True)
    r = _req(b"POST", b"/api/blobs/" + _digest(b"x" * 100), target, b"x" * 100,
             headers=[(b"Expect", b"100-continue")])
    add("Expect: 100-continue on a blob upload", r, wait_100=True)
    add("a 70 KB header", _req(b"GET", b"/api/tags", target, headers=[(b"X-Huge", b"a" * 70000)]))
    add("400 headers of 400 bytes", _req(b"GET", b"/api/version", target, headers=[
        (b"X-H%d" % i, b"v" * 400) for i in range(400)]))
    add("a 70 KB request target", _req(b"GET", b"/api/tags?" + b"a" * 70000, target))
    add("Host: attacker.example.com", Req(target=b"/api/tags",
                                          headers=[(b"Host", b"attacker.example.com")]))
    add("Host: attacker on /v2 manifest", Req(
        target=f"/v2/library/{_live.MODEL}/manifests/latest".encode(),
        headers=[(b"Host", b"attacker.example.com")]))
    add("no Host (HTTP/1.1)", Req(target=b"/api/version"))
    add("HTTP/1.0 without Host", Req(target=b"/api/version", version=b"HTTP/1.0"))
    add("cross-origin simple POST", _req(b"POST", b"/api/show", target, SHOW, headers=[
        (b"Origin", b"https://evil.example")]))
    add("preflight from evil origin", _req(b"OPTIONS", b"/api/create", target, headers=[
        (b"Origin", b"https://evil.example"), (b"Access-Control-Request-Method", b"POST")]))
    add("preflight from localhost", _req(b"OPTIONS", b"/api/chat", target, headers=[
        (b"Origin", b"http://localhost"), (b"Access-Control-Request-Method", b"POST")]))
    add("bare LF line endings", Req(target=b"/api/version", eol=b"\n",
                                    headers=[(b"Host", _host(target))]))
    add("obs-fold header", _req(b"GET", b"/api/version", target, headers=[(b"X-A", b"a\r\n b")]))
    add("NUL in a header value", _req(b"GET", b"/api/version", target,
                                      headers=[(b"X-A", b"a\x00b")]))
    add("absolute-form target", _req(b"GET", b"http://127.0.0.1/api/version", target))
    add("asterisk-form OPTIONS", _req(b"OPTIONS", b"*", target))
    add("CONNECT", _req(b"CONNECT", b"127.0.0.1:1", target))
    add("request line with extra field", Req(target=b"/api/version HTTP/1.1 x",
                                             headers=[(b"Host", _host(target))]))
    for rh in (b"bytes=0-0", b"bytes=-1", b"bytes=5-2", b"bytes=" + b"9" * 400 + b"-",
               b"bytes=-" + b"9" * 400, b"bytes=18446744073709551616-", b"bytes=0-1,5-6",
               b"bytes=%d-" % f.config_size, b"bytes=-0"):
        add(f"Range {rh[:30]!r}", _req(b"GET", blob, target, headers=[(b"Range", rh)]))
    add("HEAD with Range", _req(b"HEAD", blob, target, headers=[(b"Range", b"bytes=1-2")]))
    add("query with bad escapes", _req(b"POST", b"/v2/fuzz/q/blobs/uploads/?digest=%zz&mount=%",
                                       target, b""))
    reqs = [_req(b"GET", b"/api/tags", target), _req(b"HEAD", b"/api/version", target),
            _req(b"POST", b"/api/show", target, SHOW), _req(b"GET", b"/api/version", target)]
    out.append(("pipelined GET, HEAD, POST, GET", [Conn(
        parts=[b"".join(r.raw() for r in reqs)],
        requests=[(r.method_text, r.target_text) for r in reqs])]))
    bad = Req(method=b"GE T", target=b"/", headers=[(b"Host", _host(target))])
    reqs = [_req(b"GET", b"/api/version", target), bad, _req(b"GET", b"/api/version", target)]
    out.append(("pipelined with a bad request in the middle", [Conn(
        parts=[b"".join(r.raw() for r in reqs)],
        requests=[(r.method_text, r.target_text) for r in reqs])]))
    return out


def _pipeline(rng: random.Random, target: Target) -> Conn:
    reqs = []
    for _ in range(rng.randint(2, 5)):
        req = base_request(rng, target)
        if rng.random() < 0.4:
            rng.choice([m_host, m_origin, m_junk_headers, m_connection])(rng, req)
        reqs.append(req)
    conn = Conn(parts=[b"".join(r.raw() for r in reqs)],
                requests=[(r.method_text, r.target_text) for r in reqs])
    conn.half_close = _live.needs_eof(conn.parts[0])
    if rng.random() < 0.3:  # byte by byte boundaries: the whole pipeline in small pieces
        data = conn.parts[0]
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 6)))
        conn.parts = [data[i:j] for i, j in zip([0] + cuts, cuts + [len(data)])]
    return conn


def make_case(rng: random.Random, target: Target, index: int) -> Case:
    fixed = curated(target)
    if index < len(fixed):
        name, conns = fixed[index]
        return Case(name=f"curated: {name}", conns=conns)
    kind = rng.choices(["structural", "pipeline", "bytes", "range", "query", "expect"],
                       weights=[35, 12, 25, 12, 10, 6])[0]
    if kind == "pipeline":
        return Case(name="pipeline", conns=[_pipeline(rng, target)])
    if kind == "range":
        return Case(name="range", conns=[_conn(range_case(rng, target))])
    if kind == "query":
        return Case(name="query", conns=[_conn(query_case(rng, target))])
    req = base_request(rng, target)
    if kind == "expect":
        if not req.payload():
            req = _req(b"POST", b"/api/show", target, SHOW)
        expect = rng.choice([b"100-continue", b"100-Continue", b"200-ok", b""])
        req.set(b"Expect", expect)
        wait = expect.lower() == b"100-continue" and rng.random() < 0.5
        return Case(name="expect", conns=[_conn(req, wait_100=wait)])
    mutations = rng.sample(STRUCTURAL, rng.randint(1, 3))
    for mutate in mutations:
        mutate(rng, req)
    name = "+".join(m.__name__[2:] for m in mutations)
    if kind == "bytes":
        data = flip_bytes(rng, req.raw())
        return Case(name=f"bytes({name})", conns=[Conn(
            parts=[data], requests=[_guess_request(data)], half_close=_live.needs_eof(data))])
    return Case(name=name, conns=[_conn(req)])


def curated_count(target: Target) -> int:
    return len(curated(target))


def main(argv: list[str] | None = None) -> None:
    _live.cli("fuzz_http", make_case, argv)


if __name__ == "__main__":
    main()
