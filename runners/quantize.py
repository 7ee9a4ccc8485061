"""The quantize runner: ``python -m pollama.runners.quantize SRC DST TYPE``.

Calls llama.cpp's quantizer (``llama_model_quantize``) through llama-cpp-python, in a process of
its own like the inference runner, so a crash in C code costs the server nothing and the
server can kill it when the client hangs up. Reports on stdout as NDJSON, the events of
``core.quantize``:

    {"event": "start", "ftype": 15}
    {"event": "tensor", "index": 3, "count": 21, "name": "blk.0.attn_k.weight"}   (per tensor)
    {"event": "done", "size": 1234567}
or  {"event": "error", "error": "..."} and exit status 1.

Per-tensor progress comes from llama.cpp's own log: a log callback watches for the
``[   3/  21] blk.0.attn_k.weight - ...`` line the quantizer prints as it starts each tensor.
Other log lines at warning level or above go to stderr. As in the inference runner, fd 1 is
pointed at stderr so nothing printed by C code can corrupt the event stream.
"""

from __future__ import annotations

import ctypes
import os
import sys
import traceback
import threading
from typing import Any, BinaryIO

from pollama.core import ndjson
from pollama.core import quantize as q
from pollama.core.errors import PollamaError

# ggml_log_level (ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5; the comment in
# llama_cpp/_logger.py predates DEBUG).
_LOG_WARN, _LOG_ERROR, _LOG_CONT = 3, 4, 5

_callbacks: list[Any] = []  # ctypes callbacks must outlive every call into C


class _Reporter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._line = ""  # log text since the last newline (llama.cpp logs in pieces)
        self._level = 0
        self.last_error = ""

    def send(self, event: q.Event) -> None:
        with self._lock:
            self._out.write(ndjson.encode(q.encode_event(event)))
            self._out.flush()

    def log(self, level: int, text: str) -> None:
        if level != _LOG_CONT:
            self._level = level
        self._line += text
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            self._log_line(self._level, line)

    def _log_line(self, level: int, line: str) -> None:
        started = q.parse_log_line(line)
        if started is not None:
            self.send(started)
        elif level in (_LOG_WARN, _LOG_ERROR) and line.strip():
            if level == _LOG_ERROR:
                self.last_error = line.strip()
            print(line, file=sys.stderr, flush=True)


def quantize(src: str, dst: str, target: q.QuantType, reporter: _Reporter) -> int:
    import llama_cpp

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def on_log(level: int, text: bytes, user_data: Any) -> None:
        try:
            reporter.log(level, text.decode("utf-8", "replace"))
        except Exception:  # an exception must never cross into C
            pass

    _callbacks.append(on_log)
    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = target.ftype
    params.nthread = 0  # llama.cpp uses hardware_concurrency()
    reporter.send(q.Started(ftype=target.ftype))
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        detail = reporter.last_error or f"llama_model_quantize returned {rc}"
        raise PollamaError(f"quantization failed: {detail}")
    return os.path.getsize(dst)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    out = os.fdopen(proto_fd, "wb", buffering=0)
    reporter = _Reporter(out)
    try:
        if len(args) != 3:
            raise PollamaError("usage: python -m pollama.runners.quantize SRC DST TYPE")
        src, dst, type_name = args
        if not os.path.isfile(src):
            raise PollamaError(f"quantization failed: no such file {src}")
        size = quantize(src, dst, q.parse_type(type_name), reporter)
    except PollamaError as exc:
        reporter.send(q.Failed(message=exc.message))
        return 1
    except Exception:  # report anything else the same way; the details go to the log
        traceback.print_exc(file=sys.stderr)
        reporter.send(q.Failed(message="quantization failed: internal error; the server log "
                               "has the details"))
        return 1
    reporter.send(q.Finished(size=size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
