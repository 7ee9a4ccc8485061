"""Recording and replaying scheduler decisions (JSON lines), like aioquic's qlog.

A trace file starts with one header line ``{"trace": "pollama-scheduler", "version": 1,
"config": {...}}`` and then one line per step: ``{"now": ns, "event": {...}, "commands": [...]}``.
Replaying feeds the same events at the same times through ``scheduler.step`` from the header's
initial state and compares the commands; the first difference is reported with its line number.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import scheduler as s
from .errors import PollamaError, TraceError

__all__ = [
    "FORMAT", "VERSION", "ReplayResult", "Step", "command_from_json", "event_from_json", "header",
    "line", "parse", "replay", "to_json"
]

FORMAT = "pollama-scheduler"
VERSION = 1

_EVENTS: dict[str, type[Any]] = {c.__name__: c for c in (
    s.RequestQueued, s.RequestFinished, s.RequestCancelled, s.RunnerReady, s.RunnerFailed,
    s.RunnerExited, s.Tick, s.NodeJoined, s.NodeLost)}
_COMMANDS: dict[str, type[Any]] = {c.__name__: c for c in (
    s.SpawnRunner, s.StopRunner, s.Dispatch, s.Reject, s.ReplyLoaded, s.ReplyUnloaded)}


def to_json(obj: Any) -> Any:
    """A dataclass (event, command, config) as JSON data, tagged with its type name."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {"type": type(obj).__name__}
        for f in dataclasses.fields(obj):
            out[f.name] = to_json(getattr(obj, f.name))
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, tuple):
        return [to_json(x) for x in obj]
    return obj


def _build(cls: type[Any], data: Any) -> Any:
    if not isinstance(data, dict):
        raise TraceError(f"{cls.__name__} must be an object, not {type(data).__name__}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "spec":
            value = _build(s.LoadSpec, value)
        elif f.name == "request":
            value = _build(s.Request, value)
        elif f.name == "kind":
            value = s.Kind(value)
        elif isinstance(value, list):  # a tuple field (a node's devices and models)
            if not all(isinstance(x, str) for x in value):
                raise TraceError(f"{cls.__name__}.{f.name} must be a list of strings")
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _decode(table: dict[str, type[Any]], data: Any) -> Any:
    kind = data.get("type") if isinstance(data, dict) else None
    if not isinstance(kind, str) or kind not in table:
        raise TraceError(f"unknown entry {data!r}")
    try:
        return _build(table[data["type"]], data)
    except (TypeError, ValueError, KeyError, PollamaError) as exc:
        raise TraceError(f"bad {data.get('type')}: {exc}") from None


def event_from_json(data: Any) -> s.Event:
    return _decode(_EVENTS, data)  # type: ignore[no-any-return]


def command_from_json(data: Any) -> s.Command:
    return _decode(_COMMANDS, data)  # type: ignore[no-any-return]


def header(config: s.Config) -> str:
    return json.dumps({"trace": FORMAT, "version": VERSION, "config": to_json(config)})


def line(now: int, event: s.Event, commands: Iterable[s.Command]) -> str:
    return json.dumps({"now": now, "event": to_json(event),
                       "commands": [to_json(c) for c in commands]})


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    lineno: int
    now: int
    event: s.Event
    commands: tuple[s.Command, ...]


def parse(lines: Iterable[str]) -> tuple[s.Config, Iterator[Step]]:
    it = iter(enumerate(lines, 1))
    for head_line, first in it:
        if first.strip():
            break
    else:
        raise TraceError("empty trace")
    try:
        head = json.loads(first)
    except ValueError as exc:
        raise TraceError(f"line {head_line}: not JSON: {exc}") from None
    if not isinstance(head, dict) or head.get("trace") != FORMAT or head.get("version") != VERSION:
        raise TraceError(f"line {head_line}: not a pollama scheduler trace (version 1)")
    try:
        config = _decode({"Config": s.Config}, head.get("config"))
    except TraceError as exc:
        raise TraceError(f"line {head_line}: {exc.message}") from None

    def steps() -> Iterator[Step]:
        for lineno, text in it:
            if not text.strip():
                continue
            try:
                data = json.loads(text)
                now = data["now"]
                event = event_from_json(data["event"])
                commands = tuple(command_from_json(c) for c in data["commands"])
            except (ValueError, KeyError, TypeError) as exc:
                raise TraceError(f"line {lineno}: {exc}") from None
            except TraceError as exc:
                raise TraceError(f"line {lineno}: {exc.message}") from None
            if not isinstance(now, int) or isinstance(now, bool):
                raise TraceError(f"line {lineno}: now is not an integer")
            yield Step(lineno=lineno, now=now, event=event, commands=commands)

    return config, steps()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayResult:
    steps: int
    mismatch: Step | None = None
    got: tuple[s.Command, ...] = ()

    @property
    def ok(self) -> bool:
        return self.mismatch is None


def replay(lines: Iterable[str]) -> ReplayResult:
    config, steps = parse(lines)
    state = s.State(config=config)
    n = 0
    for st in steps:
        try:
            state, commands, _ = s.step(state, st.event, st.now)
        except s.SchedulerError as exc:
            raise TraceError(f"line {st.lineno}: {exc.message}") from None
        n += 1
        if commands != st.commands:
            return ReplayResult(steps=n, mismatch=st, got=commands)
    return ReplayResult(steps=n)
