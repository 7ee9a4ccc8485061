"""Runner processes never outlive the server: SIGTERM, SIGINT, and SIGKILL of the server."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import httpx
import pytest

from tests.conftest import (Server, alive, runner_pids, start_server, stop_server,
                            upload_and_create)

pytestmark = pytest.mark.e2e

DEADLINE = 60.0


def gone_within(pids: list[int], deadline: float = DEADLINE) -> list[int]:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


@pytest.fixture()
def loaded(smollm2_gguf: str, tmp_path: Any) -> Any:
    srv = start_server(str(tmp_path))
    runners: list[int] = []
    try:
        upload_and_create(srv.url, smollm2_gguf, "smol")
        r = httpx.post(srv.url + "/api/generate", timeout=300, json={
            "model": "smol", "prompt": "Hi", "stream": False, "options": {"num_predict": 1}})
        assert r.status_code == 200, r.text
        runners = runner_pids(srv.proc.pid)
        assert len(runners) == 1, runners
        yield srv, runners
    finally:
        if srv.proc.poll() is None:
            stop_server(srv)
        for pid in runners:  # never leave a runner behind, even when the test failed
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT],
                         ids=["SIGKILL", "SIGTERM", "SIGINT"])
def test_idle_runner_exits_with_the_server(loaded: tuple[Server, list[int]],
                                           sig: signal.Signals) -> None:
    srv, runners = loaded
    srv.proc.send_signal(sig)
    srv.proc.wait(timeout=DEADLINE)
    assert gone_within(runners) == [], f"runner outlived the server after {sig.name}"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT],
                         ids=["SIGKILL", "SIGTERM", "SIGINT"])
def test_busy_runner_exits_with_the_server(loaded: tuple[Server, list[int]],
                                           sig: signal.Signals) -> None:
    """The runner is generating (a long answer streamed to a client) when the server goes."""
    srv, runners = loaded
    started = threading.Event()

    def generate() -> None:
        try:
            with httpx.stream("POST", srv.url + "/api/generate", timeout=300, json={
                    "model": "smol", "prompt": "Tell me a very long story.",
                    "options": {"num_predict": 100000, "temperature": 0}}) as r:
                for _ in r.iter_lines():
                    started.set()
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=generate, daemon=True)
    t.start()
    assert started.wait(DEADLINE)
    srv.proc.send_signal(sig)
    srv.proc.wait(timeout=DEADLINE)
    assert gone_within(runners) == [], f"runner outlived the server after {sig.name}"
    t.join(DEADLINE)


def test_runner_that_cannot_act_is_still_killed_with_the_server(
        loaded: tuple[Server, list[int]]) -> None:
    """A runner deep in a long llama.cpp call (a 30000-token prompt kept one alive 25 s after
    kill -9 of the server) notices nothing by itself. Stopped here so that it surely cannot act:
    only the kernel (PR_SET_PDEATHSIG) can end it when the server dies."""
    srv, runners = loaded
    for pid in runners:
        os.kill(pid, signal.SIGSTOP)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(timeout=DEADLINE)
    assert gone_within(runners) == [], "a stuck runner outlived the server"
