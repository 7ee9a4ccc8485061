"""step's shortcuts decide only what an event can affect; the result must be exactly the full
pass's, command for command and deadline for deadline, over long random mixes and configs."""

from __future__ import annotations

import dataclasses

import pytest

from pollama.core import scheduler as sc
from tests.bench.test_scheduler_bench import CONFIG, realistic_mix

CONFIGS = [
    CONFIG,
    dataclasses.replace(CONFIG, num_parallel=1, max_loaded=1, memory_budget=0),
    dataclasses.replace(CONFIG, num_parallel=4, max_loaded=3, max_queue=8),
    dataclasses.replace(CONFIG, memory_budget=12, max_queue=3),
]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("config", CONFIGS, ids=["bench", "one-slot", "wide", "tight"])
def test_fast_paths_match_full_pass(seed: int, config: sc.Config,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    events = realistic_mix(3000, seed=seed)
    fast = sc.State(config=config)
    full = sc.State(config=config)
    for now, event in events:
        monkeypatch.setattr(sc, "FAST_PATHS", True)
        try:
            fast, fast_cmds, fast_deadline = sc.step(fast, event, now)
        except sc.SchedulerError:
            fast_cmds, fast_deadline = (), None  # an id the mix reuses under this config
            monkeypatch.setattr(sc, "FAST_PATHS", False)
            with pytest.raises(sc.SchedulerError):
                sc.step(full, event, now)
            continue
        monkeypatch.setattr(sc, "FAST_PATHS", False)
        full, full_cmds, full_deadline = sc.step(full, event, now)
        assert (fast_cmds, fast_deadline) == (full_cmds, full_deadline), (now, event)
        assert fast == full
