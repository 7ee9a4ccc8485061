"""RFC 3339 timestamps as Go's time.Time marshals them (reference §0).

Nanosecond precision with trailing zeros trimmed; ``created_at`` is UTC with ``Z``, other
timestamps carry the server's local offset. The clock reading is passed in.
"""

from __future__ import annotations

import datetime as _dt
import functools

__all__ = ["parse_rfc3339", "rfc3339"]


def rfc3339(ns: int, offset_seconds: int = 0) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    text = _seconds_text(secs, offset_seconds)
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    if offset_seconds == 0:
        return text + "Z"
    sign = "+" if offset_seconds > 0 else "-"
    hh, mm = divmod(abs(offset_seconds) // 60, 60)
    return f"{text}{sign}{hh:02d}:{mm:02d}"


@functools.lru_cache(maxsize=4)
def _seconds_text(secs: int, offset_seconds: int) -> str:
    """The whole-second part (a stream stamps many objects within one second: computed once)."""
    tz = _dt.timezone(_dt.timedelta(seconds=offset_seconds))
    return _dt.datetime.fromtimestamp(secs, tz=tz).strftime("%Y-%m-%dT%H:%M:%S")


def parse_rfc3339(text: str) -> int:
    """Inverse of ``rfc3339`` (for clients such as the CLI): nanoseconds since the epoch."""
    main, _, rest = text.partition(".")
    frac_ns = 0
    tail = ""
    if rest:
        digits = ""
        for i, c in enumerate(rest):
            if not c.isdigit():
                tail = rest[i:]
                break
            digits += c
        frac_ns = int((digits + "000000000")[:9]) if digits else 0
    else:
        for marker in ("Z", "+", "-"):
            idx = main.find(marker, 19)
            if idx >= 0:
                main, tail = main[:idx], main[idx:]
                break
    dt = _dt.datetime.strptime(main, "%Y-%m-%dT%H:%M:%S")
    if tail in ("Z", ""):
        tz = _dt.timezone.utc
    else:
        sign = 1 if tail[0] == "+" else -1
        hh, mm = int(tail[1:3]), int(tail[4:6])
        tz = _dt.timezone(sign * _dt.timedelta(hours=hh, minutes=mm))
    return int(dt.replace(tzinfo=tz).timestamp()) * 1_000_000_000 + frac_ns
