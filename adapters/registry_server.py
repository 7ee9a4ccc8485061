"""pollama as a registry: the ``/v2/`` endpoints of the OCI distribution protocol, served from
the model store, so another pollama (or Ollama) can ``pull --insecure host:port/ns/model:tag``
from this one and ``push`` to it (Ollama's server/download.go, server/upload.go).

    GET/HEAD  /v2/                                    200 {}
    GET/HEAD  /v2/<ns>/<model>/manifests/<tag|digest>  the manifest of local model ns/model:tag
    PUT       /v2/<ns>/<model>/manifests/<tag>         store it if it verifies (blobs present
                                                       with their sizes, a model layer)
    GET/HEAD  /v2/<ns>/<model>/blobs/<digest>          the blob, with single Range support (206)
    POST      /v2/<ns>/<model>/blobs/uploads/          open an upload (202, Location), or with
                                                       ?digest= a monolithic upload (201), or
                                                       ?mount= a blob we already have (201)
    PATCH     /v2/<ns>/<model>/blobs/uploads/<id>      append a chunk (202)
    PUT       /v2/<ns>/<model>/blobs/uploads/<id>?digest=  append the rest and commit (201)
    GET       /v2/<ns>/<model>/blobs/uploads/<id>      upload status (204, Range)
    DELETE    /v2/<ns>/<model>/blobs/uploads/<id>      cancel (204)

Which local model a repository is: ``core.registry.served_name`` (the local name
``<ns>/<model>:<tag>``, whatever Host header the client used). Every path segment is validated by
``core.registry`` before it is used, and blobs are written through ``Store.blob_writer`` (temp
file, sha256 checked, fsync, rename): a pushed blob whose digest does not match is discarded and
nothing becomes visible. Failures are OCI-shaped: ``{"errors":[{"code","message"}]}``.

Blobs are content-addressed and shared by every model in the store, so any blob is served under
any valid repository name: knowing its digest is what lets a client ask for it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio

from pollama.core import registry as reg
from pollama.core import store_check as sc
from pollama.core.errors import BadRequest, NotFound, PollamaError
from pollama.core.manifest import Manifest
from pollama.core.names import DEFAULT_HOST, Name, digest_str

from .http_server import Request, Response
from .store import BlobWriter, Store

log = logging.getLogger("pollama.registry")

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
READ_CHUNK = 1024 * 1024
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
UPLOAD_IDLE_SECONDS = 3600.0
MAX_UPLOADS = 64

Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]


def oci_error(exc: reg.RegistryError) -> Response:
    return Response(status=exc.status_hint, body=exc.body(), headers=[API_VERSION])


@dataclass
class _Upload:
    id: str
    namespace: str
    model: str
    writer: BlobWriter
    touched: float
    busy: bool = False


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover  (makes this an async generator)


class RegistryServer:
    """Request handlers for the ``/v2/`` routes (``core.routes``), bound to one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._uploads: dict[str, _Upload] = {}

    def handlers(self) -> dict[str, Handler]:
        return {
            "registry_base": self._wrap(self.base),
            "registry_manifest": self._wrap(self.manifest),
            "registry_blob": self._wrap(self.blob),
            "registry_upload_start": self._wrap(self.upload_start),
            "registry_upload": self._wrap(self.upload),
        }

    @staticmethod
    def _wrap(handler: Handler) -> Handler:
        async def wrapped(request: Request, params: dict[str, str]) -> Response:
            try:
                return await handler(request, params)
            except reg.RegistryError as exc:
                return oci_error(exc)
            except NotFound as exc:
                return oci_error(reg.RegistryError(reg.ErrorCode.NAME_UNKNOWN, exc.message))
            except BadRequest as exc:
                return oci_error(reg.RegistryError(reg.ErrorCode.UNSUPPORTED, exc.message))
            except PollamaError as exc:  # the store's trouble (500), still in OCI shape
                err = reg.RegistryError(reg.ErrorCode.UNKNOWN, exc.message)
                return Response(status=exc.status_hint, body=err.body(), headers=[API_VERSION])
        return wrapped

    # -- GET /v2/ ---------------------------------------------------------------------------------
    async def base(self, request: Request, params: dict[str, str]) -> Response:
        return Response(status=200, body=b"{}", headers=[API_VERSION])

    # -- manifests ------------------------------------------------------------------------------
    async def manifest(self, request: Request, params: dict[str, str]) -> Response:
        ns, model = reg.parse_repository(params["namespace"], params["model"])
        ref = reg.parse_reference(params["reference"])
        if request.method == "PUT":
            return await self._put_manifest(request, ns, model, ref)
        data = await anyio.to_thread.run_sync(self._find_manifest, ns, model, ref)
        if data is None:
            raise reg.RegistryError(reg.ErrorCode.MANIFEST_UNKNOWN, "manifest unknown",
                                    {"name": f"{ns}/{model}", "reference": _ref_text(ref)})
        body, media_type, hex_digest = data
        return Response(status=200, body=body, content_type=media_type, headers=[
            API_VERSION, ("Docker-Content-Digest", digest_str(hex_digest))])

    def _find_manifest(self, ns: str, model: str,
                       ref: reg.Tag | reg.DigestRef) -> tuple[bytes, str, str] | None:
        if isinstance(ref, reg.Tag):
            try:
                stored = self.store.get(reg.served_name(ns, model, ref.tag))
            except NotFound:
                return None
            body = stored.manifest.to_json()
            return body, stored.manifest.media_type, hashlib.sha256(body).hexdigest()
        for stored in self.store.list():
            name = stored.name
            if (name.host.lower(), name.namespace.lower(), name.model.lower()) != (
                    DEFAULT_HOST, ns.lower(), model.lower()):
                continue
            body = stored.manifest.to_json()
            hex_digest = hashlib.sha256(body).hexdigest()
            if hex_digest == ref.hex:
                return body, stored.manifest.media_type, hex_digest
        return None

    async def _put_manifest(self, request: Request, ns: str, model: str,
                            ref: reg.Tag | reg.DigestRef) -> Response:
        if not isinstance(ref, reg.Tag):
            raise reg.RegistryError(reg.ErrorCode.UNSUPPORTED,
                                    "manifests can only be pushed to a tag")
        try:
            data = await request.read_body(limit=MAX_MANIFEST_BYTES)
        except BadRequest:
            raise reg.RegistryError(reg.ErrorCode.MANIFEST_INVALID, "manifest too large") from None
        manifest = reg.parse_manifest_body(data)
        name = reg.served_name(ns, model, ref.tag)
        stored = await anyio.to_thread.run_sync(self._verify_and_write, name, manifest)
        hex_digest = hashlib.sha256(manifest.to_json()).hexdigest()
        log.info("registry: stored manifest %s (%s)", stored.display_shortest(),
                 digest_str(hex_digest))
        return Response(status=201, content_type=None, headers=[
            API_VERSION, ("Location", f"/v2/{ns}/{model}/manifests/{digest_str(hex_digest)}"),
            ("Docker-Content-Digest", digest_str(hex_digest))])

    def _verify_and_write(self, name: Name, manifest: Manifest) -> Name:
        """Store ``manifest`` only if it verifies (core.store_check.manifest_problems): every
        blob present with the size the manifest gives, the config blob matching its digest and
        a JSON object, and a model layer. Under the store's mutation lock, so no blob it was
        verified against is removed before it is written."""
        with self.store.mutation:
            sizes: dict[str, int] = {}
            for layer in reg.blobs_of(manifest):
                try:
                    sizes[layer.hex] = self.store.blob_size(layer.hex)
                except OSError:
                    pass
            config = None
            if sizes.get(manifest.config.hex) == manifest.config.size:
                if manifest.config.size > MAX_MANIFEST_BYTES:
                    raise reg.RegistryError(reg.ErrorCode.MANIFEST_INVALID,
                                            f"config blob {manifest.config.digest} is too large",
                                            {"digest": manifest.config.digest})
                config = self.store.read_blob(manifest.config.hex, MAX_MANIFEST_BYTES)
            problems = sc.manifest_problems(manifest, sizes, config)
            if problems:
                raise rejection(problems)
            return self.store.write_manifest(name, manifest)

    # -- blobs ----------------------------------------------------------------------------------
    async def blob(self, request: Request, params: dict[str, str]) -> Response:
        reg.parse_repository(params["namespace"], params["model"])
        hex_digest = reg.parse_blob_digest(params["digest"])
        path = self.store.blob_path(hex_digest)
        try:
            f = await anyio.to_thread.run_sync(open, path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise reg.RegistryError(reg.ErrorCode.BLOB_UNKNOWN, "blob unknown to registry",
                                    {"digest": digest_str(hex_digest)}) from None
        try:
            size = os.fstat(f.fileno()).st_size
            headers = [API_VERSION, ("Docker-Content-Digest", digest_str(hex_digest)),
                       ("Accept-Ranges", "bytes")]
            try:
                rng = reg.parse_range(request.header("range"), size)
            except reg.RegistryError as exc:
                f.close()
                return Response(status=416, body=exc.body(),
                                headers=headers + [("Content-Range", f"bytes */{size}")])
            status = 200
            start, end = 0, size
            if rng is not None:
                status, start, end = 206, rng.start, rng.end
                headers.append(("Content-Range", reg.content_range(rng, size)))
            if request.method == "HEAD":
                f.close()
                return Response(status=status, body=_empty(), length=end - start,
                                content_type="application/octet-stream", headers=headers)
            log.debug("registry: blob %s bytes %d-%d", digest_str(hex_digest), start, end - 1)
        except BaseException:
            f.close()
            raise

        async def body() -> AsyncIterator[bytes]:
            try:
                await anyio.to_thread.run_sync(f.seek, start)
                left = end - start
                while left > 0:
                    chunk = await anyio.to_thread.run_sync(f.read, min(READ_CHUNK, left))
                    if not chunk:
                        break  # truncated underneath us: h11 will refuse to end the message
                    left -= len(chunk)
                    yield chunk
            finally:
                f.close()

        return Response(status=status, body=body(), length=end - start,
                        content_type="application/octet-stream", headers=headers)

    # -- uploads --------------------------------------------------------------------------------
    def _expire_uploads(self, now: float) -> None:
        for upload in list(self._uploads.values()):
            if not upload.busy and now - upload.touched > UPLOAD_IDLE_SECONDS:
                self._drop(upload)
        while len(self._uploads) >= MAX_UPLOADS:
            idle = [u for u in self._uploads.values() if not u.busy]
            if not idle:
                raise reg.RegistryError(reg.ErrorCode.BLOB_UPLOAD_INVALID, "too many uploads")
            self._drop(min(idle, key=lambda u: u.touched))

    def _drop(self, upload: _Upload) -> None:
        self._uploads.pop(upload.id, None)
        upload.writer.abort()

    async def upload_start(self, request: Request, params: dict[str, str]) -> Response:
        ns, model = reg.parse_repository(params["namespace"], params["model"])
        query = reg.query_params(request.target)
        if "mount" in query:
            hex_digest = reg.parse_blob_digest(query["mount"])
            if self.store.has_blob(hex_digest):
                return self._created(ns, model, hex_digest)
        if "digest" in query:  # monolithic upload: POST with the whole blob
            hex_digest = reg.parse_blob_digest(query["digest"])
            writer = self.store.blob_writer()
            await self._receive(request, writer)
            await self._commit(writer, hex_digest)
            return self._created(ns, model, hex_digest)
        now = time.monotonic()
        self._expire_uploads(now)
        upload = _Upload(id=uuid.uuid4().hex, namespace=ns, model=model,
                         writer=self.store.blob_writer(), touched=now)
        self._uploads[upload.id] = upload
        return self._accepted(upload)

    async def upload(self, request: Request, params: dict[str, str]) -> Response:
        ns, model = reg.parse_repository(params["namespace"], params["model"])
        upload_id = reg.parse_upload_id(params["upload"])
        upload = self._uploads.get(upload_id)
        if upload is None or (upload.namespace, upload.model) != (ns, model):
            raise reg.RegistryError(reg.ErrorCode.BLOB_UPLOAD_UNKNOWN)
        if upload.busy:
            raise reg.RegistryError(reg.ErrorCode.BLOB_UPLOAD_INVALID,
                                    "upload is already receiving data")
        if request.method == "GET":
            return self._accepted(upload, status=204)
        if request.method == "DELETE":
            self._drop(upload)
            return Response(status=204, content_type=None, headers=[API_VERSION])
        hex_digest = None
        if request.method == "PUT":
            hex_digest = reg.parse_blob_digest(reg.query_params(request.target).get("digest", ""))
        crange = request.header("content-range")
        if crange is not None:  # chunks must arrive in order (distribution spec: 416 if not)
            first = crange.strip().removeprefix("bytes").strip().split("-", 1)[0].strip()
            if not first.isdigit() or int(first) != upload.writer.size:
                raise reg.RegistryError(reg.ErrorCode.RANGE_INVALID,
                                        f"upload is at offset {upload.writer.size}")
        upload.busy = True
        try:
            await self._receive(request, upload.writer)
        except BaseException:
            self._drop(upload)
            raise
        finally:
            upload.busy = False
            upload.touched = time.monotonic()
        if hex_digest is None:
            return self._accepted(upload)
        self._uploads.pop(upload.id, None)
        await self._commit(upload.writer, hex_digest)
        return self._created(ns, model, hex_digest)

    async def _receive(self, request: Request, writer: BlobWriter) -> None:
        try:
            async for chunk in request.body_chunks():
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise

    async def _commit(self, writer: BlobWriter, hex_digest: str) -> None:
        try:
            await anyio.to_thread.run_sync(lambda: writer.commit(hex_digest))
        except BadRequest as exc:  # digest mismatch: BlobWriter already discarded the data
            raise reg.RegistryError(reg.ErrorCode.DIGEST_INVALID, exc.message,
                                    {"digest": digest_str(hex_digest)}) from None

    def _accepted(self, upload: _Upload, status: int = 202) -> Response:
        size = upload.writer.size
        return Response(status=status, content_type=None, headers=[
            API_VERSION,
            ("Location", reg.upload_location(upload.namespace, upload.model, upload.id)),
            ("Docker-Upload-UUID", upload.id),
            ("Range", f"0-{max(size - 1, 0)}"),
        ])

    def _created(self, ns: str, model: str, hex_digest: str) -> Response:
        return Response(status=201, content_type=None, headers=[
            API_VERSION, ("Location", reg.blob_location(ns, model, hex_digest)),
            ("Docker-Content-Digest", digest_str(hex_digest))])


def rejection(problems: Sequence[sc.Problem]) -> reg.RegistryError:
    """The OCI error for a manifest that does not verify: a blob we lack is
    MANIFEST_BLOB_UNKNOWN (the distribution spec's code for it), anything else MANIFEST_INVALID;
    both 400, as the distribution registry sends them."""
    for p in problems:
        if p.kind is sc.ProblemKind.MISSING_BLOB:
            return reg.RegistryError(reg.ErrorCode.MANIFEST_BLOB_UNKNOWN,
                                     f"blob {p.digest} unknown to registry", {"digest": p.digest})
    first = problems[0]
    return reg.RegistryError(reg.ErrorCode.MANIFEST_INVALID, f"manifest invalid: {first}",
                             {"digest": first.digest} if first.digest else None)


def _ref_text(ref: reg.Tag | reg.DigestRef) -> str:
    return ref.tag if isinstance(ref, reg.Tag) else digest_str(ref.hex)

