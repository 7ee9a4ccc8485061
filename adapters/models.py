"""Turning a stored manifest into what handlers need: file paths, params, system, messages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pollama.core.errors import BadRequest, NotFound, StoreError
from pollama.core.manifest import (MEDIA_TYPE_ADAPTER, MEDIA_TYPE_LICENSE, MEDIA_TYPE_MESSAGES,
                                   MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS, MEDIA_TYPE_PROJECTOR,
                                   MEDIA_TYPE_PROMPT, MEDIA_TYPE_SYSTEM, MEDIA_TYPE_TEMPLATE,
                                   ConfigV2, parse_config)
from pollama.core.names import Name, parse_name
from pollama.core.requests import Message

from .store import Store, StoredModel


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalModel:
    stored: StoredModel
    model_path: str
    model_digest: str
    config: ConfigV2
    parameters: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    template: str | None = None
    messages: tuple[Message, ...] = ()
    licenses: tuple[str, ...] = ()
    adapter_paths: tuple[str, ...] = ()
    projector_paths: tuple[str, ...] = ()

    @property
    def runner_key(self) -> str:
        """What makes two runners interchangeable: the weights plus adapters and projectors."""
        extra = [p.rsplit("sha256-", 1)[-1] for p in self.adapter_paths + self.projector_paths]
        return "+".join([self.model_digest, *extra])


def parse_model_name(text: str) -> Name:
    try:
        return parse_name(text)
    except BadRequest:
        raise BadRequest("invalid model name") from None


def resolve(store: Store, text: str, *, not_found: str = "model '{}' not found") -> LocalModel:
    """Load a model by name; unknown ⇒ NotFound with Ollama's text for the calling endpoint."""
    name = parse_model_name(text)
    try:
        stored = store.get(name)
    except NotFound:
        raise NotFound(not_found.format(text)) from None
    return load(store, stored)


def load(store: Store, stored: StoredModel) -> LocalModel:
    m = stored.manifest
    models = m.layers_of(MEDIA_TYPE_MODEL)
    if not models:
        # Nothing to show or run (a manifest pushed before /v2 verified them, written by hand or
        # by another tool): the client asked for something unusable, not a server fault (400,
        # as Ollama answers a model that "does not support generate").
        raise BadRequest(f"model '{stored.name.display_shortest()}' has no model layer")
    config = parse_config(store.read_blob(m.config.hex))

    def text(media: str) -> str | None:
        layers = m.layers_of(media)
        return store.read_blob(layers[-1].hex).decode("utf-8", "replace") if layers else None

    params: dict[str, Any] = {}
    raw_params = text(MEDIA_TYPE_PARAMS)
    if raw_params:
        try:
            loaded = json.loads(raw_params)
            if isinstance(loaded, dict):
                params = loaded
        except ValueError:
            raise StoreError("invalid params layer") from None
    messages: tuple[Message, ...] = ()
    raw_messages = text(MEDIA_TYPE_MESSAGES)
    if raw_messages:
        try:
            messages = tuple(
                Message(role=str(x.get("role", "")), content=str(x.get("content", "")))
                for x in json.loads(raw_messages) if isinstance(x, dict))
        except (ValueError, TypeError):
            raise StoreError("invalid messages layer") from None
    return LocalModel(
        stored=stored,
        model_path=store.blob_path(models[0].hex),
        model_digest=models[0].hex,
        config=config,
        parameters=params,
        system=text(MEDIA_TYPE_SYSTEM),
        template=text(MEDIA_TYPE_TEMPLATE) or text(MEDIA_TYPE_PROMPT),
        messages=messages,
        licenses=tuple(store.read_blob(x.hex).decode("utf-8", "replace")
                       for x in m.layers_of(MEDIA_TYPE_LICENSE)),
        adapter_paths=tuple(store.blob_path(x.hex) for x in m.layers_of(MEDIA_TYPE_ADAPTER)),
        projector_paths=tuple(store.blob_path(x.hex)
                              for x in m.layers_of(MEDIA_TYPE_PROJECTOR)),
    )


def details(config: ConfigV2) -> dict[str, Any]:
    """The ``details`` object of /api/tags and /api/show (Ollama's server/routes.go ListHandler,
    PsHandler, ShowHandler)."""
    out: dict[str, Any] = {
        "parent_model": "",
        "format": config.model_format or "gguf",
        "family": config.model_family,
        "families": list(config.model_families) or None,
        "parameter_size": config.model_type,
        "quantization_level": config.file_type,
    }
    return out
