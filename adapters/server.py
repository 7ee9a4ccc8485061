"""``pollama serve``: wire configuration, store, scheduler and HTTP server together.

At startup it logs what Ollama's ``serve`` does: the effective configuration (``server config``
with every variable), the store's cleanup, ``Listening on ...``, the model store and one
``inference compute`` line per device found. Logs are key=value text, or JSON lines with
``POLLAMA_LOG_FORMAT=json`` (shaped by core/logline.py).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup

from pollama.core import config as config_core
from pollama.core import logline
from pollama.core import scheduler as sched
from pollama.core.config import Config
from pollama.core.errors import PollamaError
from pollama.core.humanize import human_bytes

from . import devices, security
from .app import App
from .http_server import serve
from .metrics import Metrics
from .scheduler_driver import SchedulerDriver
from .store import Store, open_for_serving
from .version import OLLAMA_COMPAT_VERSION, pollama_version

log = logging.getLogger("pollama")


@asynccontextmanager
async def stack(config: Config) -> AsyncIterator[tuple[App, SchedulerDriver, TaskGroup]]:
    """The server without its listener: store (cleaned up and locked shared), devices,
    scheduler and app. ``pollama serve`` puts HTTP in front of it, ``pollama stdio
    --standalone`` JSON-RPC on stdin/stdout. Leaving it stops every runner."""
    log.info("server config", extra={"fields": {"env": config_core.effective(config)}})
    nofile = security.raise_nofile_limit()
    if nofile is not None:
        log.debug("open files limit: %d (hard %d)", *nofile)
    policy = security.policy(config)
    store = Store(config.models_dir)
    os.makedirs(store.blobs_dir, exist_ok=True)
    os.makedirs(store.manifests_dir, exist_ok=True)
    # Before serving, so the cleanup never races live work; the lock stays held (shared).
    store_lock, cleanup = await anyio.to_thread.run_sync(
        lambda: open_for_serving(store, os.environ, time.time_ns()))
    for warning, line in cleanup:
        log.log(logging.WARNING if warning else logging.INFO, "store: %s", line)
    inventory = devices.discover()
    for d in inventory.devices:
        # Ollama: msg="inference compute" id=0 library=cuda name=... total=... available=...
        log.info("inference compute", extra={"fields": {
            "id": d.id, "library": d.kind, "name": d.name, "total": human_bytes(d.total),
            "available": human_bytes(d.free)}})
    if not inventory.gpus():
        log.info("no compatible GPUs were discovered")
    budget = sum(d.free for d in inventory.devices)
    metrics = Metrics()
    cluster = None
    if config.ray_address:  # only then is Ray imported (the pollama[ray] extra)
        try:
            from .ray_cluster import RayCluster
        except ImportError as exc:
            raise SystemExit(f"Error: POLLAMA_RAY_ADDRESS needs Ray: pip install "
                             f"'pollama[ray]' ({exc})") from None
        cluster = RayCluster(config.ray_address, api_key=security.api_key(config),
                             max_loaded=config.max_loaded_models,
                             stream_timeout=config.ray_stream_timeout)
        await cluster.connect()
    async with anyio.create_task_group() as tg:
        driver = SchedulerDriver(tg, sched.Config(
            num_parallel=config.num_parallel or 1, max_loaded=config.max_loaded_models,
            max_queue=config.max_queue, memory_budget=budget,
            default_keep_alive=config.keep_alive_ns, num_replicas=config.replicas,
            cluster=cluster is not None), trace_path=config.trace_path,
            metrics=metrics, cluster=cluster)
        if cluster is not None:
            tg.start_soon(cluster.watch, driver.feed)
        try:
            yield App(config, store, driver, inventory, policy, metrics), driver, tg
        finally:
            with anyio.CancelScope(shield=True):
                await driver.close()
            tg.cancel_scope.cancel()


async def run(config: Config, *, port_file: str | None = None) -> None:
    security.warn_if_exposed(config, security.policy(config))
    async with stack(config) as (app, driver, tg):
        try:
            port = await tg.start(serve, app, config.host.host, config.host.port, config.limits)
        except OSError as exc:
            raise SystemExit(
                f"Error: listen tcp {config.host.host}:{config.host.port}: {exc.strerror}")
        if driver.cluster is not None:
            driver.cluster.set_origin(config.host.host, port)
        host = f"[{config.host.host}]" if ":" in config.host.host else config.host.host
        log.info("Listening on %s:%d (version pollama %s, Ollama API %s)", host, port,
                 pollama_version(), OLLAMA_COMPAT_VERSION)
        log.info("models: %s", config.models_dir)
        if port_file:
            with open(port_file, "w") as f:
                f.write(str(port))
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                log.info("shutting down")
                return


LOG_BYTES = 10 * 1024 * 1024  # a rotated log keeps this much per file, with LOG_BACKUPS old ones
LOG_BACKUPS = 3


class LogFormatter(logging.Formatter):
    """Records as core.logline shapes them: ``extra={"fields": {...}}`` become key=value pairs
    (or JSON members); a traceback follows the text line, or is the JSON line's ``error``."""

    def __init__(self, fmt: str = "text") -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        ns = int(record.created * 1e9)
        when = logline.timestamp(ns, time.localtime(record.created).tm_gmtoff)
        fields = dict(getattr(record, "fields", None) or {})
        trace = self.formatException(record.exc_info) if record.exc_info else ""
        if trace and self.fmt == "json":
            fields["error"] = trace
        text = logline.line(self.fmt, when, record.levelname, record.name, record.getMessage(),
                            fields)
        return text + "\n" + trace if trace and self.fmt != "json" else text


def setup_logging(config: Config, log_file: str | None = None) -> None:
    """Every log line to ``log_file`` (rotated) or stderr, in ``POLLAMA_LOG_FORMAT``; debug
    lines with ``POLLAMA_DEBUG``."""
    handler: logging.Handler
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogFormatter(config.log_format))
    logging.basicConfig(level=logging.DEBUG if config.debug else logging.INFO,
                        handlers=[handler], force=True)


def main(config: Config, *, port_file: str | None = None, log_file: str | None = None) -> None:
    setup_logging(config, log_file)
    try:
        anyio.run(lambda: run(config, port_file=port_file))
    except PollamaError as exc:
        raise SystemExit(f"Error: {exc.message}") from None
