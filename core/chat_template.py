"""Rendering a GGUF ``tokenizer.chat_template`` (jinja) in a sandbox.

Model files are untrusted input: templates run in jinja2's ImmutableSandboxedEnvironment, with
the helpers Hugging Face's ``apply_chat_template`` provides (``raise_exception``,
``strftime_now``) and nothing else. The date is passed in (``today``), the core has no clock.
Template errors become ``TemplateError`` (a ``BadRequest``: 400 ``template error: ...``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import TemplateError

__all__ = ["TemplateError", "compile_template", "render"]


def _strftime(today: str, fmt: Any) -> str:
    """HF's ``strftime_now(fmt)`` for the date passed in (YYYY-MM-DD), at midnight."""
    import datetime

    try:
        return datetime.date.fromisoformat(today).strftime(str(fmt))
    except ValueError:
        return today


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False,
            separators: Any = None, sort_keys: bool = False) -> str:
    import json

    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, separators=separators,
                      sort_keys=sort_keys)


@functools.lru_cache(maxsize=32)
def compile_template(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
        extensions=["jinja2.ext.loopcontrols"],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise TemplateError(str(exc)) from None


def render(
    source: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    tools: Sequence[Mapping[str, Any]] | None = None,
    today: str = "2025-01-01",
    extra: Mapping[str, Any] | None = None,
) -> str:
    template = compile_template(source)
    context: dict[str, Any] = {
        "messages": [dict(m) for m in messages],
        "bos_token": bos_token,
        "eos_token": eos_token,
        "add_generation_prompt": add_generation_prompt,
        "strftime_now": lambda fmt: _strftime(today, fmt),
    }
    if tools:
        context["tools"] = [dict(t) for t in tools]
    if extra:
        context.update(extra)
    try:
        return template.render(**context)
    except TemplateError:
        raise
    except jinja2.TemplateError as exc:
        raise TemplateError(str(exc)) from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError,
            ZeroDivisionError, OverflowError, RecursionError) as exc:
        raise TemplateError(str(exc)) from None
