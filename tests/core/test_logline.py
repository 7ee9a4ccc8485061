"""core/logline.py: key=value text and JSON lines carry the same fields, and parse back."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pollama.core import logline


def parse_text(line: str) -> dict[str, str]:
    """A logfmt reader: key=value, values quoted with JSON escapes when they must be."""
    out = {}
    for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line):
        key, raw = m.group(1), m.group(2)
        out[key] = json.loads(raw) if raw.startswith('"') else raw
    return out


def test_timestamp_is_rfc3339_with_milliseconds() -> None:
    ns = 1_700_000_000_123_456_789
    assert logline.timestamp(ns) == "2023-11-14T22:13:20.123Z"
    assert logline.timestamp(ns, 3600) == "2023-11-14T23:13:20.123+01:00"
    assert logline.timestamp(ns, -(5 * 3600 + 1800)) == "2023-11-14T16:43:20.123-05:30"


def test_text_quotes_only_what_must_be_quoted() -> None:
    line = logline.text("T", "INFO", "pollama.api", "request",
                        {"method": "GET", "path": "/a b", "empty": "", "n": 3, "f": 1.5,
                         "skip": None, "ok": True, "evil": 'x"\ny=1'})
    assert line.startswith("time=T level=INFO source=pollama.api msg=request method=GET ")
    assert 'path="/a b"' in line and 'empty=""' in line and "n=3" in line
    assert "f=1.5" in line and "ok=true" in line and "skip" not in line
    assert "\n" not in line  # a client-chosen value cannot forge a second line
    assert parse_text(line)["evil"] == 'x"\ny=1'


def test_mappings_and_lists_print_as_go_does() -> None:
    line = logline.text("T", "INFO", "pollama", "server config",
                        {"env": {"B": "2", "A": ["x", "y"], "C": ""}})
    assert 'msg="server config"' in line
    assert 'env="map[A:[x y] B:2 C:]"' in line


def test_json_line_has_the_same_keys_and_never_loses_the_header() -> None:
    fields = {"method": "POST", "status": 200, "model": None, "msg": "spoof",
              "env": {"K": ["a"]}, "nan": float("nan")}
    obj = json.loads(logline.line("json", "T", "INFO", "pollama.api", "request", fields))
    assert obj["time"] == "T" and obj["level"] == "INFO" and obj["msg"] == "request"
    assert obj["method"] == "POST" and obj["status"] == 200 and obj["model"] is None
    assert obj["env"] == {"K": ["a"]} and obj["nan"] is None


def test_request_fields() -> None:
    f = logline.request_fields(method="POST", path="/api/chat", route="/api/chat", status=200,
                               duration_ns=1_234_567, request_id="ab", model="smol",
                               prompt_tokens=3, tokens=4)
    assert f == {"method": "POST", "path": "/api/chat", "route": "/api/chat", "status": 200,
                 "model": "smol", "duration_ms": 1.235, "prompt_tokens": 3, "tokens": 4,
                 "id": "ab", "client_gone": None}
    assert logline.request_fields(method="GET", path="/", route="/", status=499,
                                  duration_ns=0, request_id="x",
                                  client_gone=True)["client_gone"] is True


values = st.one_of(st.text(), st.integers(), st.booleans(), st.none())


@given(st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), values, max_size=6),
       st.text())
def test_both_formats_round_trip(fields: dict[str, Any], msg: str) -> None:
    fields = {k: v for k, v in fields.items() if k not in ("time", "level", "source", "msg")}
    text = logline.line("text", "T", "INFO", "s", msg, fields)
    assert "\n" not in text and "\r" not in text
    parsed = parse_text(text)
    assert parsed["msg"] == msg
    obj = json.loads(logline.line("json", "T", "INFO", "s", msg, fields))
    assert obj["msg"] == msg
    for k, v in fields.items():
        assert obj[k] == v
        if v is None:
            assert k not in parsed
        else:
            assert parsed[k] == logline._plain(v)
