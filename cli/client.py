"""The CLI's HTTP client of ``pollama serve`` (POLLAMA_HOST), and starting a server if needed.

When no server answers and the host is a loopback address, a command that needs the server
starts ``pollama serve`` in the background (detached, logging to ~/.pollama/logs/server.log),
says so in one line on stderr, and goes on, as Ollama's desktop app does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import click
import httpx

from pollama.adapters import security
from pollama.core.config import Config, load
from pollama.core.errors import PollamaError


def config() -> Config:
    return load(os.environ, os.path.expanduser("~"))


def base_url(cfg: Config) -> str:
    host = cfg.host
    connect = "127.0.0.1" if host.host in ("0.0.0.0", "::", "") else host.host
    h = f"[{connect}]" if ":" in connect else connect
    return f"{host.scheme}://{h}:{host.port}{host.path}"


class APIError(click.ClickException):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Client:
    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg or config()
        self.url = base_url(self.cfg)
        try:
            key = security.api_key(self.cfg)
        except PollamaError as exc:
            raise click.ClickException(exc.message) from None
        # The same POLLAMA_API_KEY the server requires (none: no header, as Ollama's CLI).
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(30.0, read=None),
                                 headers=headers)

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
                f"could not connect to a pollama server at {self.url}; is 'pollama serve' running?")
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
    def check(self, resp: httpx.Response) -> None:
        if resp.status_code >= 400:
            resp.read()
            try:
                message = resp.json().get("error") or resp.text
            except (ValueError, AttributeError):
                message = resp.text
            raise APIError(resp.status_code, str(message))

    def get(self, path: str) -> Any:
        try:
            resp = self.http.get(path)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"could not reach pollama at {self.url}: {exc}") from None
        self.check(resp)
        return resp.json()

    def head(self, path: str) -> int:
        try:
            return self.http.head(path).status_code
        except httpx.HTTPError as exc:
            raise click.ClickException(f"could not reach pollama at {self.url}: {exc}") from None

    def post(self, path: str, body: Any) -> Any:
        try:
            resp = self.http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"could not reach pollama at {self.url}: {exc}") from None
        self.check(resp)
        return resp.json() if resp.content else None

    def upload(self, path: str, file_path: str) -> None:
        def chunks() -> Iterator[bytes]:
            with open(file_path, "rb") as f:
                while chunk := f.read(1024 * 1024):
                    yield chunk

        try:
            resp = self.http.post(path, content=chunks())
        except httpx.HTTPError as exc:
            raise click.ClickException(f"could not reach pollama at {self.url}: {exc}") from None
        self.check(resp)

    def stream(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        """POST and yield each NDJSON object; a mid-stream ``{"error"}`` line raises."""
        try:
            with self.http.stream("POST", path, json=body) as resp:
                self.check(resp)
                for line in resp.iter_lines():
                    if not line.strip():
                        continue
                    obj = json.loads(line)
                    if isinstance(obj, dict) and "error" in obj:
                        raise APIError(500, str(obj["error"]))
                    yield obj
        except httpx.HTTPError as exc:
            raise click.ClickException(f"lost connection to pollama at {self.url}: {exc}") from None
