"""Bounded runs of the live-server fuzzers (fuzz/fuzz_http.py, fuzz/fuzz_handlers.py).

Fixed seeds and case counts: first every curated case (one per class of issue 9: garbage chunk
sizes, bodies cut short, Expect: 100-continue, huge headers, Host/Origin, Range, extreme numbers,
schemas that become grammars, manifests without a model layer, ...), then random cases. Each
answer must be a 4xx with a JSON error body or a valid 2xx (``fuzz/_live.py`` check_reply), never
a 5xx, a connection closed without an answer or a hang, and the server must answer
``GET /api/version`` after every case. A failure prints every offending case with the exact
bytes sent and what came back; ``python -m fuzz.fuzz_http --seed S --case K`` replays one.
Long runs: ``python -m fuzz.fuzz_http --cases 20000 --seed N`` (and fuzz_handlers).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.e2e

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
SEED = 9
HTTP_CASES = 100  # 41 curated + random
HANDLER_CASES = 120  # 24 curated + random


def load(name: str) -> ModuleType:
    # The harnesses import their shared driver as ``_live`` from their own folder.
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module(name)


_live = load("_live")
fuzz_http = load("fuzz_http")
fuzz_handlers = load("fuzz_handlers")


@pytest.fixture()
def target(smollm2_gguf: str, tmp_path: Path) -> Iterator[object]:
    t = _live.Target(gguf=smollm2_gguf, workdir=str(tmp_path))
    t.start()
    try:
        yield t
    finally:
        t.close()


def _run(module: ModuleType, name: str, target: object, cases: int) -> None:
    report = _live.run_cases(name, module.make_case, target, seed=SEED, cases=cases,
                             stop_after_hang=True)
    print(report.summary())
    assert report.cases == cases or report.stopped, report.summary()
    assert not report.failures, report.summary() + "\n" + report.details()


def test_fuzz_http(target: object) -> None:
    assert fuzz_http.curated_count(target) < HTTP_CASES
    _run(fuzz_http, "fuzz_http", target, HTTP_CASES)


def test_fuzz_handlers(target: object) -> None:
    assert fuzz_handlers.curated_count(target) < HANDLER_CASES
    _run(fuzz_handlers, "fuzz_handlers", target, HANDLER_CASES)


def test_fuzz_cases_are_reproducible(target: object) -> None:
    """Case k of a seed is the same bytes however it is reached (``--case k`` replays it)."""
    for module in (fuzz_http, fuzz_handlers):
        first = [b"".join(c.data for c in module.make_case(_live.case_rng(SEED, k), target, k)
                          .conns) for k in (200, 201)]
        again = [b"".join(c.data for c in module.make_case(_live.case_rng(SEED, k), target, k)
                          .conns) for k in (200, 201)]
        assert first == again


def test_invariant_rejects_what_it_should() -> None:
    """The checker itself: a 500, a non-JSON 400, a leaked exception name, a hang are failures;
    Ollama's text/plain 404 and a registry error are not."""
    Reply, Conn = _live.Reply, _live.Conn

    def reply(status: int, body: bytes, ctype: str = "application/json") -> object:
        return Reply(status=status, reason="", headers=[("content-type", ctype)], body=body,
                     body_len=len(body))

    check = _live.check_reply
    assert check("GET", "/api/tags", reply(500, b'{"error":"x"}'))
    assert check("GET", "/api/tags", reply(400, b"bad"))
    assert check("GET", "/api/tags", reply(400, b'{"error":"KeyError: \'prefixItems\'"}'))
    assert check("POST", "/api/generate", reply(200, b'{"done":false}\n{"error":"x"}\n',
                                                "application/x-ndjson"))
    assert check("GET", "/api/nope", reply(404, b"404 page not found", "text/plain")) is None
    assert check("GET", "/v2/a/b/manifests/c", reply(
        404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"x"}]}')) is None
    assert check("GET", "/api/tags", reply(400, b'{"error":"invalid model name"}')) is None
    hung = Conn(parts=[b"x"], requests=[("GET", "/")], end="hang", detail="no answer")
    assert _live.check_conn(hung)
    assert eval(_live.py_bytes(b"GET / HTTP/1.1\r\n" + b"a" * 500 + b"\x00")) == (
        b"GET / HTTP/1.1\r\n" + b"a" * 500 + b"\x00")
    assert os.path.isdir(FUZZ_DIR)
