"""Traces recorded from real `pollama serve` runs with SmolLM2 (POLLAMA_TRACE) replay exactly.

Refresh them with::

    POLLAMA_RECORD_TRACES=$PWD/tests/traces python -m pytest tests/e2e/test_scheduler_e2e.py
"""

from __future__ import annotations

import os

import pytest

from pollama.core import scheduler as s
from pollama.core import trace

TRACES = os.path.join(os.path.dirname(__file__), "..", "traces")
FILES = sorted(f for f in os.listdir(TRACES) if f.endswith(".jsonl"))

# Each recorded behaviour must show the commands that prove it happened.
EXPECTED = {
    "ps_stop_unload.jsonl": {s.SpawnRunner, s.Dispatch, s.StopRunner, s.ReplyUnloaded},
    "keep_alive.jsonl": {s.SpawnRunner, s.Dispatch, s.StopRunner},
    "evict_lru_max_loaded_1.jsonl": {s.SpawnRunner, s.StopRunner, s.Dispatch},
    "reload_num_ctx.jsonl": {s.SpawnRunner, s.StopRunner, s.Dispatch},
    "queue_full_503.jsonl": {s.ReplyLoaded, s.Dispatch, s.Reject},
    "load_failure.jsonl": {s.SpawnRunner, s.Reject, s.Dispatch},
    "single_flight_two_models.jsonl": {s.SpawnRunner, s.Dispatch},
    "num_parallel_2.jsonl": {s.ReplyLoaded, s.Dispatch},
    "runner_crash.jsonl": {s.SpawnRunner, s.Dispatch},
}


def test_every_behaviour_has_a_trace() -> None:
    assert set(EXPECTED) <= set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_recorded_trace_replays_identically(name: str) -> None:
    with open(os.path.join(TRACES, name)) as f:
        lines = f.readlines()
    result = trace.replay(lines)
    assert result.ok, (result.mismatch, result.got)
    _, steps = trace.parse(lines)
    kinds = {type(c) for st in steps for c in st.commands}
    assert EXPECTED.get(name, set()) <= kinds


def test_tampered_trace_is_caught() -> None:
    with open(os.path.join(TRACES, "evict_lru_max_loaded_1.jsonl")) as f:
        lines = f.readlines()
    idx = next(i for i, line in enumerate(lines) if '"StopRunner"' in line)
    lines[idx] = lines[idx].replace('"StopRunner"', '"SpawnRunner"', 1).replace(
        '"runner_id": ', '"model": "x", "spec": {}, "runner_id": ', 1)
    result = trace.replay(lines)
    assert not result.ok and result.mismatch is not None
    assert result.mismatch.lineno == idx + 1
