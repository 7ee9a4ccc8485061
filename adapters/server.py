"""``pollama serve``: wire configuration, store, scheduler and HTTP server together."""

from __future__ import annotations

import logging
import os
import signal
import sys

import anyio

from pollama.core import scheduler as sched
from pollama.core.config import Config
from pollama.core.humanize import human_bytes

from . import devices
from .app import App
from .http_server import serve
from .scheduler_driver import SchedulerDriver
from .store import Store

log = logging.getLogger("pollama")


async def run(config: Config, *, port_file: str | None = None) -> None:
    store = Store(config.models_dir)
    os.makedirs(store.blobs_dir, exist_ok=True)
    os.makedirs(store.manifests_dir, exist_ok=True)
    inventory = devices.discover()
    for d in inventory.devices:
        log.info("device %s (%s): %s total, %s free", d.id, d.name, human_bytes(d.total),
                 human_bytes(d.free))
    budget = sum(d.free for d in inventory.devices)
    async with anyio.create_task_group() as tg:
        driver = SchedulerDriver(tg, sched.Config(
            num_parallel=config.num_parallel, max_loaded=config.max_loaded_models,
            max_queue=config.max_queue, memory_budget=budget,
            default_keep_alive=config.keep_alive_ns), trace_path=config.trace_path)
        app = App(config, store, driver, inventory)
        try:
            port = await tg.start(serve, app, config.host.host, config.host.port)
        except OSError as exc:
            raise SystemExit(f"Error: listen tcp {config.host.host}:{config.host.port}: {exc.strerror}")
        log.info("Listening on %s:%d (version pollama, Ollama API %s)", config.host.host, port,
                 "0.13.0")
        log.info("models: %s", config.models_dir)
        if port_file:
            with open(port_file, "w") as f:
                f.write(str(port))

        async def on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    log.info("shutting down")
                    with anyio.CancelScope(shield=True):
                        await driver.close()
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(on_signal)


def main(config: Config, *, port_file: str | None = None) -> None:
    logging.basicConfig(
        level=logging.DEBUG if config.debug else logging.INFO,
        format="time=%(asctime)s level=%(levelname)s source=%(name)s msg=%(message)s",
        stream=sys.stderr,
    )
    anyio.run(lambda: run(config, port_file=port_file))
