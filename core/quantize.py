"""Quantizing at create time (Ollama's server/create.go CreateHandler), as pure decisions and a
progress tracker.

``/api/create`` with ``quantize`` rewrites the model layer with llama.cpp's quantizer, run by
``runners.quantize`` in its own process. This module decides everything around it: which target
names are accepted (Ollama's ``ggml.ParseFileType``: upper-cased, ``Q4_K`` an alias of
``Q4_K_M``, ``BF16`` accepted although the error message does not list it), which sources may be
quantized (F16, BF16, F32), the runner's NDJSON events, the llama.cpp log line that marks each
tensor, and the status lines Ollama streams:

    {"status": "quantizing F16 model to Q4_K_M", "digest": "0000000000000000000",
     "total": <source blob size>, "completed": <share of tensor bytes done × total>}

Ollama reports progress as the share of source tensor bytes quantized so far, scaled to the
size of the source blob (``server/create.go`` ``quantizeLayer``); so do we, one step per tensor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest, QuantizeProtocolError
from .gguf import Header

__all__ = [
    "ALIASES", "NOT_QUANTIZABLE", "PROGRESS_DIGEST", "SOURCE_TYPES", "SUPPORTED_MESSAGE", "TYPES",
    "Event", "Failed", "Finished", "Progress", "QuantType", "Started", "TensorStarted",
    "check_source", "decode_event", "encode_event", "needed", "parse_log_line", "parse_type",
    "status_text", "tensor_bytes"
]

# Target name → llama.cpp ``llama_ftype``: Ollama's three (Q4_K_S, Q4_K_M, Q8_0) and the other
# types of llama.cpp's quantizer that people ask for (issue 16).
TYPES: Mapping[str, int] = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "Q5_0": 8, "Q2_K": 10, "Q3_K_M": 12,
    "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "BF16": 32,
}
# llama.cpp's short names for the medium K-quants.
ALIASES: Mapping[str, str] = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
# What the error message lists, in Ollama's words (like Ollama's, it omits BF16 and aliases).
SUPPORTED_MESSAGE = ("F32, F16, Q4_K_S, Q4_K_M, Q8_0, Q4_0, Q5_0, Q5_K_S, Q5_K_M, Q6_K, "
                     "Q3_K_M, Q2_K")
SOURCE_TYPES = ("F16", "BF16", "F32")
NOT_QUANTIZABLE = "quantization is only supported for F16, BF16 and F32 models"
# Ollama sends this placeholder as the quantize step's ``digest`` (there is no layer yet).
PROGRESS_DIGEST = "0000000000000000000"


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantType:
    name: str  # canonical, e.g. "Q4_K_M"
    ftype: int  # llama_ftype

    def __post_init__(self) -> None:
        if TYPES.get(self.name) != self.ftype:
            raise ValueError(f"not a supported quantization type: {self.name}/{self.ftype}")


def parse_type(raw: str) -> QuantType:
    """``q4_K_m`` → Q4_K_M. Unknown names raise Ollama's message (with the upper-cased input)."""
    name = raw.strip().upper()
    name = ALIASES.get(name, name)
    if name not in TYPES:
        raise BadRequest(f"unsupported quantization type {raw.strip().upper()} - "
                         f"supported types are {SUPPORTED_MESSAGE}")
    return QuantType(name=name, ftype=TYPES[name])


def check_source(file_type: str) -> None:
    """Only unquantized weights can be quantized (llama.cpp would refuse or lose quality)."""
    if file_type not in SOURCE_TYPES:
        raise BadRequest(NOT_QUANTIZABLE)


def needed(source_file_type: str, target: QuantType) -> bool:
    """Quantizing to the type the model already has is a no-op, as in Ollama."""
    return source_file_type != target.name


def status_text(source_file_type: str, target: QuantType) -> str:
    return f"quantizing {source_file_type} model to {target.name}"


# ---------------------------------------------------------------------------------------------
# Runner events: one JSON object per line on the quantize runner's stdout.


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    ftype: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorStarted:
    """llama.cpp began tensor ``index`` (1-based) of ``count``; the ones before it are done."""

    index: int
    count: int
    name: str

    def __post_init__(self) -> None:
        if not (1 <= self.index <= self.count):
            raise ValueError(f"tensor index {self.index} out of 1..{self.count}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    size: int  # bytes written


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    message: str


Event = Started | TensorStarted | Finished | Failed


def encode_event(event: Event) -> dict[str, Any]:
    if isinstance(event, Started):
        return {"event": "start", "ftype": event.ftype}
    if isinstance(event, TensorStarted):
        return {"event": "tensor", "index": event.index, "count": event.count,
                "name": event.name}
    if isinstance(event, Finished):
        return {"event": "done", "size": event.size}
    return {"event": "error", "error": event.message}


def decode_event(obj: Any) -> Event:
    """The inverse of ``encode_event``; anything else raises ``QuantizeProtocolError``."""
    if not isinstance(obj, dict):
        raise QuantizeProtocolError(f"quantize runner sent a non-object: {obj!r:.80}")
    kind = obj.get("event")
    try:
        if kind == "start":
            return Started(ftype=_int(obj["ftype"]))
        if kind == "tensor":
            return TensorStarted(index=_int(obj["index"]), count=_int(obj["count"]),
                                 name=_str(obj["name"]))
        if kind == "done":
            return Finished(size=_int(obj["size"]))
        if kind == "error":
            return Failed(message=_str(obj["error"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise QuantizeProtocolError(f"bad quantize runner event {obj!r:.120}: {exc}") from None
    raise QuantizeProtocolError(f"unknown quantize runner event {kind!r:.40}")


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"expected an integer, got {v!r:.40}")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {v!r:.40}")
    return v


# llama.cpp's quantizer logs "[   3/  21]            blk.0.attn_k.weight - [  256,   128, ..."
# (llama-quant.cpp) as it starts each tensor.
_TENSOR_LINE = re.compile(r"^\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]\s+(\S+)")


def parse_log_line(line: str) -> TensorStarted | None:
    m = _TENSOR_LINE.match(line)
    if m is None:
        return None
    index, count = int(m.group(1)), int(m.group(2))
    if not (1 <= index <= count):
        return None
    return TensorStarted(index=index, count=count, name=m.group(3))


# ---------------------------------------------------------------------------------------------
# Progress


def tensor_bytes(header: Header, file_size: int) -> dict[str, int]:
    """Each tensor's share of the data section, from the header's offsets and the file size."""
    align = header.kv.get("general.alignment", 32)
    if not isinstance(align, int) or isinstance(align, bool) or align <= 0:
        align = 32
    data_start = -(-header.header_size // align) * align
    ordered = sorted(header.tensors, key=lambda t: t.offset)
    out: dict[str, int] = {}
    for i, t in enumerate(ordered):
        end = ordered[i + 1].offset if i + 1 < len(ordered) else file_size - data_start
        out[t.name] = max(0, end - t.offset)
    return out


class Progress:
    """Turns runner events into Ollama's status lines.

    ``weights`` are the source tensors' byte sizes (``tensor_bytes``); when a name is unknown
    (or no weights are given) each tensor counts the same. ``completed`` never goes backwards
    and reaches ``total`` only on ``Finished``.
    """

    def __init__(self, *, source_file_type: str, target: QuantType, total: int,
                 weights: Mapping[str, int] | None = None) -> None:
        self.status = status_text(source_file_type, target)
        self.total = total
        self._weights = dict(weights or {})
        self._weight_sum = sum(self._weights.values())
        self._done_names: set[str] = set()
        self._done_bytes = 0
        self._unknown = self._weight_sum <= 0  # count tensors instead of bytes
        self._current: str | None = None
        self._count = 0
        self.completed = 0

    def line(self) -> dict[str, Any]:
        return {"status": self.status, "digest": PROGRESS_DIGEST, "total": self.total,
                "completed": self.completed}

    def on(self, event: Event) -> dict[str, Any] | None:
        """The status line for ``event``, or None when it moves nothing."""
        if isinstance(event, TensorStarted):
            self._count = max(self._count, event.count)
            self._finish_current()
            self._current = event.name
            return self._update(self._fraction())
        if isinstance(event, Finished):
            self._finish_current()
            return self._update(1.0)
        return None

    def _finish_current(self) -> None:
        name = self._current
        self._current = None
        if name is None or name in self._done_names:
            return
        self._done_names.add(name)
        if name in self._weights:
            self._done_bytes += self._weights[name]
        else:
            self._unknown = True

    def _fraction(self) -> float:
        if not self._unknown:
            return min(self._done_bytes / self._weight_sum, 1.0)
        if self._count > 0:
            return min(len(self._done_names) / self._count, 1.0)
        return 0.0

    def _update(self, fraction: float) -> dict[str, Any] | None:
        completed = max(self.completed, int(fraction * self.total))
        if completed == self.completed and fraction < 1.0:
            return None
        self.completed = completed
        return self.line()
