from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import jsonrpc as rpc
from pollama.core import ndjson
from pollama.core.jsonrpc import (Batch, BatchState, Call, Cancel, Ignore, Reply, Single,
                                  decode, decode_value)
from pollama.core.jsonrpc_framing import lsp_encode
from pollama.core.ndjson import NDJSONError, NDJSONReader


def req(method: str, id: Any = 1, params: Any = None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method, **extra}
    if id is not ...:
        obj["id"] = id
    if params is not None:
        obj["params"] = params
    return obj


def one(data: str | bytes) -> rpc.Item:
    msg = decode(data)
    assert isinstance(msg, Single)
    return msg.item


def code_of(item: rpc.Item) -> int:
    assert isinstance(item, Reply), item
    return int(item.obj["error"]["code"])


def is_error_response(obj: Any) -> bool:
    """A valid JSON-RPC 2.0 error response object."""
    if not isinstance(obj, dict) or set(obj) != {"jsonrpc", "id", "error"}:
        return False
    if obj["jsonrpc"] != "2.0" or not (obj["id"] is None or rpc.valid_id(obj["id"])):
        return False
    err = obj["error"]
    return (isinstance(err, dict) and set(err) <= {"code", "message", "data"}
            and isinstance(err.get("code"), int) and not isinstance(err["code"], bool)
            and isinstance(err.get("message"), str))


# ---------------------------------------------------------------------------------------------
# The method table


def test_methods_mirror_the_rest_routes() -> None:
    from pollama.core import routes

    expected = {
        "chat": ("POST", "/api/chat", True), "generate": ("POST", "/api/generate", True),
        "embed": ("POST", "/api/embed", False), "embeddings": ("POST", "/api/embeddings", False),
        "list": ("GET", "/api/tags", False), "show": ("POST", "/api/show", False),
        "ps": ("GET", "/api/ps", False), "pull": ("POST", "/api/pull", True),
        "push": ("POST", "/api/push", True), "create": ("POST", "/api/create", True),
        "copy": ("POST", "/api/copy", False), "delete": ("DELETE", "/api/delete", False),
        "version": ("GET", "/api/version", False),
    }
    assert {m: (r.http_method, r.path, r.streams) for m, r in rpc.METHODS.items()} == expected
    for route in rpc.METHODS.values():
        routes.match(route.http_method, route.path)  # every one is a real route
    with pytest.raises(TypeError):
        rpc.METHODS["x"] = rpc.METHODS["chat"]  # type: ignore[index]


def test_constants() -> None:
    assert (rpc.PARSE_ERROR, rpc.INVALID_REQUEST, rpc.METHOD_NOT_FOUND, rpc.INVALID_PARAMS,
            rpc.INTERNAL_ERROR, rpc.API_ERROR, rpc.REQUEST_CANCELLED) == (
        -32700, -32600, -32601, -32602, -32603, -32000, -32800)
    assert rpc.CANCEL_METHOD == "$/cancelRequest" and rpc.STREAM_METHOD == "stream"


# ---------------------------------------------------------------------------------------------
# decode: single messages


CALLS: list[tuple[dict[str, Any], Call]] = [
    (req("chat", 1, {"model": "m"}),
     Call(id=1, method="chat", params={"model": "m"}, notification=False)),
    (req("list", "a-b"), Call(id="a-b", method="list", params={}, notification=False)),
    (req("version", 0, None), Call(id=0, method="version", params={}, notification=False)),
    ({**req("ps", -7), "params": None}, Call(id=-7, method="ps", params={}, notification=False)),
    (req("show", 10**30, {"model": "x"}),
     Call(id=10**30, method="show", params={"model": "x"}, notification=False)),
    (req("embeddings", "", {}), Call(id="", method="embeddings", params={}, notification=False)),
    (req("pull", ..., {"model": "m"}),
     Call(id=None, method="pull", params={"model": "m"}, notification=True)),
    ({**req("copy", 2, {}), "extra": 1},
     Call(id=2, method="copy", params={}, notification=False)),
]


@pytest.mark.parametrize(("obj", "call"), CALLS)
def test_decode_calls(obj: dict[str, Any], call: Call) -> None:
    item = one(json.dumps(obj))
    assert item == call
    assert one(json.dumps(obj).encode()) == call  # str and bytes alike
    assert decode_value(obj) == Single(item=call)
    assert isinstance(item, Call) and item.route is rpc.METHODS[item.method]


REPLIES: list[tuple[bytes, int, Any]] = [
    # parse errors: id null
    (b"", rpc.PARSE_ERROR, None),
    (b"   ", rpc.PARSE_ERROR, None),
    (b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]', rpc.PARSE_ERROR, None),
    (b'{"jsonrpc":"2.0","id":1,"method":"ps","params":{"x":NaN}}', rpc.PARSE_ERROR, None),
    (b'{"jsonrpc":"2.0","id":1,"method":"ps"} {}', rpc.PARSE_ERROR, None),
    (b'\xff{"jsonrpc":"2.0","id":1,"method":"ps"}', rpc.PARSE_ERROR, None),
    (b"[" * 100_000, rpc.PARSE_ERROR, None),
    (b'[{"jsonrpc":"2.0","method":"sum","params":[1,2,4],"id":"1"},{"jsonrpc":"2.0","method"]',
     rpc.PARSE_ERROR, None),
    # invalid requests
    (b"[]", rpc.INVALID_REQUEST, None),
    (b"1", rpc.INVALID_REQUEST, None),
    (b'"chat"', rpc.INVALID_REQUEST, None),
    (b"null", rpc.INVALID_REQUEST, None),
    (b"{}", rpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"2.0","method":1,"params":"bar"}', rpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"2.0","id":5,"method":1}', rpc.INVALID_REQUEST, 5),
    (b'{"id":5,"method":"ps"}', rpc.INVALID_REQUEST, 5),
    (b'{"jsonrpc":"1.0","id":5,"method":"ps"}', rpc.INVALID_REQUEST, 5),
    (b'{"jsonrpc":2.0,"id":"x","method":"ps"}', rpc.INVALID_REQUEST, "x"),
    (b'{"jsonrpc":"2.0","id":null,"method":"ps"}', rpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"2.0","id":true,"method":"ps"}', rpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"2.0","id":false,"method":"ps"}', rpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"ps"}', rpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"2.0","id":1.0,"method":"ps"}', rpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"2.0","id":{"a":1},"method":"ps"}', rpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"2.0","id":[1],"method":"ps"}', rpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"2.0","id":3,"method":"ps","params":5}', rpc.INVALID_REQUEST, 3),
    (b'{"jsonrpc":"2.0","id":3,"method":"ps","params":"x"}', rpc.INVALID_REQUEST, 3),
    (b'{"jsonrpc":"2.0","method":"ps","params":true}', rpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"2.0","id":3}', rpc.INVALID_REQUEST, 3),
    (b"[" + b",".join([b"{}"] * (rpc.MAX_BATCH + 1)) + b"]", rpc.INVALID_REQUEST, None),
    # method not found (requests only), $/ requests included (LSP)
    (b'{"jsonrpc":"2.0","id":7,"method":"foobar"}', rpc.METHOD_NOT_FOUND, 7),
    (b'{"jsonrpc":"2.0","id":"q","method":"stream"}', rpc.METHOD_NOT_FOUND, "q"),
    (b'{"jsonrpc":"2.0","id":8,"method":"$/cancelRequest","params":{"id":1}}',
     rpc.METHOD_NOT_FOUND, 8),
    (b'{"jsonrpc":"2.0","id":8,"method":"Chat"}', rpc.METHOD_NOT_FOUND, 8),
    (b'{"jsonrpc":"2.0","id":9,"method":"foo","params":[1]}', rpc.METHOD_NOT_FOUND, 9),
    # invalid params: known method, params an array
    (b'{"jsonrpc":"2.0","id":4,"method":"chat","params":[1,2]}', rpc.INVALID_PARAMS, 4),
    (b'{"jsonrpc":"2.0","id":"4","method":"list","params":[]}', rpc.INVALID_PARAMS, "4"),
]


@pytest.mark.parametrize(("data", "code", "id"), REPLIES)
def test_decode_replies(data: bytes, code: int, id: Any) -> None:
    item = one(data)
    assert code_of(item) == code
    assert isinstance(item, Reply)
    assert item.obj["id"] == id and type(item.obj["id"]) is type(id)
    assert is_error_response(item.obj)
    assert json.loads(rpc.encode(item.obj)) == item.obj


IGNORED: list[bytes] = [
    b'{"jsonrpc":"2.0","method":"foobar"}',  # unknown notification
    b'{"jsonrpc":"2.0","method":"$/setTrace","params":{"value":"off"}}',
    b'{"jsonrpc":"2.0","method":"chat","params":[1]}',  # notification: never answered
    b'{"jsonrpc":"2.0","method":"$/cancelRequest"}',
    b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{}}',
    b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":null}}',
    b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":true}}',
    b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":[1]}',
    b'{"jsonrpc":"2.0","id":1,"result":{"x":1}}',  # a client's response
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"x"}}',
    b'{"id":1,"result":null}',
]


@pytest.mark.parametrize("data", IGNORED)
def test_decode_ignored(data: bytes) -> None:
    item = one(data)
    assert isinstance(item, Ignore) and item.reason
    assert not rpc.needs_answer(item)


@pytest.mark.parametrize(("params", "id"), [({"id": 3}, 3), ({"id": "abc"}, "abc"),
                                            ({"id": 0, "extra": 1}, 0)])
def test_decode_cancel(params: dict[str, Any], id: Any) -> None:
    assert one(json.dumps(req("$/cancelRequest", ..., params))) == Cancel(id=id)


def test_method_name_echo_is_bounded_and_quoted() -> None:
    item = one(json.dumps(req("x" * 10_000 + '"<', 1)))
    assert code_of(item) == rpc.METHOD_NOT_FOUND
    assert isinstance(item, Reply) and len(item.obj["error"]["message"]) < 200


def test_lone_surrogates_become_replacement_characters() -> None:
    data = b'{"jsonrpc":"2.0","id":"\\ud800","method":"show","params":{"model":"\\udc00x"}}'
    assert one(data) == Call(id="\ufffd", method="show", params={"model": "\ufffdx"},
                             notification=False)
    assert decode_value(json.loads(data)) == decode(data)


def test_str_with_lone_surrogate_is_a_parse_error_not_a_crash() -> None:
    assert code_of(one('{"a": "\ud800"}')) == rpc.PARSE_ERROR


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_decode_value_is_as_strict_as_decode(bad: float) -> None:
    item = decode_value(req("chat", 1, {"options": {"temperature": [bad]}})).items[0]
    assert code_of(item) == rpc.PARSE_ERROR
    assert code_of(decode_value({"jsonrpc": "2.0", "id": bad, "method": "ps"}).items[0]) == \
        rpc.PARSE_ERROR
    assert code_of(decode_value(object()).items[0]) == rpc.PARSE_ERROR


def test_decode_value_of_deep_nesting_is_an_answer() -> None:
    deep: Any = {}
    for _ in range(100_000):
        deep = [deep]
    assert code_of(decode_value(deep).items[0]) == rpc.INVALID_REQUEST  # a batch of [[...]]
    deep = ["\ud800"]
    for _ in range(100_000):
        deep = [deep]
    assert code_of(decode_value(deep).items[0]) == rpc.PARSE_ERROR


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"9" * 400 + b".0"])
def test_numbers_too_large_for_a_float_are_a_parse_error(number: bytes) -> None:
    # json.loads makes them infinity, which cannot be encoded again (Go refuses them too).
    data = b'{"jsonrpc":"2.0","id":1,"method":"chat","params":{"options":{"seed":%s}}}' % number
    item = one(data)
    assert code_of(item) == rpc.PARSE_ERROR
    assert isinstance(item, Reply) and "out of range" in item.obj["error"]["message"]
    assert code_of(decode_value(json.loads(data)).items[0]) == rpc.PARSE_ERROR
    assert isinstance(one(b'{"jsonrpc":"2.0","id":1,"method":"ps","params":{"a":1e300,"b":%s}}'
                          % (b"9" * 400)), Call)


# ---------------------------------------------------------------------------------------------
# decode: batches


def test_spec_batch_example() -> None:
    # JSON-RPC 2.0 §7, "rpc call Batch", with our methods in place of the example's.
    data = json.dumps([
        req("list", "1"),
        req("chat", ..., {"model": "m"}),
        req("show", "2", {"model": "m"}),
        {"foo": "boo"},
        req("foo.get", "5", {"name": "myself"}),
        req("ps", "9"),
    ])
    msg = decode(data)
    assert isinstance(msg, Batch)
    assert len(msg.items) == 6 and msg.expected == 5
    kinds = [type(i).__name__ for i in msg.items]
    assert kinds == ["Call", "Call", "Call", "Reply", "Reply", "Call"]
    assert code_of(msg.items[3]) == rpc.INVALID_REQUEST
    assert code_of(msg.items[4]) == rpc.METHOD_NOT_FOUND
    assert isinstance(msg.items[1], Call) and msg.items[1].notification


def test_batch_of_non_objects() -> None:
    msg = decode(b"[1,2,3]")
    assert isinstance(msg, Batch) and msg.expected == 3
    assert all(code_of(i) == rpc.INVALID_REQUEST for i in msg.items)
    assert all(isinstance(i, Reply) and i.obj["id"] is None for i in msg.items)


def test_batch_of_only_notifications_needs_no_answer() -> None:
    msg = decode(json.dumps([req("chat", ..., {}), req("nope", ...),
                             req("$/cancelRequest", ..., {"id": 1})]))
    assert isinstance(msg, Batch) and msg.expected == 0
    assert isinstance(msg.items[2], Cancel)
    state = BatchState.for_message(msg)
    assert state is not None and state.pending == 0


def test_nested_batch_is_an_invalid_item() -> None:
    msg = decode(b'[[{"jsonrpc":"2.0","id":1,"method":"ps"}]]')
    assert isinstance(msg, Batch) and code_of(msg.items[0]) == rpc.INVALID_REQUEST


def test_batch_at_the_limit() -> None:
    msg = decode(json.dumps([req("ps", i) for i in range(rpc.MAX_BATCH)]))
    assert isinstance(msg, Batch) and msg.expected == rpc.MAX_BATCH


def test_single_and_batch_items() -> None:
    single = decode(json.dumps(req("ps", 1)))
    assert isinstance(single, Single) and single.items == (single.item,)
    assert BatchState.for_message(single) is None
    with pytest.raises(ValueError):
        Batch(items=())


# ---------------------------------------------------------------------------------------------
# BatchState


def test_batch_state_completes_with_the_last_answer() -> None:
    msg = decode(json.dumps([req("ps", 1), req("chat", ..., {}), {"x": 1}, req("list", 2)]))
    state = BatchState.for_message(msg)
    assert state is not None and state.pending == 3
    assert state.add(rpc.result(2, {})) is None
    assert state.add(rpc.error(None, rpc.INVALID_REQUEST, "x")) is None
    done = state.add(rpc.cancelled(1))
    assert done == [rpc.result(2, {}), rpc.error(None, rpc.INVALID_REQUEST, "x"),
                    rpc.cancelled(1)]
    assert state.pending == 0
    with pytest.raises(ValueError):
        state.add(rpc.result(3, None))
    with pytest.raises(ValueError):
        BatchState(-1)
    assert repr(BatchState(2)) == "BatchState(2)"


# ---------------------------------------------------------------------------------------------
# Item validation


def test_items_validate() -> None:
    with pytest.raises(ValueError):
        Call(id=1, method="nope", params={}, notification=False)
    with pytest.raises(ValueError):
        Call(id=None, method="ps", params={}, notification=False)
    with pytest.raises(ValueError):
        Call(id=1, method="ps", params={}, notification=True)
    with pytest.raises(ValueError):
        Call(id=True, method="ps", params={}, notification=False)
    with pytest.raises(ValueError):
        Cancel(id=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Reply(obj=rpc.result(1, None))
    call = Call(id=1, method="ps", params={"a": [1]}, notification=False)
    assert eval(repr(call), {"Call": Call}) == call  # repr is valid Python


def test_id_key_keeps_numbers_and_strings_apart() -> None:
    assert rpc.id_key(1) != rpc.id_key("1")
    assert rpc.id_key(1) == rpc.id_key(1)
    assert len({rpc.id_key(1), rpc.id_key("1"), rpc.id_key(None)}) == 3


# ---------------------------------------------------------------------------------------------
# Builders


def test_builders() -> None:
    assert rpc.result(1, {"a": 1}) == {"jsonrpc": "2.0", "id": 1, "result": {"a": 1}}
    assert rpc.result("x", None) == {"jsonrpc": "2.0", "id": "x", "result": None}
    assert rpc.error(1, -32601, "nope") == {
        "jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "nope"}}
    assert rpc.error(1, -1, "m", [1])["error"]["data"] == [1]
    assert rpc.api_error("a", 404, "model 'x' not found") == {
        "jsonrpc": "2.0", "id": "a",
        "error": {"code": -32000, "message": "model 'x' not found", "data": {"status": 404}}}
    assert rpc.cancelled(3) == {"jsonrpc": "2.0", "id": 3,
                                "error": {"code": -32800, "message": "Request cancelled"}}
    assert rpc.stream_notification(5, {"response": "hi", "done": False}) == {
        "jsonrpc": "2.0", "method": "stream",
        "params": {"id": 5, "chunk": {"response": "hi", "done": False}}}
    assert rpc.parse_error("bad")["error"]["code"] == rpc.PARSE_ERROR
    assert rpc.parse_error("bad")["id"] is None
    for obj in (rpc.error(1, -1, "m"), rpc.api_error(None, 500, "x"), rpc.cancelled("z"),
                rpc.parse_error("p")):
        assert is_error_response(obj)


def test_encode_is_compact_go_json() -> None:
    assert rpc.encode(rpc.result(1, {"a": "<b>&", "é": [1, 2]})) == \
        '{"jsonrpc":"2.0","id":1,"result":{"a":"\\u003cb\\u003e\\u0026","é":[1,2]}}'.encode()


# ---------------------------------------------------------------------------------------------
# streams()


@pytest.mark.parametrize(("method", "params", "expected"), [
    ("chat", {}, True), ("chat", {"stream": True}, True), ("chat", {"stream": None}, True),
    ("chat", {"stream": False}, False), ("generate", {}, True), ("pull", {"model": "m"}, True),
    ("push", {"stream": False}, False), ("create", {}, True),
    ("embed", {}, False), ("embed", {"stream": True}, False), ("list", {}, False),
    ("show", {}, False), ("ps", {}, False), ("copy", {}, False), ("delete", {}, False),
    ("version", {}, False), ("embeddings", {}, False),
])
def test_streams(method: str, params: dict[str, Any], expected: bool) -> None:
    assert rpc.streams(Call(id=1, method=method, params=params, notification=False)) is expected


def test_notifications_never_stream() -> None:
    assert not rpc.streams(Call(id=None, method="chat", params={}, notification=True))


# ---------------------------------------------------------------------------------------------
# REST answers


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, {"models": []}, rpc.result(1, {"models": []})),
    (200, None, rpc.result(1, None)),
    (201, {}, rpc.result(1, {})),
    (404, {"error": "model 'x' not found"}, rpc.api_error(1, 404, "model 'x' not found")),
    (400, {"error": "invalid model name"}, rpc.api_error(1, 400, "invalid model name")),
    (405, "405 method not allowed", rpc.api_error(1, 405, "405 method not allowed")),
    (404, b"404 page not found\n", rpc.api_error(1, 404, "404 page not found")),
    (401, {"error": {"message": "bad key", "type": "x"}}, rpc.api_error(1, 401, "bad key")),
    (500, None, rpc.api_error(1, 500, "HTTP status 500")),
    (500, {}, rpc.api_error(1, 500, "HTTP status 500")),
    (502, "", rpc.api_error(1, 502, "HTTP status 502")),
    (500, {"detail": 1}, rpc.api_error(1, 500, '{"detail":1}')),
    (503, [1, 2], rpc.api_error(1, 503, "[1,2]")),
    (500, {"error": 5}, rpc.api_error(1, 500, '{"error":5}')),
    (302, {}, rpc.api_error(1, 302, "HTTP status 302")),
])
def test_outcome(status: int, body: Any, expected: dict[str, Any]) -> None:
    assert rpc.outcome(1, status, body) == expected


def test_stream_end() -> None:
    final = {"model": "m", "done": True, "done_reason": "stop"}
    assert rpc.stream_end(1, final) == rpc.result(1, final)
    assert rpc.stream_end("p", {"status": "success"}) == rpc.result("p", {"status": "success"})
    assert rpc.stream_end(1, {"error": "runner crashed"}) == \
        rpc.api_error(1, 500, "runner crashed")
    assert rpc.stream_end(1, {"error": "pull model manifest: file does not exist"},
                          status=404) == \
        rpc.api_error(1, 404, "pull model manifest: file does not exist")
    end = rpc.stream_end(1, None)
    assert end["error"]["code"] == rpc.API_ERROR and end["error"]["data"] == {"status": 500}


# ---------------------------------------------------------------------------------------------
# The NDJSON framing: core.ndjson with decode_value


def test_ndjson_framing() -> None:
    lines = (ndjson.encode(req("ps", 1)) + b"{bad json\n" + ndjson.encode([req("list", "a")])
             + b'{"jsonrpc":"2.0","id":2,"method":"ps","params":{"x":NaN}}\n')
    reader = NDJSONReader()
    got: list[rpc.Message] = []
    for i in range(len(lines)):
        reader.receive_data(lines[i:i + 1])
        while True:
            try:
                value = reader.next_event()
            except NDJSONError as exc:
                got.append(Single(item=Reply(obj=rpc.parse_error(exc.message))))
                continue
            if value is ndjson.NEED_DATA or value is None:
                break
            got.append(decode_value(value))
    assert got[0] == Single(item=Call(id=1, method="ps", params={}, notification=False))
    assert code_of(got[1].items[0]) == rpc.PARSE_ERROR
    assert got[2] == Batch(items=(Call(id="a", method="list", params={}, notification=False),))
    assert code_of(got[3].items[0]) == rpc.PARSE_ERROR
    assert len(got) == 4


# ---------------------------------------------------------------------------------------------
# Round trips


ids = st.integers() | st.text(max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=10)
params = st.dictionaries(st.text(max_size=6), json_values, max_size=4)


@given(ids, st.sampled_from(sorted(rpc.METHODS)), params)
def test_request_round_trip(id: int | str, method: str, p: dict[str, Any]) -> None:
    obj = req(method, id, p)
    text = rpc.encode(obj)
    call = Call(id=id, method=method, params=json.loads(text)["params"], notification=False)
    assert decode(text) == Single(item=call)
    assert decode(lsp_encode(text)[len(b"Content-Length: %d\r\n\r\n" % len(text)):]) == \
        Single(item=call)


@given(st.lists(st.tuples(st.one_of(st.none(), ids), st.sampled_from(sorted(rpc.METHODS))),
                min_size=1, max_size=8))
def test_batch_round_trip(calls: list[tuple[int | str | None, str]]) -> None:
    batch = [req(m, ... if i is None else i) for i, m in calls]
    msg = decode(rpc.encode(batch))
    assert isinstance(msg, Batch) and len(msg.items) == len(calls)
    assert msg.expected == sum(1 for i, _ in calls if i is not None)
    state = BatchState.for_message(msg)
    assert state is not None
    answers = [rpc.result(item.id, None) for item in msg.items
               if isinstance(item, Call) and not item.notification]
    out = None
    for a in answers:
        assert out is None
        out = state.add(a)
    assert out == (answers or None)


@given(st.binary(max_size=200))
def test_decode_never_raises(data: bytes) -> None:
    msg = decode(data)
    for item in msg.items:
        if isinstance(item, Reply):
            assert is_error_response(item.obj)
