"""Safetensors file headers (Hugging Face's weight format), read and checked as pure functions.

A file is an 8-byte little-endian length ``N``, then ``N`` bytes of one UTF-8 JSON object, then
the tensor data. Each key but ``__metadata__`` names a tensor::

    {"dtype": "BF16", "shape": [2048, 576], "data_offsets": [begin, end]}

with offsets relative to the start of the data. The rules are those of the ``safetensors``
crate's ``Metadata::validate`` (huggingface/safetensors, ``safetensors/src/tensor.rs``): the
header is at most 100 MB, the offsets of the tensors sorted by ``begin`` tile the data from 0
with no gap and no overlap, each span holds exactly ``shape``'s element count of ``dtype``, and
``__metadata__`` maps strings to strings. Beyond the crate: duplicate keys and non-finite
numbers are refused, and with ``file_size`` the data must end where the file does.

Every error is ``SafetensorsError`` (a 400) naming the file and, where one is at fault, the
tensor. The adapter reads the bytes; nothing here does I/O.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import SafetensorsError

__all__ = [
    "DTYPE_SIZES", "MAX_HEADER", "PREFIX", "Header", "SafetensorsError", "TensorInfo",
    "header_length", "parse_header",
]

PREFIX = 8  # the length field
MAX_HEADER = 100_000_000  # the crate's limit on N
MAX_DIMS = 16  # more than any model has; bounds the work on a hostile shape

# The crate's Dtype, with each element's size in bytes.
DTYPE_SIZES: Mapping[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # byte offsets in the data section (add ``Header.data_start`` for the file)
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    data_start: int  # 8 + N: where the data begins in the file
    tensors: tuple[TensorInfo, ...]  # in the order of their data
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def data_size(self) -> int:
        return self.tensors[-1].end if self.tensors else 0

    def tensor(self, name: str) -> TensorInfo | None:
        for t in self.tensors:
            if t.name == name:
                return t
        return None


def header_length(prefix: bytes, name: str = "") -> int:
    """``N`` from a file's first 8 bytes (at least that many must be given)."""
    where = _where(name)
    if len(prefix) < PREFIX:
        raise SafetensorsError(f"{where}file too short for a safetensors header")
    (n,) = struct.unpack_from("<Q", prefix)
    if n > MAX_HEADER:
        raise SafetensorsError(f"{where}safetensors header of {n} bytes is larger than "
                               f"{MAX_HEADER}")
    if n < 2:
        raise SafetensorsError(f"{where}safetensors header of {n} bytes is too short")
    return int(n)


def parse_header(data: bytes, *, file_size: int | None = None, name: str = "") -> Header:
    """The header of a safetensors file whose first ``8 + N`` bytes are ``data`` (more may
    follow; they are ignored). ``name`` (the file's) prefixes every error."""
    where = _where(name)
    n = header_length(data, name)
    if len(data) < PREFIX + n:
        raise SafetensorsError(f"{where}safetensors header is truncated ({len(data) - PREFIX} "
                               f"of {n} bytes)")
    raw = data[PREFIX:PREFIX + n]
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                         parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise SafetensorsError(f"{where}safetensors header is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise SafetensorsError(f"{where}safetensors header is not valid JSON: "
                               f"{str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise SafetensorsError(f"{where}safetensors header is not a JSON object")
    metadata = _metadata(obj.pop("__metadata__", {}), where)
    tensors = sorted((_tensor(key, value, where) for key, value in obj.items()),
                     key=lambda t: (t.begin, t.end))
    position = 0
    for t in tensors:
        if t.begin != position:
            gap = "overlaps the one before" if t.begin < position else "leaves a gap before it"
            raise SafetensorsError(f"{where}tensor {t.name!r}: its data {gap} "
                                   f"(offset {t.begin}, expected {position})")
        position = t.end
    header = Header(data_start=PREFIX + n, tensors=tuple(tensors), metadata=metadata)
    if file_size is not None and header.data_start + header.data_size != file_size:
        raise SafetensorsError(
            f"{where}the data should end at byte {header.data_start + header.data_size} but "
            f"the file has {file_size} bytes" + (" (truncated)" if file_size <
                                                 header.data_start + header.data_size else ""))
    return header


def _where(name: str) -> str:
    return f"{name}: " if name else ""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a number")


def _metadata(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise SafetensorsError(f"{where}__metadata__ must map strings to strings")
    return dict(value)


def _tensor(name: str, value: Any, where: str) -> TensorInfo:
    def bad(what: str) -> SafetensorsError:
        return SafetensorsError(f"{where}tensor {name!r}: {what}")

    if not isinstance(value, dict):
        raise bad("must be an object with dtype, shape and data_offsets")
    extra = set(value) - {"dtype", "shape", "data_offsets"}
    if extra:
        raise bad(f"unknown field {sorted(extra)[0]!r}")
    dtype = value.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise bad(f"unknown dtype {dtype!r}")
    shape = value.get("shape")
    if (not isinstance(shape, list) or len(shape) > MAX_DIMS
            or not all(_is_count(d) for d in shape)):
        raise bad(f"shape must be a list of at most {MAX_DIMS} non-negative integers")
    offsets = value.get("data_offsets")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_count(o) for o in offsets)):
        raise bad("data_offsets must be two non-negative integers")
    begin, end = offsets
    if begin > end:
        raise bad(f"data_offsets {begin} > {end}")
    size = math.prod(shape) * DTYPE_SIZES[dtype]
    if end - begin != size:
        raise bad(f"{dtype} {shape} takes {size} bytes, but data_offsets span {end - begin}")
    return TensorInfo(name=name, dtype=dtype, shape=tuple(shape), begin=begin, end=end)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
