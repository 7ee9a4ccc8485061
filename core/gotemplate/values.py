"""Template values and the parts of Go's type system templates can observe.

``None`` is Go's nil interface (an invalid ``reflect.Value``); ``dict`` is
``map[string]interface{}``; ``list``/``tuple`` are slices (``[]interface{}`` for decoded JSON,
typed slices otherwise); ``GoStruct`` subclasses are the structs Ollama passes to templates.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Final, overload

__all__ = ["GoStruct", "SliceView", "SEQ_TYPES", "Uint8", "type_name", "truth", "sorted_keys"]


class GoStruct:
    """A Go struct in template data: attributes named as the Go fields, in Go order.

    ``go_type`` names the Go type in error messages and ``%T``; ``go_pointer`` marks values
    Go holds by pointer (printed with ``&`` by ``print``); ``go_json_fields`` lists
    ``(attribute, json name, omitempty)`` as the struct's json tags say.
    """

    __slots__ = ()
    go_type: ClassVar[str] = "struct {}"
    go_fields: ClassVar[tuple[str, ...]] = ()
    go_json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = ()
    go_pointer: ClassVar[bool] = False
    go_any_fields: ClassVar[frozenset[str]] = frozenset()  # fields of type interface{}

    def go_string(self) -> str | None:
        """Go's ``String()`` method when the type has one (used by ``%v``, ``%s``)."""
        return None

    def go_field(self, name: str) -> tuple[bool, Any]:
        if name in self.go_fields:
            return True, getattr(self, name)
        return False, None


class SliceView(Sequence[Any]):
    """``slice`` of a list without copying (Go slices share their array), so templates that
    slice the message list once per message stay linear."""

    __slots__ = ("base", "start", "stop")
    base: Sequence[Any]
    start: int
    stop: int

    def __init__(self, base: Sequence[Any], start: int, stop: int) -> None:
        if isinstance(base, SliceView):
            view = base
            base, start, stop = view.base, view.start + start, view.start + stop
        self.base, self.start, self.stop = base, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return list(self)[i]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.base[self.start + (i % len(self))]

    def __iter__(self) -> Iterator[Any]:
        for i in range(self.start, self.stop):
            yield self.base[i]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (list, tuple, SliceView)) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


SEQ_TYPES: Final = (list, tuple, SliceView)


def type_name(v: object) -> str:
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "uint8" if type(v) is Uint8 else "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    t = getattr(v, "go_type", None)
    if isinstance(t, str):
        return t
    if isinstance(v, SEQ_TYPES):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return "interface {}"


class Uint8(int):
    """A byte of a string (``index "abc" 0``), which Go types as uint8."""

    __slots__ = ()


def truth(v: object) -> bool:
    """Go template truth: false, 0, nil, and empty strings/slices/maps are false."""
    if v is None:
        return False
    if isinstance(v, (bool, int, float)):
        return v != 0  # NaN is true, as in Go
    if isinstance(v, (str, dict, *SEQ_TYPES)):
        return len(v) > 0
    return True


def sorted_keys(d: Mapping[Any, Any]) -> list[Any]:
    """Go's fmtsort order for map keys: strings by bytes, numbers numerically."""
    try:
        return sorted(d)
    except TypeError:
        return sorted(d, key=lambda k: (type(k).__name__, str(k)))
