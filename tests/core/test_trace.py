"""core/trace.py: JSON round trips of every event and command, record/replay, tampering, and
bad input (only ``TraceError`` may come out of a malformed trace)."""

from __future__ import annotations

import json
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pollama.core import scheduler as sc
from pollama.core import trace
from pollama.core.errors import PollamaError
from pollama.core.trace import TraceError

S = 1_000_000_000
SPEC2 = sc.LoadSpec(num_ctx=8192, num_batch=256, num_gpu=0, num_thread=4, use_mmap=False)

EVENTS: list[sc.Event] = [
    sc.RequestQueued(request=sc.Request(id=1, model="sha-a")),
    sc.RequestQueued(request=sc.Request(
        id=2, model="sha-b", name="b:latest", spec=SPEC2, kind=sc.Kind.LOAD,
        keep_alive=sc.FOREVER, size=10, size_vram=4, gpu_layers=12)),
    sc.RequestQueued(request=sc.Request(id=3, model="sha-b", kind=sc.Kind.UNLOAD, keep_alive=0,
                                        spec=sc.LoadSpec(use_mmap=True))),
    sc.RequestFinished(request_id=1),
    sc.RequestCancelled(request_id=2),
    sc.RunnerReady(runner_id=1),
    sc.RunnerFailed(runner_id=1, message="unable to load model: é \"quoted\"\n"),
    sc.RunnerExited(runner_id=2),
    sc.RunnerExited(runner_id=2, message="exit status 2"),
    sc.Tick(),
    sc.NodeJoined(node_id="n1", memory=8 << 30, devices=("GPU:0",), models=("sha-a", "sha-b")),
    sc.NodeJoined(node_id="n2"),
    sc.NodeLost(node_id="n1"),
    sc.NodeLost(node_id="n2", message="actor died"),
    sc.RequestQueued(request=sc.Request(id=4, model="sha-a", replicas=2)),
]

COMMANDS: list[sc.Command] = [
    sc.SpawnRunner(runner_id=1, model="sha-a", spec=sc.LoadSpec()),
    sc.SpawnRunner(runner_id=2, model="sha-b", spec=SPEC2, gpu_layers=7),
    sc.SpawnRunner(runner_id=3, model="sha-b", spec=SPEC2, num_parallel=4, node="n1"),
    sc.StopRunner(runner_id=1),
    sc.Dispatch(request_id=1, runner_id=1),
    sc.Reject(request_id=1, status=503, message=sc.BUSY_MESSAGE),
    sc.Reject(request_id=2, status=500, message="boom"),
    sc.ReplyLoaded(request_id=1, runner_id=2),
    sc.ReplyUnloaded(request_id=3),
]


def _through_json(data: object) -> object:
    return json.loads(json.dumps(data))


def test_every_event_and_command_type_is_covered() -> None:
    assert {type(e) for e in EVENTS} == set(typing.get_args(sc.Event))
    assert {type(c) for c in COMMANDS} == set(typing.get_args(sc.Command))


@pytest.mark.parametrize("event", EVENTS, ids=repr)
def test_event_round_trip(event: sc.Event) -> None:
    data = trace.to_json(event)
    assert data["type"] == type(event).__name__
    assert trace.event_from_json(_through_json(data)) == event


@pytest.mark.parametrize("command", COMMANDS, ids=repr)
def test_command_round_trip(command: sc.Command) -> None:
    data = trace.to_json(command)
    assert data["type"] == type(command).__name__
    assert trace.command_from_json(_through_json(data)) == command


def test_events_and_commands_are_not_interchangeable() -> None:
    with pytest.raises(TraceError):
        trace.event_from_json(trace.to_json(sc.StopRunner(runner_id=1)))
    with pytest.raises(TraceError):
        trace.command_from_json(trace.to_json(sc.Tick()))


def test_enums_are_written_as_their_values() -> None:
    data = trace.to_json(EVENTS[1])
    assert data["request"]["kind"] == "load"
    assert data["request"]["spec"] == {"type": "LoadSpec", "num_ctx": 8192, "num_batch": 256,
                                       "num_gpu": 0, "num_thread": 4, "use_mmap": False}


def test_header_round_trip() -> None:
    config = sc.Config(num_parallel=2, max_loaded=4, max_queue=7, memory_budget=123,
                       default_keep_alive=9 * S)
    head = json.loads(trace.header(config))
    assert head["trace"] == trace.FORMAT and head["version"] == trace.VERSION
    parsed, steps = trace.parse([trace.header(config)])
    assert parsed == config
    assert list(steps) == []


# -- record and replay -------------------------------------------------------------------------


def record(config: sc.Config, script: list[tuple[int, sc.Event]]) -> list[str]:
    """Run a script through the reducer, recording it as the adapter does."""
    lines = [trace.header(config) + "\n"]
    state = sc.State(config=config)
    for now, event in script:
        state, commands, _ = sc.step(state, event, now)
        lines.append(trace.line(now, event, commands) + "\n")
    return lines


def _q(rid: int, model: str, **kw: object) -> sc.RequestQueued:
    return sc.RequestQueued(
        request=sc.Request(id=rid, model=model, **kw))  # type: ignore[arg-type]


CONFIG = sc.Config(num_parallel=1, max_loaded=2, max_queue=3, default_keep_alive=5 * S)
SCRIPT: list[tuple[int, sc.Event]] = [
    (0, _q(1, "a", size=3)),
    (1, _q(2, "b", size=4)),
    (2, sc.RunnerReady(runner_id=1)),
    (3, _q(3, "a")),
    (4, _q(4, "a")),
    (5, _q(5, "a")),  # 2, 3 and 4 wait: 503
    (6, sc.RunnerReady(runner_id=2)),
    (7, sc.RequestFinished(request_id=1)),
    (8, sc.RequestCancelled(request_id=4)),
    (9, _q(6, "c", spec=SPEC2)),
    (10, sc.RequestFinished(request_id=2)),
    (11, sc.RequestFinished(request_id=3)),
    (12, sc.RunnerExited(runner_id=2)),
    (13, sc.RunnerFailed(runner_id=3, message="no memory")),
    (14, _q(7, "a", kind=sc.Kind.UNLOAD, keep_alive=0)),
    (20 * S, sc.Tick()),
]


def test_recorded_sequence_replays_identically() -> None:
    lines = record(CONFIG, SCRIPT)
    kinds = {type(c) for st in trace.parse(lines)[1] for c in st.commands}
    assert kinds >= {sc.SpawnRunner, sc.StopRunner, sc.Dispatch, sc.Reject, sc.ReplyUnloaded}
    result = trace.replay(lines)
    assert result.ok and result.mismatch is None and result.got == ()
    assert result.steps == len(SCRIPT)


def test_replay_skips_blank_lines_and_counts_them_in_line_numbers() -> None:
    lines = record(CONFIG, SCRIPT)
    spaced = ["\n", lines[0], "\n"] + [x for line in lines[1:] for x in (line, "   \n")]
    assert trace.replay(spaced).ok
    parsed = list(trace.parse(spaced)[1])
    assert [st.lineno for st in parsed][:3] == [4, 6, 8]


@pytest.mark.parametrize("target", [1, 5, 8, len(SCRIPT)])
def test_tampered_command_reports_the_first_differing_step(target: int) -> None:
    lines = record(CONFIG, SCRIPT)
    data = json.loads(lines[target])
    data["commands"] = data["commands"] + [trace.to_json(sc.StopRunner(runner_id=99))]
    lines[target] = json.dumps(data) + "\n"
    result = trace.replay(lines)
    assert not result.ok and result.mismatch is not None
    # lines[0] is the header on line 1, so lines[target] is on line target + 1
    assert result.mismatch.lineno == target + 1
    assert result.steps == target
    assert result.mismatch.commands[-1] == sc.StopRunner(runner_id=99)
    assert sc.StopRunner(runner_id=99) not in result.got


def test_tampered_event_is_caught_where_its_effects_differ() -> None:
    lines = record(CONFIG, SCRIPT)
    # request 3 (line 5) now names another model; it waits either way, so the difference
    # shows only later: on the first line whose commands differ from a faithful recording
    lines[4] = lines[4].replace('"model": "a"', '"model": "z"', 1)
    tampered = [(now, ev) if i != 3 else (now, _q(3, "z"))
                for i, (now, ev) in enumerate(SCRIPT)]
    faithful = record(CONFIG, tampered)
    first = next(i for i in range(1, len(lines))
                 if json.loads(lines[i])["commands"] != json.loads(faithful[i])["commands"])
    assert first > 4
    result = trace.replay(lines)
    assert not result.ok and result.mismatch is not None
    assert result.mismatch.lineno == first + 1
    assert result.mismatch.event == SCRIPT[first - 1][1]
    assert [trace.to_json(c) for c in result.got] == json.loads(faithful[first])["commands"]


def test_dropped_command_is_caught() -> None:
    lines = record(CONFIG, SCRIPT)
    idx = next(i for i, line in enumerate(lines) if '"Dispatch"' in line)
    data = json.loads(lines[idx])
    data["commands"] = []
    lines[idx] = json.dumps(data)
    result = trace.replay(lines)
    assert result.mismatch is not None and result.mismatch.lineno == idx + 1
    assert any(isinstance(c, sc.Dispatch) for c in result.got)


def test_replay_uses_the_header_config() -> None:
    lines = record(CONFIG, SCRIPT)
    head = json.loads(lines[0])
    head["config"]["max_queue"] = 512  # request 5 (line 7) would now wait, not be rejected
    lines[0] = json.dumps(head)
    result = trace.replay(lines)
    assert result.mismatch is not None and result.mismatch.lineno == 7
    assert result.got == ()


# -- random traffic: record, parse back, replay ------------------------------------------------


@st.composite
def scripts(draw: st.DrawFn) -> list[tuple[int, sc.Event]]:
    n = draw(st.integers(1, 40))
    out: list[tuple[int, sc.Event]] = []
    now = 0
    for rid in range(1, n + 1):
        now += draw(st.sampled_from([0, 1, S, 10 * S]))
        kind = draw(st.sampled_from(["queue", "queue", "finish", "cancel", "ready", "failed",
                                     "exited", "tick"]))
        ref = draw(st.integers(1, rid))
        event: sc.Event
        if kind == "queue":
            event = _q(rid, draw(st.sampled_from("abc")),
                       spec=draw(st.sampled_from([sc.LoadSpec(), SPEC2])),
                       kind=draw(st.sampled_from(list(sc.Kind))),
                       keep_alive=draw(st.sampled_from([None, 0, S, sc.FOREVER])),
                       size=draw(st.integers(0, 5)))
        elif kind == "finish":
            event = sc.RequestFinished(request_id=ref)
        elif kind == "cancel":
            event = sc.RequestCancelled(request_id=ref)
        elif kind == "ready":
            event = sc.RunnerReady(runner_id=ref)
        elif kind == "failed":
            event = sc.RunnerFailed(runner_id=ref, message=draw(st.text(max_size=5)))
        elif kind == "exited":
            event = sc.RunnerExited(runner_id=ref)
        else:
            event = sc.Tick()
        out.append((now, event))
    return out


@settings(max_examples=100, deadline=None)
@given(scripts())
def test_random_traffic_records_and_replays(script: list[tuple[int, sc.Event]]) -> None:
    config = sc.Config(num_parallel=2, max_loaded=2, max_queue=3, memory_budget=8)
    lines = record(config, script)
    _, steps = trace.parse(lines)
    parsed = list(steps)
    assert [(st.now, st.event) for st in parsed] == script
    result = trace.replay(lines)
    assert result.ok and result.steps == len(script)


# -- bad input -----------------------------------------------------------------------------------

HEADER = trace.header(sc.Config())
TICK = json.dumps({"now": 1, "event": {"type": "Tick"}, "commands": []})


@pytest.mark.parametrize("lines", [
    [],
    ["", "  \n"],
    ["not json"],
    ["[1, 2]"],
    ['"pollama-scheduler"'],
    [json.dumps({"trace": "other", "version": 1, "config": {"type": "Config"}})],
    [json.dumps({"trace": "pollama-scheduler", "version": 2, "config": {"type": "Config"}})],
    [json.dumps({"trace": "pollama-scheduler", "config": {"type": "Config"}})],
    [json.dumps({"trace": "pollama-scheduler", "version": 1})],
    [json.dumps({"trace": "pollama-scheduler", "version": 1, "config": {"type": "State"}})],
    [json.dumps({"trace": "pollama-scheduler", "version": 1,
                 "config": {"type": "Config", "num_parallel": 0}})],
    [json.dumps({"trace": "pollama-scheduler", "version": 1,
                 "config": {"type": "Config", "max_queue": "9"}})],
    [json.dumps({"trace": "pollama-scheduler", "version": 1, "config": [1]})],
], ids=repr)
def test_bad_header_raises_trace_error(lines: list[str]) -> None:
    with pytest.raises(TraceError):
        trace.parse(lines)
    with pytest.raises(TraceError):
        trace.replay(lines)


def test_bad_header_type_tag_raises_trace_error() -> None:
    with pytest.raises(TraceError):
        trace.parse([json.dumps({"trace": "pollama-scheduler", "version": 1,
                                 "config": {"type": []}})])


BAD_LINES = [
    "not json",
    "[]",
    '"text"',
    "7",
    json.dumps({"event": {"type": "Tick"}, "commands": []}),
    json.dumps({"now": 1, "commands": []}),
    json.dumps({"now": 1, "event": {"type": "Tick"}}),
    json.dumps({"now": "1", "event": {"type": "Tick"}, "commands": []}),
    json.dumps({"now": 1.5, "event": {"type": "Tick"}, "commands": []}),
    json.dumps({"now": 1, "event": {"type": "Nope"}, "commands": []}),
    json.dumps({"now": 1, "event": {"type": []}, "commands": []}),
    json.dumps({"now": 1, "event": "Tick", "commands": []}),
    json.dumps({"now": 1, "event": {"type": "StopRunner", "runner_id": 1}, "commands": []}),
    json.dumps({"now": 1, "event": {"type": "Tick"}, "commands": 5}),
    json.dumps({"now": 1, "event": {"type": "Tick"}, "commands": [{"type": "Tick"}]}),
    json.dumps({"now": 1, "event": {"type": "Tick"}, "commands": [{"type": "Dispatch"}]}),
    json.dumps({"now": 1, "event": {"type": "RequestQueued"}, "commands": []}),
    json.dumps({"now": 1, "event": {"type": "RequestQueued", "request": "x"}, "commands": []}),
    json.dumps({"now": 1, "event": {"type": "RequestQueued", "request": {"id": 1}},
                "commands": []}),
    json.dumps({"now": 1, "event": {"type": "RequestQueued",
                                    "request": {"id": 1, "model": "a", "kind": "bogus"}},
                "commands": []}),
    json.dumps({"now": 1, "event": {"type": "RequestQueued",
                                    "request": {"id": 1, "model": "a", "size": -1}},
                "commands": []}),
    json.dumps({"now": 1, "event": {"type": "RequestQueued",
                                    "request": {"id": 1, "model": "a", "spec": None}},
                "commands": []}),
    json.dumps({"now": 1, "event": {"type": "RunnerFailed", "runner_id": 1}, "commands": []}),
]


@pytest.mark.parametrize("bad", BAD_LINES, ids=repr)
def test_bad_line_raises_trace_error_with_its_line_number(bad: str) -> None:
    lines = [HEADER, TICK, "", bad, TICK]
    config, steps = trace.parse(lines)  # the header is fine; steps are parsed lazily
    assert config == sc.Config()
    with pytest.raises(TraceError) as info:
        list(steps)
    assert info.value.message.startswith("line 4: ")
    with pytest.raises(TraceError):
        trace.replay(lines)


def test_trace_error_is_a_client_error() -> None:
    assert issubclass(TraceError, PollamaError)
    assert TraceError("x").status_hint == 400


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    data = trace.to_json(sc.Dispatch(request_id=1, runner_id=2))
    data["added_in_v2"] = True
    assert trace.command_from_json(data) == sc.Dispatch(request_id=1, runner_id=2)


@pytest.mark.parametrize("line", [
    '{"now": true, "event": {"type": "Tick"}, "commands": []}',
    '{"now": 1, "event": {"type": "RequestQueued", "request": {"type": "Request", "id": 1, '
    '"model": "m", "spec": [1, 2]}}, "commands": []}',
])
def test_loose_values_rejected(line: str) -> None:
    head = json.dumps({"trace": "pollama-scheduler", "version": 1, "config": {"type": "Config"}})
    with pytest.raises(TraceError):
        trace.replay([head, line])


def test_header_errors_name_the_real_line() -> None:
    with pytest.raises(TraceError, match="line 3"):
        trace.parse(["", "  ", "not json"])


def test_duplicate_request_id_is_a_trace_error() -> None:
    head = json.dumps({"trace": "pollama-scheduler", "version": 1, "config": {"type": "Config"}})
    q = ('{"now": 1, "event": {"type": "RequestQueued", "request": {"type": "Request", "id": 1, '
         '"model": "m"}}, "commands": [{"type": "SpawnRunner", "runner_id": 1, "model": "m", '
         '"spec": {"type": "LoadSpec"}}]}')
    with pytest.raises(TraceError, match="line 3"):
        trace.replay([head, q, q])
