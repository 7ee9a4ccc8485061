"""Assembling the prompt text a runner sees, from a request and the model's stored parts.

Order follows Ollama (Ollama's server/routes.go GenerateHandler and ChatHandler): for chat, the
Modelfile SYSTEM is prepended only when the first request message is not a system message, and
Modelfile MESSAGEs come before the request's messages. For generate the messages are [system] +
Modelfile MESSAGEs (only when no ``context`` is given) + the user prompt; the request's ``system``
overrides the Modelfile's. ``raw`` skips templating entirely.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import chat_template, gotemplate
from .errors import BadRequest
from .thinking import ThinkSetting
from .requests import ChatRequest, GenerateRequest, Message

__all__ = [
    "ModelPrompting", "chat_messages", "check_raw", "generate_messages", "generate_prompt",
    "images_of", "place_images", "render", "tag_images", "truncation_candidates"
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelPrompting:
    """What a stored model contributes to prompts."""

    chat_template: str | None = None  # GGUF tokenizer.chat_template (jinja)
    go_template: str | None = None  # Modelfile TEMPLATE (Go text/template); wins when set
    full_name: str = ""  # host/namespace/model:tag, for "... does not support insert"
    system: str | None = None  # Modelfile SYSTEM
    messages: tuple[Message, ...] = ()  # Modelfile MESSAGEs
    bos_token: str = ""
    eos_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def chat_messages(req: ChatRequest, model: ModelPrompting) -> list[Message]:
    msgs = list(model.messages) + list(req.messages)
    if model.system and (not req.messages or req.messages[0].role != "system"):
        msgs.insert(0, Message(role="system", content=model.system))
    return msgs


def generate_messages(req: GenerateRequest, model: ModelPrompting) -> list[Message]:
    msgs: list[Message] = []
    system = req.system if req.system is not None else model.system
    if system:
        msgs.append(Message(role="system", content=system))
    if req.context is None:
        msgs.extend(model.messages)
    # Ollama's generate: each image is a user message of its own tag, before the prompt.
    msgs.extend(Message(role="user", content=f"[img-{i}]") for i in range(len(req.images)))
    msgs.append(Message(role="user", content=req.prompt))
    return msgs


def tag_images(messages: Sequence[Message]) -> list[Message]:
    """Ollama's chatPrompt: image ``N`` (counted across the messages kept) becomes the tag
    ``[img-N]``, which replaces a literal ``[img]`` in its message or else goes in front of
    it (Ollama's server/routes.go GenerateHandler). The runner puts each image where its tag is."""
    out: list[Message] = []
    n = 0
    for m in messages:
        if not m.images:
            out.append(m)
            continue
        prefix, content = "", m.content
        for _ in m.images:
            tag = f"[img-{n}]"
            n += 1
            if "[img]" in content:
                content = content.replace("[img]", tag, 1)
            else:
                prefix += tag
        out.append(replace(m, content=prefix + content))
    return out


_IMAGE_TAG = re.compile(r"\[img-(\d+)\]")


def place_images(text: str, count: int, marker: str) -> tuple[str, list[int]]:
    """Where the runner puts images: every ``[img-N]`` tag becomes ``marker``; returns the
    text and the image index of each marker in order. A tag naming no image is a 400 (as
    Ollama's runner says it); images no tag names are left out."""
    order: list[int] = []

    def place(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if n >= count:
            raise BadRequest(f"invalid image index: {n}")
        order.append(n)
        return marker

    return _IMAGE_TAG.sub(place, text), order


def images_of(messages: Sequence[Message]) -> list[str]:
    """The images of ``messages`` in tag order (``[img-0]`` first)."""
    return [image for m in messages for image in m.images]


def render(messages: Sequence[Message], model: ModelPrompting, *, today: str,
           tools: Sequence[dict[str, Any]] = (), go_template: str | None = None,
           think: ThinkSetting | None = None) -> str:
    """Render messages for the assistant's answer. A Go template (the request's override, else
    the Modelfile TEMPLATE) is used when there is one, else the GGUF jinja template, as
    Ollama does (Ollama's server/model.go). ``today`` is YYYY-MM-DD."""
    source = go_template if go_template is not None else model.go_template
    if source is not None:
        return gotemplate.render_chat(gotemplate.parse(source), messages, tools=tools,
                                      today=today, **(think.render_kwargs() if think else {}))
    if model.chat_template:
        extra = dict(model.extra)
        if think is not None and think.is_set:
            extra["enable_thinking"] = think.enabled  # Qwen3-style jinja switch
        return chat_template.render(
            model.chat_template,
            [m.to_template() for m in messages],
            bos_token=model.bos_token,
            eos_token=model.eos_token,
            add_generation_prompt=True,
            tools=list(tools) or None,
            today=today,
            extra=extra,
        )
    # No template at all: Ollama's default is ``{{ .Prompt }}``: the system text and the last
    # user message, as plain text.
    parts = [m.content for m in messages if m.role == "system"]
    users = [m.content for m in messages if m.role == "user"]
    if users:
        parts.append(users[-1])
    return "\n\n".join(p for p in parts if p)


def check_raw(req: GenerateRequest) -> None:
    if req.raw and (req.template or req.system or req.context):
        raise BadRequest("raw mode does not support template, system, or context")


def generate_prompt(req: GenerateRequest, model: ModelPrompting, *, today: str,
                    think: ThinkSetting | None = None) -> str:
    check_raw(req)
    if req.raw:
        return req.prompt
    if req.suffix:
        source = req.template if req.template else model.go_template
        tmpl = gotemplate.parse(source) if source is not None else None
        if tmpl is None or not tmpl.uses("Suffix"):
            raise BadRequest(f"{model.full_name} does not support insert")
        return gotemplate.render_suffix(tmpl, req.prompt, req.suffix, today=today)
    return render(generate_messages(req, model), model, today=today,
                  go_template=req.template or None, think=think)


def truncation_candidates(messages: Sequence[Message]) -> list[list[Message]]:
    """Message lists to try, longest first, until one fits ``num_ctx`` (Ollama's chatPrompt):
    the oldest messages are dropped one at a time; every system message and the last
    message are always kept."""
    out: list[list[Message]] = []
    n = len(messages)
    for start in range(n):
        kept = [m for i, m in enumerate(messages)
                if i >= start or m.role == "system" or i == n - 1]
        if not out or kept != out[-1]:
            out.append(kept)
    return out

