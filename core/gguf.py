"""A GGUF header parser: key/values and tensor infos from the start of a model file.

Pure and fast (the ``gguf`` package builds numpy views of every field and tensor, about 2 s for
SmolLM2; this reads the same header in milliseconds), and strict: any malformed input raises
``GGUFError`` (400) with a clear message, never anything else. The adapter passes a prefix of
the file; ``Truncated`` asks for more bytes (up to the file size).

Format (GGUF v2/v3, little-endian): magic ``GGUF``, u32 version, u64 tensor count, u64 kv
count; each kv is a string key, a u32 type and a value; each tensor info is a string name, u32
n_dims, u64 dims, u32 ggml type, u64 offset. Strings are u64 length + UTF-8 bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import GGUFError

__all__ = [
    "ALL", "MAX_DIMS", "MAX_KV", "MAX_TENSORS", "SMALL", "SMALL_ARRAY", "ArrayInfo", "Header",
    "TensorInfo", "Truncated", "parse_header"
]

MAX_KV = 1 << 20
ALL = "all"  # keep_arrays: decode every array
SMALL = "small"  # keep_arrays: decode arrays of at most SMALL_ARRAY elements
SMALL_ARRAY = 5
MAX_TENSORS = 1 << 20
MAX_DIMS = 8


class Truncated(Exception):
    """The prefix ends inside the header; call again with at least ``need`` bytes."""

    def __init__(self, need: int) -> None:
        super().__init__(need)
        self.need = need


@dataclass(frozen=True, slots=True, kw_only=True)
class ArrayInfo:
    """An array value that was skipped rather than decoded: its element type and length."""

    type: int
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]
    type: int
    offset: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    version: int
    kv: Mapping[str, Any] = field(default_factory=dict)
    tensors: tuple[TensorInfo, ...] = ()
    header_size: int = 0

    @property
    def parameter_count(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    def array_len(self, key: str) -> int | None:
        v = self.kv.get(key)
        if isinstance(v, ArrayInfo):
            return v.count
        if isinstance(v, list):
            return len(v)
        return None


_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
_STRING = 8
_ARRAY = 9


_U64 = struct.Struct("<Q")


class _Reader:
    def __init__(self, data: bytes, complete: bool) -> None:
        self.data = data
        self.pos = 0
        self.complete = complete

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            if self.complete:
                raise GGUFError("invalid GGUF file: truncated header")
            raise Truncated(max(end, 2 * len(self.data)))
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def scalar(self, t: int) -> Any:
        fmt, size = _SCALARS[t]
        return struct.unpack(fmt, self.take(size))[0]

    def u32(self) -> int:
        return int(self.scalar(4))

    def u64(self) -> int:
        return int(self.scalar(10))

    def string(self) -> str:
        n = self.u64()
        if n > (1 << 32):
            raise GGUFError(f"invalid GGUF file: string of {n} bytes")
        raw = self.take(n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        """Step over ``count`` strings without decoding them (a vocabulary of 100k tokens in
        a few ms, for callers that do not keep it)."""
        data, pos, end = self.data, self.pos, len(self.data)
        length_at = _U64.unpack_from
        for _ in range(count):
            if pos + 8 > end:
                self.take(pos + 8 - self.pos)  # raises: truncated
            n = length_at(data, pos)[0]
            if n > (1 << 32):
                raise GGUFError(f"invalid GGUF file: string of {n} bytes")
            pos += 8 + n
        if pos > end:
            self.take(pos - self.pos)  # raises: truncated
        self.pos = pos

    def value(self, t: int, keep: bool | None) -> Any:
        """``keep``: decode an array (True), skip it (False), or decode it if small (None)."""
        if t in _SCALARS:
            return self.scalar(t)
        if t == _STRING:
            return self.string()
        if t == _ARRAY:
            et = self.u32()
            count = self.u64()
            if et not in _SCALARS and et != _STRING:
                raise GGUFError(f"invalid GGUF file: array of type {et}")
            if keep is None:
                keep = count <= SMALL_ARRAY
            if et in _SCALARS:
                size = _SCALARS[et][1]
                if count > (1 << 40) // size:
                    raise GGUFError("invalid GGUF file: array too long")
                raw = self.take(count * size)
                if not keep:
                    return ArrayInfo(type=et, count=count)
                fmt = "<" + _SCALARS[et][0][1] * count
                return list(struct.unpack(fmt, raw))
            if count > (1 << 32):
                raise GGUFError("invalid GGUF file: array too long")
            if not keep:
                self.skip_strings(count)
                return ArrayInfo(type=et, count=count)
            return [self.string() for _ in range(count)]
        raise GGUFError(f"invalid GGUF file: unknown value type {t}")


def parse_header(data: bytes, *, complete: bool = False,
                 keep_arrays: Collection[str] | str = ()) -> Header:
    """Parse the header from ``data`` (a file prefix, or the whole file if ``complete``).

    Arrays are returned as ``ArrayInfo`` unless their key is in ``keep_arrays``, or
    ``keep_arrays`` is ``ALL``, or it is ``SMALL`` and the array has at most 5 elements.
    Raises ``Truncated`` when more bytes are needed, ``GGUFError`` when the file is invalid.
    """
    r = _Reader(data, complete)
    if r.take(4) != b"GGUF":
        raise GGUFError("invalid file magic: not a GGUF model file")
    version = r.u32()
    if version not in (2, 3):
        raise GGUFError(f"unsupported GGUF version {version}")
    n_tensors = r.u64()
    n_kv = r.u64()
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise GGUFError("invalid GGUF file: implausible tensor or key count")
    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key = r.string()
        t = r.u32()
        if keep_arrays == ALL:
            keep: bool | None = True
        elif keep_arrays == SMALL:
            keep = None
        else:
            keep = key in keep_arrays
        kv[key] = r.value(t, keep)
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.u32()
        if n_dims > MAX_DIMS:
            raise GGUFError(f"invalid GGUF file: tensor {name!r} has {n_dims} dimensions")
        dims = tuple(r.u64() for _ in range(n_dims))
        ttype = r.u32()
        offset = r.u64()
        tensors.append(TensorInfo(name=name, dims=dims, type=ttype, offset=offset))
    if "general.architecture" not in kv or not isinstance(kv["general.architecture"], str):
        raise GGUFError("invalid GGUF file: no general.architecture")
    return Header(version=version, kv=kv, tensors=tuple(tensors), header_size=r.pos)
