"""Running the quantize runner for /api/create and turning its output into a model blob.

The runner (``python -m pollama.runners.quantize``) writes into a temp file inside the store's
blobs directory, so the finished file is hashed and renamed into place without a copy. Its NDJSON
events become Ollama's status lines through ``core.quantize.Progress``. If the client goes away
(the generator is closed), the runner is killed and the temp file removed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import anyio

from pollama.core import quantize as q
from pollama.core.errors import BadRequest, PollamaError
from pollama.core.gguf_details import ModelFacts
from pollama.core.manifest import MEDIA_TYPE_MODEL, Layer
from pollama.core.names import digest_str
from pollama.core.ndjson import NEED_DATA, NDJSONReader

from . import gguf_file
from .files import fsync_dir
from .runner_process import with_parent_death
from .store import Store

CHUNK = 4 * 1024 * 1024


def source_facts(store: Store, hex_digest: str) -> ModelFacts:
    """The model's facts, refusing sources llama.cpp's quantizer should not take (400)."""
    facts = gguf_file.read_facts(store.blob_path(hex_digest))
    q.check_source(facts.file_type)
    return facts


class Quantization:
    """One quantize job. After ``run()`` is exhausted, ``layer`` is the new model layer (or None
    when the model already had the target type)."""

    def __init__(self, store: Store, source_hex: str, target: q.QuantType) -> None:
        self.store = store
        self.source_hex = source_hex
        self.target = target
        self.layer: Layer | None = None

    async def run(self) -> AsyncIterator[dict[str, Any]]:
        store = self.store
        src = store.blob_path(self.source_hex)
        facts = await anyio.to_thread.run_sync(source_facts, store, self.source_hex)
        if not q.needed(facts.file_type, self.target):
            return
        size = store.blob_size(self.source_hex)
        header = await anyio.to_thread.run_sync(lambda: gguf_file.read_header(src, ()))
        progress = q.Progress(source_file_type=facts.file_type, target=self.target, total=size,
                              weights=q.tensor_bytes(header, size))
        os.makedirs(store.blobs_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=store.blobs_dir,
                                   prefix=f".tmp-quantize-{self.target.name}-")
        os.close(fd)
        errlog = tempfile.TemporaryFile()
        proc = None
        try:
            # Killed with the server, as runners are: no orphan quantizing on its own.
            proc = await anyio.open_process(with_parent_death(
                [sys.executable, "-m", "pollama.runners.quantize", src, tmp, self.target.name]),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errlog)
            yield progress.line()
            failure = ""
            finished = False
            reader = NDJSONReader()
            assert proc.stdout is not None
            async for data in proc.stdout:
                reader.receive_data(data)
                while True:
                    obj = reader.next_event()
                    if obj is NEED_DATA or obj is None:
                        break
                    event = q.decode_event(obj)
                    if isinstance(event, q.Failed):
                        failure = event.message
                    finished = finished or isinstance(event, q.Finished)
                    line = progress.on(event)
                    if line is not None:
                        yield line
            code = await proc.wait()
            if code != 0 or not finished:
                if not failure:
                    failure = f"quantization failed: exit status {code}" + error_tail(errlog)
                raise PollamaError(failure)
            yield {"status": "verifying conversion"}
            hex_digest = await anyio.to_thread.run_sync(self._commit, tmp)
            self.layer = Layer(media_type=MEDIA_TYPE_MODEL, digest=digest_str(hex_digest),
                               size=store.blob_size(hex_digest))
        finally:
            with anyio.CancelScope(shield=True):
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                errlog.close()
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass

    def _commit(self, tmp: str) -> str:
        return commit_blob(self.store, tmp, "quantization")


def commit_blob(store: Store, tmp: str, what: str) -> str:
    """Hash a model file a subprocess wrote inside the blobs directory, check it is a GGUF we
    can read, and rename it into the store; its hex digest. ``what`` made it (for errors)."""
    h = hashlib.sha256()
    with open(tmp, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
        os.fsync(f.fileno())
    try:
        gguf_file.read_header(tmp, ())
    except BadRequest as exc:  # what we wrote cannot be read back: our problem
        raise PollamaError(f"{what} produced an unreadable file: {exc.message}") from None
    hex_digest = h.hexdigest()
    os.chmod(tmp, 0o644)
    os.replace(tmp, store.blob_path(hex_digest))
    fsync_dir(store.blobs_dir)
    return hex_digest


def error_tail(errlog: Any) -> str:
    try:
        errlog.seek(0)
        lines = [ln for ln in errlog.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return f": {lines[-1].strip()}" if lines else ""
