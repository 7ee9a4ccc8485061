"""``pollama serve``: wire configuration, store, scheduler and HTTP server together."""

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

from pollama.core import scheduler as sched
from pollama.core.config import Config
from pollama.core.errors import PollamaError
from pollama.core.humanize import human_bytes

from . import devices, security
from .app import App
from .http_server import serve
from .scheduler_driver import SchedulerDriver
from .store import Store, open_for_serving

log = logging.getLogger("pollama")


@asynccontextmanager
async def stack(config: Config) -> AsyncIterator[tuple[App, SchedulerDriver, TaskGroup]]:
    """The server without its listener: store (cleaned up and locked shared), devices,
    scheduler and app. ``pollama serve`` puts HTTP in front of it, ``pollama stdio
    --standalone`` JSON-RPC on stdin/stdout. Leaving it stops every runner."""
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
        log.info("device %s (%s): %s total, %s free", d.id, d.name, human_bytes(d.total),
                 human_bytes(d.free))
    budget = sum(d.free for d in inventory.devices)
    async with anyio.create_task_group() as tg:
        driver = SchedulerDriver(tg, sched.Config(
            num_parallel=config.num_parallel or 1, max_loaded=config.max_loaded_models,
            max_queue=config.max_queue, memory_budget=budget,
            default_keep_alive=config.keep_alive_ns), trace_path=config.trace_path)
        try:
            yield App(config, store, driver, inventory, policy), driver, tg
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
            raise SystemExit(f"Error: listen tcp {config.host.host}:{config.host.port}: {exc.strerror}")
        log.info("Listening on %s:%d (version pollama, Ollama API %s)", config.host.host, port,
                 "0.13.0")
        log.info("models: %s", config.models_dir)
        if port_file:
            with open(port_file, "w") as f:
                f.write(str(port))
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                log.info("shutting down")
                return


LOG_FORMAT = "time=%(asctime)s level=%(levelname)s source=%(name)s msg=%(message)s"
LOG_BYTES = 10 * 1024 * 1024  # a rotated log keeps this much per file, with LOG_BACKUPS old ones
LOG_BACKUPS = 3


def main(config: Config, *, port_file: str | None = None, log_file: str | None = None) -> None:
    handler: logging.Handler
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=logging.DEBUG if config.debug else logging.INFO,
                        format=LOG_FORMAT, handlers=[handler])
    try:
        anyio.run(lambda: run(config, port_file=port_file))
    except PollamaError as exc:
        raise SystemExit(f"Error: {exc.message}") from None
