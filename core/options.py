"""The generation options table (Ollama's api/types.go Options) and their validation.

Options reach a runner from three places, in increasing precedence: built-in defaults, the
Modelfile's PARAMETERs, the request's ``options``. Each option is either *load* time (changing it
means reloading the model) or *runtime* (per request). Types follow Ollama's Go struct: JSON
numbers are accepted for ints (truncated), a wrong JSON type is an error naming the expected type.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest

__all__ = [
    "DEFAULTS", "DEPRECATED", "INT32_MAX", "LOAD_KEYS", "MAX_REPLICAS", "MAX_THREADS", "SPECS",
    "Kind", "OptionSpec", "Phase", "coerce", "fits_float64", "go_int64", "json_kind", "load_spec",
    "merge", "number_error", "parse_parameter", "replicas", "split", "unknown_keys", "validate"
]


class Phase(enum.Enum):
    LOAD = "load"
    RUNTIME = "runtime"


class Kind(enum.Enum):
    INT = "integer"
    FLOAT = "float32"
    BOOL = "boolean"
    STRINGS = "array"


@dataclass(frozen=True, slots=True)
class OptionSpec:
    name: str
    kind: Kind
    phase: Phase


_SPECS = (
    OptionSpec("num_ctx", Kind.INT, Phase.LOAD),
    OptionSpec("num_batch", Kind.INT, Phase.LOAD),
    OptionSpec("num_gpu", Kind.INT, Phase.LOAD),
    OptionSpec("main_gpu", Kind.INT, Phase.LOAD),
    OptionSpec("use_mmap", Kind.BOOL, Phase.LOAD),
    OptionSpec("num_thread", Kind.INT, Phase.LOAD),
    OptionSpec("draft_num_predict", Kind.INT, Phase.LOAD),
    # pollama's own: on a cluster, runners of this model (on distinct nodes) when it is busy
    OptionSpec("num_replicas", Kind.INT, Phase.LOAD),
    OptionSpec("num_keep", Kind.INT, Phase.RUNTIME),
    OptionSpec("seed", Kind.INT, Phase.RUNTIME),
    OptionSpec("num_predict", Kind.INT, Phase.RUNTIME),
    OptionSpec("top_k", Kind.INT, Phase.RUNTIME),
    OptionSpec("top_p", Kind.FLOAT, Phase.RUNTIME),
    OptionSpec("min_p", Kind.FLOAT, Phase.RUNTIME),
    OptionSpec("typical_p", Kind.FLOAT, Phase.RUNTIME),
    OptionSpec("repeat_last_n", Kind.INT, Phase.RUNTIME),
    OptionSpec("temperature", Kind.FLOAT, Phase.RUNTIME),
    OptionSpec("repeat_penalty", Kind.FLOAT, Phase.RUNTIME),
    OptionSpec("presence_penalty", Kind.FLOAT, Phase.RUNTIME),
    OptionSpec("frequency_penalty", Kind.FLOAT, Phase.RUNTIME),
    OptionSpec("stop", Kind.STRINGS, Phase.RUNTIME),
)

SPECS: Mapping[str, OptionSpec] = {s.name: s for s in _SPECS}

# Accepted by older Ollama, ignored now (the Modelfile parser warns about them).
DEPRECATED = frozenset(
    {
        "mirostat", "mirostat_tau", "mirostat_eta", "penalize_newline", "low_vram",
        "f16_kv", "logits_all", "vocab_only", "use_mlock", "numa", "tfs_z",
    }
)

# Built-in defaults (Ollama's api/types.go Options). num_ctx's default comes from configuration.
DEFAULTS: Mapping[str, Any] = {
    "num_batch": 512,
    "num_gpu": -1,
    "num_thread": 0,
    "num_keep": 4,
    "seed": -1,
    "num_predict": -1,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_last_n": 64,
    "temperature": 0.8,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "stop": [],
}

LOAD_KEYS = frozenset(s.name for s in _SPECS if s.phase is Phase.LOAD)


INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
INT32_MAX = 2**31 - 1
# llama.cpp's CPU backend refuses more threads than this (GGML_MAX_N_THREADS); more than that
# made the runner die allocating its thread pool (std::bad_alloc).
MAX_THREADS = 512


def fits_float64(value: int | float) -> bool:
    """Whether Go's decoder reads this JSON number into a float64: a finite value (Python
    reads a literal such as 1e400 as infinity) and an integer no larger than float64 holds."""
    if isinstance(value, float):
        return math.isfinite(value)
    try:
        float(value)
    except OverflowError:
        return False
    return True


def number_error(value: Any, field: str, gotype: str) -> BadRequest:
    """Go's decoder error for a JSON number out of its type's range, e.g. ``json: cannot
    unmarshal number 1000000000000000000000 into Go struct field GenerateRequest.context of type
    int``. Go quotes the literal; a number Python read as infinity has lost it."""
    if isinstance(value, float) and not math.isfinite(value):
        shown = "number out of the float64 range"
    elif isinstance(value, float):
        shown = "number " + repr(value)
    else:
        shown = f"number {value}"
    return BadRequest(f"json: cannot unmarshal {shown} into Go struct field {field} of type "
                      f"{gotype}")


def go_int64(value: float) -> int:
    """Go's ``int64(f)`` of a float64, saturated: out-of-range conversions are
    implementation-defined in Go (arm64 saturates, amd64 wraps to the minimum); saturating keeps
    a huge request value huge rather than turning it negative."""
    if value >= 2.0**63:
        return INT64_MAX
    if value < -(2.0**63):
        return INT64_MIN
    return int(value)


def coerce(name: str, value: Any, *, where: str = "ChatRequest.options") -> Any:
    """Check one option value from JSON against its type; return the normalised value.

    ``None`` means "unset" (Go's pointer fields) and is returned as is. Numbers arrive as Go's
    decoder gives them to Ollama's ``Options.FromMap``: as float64 (one beyond float64 is the
    decoder's error, naming ``where``), then ``int64(f)`` for integer options.
    """
    spec = SPECS[name]
    if value is None:
        return None
    err = BadRequest(f'option "{name}" must be of type {spec.kind.value}')
    if spec.kind in (Kind.INT, Kind.FLOAT):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise err
        if not fits_float64(value):
            raise number_error(value, where, "float64")
        if spec.kind is Kind.FLOAT:
            return float(value)
        if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
            return value  # exact, as Go's int64 field holds it
        return go_int64(float(value))
    if spec.kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise err
        return value
    if isinstance(value, str):  # Ollama accepts a single stop string too
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise err
    return list(value)


def validate(options: Any, *, struct: str = "ChatRequest") -> dict[str, Any]:
    """Validate a request's ``options`` object. Unknown keys are dropped (Ollama logs and ignores).

    Returns only the known, set keys; the caller reports ``unknown`` keys in its log if it wants.
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise BadRequest(
            f"json: cannot unmarshal {json_kind(options)} into Go struct field "
            f"{struct}.options of type map[string]interface {{}}"
        )
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in SPECS:
            v = coerce(key, value, where=f"{struct}.options")
            if v is not None:
                out[key] = v
    return out


def unknown_keys(options: Any) -> list[str]:
    if not isinstance(options, dict):
        return []
    return [k for k in options if k not in SPECS]


# What Go's strconv.ParseInt(s, 10, ...) / ParseFloat accept: ASCII digits, no spaces or "_".
_GO_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_GO_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)",
    re.ASCII | re.IGNORECASE,
)


def parse_parameter(name: str, raw: str) -> Any:
    """Parse a Modelfile ``PARAMETER name value`` string into a typed value (Go strconv rules)."""
    spec = SPECS.get(name)
    if spec is None:
        raise BadRequest(f"unknown parameter '{name}'")
    if spec.kind is Kind.INT:
        # strconv.ParseInt(raw, 10, 64): out of int64 is its range error
        if not _GO_INT.fullmatch(raw) or len(raw.lstrip("+-0")) > 19 or not (
                INT64_MIN <= int(raw, 10) <= INT64_MAX):
            raise BadRequest(f"invalid int value [{raw}]")
        return int(raw, 10)
    if spec.kind is Kind.FLOAT:
        # strconv.ParseFloat: a finite literal past float64 is its range error. Go also reads
        # "inf" and "nan"; those could never reach a runner (JSON has no such numbers).
        if not _GO_FLOAT.fullmatch(raw) or not math.isfinite(float(raw)):
            raise BadRequest(f"invalid float value [{raw}]")
        return float(raw)
    if spec.kind is Kind.BOOL:
        if raw in ("1", "t", "T", "TRUE", "true", "True"):
            return True
        if raw in ("0", "f", "F", "FALSE", "false", "False"):
            return False
        raise BadRequest(f"invalid bool value [{raw}]")
    return [raw]


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge option layers left to right (later wins): defaults < Modelfile < request."""
    out: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer.items():
            if v is not None:
                out[k] = v
    return out


def json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"


def split(merged: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(load-time, runtime) parts of merged options."""
    load = {k: v for k, v in merged.items() if k in LOAD_KEYS}
    runtime = {k: v for k, v in merged.items() if k not in LOAD_KEYS}
    return load, runtime


MAX_REPLICAS = 64


def replicas(load: Mapping[str, Any]) -> int:
    """The request's ``num_replicas`` hint (0: the server's ``POLLAMA_REPLICAS``)."""
    return max(0, min(int(load.get("num_replicas") or 0), MAX_REPLICAS))


def load_spec(load: Mapping[str, Any], *, default_num_ctx: int, ctx_train: int | None,
              vision: bool = False) -> dict[str, Any]:
    """Load parameters for a runner: num_ctx defaults to configuration, is at least 2048 for a
    vision model (images take many positions), is clamped to the model's trained context,
    and raised to at least 4 (Ollama's api/types.go Options; server/sched.go)."""
    num_batch = int(load.get("num_batch", DEFAULTS["num_batch"]))
    if num_batch < 1:
        raise BadRequest("num_batch must be at least 1")
    num_ctx = int(load.get("num_ctx") or default_num_ctx)
    if vision:
        num_ctx = max(num_ctx, 2048)
    if ctx_train:
        num_ctx = min(num_ctx, ctx_train)
    # llama.cpp takes these as 32-bit ints (n_ctx, n_batch, n_gpu_layers); a larger request
    # value means "as many as there are" and is clamped rather than overflowing the C call.
    # A batch is at most the context, as llama.cpp makes it (llama-cpp-python would first
    # allocate num_batch × n_vocab logits: 384 TiB for num_batch 2^31).
    num_ctx = min(max(4, num_ctx), INT32_MAX)
    return {
        "num_ctx": num_ctx,
        "num_batch": min(num_batch, num_ctx),
        "num_gpu": max(-1, min(int(load.get("num_gpu", DEFAULTS["num_gpu"])), INT32_MAX)),
        "num_thread": max(0, min(int(load.get("num_thread", DEFAULTS["num_thread"])),
                                 MAX_THREADS)),
        "use_mmap": load.get("use_mmap"),
    }
