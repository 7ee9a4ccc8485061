"""A small bounded run of bench/load_test.py: 40 keep-alive connections of mixed /api/tags,
/api/show and streamed /api/generate, a fixed number of requests each. Every request succeeds,
and the server gives back what the load took: no descriptors or child processes left over.
No timing is asserted: `python bench/load_test.py` measures and reports latency."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import start_server, stop_server, upload_and_create

pytestmark = pytest.mark.e2e

CONNECTIONS = 40
REQUESTS = 5  # per connection
FD_SLACK = 5  # log file rotation, a lazily opened blob: not one per connection


def _load_test() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "load_test.py"
    spec = importlib.util.spec_from_file_location("bench_load_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


load_test = _load_test()


def test_load_small(smollm2_gguf: str, tmp_path: Path) -> None:
    srv = start_server(str(tmp_path))
    try:
        upload_and_create(srv.url, smollm2_gguf, load_test.MODEL)
        result = asyncio.run(load_test.run_load(
            srv.port, srv.proc.pid, connections=CONNECTIONS, requests=REQUESTS, num_predict=4))
        print(result.report())
        assert result.total_errors == 0, result.report()
        assert sum(result.requests.values()) == CONNECTIONS * REQUESTS
        assert set(result.requests) == {"tags", "show", "generate"}
        assert result.after.fds <= result.before.fds + FD_SLACK, result.report()
        assert set(result.after.children) == set(result.before.children), result.report()
        assert len(result.before.children) == 1  # the runner the warm-up loaded
    finally:
        stop_server(srv)
