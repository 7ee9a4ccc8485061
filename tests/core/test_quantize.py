"""core.quantize: accepted types and Ollama's messages, source check, runner events, the
llama.cpp log line, tensor byte shares and the progress status lines."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from pollama.core import quantize as q
from pollama.core.errors import BadRequest
from pollama.core.gguf import Header, TensorInfo

UNSUPPORTED = ("unsupported quantization type {} - supported types are "
               "F32, F16, Q4_K_S, Q4_K_M, Q8_0, Q4_0, Q5_0, Q5_K_S, Q5_K_M, Q6_K, Q3_K_M, Q2_K")


@pytest.mark.parametrize("raw, name, ftype", [
    ("q4_K_M", "Q4_K_M", 15), ("Q4_K_M", "Q4_K_M", 15), ("q4_k_m", "Q4_K_M", 15),
    ("q4_K_S", "Q4_K_S", 14), ("q8_0", "Q8_0", 7), ("Q8_0", "Q8_0", 7),
    ("f16", "F16", 1), ("F32", "F32", 0), ("bf16", "BF16", 32),
    ("q4_k", "Q4_K_M", 15),  # Ollama's alias
    (" q8_0 ", "Q8_0", 7),
    # beyond Ollama's three: llama_ftype's numbers
    ("q4_0", "Q4_0", 2), ("q5_0", "Q5_0", 8), ("q2_K", "Q2_K", 10), ("q3_K_M", "Q3_K_M", 12),
    ("q3_k", "Q3_K_M", 12), ("q5_K_S", "Q5_K_S", 16), ("q5_K_M", "Q5_K_M", 17),
    ("q5_k", "Q5_K_M", 17), ("q6_K", "Q6_K", 18),
])
def test_parse_type(raw: str, name: str, ftype: int) -> None:
    assert q.parse_type(raw) == q.QuantType(name=name, ftype=ftype)


@pytest.mark.parametrize("raw, shown", [
    ("q5_x", "Q5_X"), ("q4_1", "Q4_1"), ("q5_1", "Q5_1"), ("q3_K_S", "Q3_K_S"), ("int8", "INT8"),
    ("Q4_K_L", "Q4_K_L"), ("iq4_xs", "IQ4_XS"),
])
def test_parse_type_unknown_has_ollamas_message(raw: str, shown: str) -> None:
    with pytest.raises(BadRequest) as err:
        q.parse_type(raw)
    assert err.value.message == UNSUPPORTED.format(shown)
    assert err.value.status_hint == 400


@given(st.text(max_size=20))
def test_parse_type_any_text_is_a_type_or_a_400(raw: str) -> None:
    try:
        t = q.parse_type(raw)
    except BadRequest as exc:
        assert exc.message.startswith("unsupported quantization type ")
    else:
        assert q.TYPES[t.name] == t.ftype


def test_quant_type_validates() -> None:
    with pytest.raises(ValueError):
        q.QuantType(name="Q4_K_M", ftype=7)
    with pytest.raises(ValueError):
        q.QuantType(name="Q9", ftype=99)


@pytest.mark.parametrize("ft", ["F16", "BF16", "F32"])
def test_check_source_accepts_unquantized(ft: str) -> None:
    q.check_source(ft)


@pytest.mark.parametrize("ft", ["Q4_1", "Q4_0", "Q8_0", "Q4_K_M", "MXFP4", "", "unknown(99)"])
def test_check_source_refuses_quantized(ft: str) -> None:
    with pytest.raises(BadRequest) as err:
        q.check_source(ft)
    assert err.value.message == "quantization is only supported for F16, BF16 and F32 models"
    assert err.value.status_hint == 400


def test_needed_and_status_text() -> None:
    q8 = q.parse_type("q8_0")
    f16 = q.parse_type("f16")
    assert q.needed("F16", q8) and not q.needed("F16", f16) and q.needed("F32", f16)
    assert q.status_text("F16", q.parse_type("q4_K_M")) == "quantizing F16 model to Q4_K_M"
    assert q.status_text("F32", q8) == "quantizing F32 model to Q8_0"


# -- runner events ------------------------------------------------------------------------------

EVENTS = [
    q.Started(ftype=15),
    q.TensorStarted(index=3, count=21, name="blk.0.attn_k.weight"),
    q.Finished(size=820640),
    q.Failed(message="quantization failed: boom"),
]


@pytest.mark.parametrize("event", EVENTS)
def test_event_round_trip(event: q.Event) -> None:
    assert q.decode_event(q.encode_event(event)) == event


def test_event_wire_shape() -> None:
    assert q.encode_event(EVENTS[1]) == {"event": "tensor", "index": 3, "count": 21,
                                         "name": "blk.0.attn_k.weight"}
    assert q.encode_event(EVENTS[3]) == {"event": "error", "error": "quantization failed: boom"}


@pytest.mark.parametrize("obj", [
    None, [], "done", {}, {"event": "nope"}, {"event": "done"}, {"event": "done", "size": "1"},
    {"event": "done", "size": True}, {"event": "tensor", "index": 0, "count": 3, "name": "x"},
    {"event": "tensor", "index": 4, "count": 3, "name": "x"},
    {"event": "tensor", "index": 1, "count": 3, "name": 5}, {"event": "error", "error": None},
])
def test_decode_event_rejects(obj: object) -> None:
    with pytest.raises(q.QuantizeProtocolError):
        q.decode_event(obj)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=8,
)


@given(st.fixed_dictionaries({"event": st.sampled_from(["start", "tensor", "done", "error", "x"])},
                             optional={"ftype": json_values, "index": json_values,
                                       "count": json_values, "name": json_values,
                                       "size": json_values, "error": json_values})
       | json_values)
def test_decode_event_any_json_is_an_event_or_our_error(obj: object) -> None:
    try:
        event = q.decode_event(obj)
    except q.QuantizeProtocolError:
        return
    assert q.decode_event(q.encode_event(event)) == event


# -- llama.cpp's log line -----------------------------------------------------------------------

def test_parse_log_line_real_lines() -> None:
    # As llama-quant.cpp prints them (the tail arrives later as a continuation).
    line = ("[   4/  21]                  blk.0.attn_k.weight - [  256,   128,     1,     1], "
            "type =    f16, converting to q4_K .. size =     0.06 MiB ->     0.02 MiB")
    assert q.parse_log_line(line) == q.TensorStarted(index=4, count=21,
                                                     name="blk.0.attn_k.weight")
    assert q.parse_log_line("[ 291/ 291]                   output_norm.weight - [  576, ...") \
        == q.TensorStarted(index=291, count=291, name="output_norm.weight")


@pytest.mark.parametrize("line", [
    "", "llama_model_loader: - kv   0: general.architecture str = llama",
    "llama_model_quantize_impl: model size  =     2.53 MiB (16.02 BPW)",
    "[   0/  21] x", "[  22/  21] x", "[ 1/ 2]", "size =     0.25 MiB ->     0.07 MiB",
])
def test_parse_log_line_ignores_others(line: str) -> None:
    assert q.parse_log_line(line) is None


@given(st.text(max_size=60))
def test_parse_log_line_never_raises(line: str) -> None:
    event = q.parse_log_line(line)
    assert event is None or 1 <= event.index <= event.count


# -- progress -----------------------------------------------------------------------------------

def _header(offsets: dict[str, int], header_size: int = 100) -> Header:
    return Header(version=3, kv={"general.architecture": "llama"}, header_size=header_size,
                  tensors=tuple(TensorInfo(name=n, dims=(1,), type=1, offset=o)
                                for n, o in offsets.items()))


def test_tensor_bytes_from_offsets() -> None:
    # data starts at 128 (100 rounded up to the 32-byte alignment); the file is 1128 bytes.
    h = _header({"b": 300, "a": 0, "c": 700})
    assert q.tensor_bytes(h, 1128) == {"a": 300, "b": 400, "c": 300}


def test_tensor_bytes_custom_alignment() -> None:
    h = Header(version=3, kv={"general.architecture": "llama", "general.alignment": 64},
               header_size=100, tensors=(TensorInfo(name="a", dims=(1,), type=1, offset=0),))
    assert q.tensor_bytes(h, 1128) == {"a": 1000}


def _progress(weights: dict[str, int] | None = None, total: int = 1000) -> q.Progress:
    return q.Progress(source_file_type="F16", target=q.parse_type("q4_K_M"), total=total,
                      weights=weights)


def test_progress_lines_mirror_ollama() -> None:
    p = _progress({"a": 100, "b": 300, "c": 600})
    assert p.line() == {"status": "quantizing F16 model to Q4_K_M",
                        "digest": "0000000000000000000", "total": 1000, "completed": 0}
    assert p.on(q.Started(ftype=15)) is None
    assert p.on(q.TensorStarted(index=1, count=3, name="a")) is None  # nothing done yet
    progress = p.on(q.TensorStarted(index=2, count=3, name="b"))
    assert progress is not None and progress["completed"] == 100
    progress = p.on(q.TensorStarted(index=3, count=3, name="c"))
    assert progress is not None and progress["completed"] == 400
    assert p.on(q.Finished(size=10))["completed"] == 1000  # type: ignore[index]


def test_progress_counts_tensors_without_weights() -> None:
    p = _progress(None, total=400)
    lines = [p.on(q.TensorStarted(index=i, count=4, name=f"t{i}")) for i in range(1, 5)]
    assert [line and line["completed"] for line in lines] == [None, 100, 200, 300]
    assert p.on(q.Finished(size=1)) == {**p.line(), "completed": 400}


def test_progress_unknown_name_falls_back_to_counting() -> None:
    p = _progress({"a": 900, "b": 100})
    p.on(q.TensorStarted(index=1, count=4, name="a"))
    progress = p.on(q.TensorStarted(index=2, count=4, name="zzz"))
    assert progress is not None and progress["completed"] == 900
    # "zzz" is not in the header: from here on tensors are counted, and the bar never goes back.
    assert p.on(q.TensorStarted(index=3, count=4, name="b")) is None
    assert p.completed == 900
    assert p.on(q.Finished(size=1))["completed"] == 1000  # type: ignore[index]


@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=30), st.integers(1, 10**10),
       st.randoms(use_true_random=False))
def test_progress_is_monotonic_and_ends_at_total(sizes: list[int], total: int,
                                                 rnd: object) -> None:
    names = [f"t{i}" for i in range(len(sizes))]
    weights = dict(zip(names, sizes))
    order = list(names)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    p = _progress(weights, total=total)
    seen = [0]
    for i, name in enumerate(order, 1):
        line = p.on(q.TensorStarted(index=i, count=len(order), name=name))
        if line is not None:
            assert line["completed"] > seen[-1]
            seen.append(line["completed"])
        assert p.completed < total  # only Finished completes the bar
    last = p.on(q.Finished(size=1))
    assert last is not None and last["completed"] == total
    assert seen == sorted(seen)
