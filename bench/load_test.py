"""Bounded load test (127.0.0.1 only): many keep-alive connections of mixed /api/tags,
/api/show and streamed /api/generate against one ``pollama serve``.

    python bench/load_test.py                          # 200 connections for 60 s, own server
    python bench/load_test.py --connections 50 --seconds 20
    python bench/load_test.py --url http://127.0.0.1:11434 [--pid PID]

Each connection has one role for its whole life (by default 45% /api/tags, 45% /api/show,
10% streamed /api/generate with num_predict 8), so the mix stays what was asked even though
generations are much slower than the rest. It reports requests by route, errors (there must be
none), p50/p99 latency per route, and of the server process: open descriptors
(``/proc/PID/fd``) and child processes before and after, and RSS before, during (sampled) and
after. With ``--requests N`` every connection makes N requests instead of running for a time
(tests/e2e/test_load_small.py runs that way).

The client is plain asyncio sockets with a minimal HTTP/1.1 reader, to leave the CPU to the
server; on a 2-core machine it still takes a share of it, which the latencies include.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MODEL = "smol"
ROLES = ("tags", "show", "generate")
# Share of connections per route. Generations queue behind one runner slot (num_parallel 1), so
# every generate connection adds a whole generation to the others' wait: 20 of 200 keeps that
# wait well inside the 120 s a request may take, even on a busy 2-core machine.
DEFAULT_MIX = {"tags": 0.45, "show": 0.45, "generate": 0.1}


# ---------------------------------------------------------------------------------------------
# The server process: descriptors, children, memory


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> dict[int, str]:
    """Direct child processes of ``pid``: {pid: command line}."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                out[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue
    return out


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def pid_listening_on(port: int) -> int | None:
    """The process that holds the listening socket of 127.0.0.1:``port`` (for ``--url``)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
        except OSError:
            continue
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                link = os.readlink(f"/proc/{entry}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(entry)
        except OSError:
            continue
    return None


@dataclass
class Snapshot:
    fds: int
    children: dict[int, str]
    rss: int
    child_rss: int

    @classmethod
    def take(cls, pid: int) -> Snapshot:
        kids = children(pid)
        child_rss = 0
        for k in kids:
            try:
                child_rss += rss(k)
            except OSError:
                pass
        return cls(fds=fd_count(pid), children=kids, rss=rss(pid), child_rss=child_rss)


# ---------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 client on asyncio streams


class HTTPError(Exception):
    pass


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes, float]:
    """(status, headers, body, seconds to the first body byte from the call)."""
    t0 = time.perf_counter()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if m is None:
        raise HTTPError(f"bad status line {lines[0][:100]!r}")
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    first = time.perf_counter() - t0
    if "chunked" in headers.get("transfer-encoding", ""):
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            if len(parts) == 1:
                first = time.perf_counter() - t0
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(m.group(1)), headers, body, first


def request_bytes(role: str, port: int, num_predict: int) -> bytes:
    host = f"Host: 127.0.0.1:{port}\r\n"
    if role == "tags":
        return f"GET /api/tags HTTP/1.1\r\n{host}\r\n".encode()
    if role == "show":
        body = json.dumps({"model": MODEL}).encode()
        path = "/api/show"
    else:
        body = json.dumps({"model": MODEL, "prompt": "Count from one to ten.",
                           "options": {"num_predict": num_predict, "temperature": 0}}).encode()
        path = "/api/generate"
    return (f"POST {path} HTTP/1.1\r\n{host}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def check_body(role: str, status: int, body: bytes) -> str | None:
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    try:
        if role == "generate":
            lines = [json.loads(x) for x in body.split(b"\n") if x.strip()]
            if not lines or any("error" in x for x in lines) or not lines[-1].get("done"):
                return f"bad stream: {body[-300:]!r}"
        else:
            value = json.loads(body)
            if role == "tags" and not any(m.get("name", "").startswith(MODEL)
                                          for m in value.get("models", [])):
                return "model missing from /api/tags"
            if role == "show" and "modelfile" not in value:
                return "no modelfile in /api/show"
    except (ValueError, AttributeError) as exc:
        return f"bad body: {exc}"
    return None


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in ROLES})
    first_byte: list[float] = field(default_factory=list)  # generate: time to the first chunk
    opening: list[float] = field(default_factory=list)  # the first request of each connection
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    reconnects: int = 0

    def error(self, role: str, what: str) -> None:
        self.errors[f"{role}: {what.split(':')[0]}"] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{role}: {what}")


REQUEST_TIMEOUT = 120.0  # an answer that takes longer is counted as an error (a hang)


async def connection(role: str, port: int, stats: Stats, *, deadline: float | None,
                     count: int | None, num_predict: int,
                     timeout: float = REQUEST_TIMEOUT) -> None:
    """One keep-alive connection making ``role`` requests until ``deadline`` or ``count``;
    a request started before the deadline is waited for (up to ``timeout``)."""
    req = request_bytes(role, port, num_predict)
    reader = writer = None
    done = 0
    try:
        while (count is None or done < count) and (deadline is None
                                                   or time.monotonic() < deadline):
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert reader is not None
                t0 = time.perf_counter()
                writer.write(req)
                await writer.drain()
                status, headers, body, first = await asyncio.wait_for(read_response(reader),
                                                                      timeout)
                elapsed = time.perf_counter() - t0
                done += 1
                problem = check_body(role, status, body)
                if problem:
                    stats.error(role, problem)
                else:
                    stats.latencies[role].append(elapsed)
                    if role == "generate":
                        stats.first_byte.append(first)
                    if done == 1:
                        stats.opening.append(elapsed)
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    writer = None
                    stats.reconnects += 1
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    HTTPError, ValueError, asyncio.TimeoutError) as exc:
                done += 1
                stats.error(role, f"{type(exc).__name__}: {exc}")
                if writer is not None:
                    writer.close()
                writer = None
                stats.reconnects += 1
                await asyncio.sleep(0.05)
    finally:
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass


def roles_for(connections: int, mix: dict[str, float]) -> list[str]:
    """Spread roles over connections in proportion to ``mix`` (largest remainder)."""
    total = sum(mix.values())
    shares = {r: connections * w / total for r, w in mix.items()}
    counts = {r: int(s) for r, s in shares.items()}
    for r in sorted(shares, key=lambda r: shares[r] - counts[r], reverse=True):
        if sum(counts.values()) >= connections:
            break
        counts[r] += 1
    # interleaved, so that connections of every role open at once
    keyed = [((i + 0.5) / n, ROLES.index(r), r) for r, n in counts.items() for i in range(n)]
    return [r for _, _, r in sorted(keyed)]


@dataclass
class Result:
    connections: int
    seconds: float
    requests: dict[str, int]
    errors: dict[str, int]
    error_samples: list[str]
    latency: dict[str, dict[str, float]]
    before: Snapshot
    after: Snapshot
    rss_during_max: int
    rss_during_mean: int
    rss_during_quarters: list[int]  # mean RSS of each quarter of the run: flat means no leak
    child_rss_during_max: int
    reconnects: int
    opening: dict[str, float] = field(default_factory=dict)

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values())

    def report(self) -> str:
        mb = 1 << 20
        total = sum(self.requests.values())
        lines = [f"{self.connections} connections, {self.seconds:.1f} s, {total} requests "
                 f"({total / self.seconds:.0f}/s), errors: {self.total_errors}"]
        for role in ROLES:
            lat = self.latency.get(role)
            if not self.requests.get(role):
                continue
            text = (f"  {role:9s} {self.requests[role]:7d} requests "
                    f"({self.requests[role] / self.seconds:6.1f}/s)")
            if lat:
                text += (f"  p50 {lat['p50'] * 1000:8.1f} ms  p99 {lat['p99'] * 1000:8.1f} ms"
                         f"  max {lat['max'] * 1000:8.1f} ms")
            if role == "generate" and lat and "first_p50" in lat:
                text += (f"  (first chunk p50 {lat['first_p50'] * 1000:.0f} ms, "
                         f"p99 {lat['first_p99'] * 1000:.0f} ms)")
            lines.append(text)
        for k, v in self.errors.items():
            lines.append(f"  error {k}: {v}")
        for s in self.error_samples:
            lines.append(f"    e.g. {s[:300]}")
        lines.append(f"  server fds: before {self.before.fds}, after {self.after.fds}")
        lines.append(f"  server children: before {sorted(self.before.children)}, "
                     f"after {sorted(self.after.children)}")
        lines.append(f"  server RSS: before {self.before.rss / mb:.1f} MB, during max "
                     f"{self.rss_during_max / mb:.1f} MB (mean {self.rss_during_mean / mb:.1f}), "
                     f"after {self.after.rss / mb:.1f} MB")
        lines.append("  server RSS by quarter of the run: " + ", ".join(
            f"{q / mb:.1f}" for q in self.rss_during_quarters) + " MB")
        lines.append(f"  runner RSS: before {self.before.child_rss / mb:.1f} MB, during max "
                     f"{self.child_rss_during_max / mb:.1f} MB, after "
                     f"{self.after.child_rss / mb:.1f} MB")
        if self.opening:
            p50, top = self.opening["p50"] * 1000, self.opening["max"] * 1000
            lines.append(f"  first request of each connection (all open at once): p50 "
                         f"{p50:.0f} ms, max {top:.0f} ms")
        lines.append(f"  client reconnects: {self.reconnects}")
        return "\n".join(lines)


def _quarters(values: list[int]) -> list[list[int]]:
    n = len(values)
    return [values[i * n // 4:(i + 1) * n // 4] for i in range(4) if (i + 1) * n // 4 > i * n // 4]


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _warm_up(port: int, num_predict: int) -> None:
    stats = Stats()
    for role in ROLES:  # loads the model, so "before" counts the runner
        await connection(role, port, stats, deadline=None, count=1, num_predict=num_predict)
    if stats.errors:
        raise RuntimeError(f"warm-up failed: {stats.error_samples}")


async def _settle(pid: int, before: int, seconds: float = 10.0) -> None:
    """Wait for the server to close the connections we closed (bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and fd_count(pid) > before:
        await asyncio.sleep(0.1)


async def run_load(port: int, pid: int, *, connections: int = 200, seconds: float | None = 60.0,
                   requests: int | None = None, mix: dict[str, float] | None = None,
                   num_predict: int = 8, profile: str | None = None) -> Result:
    """Drive the server at 127.0.0.1:``port`` (process ``pid``) and measure it."""
    mix = mix or dict(DEFAULT_MIX)
    await _warm_up(port, num_predict)
    await asyncio.sleep(0.5)
    before = Snapshot.take(pid)
    stats = Stats()
    samples: list[tuple[int, int]] = []
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            try:
                snap = Snapshot.take(pid)
                samples.append((snap.rss, snap.child_rss))
            except OSError:
                pass
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    deadline = started + seconds if requests is None and seconds is not None else None

    async def profiler() -> None:
        if profile is None or deadline is None or seconds is None or seconds <= 12:
            return
        await asyncio.sleep(5)  # connections open, steady state
        proc = start_profile(pid, seconds - 10, profile)
        while proc.poll() is None:
            await asyncio.sleep(0.2)

    prof = asyncio.create_task(profiler())
    await asyncio.gather(*(connection(role, port, stats, deadline=deadline, count=requests,
                                      num_predict=num_predict)
                           for role in roles_for(connections, mix)))
    # Rates are over the window requests were started in; the answers still awaited at the
    # deadline (a queued generation) are counted and timed, but do not stretch the window.
    elapsed = min(time.monotonic() - started, seconds) if deadline is not None and seconds \
        else time.monotonic() - started
    await prof
    stop.set()
    await sampler
    await _settle(pid, before.fds)
    await asyncio.sleep(0.5)
    after = Snapshot.take(pid)
    latency = {}
    for role, values in stats.latencies.items():
        if values:
            latency[role] = {"p50": _pct(values, 0.5), "p99": _pct(values, 0.99),
                             "max": max(values), "mean": statistics.fmean(values)}
    if stats.first_byte:
        latency.setdefault("generate", {}).update(first_p50=_pct(stats.first_byte, 0.5),
                                                  first_p99=_pct(stats.first_byte, 0.99))
    counts = {r: len(v) for r, v in stats.latencies.items()}
    for key, n in stats.errors.items():
        role = key.split(":")[0]
        counts[role] = counts.get(role, 0) + n
    return Result(
        connections=connections, seconds=elapsed, requests=counts, errors=dict(stats.errors),
        error_samples=stats.error_samples, latency=latency, before=before, after=after,
        rss_during_max=max((s[0] for s in samples), default=0),
        rss_during_mean=int(statistics.fmean(s[0] for s in samples)) if samples else 0,
        rss_during_quarters=[int(statistics.fmean(q)) for q in _quarters([s[0] for s in samples])],
        child_rss_during_max=max((s[1] for s in samples), default=0),
        reconnects=stats.reconnects,
        opening={"p50": _pct(stats.opening, 0.5), "max": max(stats.opening)}
        if stats.opening else {})


# ---------------------------------------------------------------------------------------------
# Where the server's time goes: py-spy samples of the threads holding the GIL, by category

# (category, markers): a sample counts for the first category, walking from the innermost
# frame outwards, one of whose markers appears in a frame; a pollama frame met first counts as
# "other pollama code" (routing, handlers, the HTTP adapter's own lines).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("logging", ("logging/__init__.py", "logging/handlers.py")),
    ("JSON encode (jsonwire.dumps, ndjson.encode)", ("core/jsonwire.py", "core/ndjson.py",
                                                     "json/encoder.py")),
    ("JSON decode", ("json/decoder.py", "json/__init__.py")),
    ("GGUF header parse (/api/show: read_header_full)", ("core/gguf.py", "gguf_file.py")),
    ("show model_info / modelfile text", ("core/show.py", "core/gguf_details.py")),
    ("models.load: manifest blobs read and parsed", ("adapters/models.py", "core/manifest.py")),
    ("store.list: manifests walked and read", ("adapters/store.py",)),
    ("h11 parse/serialise", ("h11/",)),
    ("access checks (Host, Origin, key)", ("core/access.py", "adapters/security.py",
                                           "ipaddress.py")),
    ("timestamps (rfc3339, local_offset)", ("core/timefmt.py", "local_offset", "datetime.py")),
    ("runner pipe and scheduler (generate)", ("runner_process.py", "runner_protocol.py",
                                              "scheduler_driver.py", "core/scheduler.py",
                                              "core/output.py", "core/responses.py")),
    ("anyio thread hand-off", ("to_thread.py", "_backends/_asyncio.py", "threading.py",
                               "concurrent/futures", "queue.py")),
    ("socket send/recv", ("anyio/streams", "socket.py", "sock_send", "sock_recv",
                          "selector_events.py")),
    ("asyncio event loop", ("asyncio/",)),
]


def profile_split(raw: str) -> list[tuple[str, float, int]]:
    """(category, share of samples, samples) from a py-spy ``--format raw`` file."""
    counts: Counter[str] = Counter()
    with open(raw) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not n.isdigit():
                continue
            frames = stack.split(";")
            category = "other"
            for frame in reversed(frames):
                hit = next((c for c, marks in CATEGORIES if any(m in frame for m in marks)), None)
                if hit is None and "pollama/" in frame:
                    hit = "other pollama code (routing, handlers, http_server)"
                if hit is not None:
                    category = hit
                    break
            counts[category] += int(n)
    total = sum(counts.values()) or 1
    return [(c, n / total, n) for c, n in counts.most_common()]


def start_profile(pid: int, seconds: float, out: str) -> Any:
    import subprocess

    return subprocess.Popen(["py-spy", "record", "-p", str(pid), "--gil", "--nonblocking",
                             "--format", "raw", "-o", out, "-d", str(max(1, int(seconds)))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# ---------------------------------------------------------------------------------------------
# Our own server


@contextmanager
def own_server(extra_env: dict[str, str] | None = None) -> Iterator[Any]:
    """A ``pollama serve`` on a free port with the test model created as ``smol``."""
    from tests.conftest import smollm2_gguf, start_server, stop_server, upload_and_create

    gguf = smollm2_gguf.__wrapped__()  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(prefix="pollama-load-") as tmp:
        srv = start_server(tmp, extra_env)
        try:
            upload_and_create(srv.url, gguf, MODEL)
            yield srv
        finally:
            stop_server(srv)


def parse_mix(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        if k not in ROLES:
            raise argparse.ArgumentTypeError(f"unknown route {k!r} (one of {', '.join(ROLES)})")
        out[k] = float(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--requests", type=int, default=None,
                    help="requests per connection instead of --seconds")
    ap.add_argument("--mix", type=parse_mix, default=",".join(
        f"{k}={v}" for k, v in DEFAULT_MIX.items()))
    ap.add_argument("--num-predict", type=int, default=8)
    ap.add_argument("--url", help="a running server, http://127.0.0.1:PORT (model 'smol' needed)")
    ap.add_argument("--pid", type=int, help="its process id (found from the port otherwise)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON as well")
    ap.add_argument("--profile", metavar="RAW", help="record the server with py-spy (GIL "
                    "holders, from 5 s in to 5 s before the end) into RAW and print the split")
    args = ap.parse_args()
    mix = args.mix if isinstance(args.mix, dict) else parse_mix(args.mix)

    def go(port: int, pid: int) -> Result:
        result = asyncio.run(run_load(port, pid, connections=args.connections,
                                      seconds=args.seconds, requests=args.requests, mix=mix,
                                      num_predict=args.num_predict, profile=args.profile))
        print(result.report(), flush=True)
        if args.profile:
            print(f"server time by category (py-spy --gil samples, {args.profile}):")
            for category, share, n in profile_split(args.profile):
                print(f"  {share * 100:5.1f}%  {n:6d}  {category}")
        if args.json:
            print(json.dumps({k: v for k, v in result.__dict__.items()
                              if k not in ("before", "after")} | {
                "before": result.before.__dict__, "after": result.after.__dict__},
                default=str))
        return result

    if args.url:
        m = re.fullmatch(r"http://(?:127\.0\.0\.1|localhost):(\d+)/?", args.url)
        if m is None:
            ap.error("--url must be http://127.0.0.1:PORT")
        port = int(m.group(1))
        pid = args.pid or pid_listening_on(port)
        if pid is None:
            ap.error(f"no local process listens on port {port}; pass --pid")
        result = go(port, pid)
    else:
        with own_server() as srv:
            print(f"server pid {srv.proc.pid} on port {srv.port}", flush=True)
            result = go(srv.port, srv.proc.pid)
    if result.total_errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
