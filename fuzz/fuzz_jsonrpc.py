"""Fuzz target: the JSON-RPC layer (pollama.core.jsonrpc, pollama.core.jsonrpc_framing).

Any bytes through the LSP reader, fed whole and in pieces, give the same message bodies or
``FramingError``, never anything else. Every body read, and the input itself as one WebSocket
message and as NDJSON lines, decodes to a ``Single`` or ``Batch`` of valid items: every
``Reply`` is a valid JSON-RPC error response that encodes, a ``Batch`` expects as many answers
as its replies and requests, and a ``Call``'s params survive an encode/decode round trip. Run
directly for a session (atheris if installed, otherwise 10 s of mutated random input); the same
``one_input`` runs under Hypothesis in ``tests/core/test_fuzz_harnesses.py``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _loop  # noqa: E402  (the shared driver next to this file)

from pollama.core import jsonrpc, ndjson  # noqa: E402
from pollama.core.jsonrpc_framing import (  # noqa: E402
    NEED_DATA, FramingError, LSPReader, lsp_encode)

SEEDS = [
    lsp_encode(b'{"jsonrpc":"2.0","id":1,"method":"chat","params":{"model":"m","messages":[]}}'),
    lsp_encode(b'[{"jsonrpc":"2.0","id":"a","method":"list"},'
               b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":"a"}},1]'),
    b"content-length: 2\nContent-Type: application/vscode-jsonrpc; charset=utf-8\n\n{}"
    + lsp_encode(b'{"jsonrpc":"2.0","id":2,"result":null}'),
    b'{"jsonrpc":"2.0","id":3,"method":"show","params":[1]}\n'
    b'{"jsonrpc":"2.0","id":null,"method":"ps"}\n',
    lsp_encode(b'{"jsonrpc":"2.0","id":1.5,"method":"foo","params":{"x":"\\ud800"}}')
    + b"Content-Length: 9",
]


def _bodies(data: bytes, step: int, max_message: int = 4096) -> list[bytes] | None:
    """Bodies read from ``data`` fed ``step`` bytes at a time; None if it raised FramingError."""
    reader = LSPReader(max_message=max_message, max_header=256)
    out: list[bytes] = []
    try:
        for i in range(0, len(data), step) if data else ():
            reader.receive_data(data[i:i + step])
            while (msg := reader.next_message()) is not NEED_DATA and msg is not None:
                assert isinstance(msg, bytes)
                out.append(msg)
        reader.receive_data(b"")
        while (msg := reader.next_message()) is not None:
            assert isinstance(msg, bytes)
            out.append(msg)
    except FramingError:
        try:
            reader.next_message()
        except FramingError:  # after an error, always the error
            return None
        raise AssertionError("the reader resumed after a FramingError")
    return out


def _valid_error(obj: Any) -> None:
    assert isinstance(obj, dict) and set(obj) == {"jsonrpc", "id", "error"}, obj
    assert obj["jsonrpc"] == "2.0"
    assert obj["id"] is None or jsonrpc.valid_id(obj["id"]), obj
    err = obj["error"]
    assert isinstance(err, dict) and set(err) <= {"code", "message", "data"}, err
    assert type(err["code"]) is int and isinstance(err["message"], str), err
    assert err["code"] in (jsonrpc.PARSE_ERROR, jsonrpc.INVALID_REQUEST,
                           jsonrpc.METHOD_NOT_FOUND, jsonrpc.INVALID_PARAMS), err
    assert json.loads(jsonrpc.encode(obj)) == obj


def _check(message: jsonrpc.Message) -> None:
    assert isinstance(message, (jsonrpc.Single, jsonrpc.Batch))
    for item in message.items:
        if isinstance(item, jsonrpc.Reply):
            _valid_error(item.obj)
        elif isinstance(item, jsonrpc.Call):
            assert item.method in jsonrpc.METHODS
            assert (item.id is None) == item.notification
            again = jsonrpc.decode(jsonrpc.encode(
                {"jsonrpc": "2.0", "id": item.id, "method": item.method, "params": item.params}
                if not item.notification else
                {"jsonrpc": "2.0", "method": item.method, "params": item.params}))
            assert again == jsonrpc.Single(item=item), (again, item)
        elif isinstance(item, jsonrpc.Cancel):
            assert jsonrpc.valid_id(item.id)
        else:
            assert isinstance(item, jsonrpc.Ignore)
    if isinstance(message, jsonrpc.Batch):
        assert 0 < len(message.items) <= jsonrpc.MAX_BATCH
        state = jsonrpc.BatchState.for_message(message)
        assert state is not None and state.pending == message.expected
    else:
        assert jsonrpc.BatchState.for_message(message) is None


def one_input(data: bytes) -> None:
    whole = _bodies(data, max(1, len(data)))
    for step in (1, 3):
        split = _bodies(data, step)
        if whole is not None and split is not None:
            assert split == whole, (step, split, whole)
    for body in whole or ():
        _check(jsonrpc.decode(body))
    if whole:
        again = _bodies(b"".join(lsp_encode(b) for b in whole), 5, max_message=1 << 20)
        assert again == whole
    _check(jsonrpc.decode(data))  # the input as one WebSocket message
    reader = ndjson.NDJSONReader(max_line=4096)  # and as NDJSON lines
    reader.receive_data(data)
    reader.receive_data(b"")
    while True:
        try:
            value = reader.next_event()
        except ndjson.NDJSONError as exc:
            _valid_error(jsonrpc.parse_error(exc.message))
            if "longer than" in exc.message:
                break
            continue
        if value is None:
            break
        _check(jsonrpc.decode_value(value))


_mutate = _loop.byte_mutator(b'{}[]":,0123456789$-.\r\n Content-Length:idmethodparamsjsonrpc')


HARNESS = _loop.Harness(one_input, _mutate, SEEDS, max_random=64)
random_loop = HARNESS.random_loop

if __name__ == "__main__":
    HARNESS.main()
