"""Pull and push over the registry protocol (Ollama's server/images.go PullModel and PushModel;
server/download.go, server/upload.go), with httpx.

Pull: ``GET /v2/<ns>/<model>/manifests/<tag>``, then every layer and the config blob the store
lacks, each as up to ``core.registry.MAX_PARTS`` parallel ``Range`` requests appending to
``blobs/sha256-<hex>-partial-<n>`` (the ranges are recorded in ``blobs/sha256-<hex>-partial``).
When all parts are complete they are concatenated into a temp file while hashing; only a file
whose sha256 matches becomes ``blobs/sha256-<hex>`` (atomic rename), otherwise the partial
files are deleted and the pull fails. A pull interrupted anywhere (client gone, network error,
server killed) leaves the partial files, and the next pull of that blob asks only for the
missing bytes. Then the manifest is written atomically.

Push: ``HEAD`` each blob on the registry; upload the missing ones (``POST .../blobs/uploads/``,
then ``PUT <Location>?digest=`` with the file streamed as the body); then ``PUT`` the manifest.

The progress generators never yield while a transfer is awaited: each transfer runs in its own
task and the generator polls it (yielding inside a task group or cancel scope of an async
generator breaks structured concurrency when the consumer closes it early). Closing the
generator cancels the transfer, which leaves its partial files for a later resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import urllib.parse
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import anyio
import httpx

from pollama.core import registry as reg
from pollama.core.errors import BadRequest, PollamaError, StoreError, map_exceptions
from pollama.core.manifest import Layer, Manifest, parse_manifest
from pollama.core.names import Name

from .files import atomic_write
from .store import Store
from .version import pollama_version

log = logging.getLogger("pollama.registry")
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per range is noise

PROGRESS_INTERVAL = 0.1  # seconds between progress lines while a transfer runs
RETRIES = 5  # per part, for network errors and 5xx; any progress resets the count
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
COPY_CHUNK = 4 * 1024 * 1024
UPLOAD_CHUNK = 1024 * 1024


def _user_agent() -> str:
    return f"pollama/{pollama_version()} (ollama-compatible)"


class _Retryable(Exception):
    """A range request worth another try: a 5xx, 408 or 429, or a body cut short."""


class _Registry:
    """One conversation with a registry: an httpx client, plus a bearer token once a 401
    challenge gave us one (anonymous token auth, as Docker registries and hf.co use)."""

    def __init__(self, endpoint: reg.Endpoint) -> None:
        self.endpoint = endpoint
        self.token: str | None = None
        self.http = httpx.AsyncClient(
            follow_redirects=True,  # blobs may answer 307 to a CDN
            timeout=httpx.Timeout(30.0, read=60.0),
            limits=httpx.Limits(max_connections=2 * reg.MAX_PARTS,
                                max_keepalive_connections=2 * reg.MAX_PARTS),
            headers={"User-Agent": _user_agent()},
        )

    async def __aenter__(self) -> _Registry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            await self.http.aclose()

    @staticmethod
    def errors(what: str, method: str, url: str) -> contextlib.AbstractContextManager[None]:
        """Around an exchange with the registry: httpx's exceptions (and a range request that
        ran out of retries) as Go's net/http words them, ``<what>: Get "<url>": <reason>``.
        The one place httpx's exceptions become pollama's."""
        return map_exceptions({(httpx.HTTPError, _Retryable): lambda exc: _transport_error(
            what, method, url, exc)})

    async def request(self, what: str, method: str, url: str, *,
                      headers: dict[str, str] | None = None,
                      content: Any = None) -> httpx.Response:
        """``send`` with its failures reported as ``what`` (``errors``)."""
        with self.errors(what, method, url):
            return await self.send(method, url, headers=headers, content=content)

    async def send(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                   content: Any = None, stream: bool = False) -> httpx.Response:
        """Send; on a first 401 with a Bearer challenge fetch a token and send once more (only
        for bodies we can send twice). Transport errors propagate as httpx errors: call it
        inside ``errors``, or through ``request``."""
        for attempt in range(2):
            hdrs = dict(headers or {})
            if self.token:
                hdrs["Authorization"] = f"Bearer {self.token}"
            request = self.http.build_request(method, url, headers=hdrs, content=content)
            response = await self.http.send(request, stream=stream)
            if response.status_code != 401 or attempt or self.token:
                return response
            if not (content is None or isinstance(content, bytes)):
                return response
            challenge = reg.parse_bearer_challenge(response.headers.get("www-authenticate", ""))
            if challenge is None:
                return response
            await response.aclose()
            token = await self.http.get(reg.token_url(challenge))
            if token.status_code != 200:
                raise PollamaError("unauthorized: access denied", status_hint=401)
            self.token = reg.parse_token_response(token.content)
        raise AssertionError("unreachable")

    async def check(self, response: httpx.Response, what: str) -> None:
        """Raise Ollama's ``<what>: <status>: <message>`` for an error response."""
        if response.status_code < 400:
            return
        body = await response.aread()
        status = 401 if response.status_code == 401 else 500
        raise PollamaError(f"{what}: {reg.registry_error_text(response.status_code, body)}",
                           status_hint=status)


def _transport_reason(url: str, exc: BaseException) -> str:
    """Go's net/http wording for a failed exchange, never Python's socket or SSL internals."""
    text = str(exc)
    host = urllib.parse.urlsplit(url).netloc
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if "Name or service not known" in text or "nodename nor servname" in text \
            or "Temporary failure in name resolution" in text or "No address associated" in text:
        return f"dial tcp: lookup {hostname}: no such host"
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return "tls: first record does not look like a TLS handshake"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "tls: failed to verify certificate"
    if "SSL" in text or "_ssl.c" in text:
        return "tls: handshake failure"
    if "Connection refused" in text:
        return f"dial tcp {host}: connect: connection refused"
    if "timed out" in text.lower() or isinstance(exc, TimeoutError):
        return "i/o timeout"
    if "Connection reset" in text:
        return "read: connection reset by peer"
    cleaned = re.sub(r"\[Errno -?\d+\]\s*", "", text).strip()
    return cleaned or "connection failed"


def _transport_error(what: str, method: str, url: str, exc: BaseException) -> PollamaError:
    # Go's wording: `Get "https://host/v2/...": dial tcp ...: connect: connection refused`
    return PollamaError(f'{what}: {method.title()} "{url}": {_transport_reason(url, exc)}')


async def _polling(job: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``job`` in its own task; yield every PROGRESS_INTERVAL until it ends; re-raise its
    error. Closing this generator early cancels the job and waits for it to clean up."""
    task = asyncio.ensure_future(job)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=PROGRESS_INTERVAL)
            if done:
                break
            yield None
        task.result()
    finally:
        if not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({task})


class _BlobLocks:
    """One transfer per blob per process: a second pull of the same blob waits for the first
    (and then finds the blob present) instead of appending to the same partial files."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, store: Store, hex_digest: str) -> AsyncIterator[None]:
        key = (os.path.realpath(store.blobs_dir), hex_digest)
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


_locks = _BlobLocks()


# ---------------------------------------------------------------------------------------------
# pull


async def pull(store: Store, name: Name, *, scheme: str | None = None,
               insecure: bool = False) -> AsyncIterator[dict[str, Any]]:
    """Pull ``name`` from its registry into ``store``, yielding Ollama's progress lines."""
    endpoint = reg.endpoint_for(name, scheme=scheme, insecure=insecure)
    yield reg.pulling_manifest().to_dict()
    async with _Registry(endpoint) as registry:
        manifest = await _get_manifest(registry, name.tag)
        for layer in reg.blobs_of(manifest):
            async for progress in _pull_blob(registry, store, layer):
                yield progress
    yield reg.verifying().to_dict()  # each blob was verified before it became visible
    yield reg.writing_manifest().to_dict()
    unused = await anyio.to_thread.run_sync(store.replace_manifest, name, manifest)
    if unused:
        yield reg.removing_unused_layers().to_dict()
    yield reg.success().to_dict()


async def fetch_blob(store: Store, endpoint: reg.Endpoint, layer: Layer,
                     api_key: str | None = None) -> str:
    """Make sure ``store`` has ``layer``'s blob, pulled from ``endpoint`` (``pull``'s path:
    parts, resume, digest verified before it becomes visible); its path. A cluster node's
    agent fetches model files from the API server with it (adapters/ray_cluster.py)."""
    async with _Registry(endpoint) as registry:
        if api_key:
            registry.http.headers["Authorization"] = f"Bearer {api_key}"
        async for _ in _pull_blob(registry, store, layer):
            pass
    return store.blob_path(layer.hex)


async def _get_manifest(registry: _Registry, tag: str) -> Manifest:
    url = registry.endpoint.manifest_url(tag)
    response = await registry.request("pull model manifest", "GET", url,
                                      headers={"Accept": reg.MANIFEST_ACCEPT})
    await registry.check(response, "pull model manifest")
    if len(response.content) > MAX_MANIFEST_BYTES:
        raise PollamaError("pull model manifest: manifest too large")
    try:
        return parse_manifest(response.content)
    except StoreError as exc:
        raise PollamaError(f"pull model manifest: {exc.message}") from None


async def _pull_blob(registry: _Registry, store: Store,
                     layer: Layer) -> AsyncIterator[dict[str, Any]]:
    hex_digest, total = layer.hex, layer.size
    if not store.has_blob(hex_digest):
        yield reg.pulling(hex_digest, total, 0).to_dict()
        async with _locks.hold(store, hex_digest):
            if not store.has_blob(hex_digest):
                done = [0]
                async for _ in _polling(_download(registry, store, layer, done)):
                    yield reg.pulling(hex_digest, total, done[0]).to_dict()
    yield reg.pulling(hex_digest, total, total).to_dict()


def _partial_path(store: Store, hex_digest: str, index: int | None = None) -> str:
    return os.path.join(store.blobs_dir, reg.partial_filename(hex_digest, index))


def _prepare(store: Store, layer: Layer) -> tuple[tuple[reg.Part, ...], tuple[reg.Fetch, ...]]:
    """The download plan: the recorded one if the sidecar is valid (resume), else a fresh one
    (stale partial files of this blob are deleted). Returns the parts and what is missing."""
    hex_digest, size = layer.hex, layer.size
    os.makedirs(store.blobs_dir, exist_ok=True)
    sidecar = _partial_path(store, hex_digest)
    parts: tuple[reg.Part, ...] | None = None
    try:
        with open(sidecar, "rb") as f:
            parts = reg.decode_plan(f.read(4096), hex_digest, size)
    except FileNotFoundError:
        pass
    if parts is None:
        for filename in os.listdir(store.blobs_dir):
            parsed = reg.parse_partial_filename(filename)
            if parsed is not None and parsed[0] == hex_digest and parsed[1] is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(store.blobs_dir, filename))
        parts = reg.plan_parts(size)
        atomic_write(sidecar, reg.encode_plan(hex_digest, size, parts))
    present: dict[int, int] = {}
    for part in parts:
        try:
            present[part.index] = os.path.getsize(_partial_path(store, hex_digest, part.index))
        except FileNotFoundError:
            pass
    return parts, reg.plan_resume(parts, present)


async def _download(registry: _Registry, store: Store, layer: Layer, done: list[int]) -> None:
    parts, fetches = await anyio.to_thread.run_sync(_prepare, store, layer)
    resumed = sum(f.have for f in fetches)
    done[0] = resumed
    if resumed:
        log.info("pull: resuming %s at %d of %d bytes", layer.digest, resumed, layer.size)
    todo = [f for f in fetches if f.restart or f.remaining > 0]
    tasks = [asyncio.ensure_future(_fetch_part(registry, store, layer, f, done)) for f in todo]
    try:
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            with anyio.CancelScope(shield=True):
                await asyncio.gather(*tasks, return_exceptions=True)
    await anyio.to_thread.run_sync(_assemble, store, layer, parts)


async def _fetch_part(registry: _Registry, store: Store, layer: Layer, fetch: reg.Fetch,
                      done: list[int]) -> None:
    """Append the missing bytes of one part to its partial file, retrying network errors."""
    part = fetch.part
    url = registry.endpoint.blob_url(layer.hex)
    path = _partial_path(store, layer.hex, part.index)
    have = 0 if fetch.restart else fetch.have
    failures = 0
    what = f"download blob {layer.digest}"
    with open(path, "wb" if fetch.restart else "ab") as f, registry.errors(what, "GET", url):
        while have < part.size:
            start = part.start + have
            before = have
            try:
                response = await registry.send(
                    "GET", url, headers={"Range": f"bytes={start}-{part.end - 1}"}, stream=True)
                try:
                    if response.status_code >= 500 or response.status_code in (408, 429):
                        raise _Retryable(f"{response.status_code} {response.reason_phrase}")
                    await registry.check(response, what)
                    skip = _skip_for(response, start)
                    async for chunk in response.aiter_bytes():
                        if skip:
                            if len(chunk) <= skip:
                                skip -= len(chunk)
                                continue
                            chunk, skip = chunk[skip:], 0
                        take = min(len(chunk), part.size - have)
                        f.write(chunk[:take] if take < len(chunk) else chunk)
                        have += take
                        done[0] += take
                        if have >= part.size:
                            break
                    if have < part.size:
                        raise _Retryable("connection closed before the range was complete")
                finally:
                    await response.aclose()
            except (httpx.TransportError, _Retryable) as exc:
                f.flush()
                failures = 0 if have > before else failures + 1
                if failures > RETRIES:
                    raise
                log.info("pull: %s part %d: %s; retrying", layer.digest, part.index, exc)
                await anyio.sleep(min(0.25 * 2 ** failures, 5.0))


def _skip_for(response: httpx.Response, start: int) -> int:
    """Bytes to drop from the body so that it starts at ``start``: 0 for a proper 206; a
    server that ignores Range sends 200 with the whole blob, which still works, slowly."""
    if response.status_code == 206:
        cr = reg.parse_content_range(response.headers.get("content-range", ""))
        if cr is not None and cr[0] != start:
            raise PollamaError(f"registry answered bytes {cr[0]}- for a request of {start}-")
        return 0
    if response.status_code == 200:
        return start
    raise PollamaError(f"download blob: unexpected status {response.status_code}")


def _assemble(store: Store, layer: Layer, parts: tuple[reg.Part, ...]) -> None:
    """Concatenate the parts into a temp file while hashing; rename into place only if the
    digest matches. Either way the partial files are then deleted (a mismatch means some bytes
    are wrong, and we cannot tell which, so everything is downloaded again next time)."""
    hex_digest = layer.hex
    writer = store.blob_writer()
    paths = [_partial_path(store, hex_digest, p.index) for p in parts]
    try:
        for path in paths:
            with open(path, "rb") as f:
                while chunk := f.read(COPY_CHUNK):
                    writer.write(chunk)
        if writer.size != layer.size:
            writer.abort()
            raise PollamaError(f"download blob {layer.digest}: got {writer.size} bytes, "
                               f"expected {layer.size}; file must be downloaded again")
        writer.commit(hex_digest)
    except BadRequest as exc:  # BlobWriter's digest mismatch; it already discarded the temp
        _remove_partials(store, hex_digest, paths)
        raise PollamaError(f"{exc.message}; file must be downloaded again") from None
    except BaseException:
        writer.abort()
        _remove_partials(store, hex_digest, paths)
        raise
    _remove_partials(store, hex_digest, paths)


def _remove_partials(store: Store, hex_digest: str, paths: list[str]) -> None:
    for path in (*paths, _partial_path(store, hex_digest)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


# ---------------------------------------------------------------------------------------------
# push


async def push(store: Store, name: Name, *, scheme: str | None = None,
               insecure: bool = False) -> AsyncIterator[dict[str, Any]]:
    """Push local model ``name`` to the registry its host names, yielding progress lines."""
    stored = await anyio.to_thread.run_sync(store.get, name)  # 404 before any output
    endpoint = reg.endpoint_for(name, scheme=scheme, insecure=insecure)
    manifest = stored.manifest
    yield reg.retrieving_manifest().to_dict()
    async with _Registry(endpoint) as registry:
        for layer in reg.blobs_of(manifest):
            async for progress in _push_blob(registry, store, layer):
                yield progress
        yield reg.pushing_manifest().to_dict()
        url = endpoint.manifest_url(name.tag)
        response = await registry.request("push model manifest", "PUT", url,
                                          content=manifest.to_json(),
                                          headers={"Content-Type": manifest.media_type})
        await registry.check(response, "push model manifest")
    yield reg.success().to_dict()


async def _push_blob(registry: _Registry, store: Store,
                     layer: Layer) -> AsyncIterator[dict[str, Any]]:
    hex_digest, total = layer.hex, layer.size
    endpoint = registry.endpoint
    url = endpoint.blob_url(hex_digest)
    head = await registry.request(f"upload blob {layer.digest}", "HEAD", url)
    if head.status_code == 200:
        yield reg.pushing(hex_digest, total, total).to_dict()
        return
    if head.status_code != 404:
        await registry.check(head, f"upload blob {layer.digest}")
    yield reg.pushing(hex_digest, total, 0).to_dict()
    sent = [0]
    async for _ in _polling(_upload(registry, store, layer, sent)):
        yield reg.pushing(hex_digest, total, sent[0]).to_dict()
    yield reg.pushing(hex_digest, total, total).to_dict()


async def _upload(registry: _Registry, store: Store, layer: Layer, sent: list[int]) -> None:
    endpoint = registry.endpoint
    what = f"upload blob {layer.digest}"
    start_url = endpoint.upload_url()
    opened = await registry.request(what, "POST", start_url, content=b"")
    await registry.check(opened, what)
    location = opened.headers.get("location")
    if opened.status_code == 201:  # the registry had it after all (cross-repository mount)
        return
    if not location:
        raise PollamaError(f"{what}: registry gave no upload location")
    url = endpoint.upload_commit_url(location, layer.hex)
    path = store.blob_path(layer.hex)

    async def body() -> AsyncIterator[bytes]:
        f = await anyio.to_thread.run_sync(open, path, "rb")
        try:
            while chunk := await anyio.to_thread.run_sync(f.read, UPLOAD_CHUNK):
                sent[0] += len(chunk)
                yield chunk
        finally:
            f.close()

    response = await registry.request(what, "PUT", url, content=body(), headers={
        "Content-Type": "application/octet-stream", "Content-Length": str(layer.size)})
    await registry.check(response, what)
