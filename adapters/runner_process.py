"""A runner and the requests in flight on it.

Moves bytes only: commands are framed by ``core.runner_protocol``; events coming back are routed
by request id to the waiting handler. When the runner exits, every request still in flight gets
``Failed("llama runner process has terminated: ...")``, which the handler reports like Ollama.

The bytes travel over a ``RunnerPipe``: ``LocalPipe`` is a subprocess of this server; on a Ray
cluster ``adapters.ray_cluster.RayPipe`` relays them to a runner subprocess on another node.
``RunnerProcess`` is the same over either, so the service, the generation core and the protocol
do not know where a runner is.

The pipe is this edge's foreign ground: a write to a runner that has gone (anyio's or the OS's
exceptions, Ray's) becomes ``RunnerTerminated`` with the exit reason, here and nowhere else.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
from anyio.abc import Process, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pollama.core import decoding
from pollama.core import runner_protocol as protocol
from pollama.core.errors import (RUNNER_TERMINATED, PollamaError, RunnerError, RunnerProtocolError,
                                 RunnerTerminated, map_exceptions)
from pollama.core.ndjson import NEED_DATA

from .streams import CLOSED

log = logging.getLogger("pollama.runner")

# Child processes never outlive the server. Runners arrange it themselves (runners.llama_runner
# main: PR_SET_PDEATHSIG plus a watchdog on the parent pid, which they get in this variable);
# other children (pip) start through a two-line launcher that does the same and then execs.
PARENT_PID_ENV = "POLLAMA_PARENT_PID"
_LAUNCHER = (
    "import ctypes,os,signal,sys\n"
    "try: ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
    "except (OSError, AttributeError): pass\n"
    "if os.getppid() != int(sys.argv[1]): os._exit(1)  # the parent died before prctl\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def with_parent_death(argv: list[str]) -> list[str]:
    """``argv`` wrapped so that the process is killed when this one dies (Linux; elsewhere
    it runs as is). Spawn it from the event loop thread: PDEATHSIG follows the thread that
    forked, and that thread lives as long as the server."""
    if not sys.platform.startswith("linux"):
        return argv
    return [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *argv]


RUNNER_ARGV = ("-m", "pollama.runners.llama_runner")  # after sys.executable


def runner_environ() -> dict[str, str]:
    """The environment of a runner started by this process."""
    return {**decoding.runner_env(os.environ), PARENT_PID_ENV: str(os.getpid())}


class RunnerPipe(Protocol):
    """Bytes to and from one runner, wherever it runs."""

    where: str  # for logs: "pid 123", "node abc… pid 123"

    async def send(self, data: bytes) -> None:
        """Write to the runner's stdin; raises one of ``CLOSED`` once it has gone."""

    def output(self) -> AsyncIterator[bytes]:
        """The runner's stdout until it closes; ``CLOSED`` or ``RunnerTerminated`` may end
        it early (the runner is gone)."""

    async def wait(self) -> str:
        """Wait for the exit; why it exited (``exit status N: last stderr lines``)."""

    def kill(self) -> None:
        """End it now (after a Shutdown that was not obeyed)."""


class LocalPipe:
    """A runner subprocess of this server."""

    def __init__(self, proc: Process, tg: TaskGroup) -> None:
        self.proc = proc
        self.where = f"pid {proc.pid}"
        self._stderr = StderrTail(proc.pid)
        tg.start_soon(self._read_stderr)

    @classmethod
    async def start(cls, tg: TaskGroup) -> LocalPipe:
        proc = await anyio.open_process([sys.executable, *RUNNER_ARGV], stdin=-1, stdout=-1,
                                        stderr=-1, env=runner_environ())
        return cls(proc, tg)

    async def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send(data)

    async def output(self) -> AsyncIterator[bytes]:
        assert self.proc.stdout is not None
        async for data in self.proc.stdout:
            yield data

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        try:
            async for data in self.proc.stderr:
                self._stderr.feed(data)
        except CLOSED:
            pass

    async def wait(self) -> str:
        code = await self.proc.wait()
        return exit_reason(code, self._stderr.lines)

    def kill(self) -> None:
        try:
            if self.proc.returncode is None:
                self.proc.kill()
        except ProcessLookupError:
            pass


class StderrTail:
    """A runner's stderr: logged line by line, the last lines kept for its exit reason.

    A Python traceback is an error worth the log at any level (from its first line to the
    exception line); llama.cpp's load chatter is debug."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.lines: list[str] = []
        self._in_traceback = False

    def feed(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            if not line.strip():
                continue
            self._in_traceback = self._in_traceback or line.startswith("Traceback (")
            log.log(logging.ERROR if self._in_traceback else logging.DEBUG,
                    "runner[%s]: %s", self.pid, line)
            if self._in_traceback and not line.startswith((" ", "Traceback (")):
                self._in_traceback = False  # the exception line ends it
            self.lines = (self.lines + [line])[-5:]


def exit_reason(code: int | None, tail: list[str]) -> str:
    detail = "; ".join(tail[-2:])
    return f"{RUNNER_TERMINATED}: exit status {code}" + (f": {detail}" if detail else "")


class RunnerProcess:
    def __init__(self, pipe: RunnerPipe, load: protocol.Load,
                 on_exit: Callable[[str], None] | None = None) -> None:
        self.pipe = pipe
        self.on_exit = on_exit
        self.load_spec = load
        self.loaded: protocol.Loaded | None = None
        self.alive = True
        self.exit_reason = ""
        self._ids = itertools.count(1)
        self._pending: dict[int, MemoryObjectSendStream[protocol.RunnerMessage]] = {}
        self._write_lock = anyio.Lock()
        self._gone = anyio.Event()

    @classmethod
    async def start(cls, tg: TaskGroup, load: protocol.Load,
                    on_exit: Callable[[str], None] | None = None,
                    pipe: RunnerPipe | None = None) -> RunnerProcess:
        """Start a runner (a local subprocess unless a ``pipe`` to one is given) and load the
        model; ``on_exit(reason)`` is called once it exits."""
        runner = cls(pipe or await LocalPipe.start(tg), load, on_exit)
        tg.start_soon(runner._read_stdout)
        events = await runner._open(load.id)
        try:
            await runner._write(load)
            async for msg in events:
                if isinstance(msg, protocol.Loaded):
                    runner.loaded = msg
                    return runner
                if isinstance(msg, protocol.Failed):
                    raise RunnerError(msg.message)
            raise runner.terminated()
        except BaseException:
            runner.on_exit = None  # a failed load is the caller's to report, not an exit
            await runner.stop()
            raise
        finally:
            runner._pending.pop(load.id, None)

    def terminated(self) -> RunnerTerminated:
        """The error for work on a runner that has gone: its exit reason once it is known."""
        return RunnerTerminated(self.exit_reason)

    async def _open(self, request_id: int) -> MemoryObjectReceiveStream[protocol.RunnerMessage]:
        send, recv = anyio.create_memory_object_stream[protocol.RunnerMessage](math.inf)
        self._pending[request_id] = send
        return recv

    async def _write(self, msg: protocol.ServerMessage) -> None:
        async with self._write_lock:
            with map_exceptions({CLOSED: lambda _: self.terminated()}):
                await self.pipe.send(protocol.RunnerCodec.send(msg))

    async def _read_stdout(self) -> None:
        codec = protocol.RunnerCodec(accept=protocol.RUNNER_KINDS)
        try:
            async for data in self.pipe.output():
                codec.receive_data(data)
                while True:
                    msg = codec.next_event()
                    if msg is NEED_DATA or msg is None:
                        break
                    assert isinstance(msg, protocol.RUNNER_KINDS)
                    stream = self._pending.get(msg.id)
                    if stream is not None:
                        stream.send_nowait(msg)
                        if isinstance(msg, (protocol.Done, protocol.Failed, protocol.Tokens,
                                            protocol.Loaded, protocol.Embeddings)):
                            self._pending.pop(msg.id, None)
                            stream.close()
        except RunnerProtocolError as exc:
            log.error("runner protocol error: %s", exc)
            await self.stop()
        except (*CLOSED, RunnerTerminated):
            pass
        finally:
            await self._exited()

    async def _exited(self) -> None:
        with anyio.CancelScope(shield=True):
            self.exit_reason = await self.pipe.wait()
        self.alive = False
        self._gone.set()
        for request_id, stream in list(self._pending.items()):
            try:
                stream.send_nowait(protocol.Failed(id=request_id, message=self.exit_reason))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            stream.close()
        self._pending.clear()
        if self.on_exit is not None:
            self.on_exit(self.exit_reason)

    @asynccontextmanager
    async def complete(self, prompt: str, context: list[int] | None, options: dict[str, Any],
                       fmt: Any = None, logprobs: bool = False, top_logprobs: int = 0,
                       shift: bool = True, tools: list[dict[str, Any]] | None = None,
                       tool_format: dict[str, Any] | None = None, tools_required: bool = False,
                       images: list[str] | None = None
                       ) -> AsyncIterator[AsyncIterator[protocol.RunnerMessage]]:
        """Start a completion; yields its event stream. Leaving early cancels it on the runner."""
        if not self.alive:
            raise self.terminated()
        request_id = next(self._ids)
        events = await self._open(request_id)
        finished = False

        async def stream() -> AsyncIterator[protocol.RunnerMessage]:
            nonlocal finished
            async for msg in events:
                if isinstance(msg, (protocol.Done, protocol.Failed)):
                    finished = True
                yield msg
            if not finished:
                finished = True
                yield protocol.Failed(id=request_id,
                                      message=self.exit_reason or "runner stream ended")

        try:
            await self._write(protocol.Complete(id=request_id, prompt=prompt, context=context,
                                                options=options,
                                          format=fmt, logprobs=logprobs or top_logprobs > 0,
                                          top_logprobs=top_logprobs, shift=shift,
                                          tools=tools, tool_format=tool_format,
                                          tools_required=tools_required,
                                          images=list(images or ())))
            yield stream()
        finally:
            if not finished and self.alive:
                with anyio.CancelScope(shield=True):
                    try:
                        await self._write(protocol.Cancel(id=next(self._ids), target=request_id))
                    except RunnerError:
                        pass

    async def tokenize(self, text: str) -> list[int]:
        """The model's tokens for ``text`` (with BOS, special tokens parsed), as generation
        would see them."""
        if not self.alive:
            raise self.terminated()
        request_id = next(self._ids)
        events = await self._open(request_id)
        try:
            await self._write(protocol.Tokenize(id=request_id, text=text))
            async for msg in events:
                if isinstance(msg, protocol.Tokens):
                    return msg.tokens
                if isinstance(msg, protocol.Failed):
                    raise PollamaError(msg.message, status_hint=msg.status)
            raise self.terminated()
        finally:
            self._pending.pop(request_id, None)

    async def embed(self, inputs: list[str], truncate: bool, *,
                    num_ctx: int | None = 0) -> protocol.Embeddings:
        """Embed texts on this runner; raises the runner's failure with its status.
        ``num_ctx``: the request's (0: none asked) for /api/embed's limit; None for the legacy
        /api/embeddings (no limit but the runner's own; see core.embed)."""
        if not self.alive:
            raise self.terminated()
        request_id = next(self._ids)
        events = await self._open(request_id)
        try:
            await self._write(protocol.Embed(id=request_id, inputs=inputs, truncate=truncate,
                                       num_ctx=num_ctx))
            async for msg in events:
                if isinstance(msg, protocol.Embeddings):
                    return msg
                if isinstance(msg, protocol.Failed):
                    raise PollamaError(msg.message, status_hint=msg.status)
            raise self.terminated()
        finally:
            self._pending.pop(request_id, None)

    async def stop(self) -> None:
        """Ask it to shut down; kill it if it has not exited 5 seconds later."""
        if not self.alive:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self._write(protocol.Shutdown(id=0))
            except RunnerError:
                pass
            with anyio.move_on_after(5):
                await self._gone.wait()
                return
            self.pipe.kill()
