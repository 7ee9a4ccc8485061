"""Log lines: key=value text (Go's slog text handler, as Ollama's log reads) or JSON lines.

The adapter's logging formatter passes a record's parts in (time, level, source, message and
structured fields); nothing here reads a clock. Text mode quotes a value only when it must (empty,
spaces, ``=``, quotes, anything unprintable), writes a mapping as Go prints one (``map[K:V K:V]``,
the shape of Ollama's ``server config`` line) and a list as ``[a b]``. JSON mode writes one
object per line with the same keys, so either format can be parsed back into the same fields.

``request_fields`` is the one line every HTTP request gets once its answer has been sent.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["FORMATS", "json_line", "line", "request_fields", "text", "text_value", "timestamp"]

FORMATS = ("text", "json")


def timestamp(ns: int, offset_seconds: int = 0) -> str:
    """RFC 3339 with milliseconds and the local offset, as slog writes ``time=``."""
    tz = _dt.timezone(_dt.timedelta(seconds=offset_seconds))
    moment = _dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=tz)
    millis = (ns // 1_000_000) % 1000
    zone = "Z" if offset_seconds == 0 else moment.strftime("%z")
    if zone != "Z":
        zone = zone[:3] + ":" + zone[3:]
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}.{millis:03d}{zone}"


def _needs_quotes(text: str) -> bool:
    # Unprintable covers control characters and every space but " " (NEL, U+2028...).
    return not text or not text.isprintable() or any(c in text for c in ' ="\\')


def _plain(value: Any) -> str:
    """A value as Go's ``%v`` prints it, before quoting."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_plain(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_plain(v) for v in value) + "]"
    return str(value)


def text_value(value: Any) -> str:
    text = _plain(value)
    return json.dumps(text, ensure_ascii=False) if _needs_quotes(text) else text


def text(time: str, level: str, source: str, msg: str, fields: Mapping[str, Any]) -> str:
    """``time=... level=INFO source=pollama.api msg=request method=GET ...``; fields whose
    value is None are left out."""
    parts = [f"time={time}", f"level={level}", f"source={source}", f"msg={text_value(msg)}"]
    parts += [f"{k}={text_value(v)}" for k, v in fields.items() if v is not None]
    return " ".join(parts)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def json_line(time: str, level: str, source: str, msg: str, fields: Mapping[str, Any]) -> str:
    """One JSON object: ``time``, ``level``, ``source``, ``msg`` and then the fields (a field
    never replaces those four)."""
    out: dict[str, Any] = {"time": time, "level": level, "source": source, "msg": msg}
    for k, v in fields.items():
        out.setdefault(k, _json_safe(v))
    return json.dumps(out, ensure_ascii=False)


def line(fmt: str, time: str, level: str, source: str, msg: str,
         fields: Mapping[str, Any]) -> str:
    if fmt == "json":
        return json_line(time, level, source, msg, fields)
    return text(time, level, source, msg, fields)


def request_fields(*, method: str, path: str, route: str, status: int, duration_ns: int,
                   request_id: str, model: str | None = None, prompt_tokens: int | None = None,
                   tokens: int | None = None, client_gone: bool = False) -> dict[str, Any]:
    """The fields of the per-request line. ``route`` is the route's template (what metrics are
    labelled by), ``path`` what the client sent; ``tokens`` is the answer's ``eval_count`` and
    ``prompt_tokens`` its ``prompt_eval_count``, when the request ran a model."""
    return {
        "method": method, "path": path, "route": route, "status": status, "model": model,
        "duration_ms": round(duration_ns / 1e6, 3), "prompt_tokens": prompt_tokens,
        "tokens": tokens, "id": request_id, "client_gone": True if client_gone else None,
    }
