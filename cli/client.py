"""The CLI's HTTP client of ``pollama serve`` (POLLAMA_HOST), and starting a server if needed.

When no server answers and the host is a loopback address, a command's first request starts
``pollama serve`` in the background (detached, logging to ~/.pollama/logs/server.log), says so
in one line on stderr, and goes on, as Ollama's desktop app does.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import click
import httpx

from pollama.adapters import security
from pollama.core.config import Config, load
from pollama.core.errors import NDJSONError, map_exceptions
from pollama.core.ndjson import NEED_DATA, NDJSONReader


def config() -> Config:
    return load(os.environ, os.path.expanduser("~"))


def base_url(cfg: Config) -> str:
    host = cfg.host
    connect = "127.0.0.1" if host.host in ("0.0.0.0", "::", "") else host.host
    h = f"[{connect}]" if ":" in connect else connect
    return f"{host.scheme}://{h}:{host.port}{host.path}"


class APIError(click.ClickException):
    """An error the server answered (its status and ``{"error"}`` message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """Requests to the server, which is started first if none answers (once, before the first
    request). The CLI's edge: httpx's exceptions become one-line ``click`` errors here, and
    nowhere else."""

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg or config()
        self.url = base_url(self.cfg)
        key = security.api_key(self.cfg)
        # The same POLLAMA_API_KEY the server requires (none: no header, as Ollama's CLI).
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(30.0, read=None),
                                 headers=headers)
        self._server_checked = False

    # -- server availability --------------------------------------------------------------------
    def is_up(self) -> bool:
        try:
            return self.http.get("/", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def ensure_server(self) -> None:
        if self.is_up():
            return
        if not self.cfg.host.is_loopback and self.cfg.host.host not in ("0.0.0.0", "::"):
            raise click.ClickException(
                f"could not connect to a pollama server at {self.url}; "
                "is 'pollama serve' running?")
        logs = os.path.join(self.cfg.home_dir, "logs")
        os.makedirs(logs, exist_ok=True)
        log_path = os.path.join(logs, "server.log")
        click.echo(f"Starting pollama server in the background (logs: {log_path})", err=True)
        # The server rotates server.log itself; only a failure to start lands in the other file.
        with open(os.path.join(logs, "server-stderr.log"), "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "pollama.cli.main", "serve", "--log-file", log_path],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, close_fds=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.is_up():
                return
            time.sleep(0.2)
        raise click.ClickException(
            f"could not start a pollama server at {self.url} (see {log_path}); "
            "run 'pollama serve' yourself")

    # -- requests -------------------------------------------------------------------------------
    def _connected(self, failure: str = "could not reach") -> AbstractContextManager[None]:
        """Start the server if this is the first request; map what httpx raises (and a stream
        line that is not JSON) to one line: ``<failure> pollama at <url>: <reason>``."""
        if not self._server_checked:
            self.ensure_server()
            self._server_checked = True
        return map_exceptions({
            httpx.HTTPError: lambda exc: click.ClickException(
                f"{failure} pollama at {self.url}: {exc}"),
            NDJSONError: lambda exc: click.ClickException(exc.message),
        })

    def check(self, resp: httpx.Response) -> None:
        if resp.status_code >= 400:
            resp.read()
            try:
                message = resp.json().get("error") or resp.text
            except (ValueError, AttributeError):
                message = resp.text
            raise APIError(resp.status_code, str(message))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; an error status raises ``APIError``."""
        with self._connected():
            resp = self.http.request(method, path, **kwargs)
        self.check(resp)
        return resp

    def get(self, path: str) -> Any:
        return self.request("GET", path).json()

    def head(self, path: str) -> int:
        with self._connected():
            return self.http.head(path).status_code

    def post(self, path: str, body: Any) -> Any:
        resp = self.request("POST", path, json=body)
        return resp.json() if resp.content else None

    def delete(self, path: str, body: Any) -> None:
        self.request("DELETE", path, json=body)

    def upload(self, path: str, file_path: str) -> None:
        def chunks() -> Iterator[bytes]:
            with open(file_path, "rb") as f:
                while chunk := f.read(1024 * 1024):
                    yield chunk

        self.request("POST", path, content=chunks())

    def stream(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        """POST and yield each NDJSON object; a mid-stream ``{"error"}`` line raises."""
        reader = NDJSONReader()
        with self._connected("lost connection to"), \
                self.http.stream("POST", path, json=body) as resp:
            self.check(resp)
            for chunk in itertools.chain((c for c in resp.iter_bytes() if c), [b""]):
                reader.receive_data(chunk)
                while (obj := reader.next_event()) not in (NEED_DATA, None):
                    if isinstance(obj, dict) and "error" in obj:
                        raise APIError(500, str(obj["error"]))
                    yield obj
