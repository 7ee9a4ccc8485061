"""The ``pollama`` command line: click commands that talk to ``pollama serve`` over HTTP.

Errors reach the user as one ``Error:`` line and exit status 1: click's own, the client's
(``cli/client.py`` maps httpx's there), and pollama's, which the command group maps once.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import click
import httpx

from pollama.adapters.version import OLLAMA_COMPAT_VERSION, pollama_version
from pollama.core.errors import PollamaError, map_exceptions
from pollama.core.humanize import human_bytes, human_time, table
from pollama.core.timefmt import parse_rfc3339

from .client import APIError, Client, base_url, config


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """Ollama's ``--version``: the client's version and what the server says (it is not
    started for this), or a warning that none answers."""
    if not value or ctx.resilient_parsing:
        return
    client_version = pollama_version()
    try:
        client = Client()
        resp = client.http.get("/api/version", timeout=5.0)
        client.check(resp)
        server_version = str(resp.json().get("version", ""))
    except (click.ClickException, PollamaError, httpx.HTTPError, ValueError, AttributeError):
        click.echo("Warning: could not connect to a running pollama instance")
        click.echo(f"Warning: client version is {client_version}")
        ctx.exit()
    click.echo(f"pollama version is {client_version}")
    # The server answers /api/version with the Ollama version whose API it serves.
    click.echo(f"server at {client.url} serves Ollama API version {server_version}")
    if server_version != OLLAMA_COMPAT_VERSION:
        click.echo(f"Warning: this client speaks Ollama API version {OLLAMA_COMPAT_VERSION}")
    ctx.exit()


class _Group(click.Group):
    """A command group whose commands may raise ``PollamaError``: it becomes click's error
    (``Error: <message>``, exit status 1), here once for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        with map_exceptions({PollamaError: lambda exc: click.ClickException(exc.message)}):
            return super().invoke(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show version information")
def cli() -> None:
    """Large language model runner, compatible with Ollama."""


ENV_HELP = """
\b
Environment variables (OLLAMA_* spellings are accepted too; README has the full table):
  POLLAMA_HOST               address to bind/connect (default 127.0.0.1:11434)
  POLLAMA_MODELS             model store (default ~/.pollama/models)
  POLLAMA_KEEP_ALIVE         how long idle models stay loaded (default 5m)
  POLLAMA_CONTEXT_LENGTH     default context length (default 4096)
  POLLAMA_NUM_PARALLEL       requests one loaded model serves at once (auto: 4 where memory
                             allows) (default auto)
  POLLAMA_MAX_LOADED_MODELS  most models loaded at once (default 3)
  POLLAMA_MAX_QUEUE          most waiting requests before 503 (default 512)
  POLLAMA_FLASH_ATTENTION    flash attention: auto, 1 or 0 (default auto)
  POLLAMA_DEBUG              1 logs debug lines too
  POLLAMA_LOG_FORMAT         text (key=value) or json (JSON lines) (default text)
  POLLAMA_TRACE              append scheduler decisions to this JSON-lines file
  POLLAMA_ORIGINS            extra allowed browser origins, comma-separated (* allows all)
  POLLAMA_API_KEY            require 'Authorization: Bearer <key>' on every route but /
  POLLAMA_API_KEY_FILE       read that key from the first line of this file
  POLLAMA_MAX_BODY_MB        largest generate/chat/create/embed body (default 128)
  POLLAMA_MAX_CONNECTIONS    connections served at once (default 1024)
  POLLAMA_HEADER_TIMEOUT     seconds to send a request head (default 30)
  POLLAMA_BODY_TIMEOUT       seconds a request body may stall (default 120)
  POLLAMA_IDLE_TIMEOUT       seconds an idle keep-alive connection stays open (default 300)
  POLLAMA_NOPRUNE            do not remove unused blobs and debris at startup
  POLLAMA_NOHISTORY          pollama run records no prompt history
  POLLAMA_RAY_ADDRESS        run models on this Ray cluster (pip install 'pollama[ray]')
  POLLAMA_REPLICAS           runners of one busy model, on distinct cluster nodes (default 1)
  POLLAMA_RAY_STREAM_TIMEOUT seconds a cluster node may stay silent before its runner counts
                             as lost (default 30)
"""


@cli.command(epilog=ENV_HELP)
@click.option("--port-file", hidden=True, help="write the bound port here (tests)")
@click.option("--log-file", type=click.Path(dir_okay=False),
              help="log to this file, rotated at 10 MiB with 3 old files kept (default: stderr)")
@click.option("--ray", "ray_address", metavar="ADDRESS",
              help="run models on the Ray cluster at ADDRESS (as POLLAMA_RAY_ADDRESS)")
def serve(port_file: str | None, log_file: str | None, ray_address: str | None) -> None:
    """Start the pollama server."""
    import dataclasses

    from pollama.adapters import server

    cfg = config()
    if ray_address:
        cfg = dataclasses.replace(cfg, ray_address=ray_address)
    server.main(cfg, port_file=port_file, log_file=log_file)


@cli.command(epilog=ENV_HELP)
@click.option("--framing", type=click.Choice(["lsp", "ndjson"]), default="lsp", show_default=True,
              help="LSP base protocol (Content-Length headers) or one JSON message per line")
@click.option("--standalone", is_flag=True,
              help="run models in this process even if a server answers on POLLAMA_HOST")
def stdio(framing: str, standalone: bool) -> None:
    """Speak JSON-RPC on stdin/stdout (for editors); logs go to stderr."""
    import anyio

    from pollama.adapters import security, server, stdio_transport

    cfg = config()
    key = security.api_key(cfg)
    server.setup_logging(cfg)  # stderr, in POLLAMA_LOG_FORMAT
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    code = anyio.run(lambda: stdio_transport.run(cfg, framing, standalone=standalone,
                                                 base=base_url(cfg), headers=headers))
    sys.exit(code)


def list_table(client: Client, prefix: str = "") -> str:
    """The models table of ``list`` (and the REPL's ``/list PREFIX``)."""
    data = client.get("/api/tags")
    now = time.time_ns()
    rows = []
    for m in data.get("models") or []:
        if not m["name"].startswith(prefix):
            continue
        modified = parse_rfc3339(m["modified_at"]) if m.get("modified_at") else 0
        rows.append([m["name"], m["digest"][:12], human_bytes(int(m["size"])),
                     human_time(modified, now)])
    return table(["NAME", "ID", "SIZE", "MODIFIED"], rows)


@cli.command(name="list")
def list_() -> None:
    """List models."""
    client = Client()
    click.echo(list_table(client), nl=False)


cli.add_command(list_, name="ls")


@cli.command()
def ps() -> None:
    """List running models."""
    from pollama.core.memory import processor_label

    client = Client()
    now = time.time_ns()
    rows = []
    loaded = client.get("/api/ps").get("models") or []
    on_cluster = any(isinstance(m.get("node"), dict) for m in loaded)
    for m in loaded:
        until = parse_rfc3339(m["expires_at"]) if m.get("expires_at") else 0
        until_text = "Stopping..." if until and until < now else human_time(until, now)
        row = [m["name"], m["digest"][:12], human_bytes(int(m["size"])),
               processor_label(int(m["size"]), int(m.get("size_vram", 0))),
               str(m.get("context_length", "")), until_text]
        if on_cluster:  # where it runs: the node's address and the start of its Ray id
            node = m.get("node") or {}
            row.append(f"{node.get('address', '')} {str(node.get('id', ''))[:8]}".strip())
        rows.append(row)
    headers = ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    click.echo(table(headers + ["NODE"] if on_cluster else headers, rows), nl=False)


@cli.command()
@click.argument("model")
def stop(model: str) -> None:
    """Stop a running model (unload it now)."""
    client = Client()
    try:
        client.post("/api/generate", {"model": model, "keep_alive": 0})
    except APIError as exc:
        if exc.status == 404:
            raise click.ClickException(f"couldn't find model \"{model}\" to stop") from None
        raise


@cli.command()
@click.argument("model")
@click.option("--license", "license_", is_flag=True, help="Show license of a model")
@click.option("--modelfile", is_flag=True, help="Show Modelfile of a model")
@click.option("--parameters", is_flag=True, help="Show parameters of a model")
@click.option("--template", is_flag=True, help="Show template of a model")
@click.option("--system", is_flag=True, help="Show system message of a model")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed model information")
def show(model: str, license_: bool, modelfile: bool, parameters: bool, template: bool,
         system: bool, verbose: bool) -> None:
    """Show information for a model."""
    from pollama.core.repl_session import info_text

    flags = {"license": license_, "modelfile": modelfile, "parameters": parameters,
             "template": template, "system": system}
    chosen = [k for k, v in flags.items() if v]
    if len(chosen) > 1:
        raise click.ClickException("only one of '--license', '--modelfile', '--parameters', "
                                   "'--system', or '--template' can be specified")
    client = Client()
    info = client.post("/api/show", {"model": model, "verbose": verbose})
    if chosen:
        key = chosen[0]
        text = info.get(key, "")
        click.echo(text if text.endswith("\n") or not text else text + "\n", nl=False)
        return
    click.echo(info_text(info), nl=False)
    if verbose:
        click.echo("  Metadata")
        for key, value in (info.get("model_info") or {}).items():
            click.echo(f"    {key:<40}{value}")
        click.echo("")


@cli.command()
@click.argument("source")
@click.argument("destination")
def cp(source: str, destination: str) -> None:
    """Copy a model."""
    client = Client()
    client.post("/api/copy", {"source": source, "destination": destination})
    click.echo(f"copied '{source}' to '{destination}'")


@cli.command()
@click.argument("models", nargs=-1, required=True)
def rm(models: tuple[str, ...]) -> None:
    """Remove one or more models (unloading them first)."""
    client = Client()
    for model in models:
        try:
            client.post("/api/generate", {"model": model, "keep_alive": 0})
        except APIError as exc:
            if exc.status != 404:
                raise
        client.delete("/api/delete", {"model": model})
        click.echo(f"deleted '{model}'")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Report what would be removed; remove nothing.")
def doctor(dry_run: bool) -> None:
    """Check the local model store (POLLAMA_MODELS).

    Removes what interrupted work left (temp files, upload sessions, stale partial downloads,
    the scratch area) and blobs no manifest references (kept with POLLAMA_NOPRUNE), and
    reports manifests that point at missing blobs (never removed). While a server holds the
    store it only reports, as --dry-run does. Exit status 1 if a manifest is broken.
    """
    from pollama.adapters.store import Store, StoreLock
    from pollama.core.store_check import env_flag

    store = Store(config().models_dir)
    click.echo(f"models: {store.root}")
    if not os.path.isdir(store.root):
        click.echo("no model store here; nothing to check")
        return
    lock = StoreLock(store)
    try:
        if not lock.try_exclusive():
            click.echo("the store is in use by a running pollama server: reporting only, "
                       "nothing is removed")
            dry_run = True
        noprune = os.environ.get("POLLAMA_NOPRUNE", os.environ.get("OLLAMA_NOPRUNE", ""))
        result = store.check(now_ns=time.time_ns(), dry_run=dry_run,
                             prune_blobs=not env_flag(noprune))
    finally:
        lock.close()
    for line in result.lines():
        click.echo(line)
    if result.plan.broken or result.failed:
        sys.exit(1)


@cli.group(name="trace")
def trace_group() -> None:
    """Work with scheduler traces recorded with POLLAMA_TRACE=FILE."""


@trace_group.command(name="replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def trace_replay(file: str) -> None:
    """Re-run a recorded trace through the scheduler; report the first differing step."""
    from pollama.core import trace

    try:
        with open(file, encoding="utf-8") as f:
            result = trace.replay(f)
    except PollamaError as exc:
        raise click.ClickException(f"{file}: {exc.message}") from None
    if result.ok:
        click.echo(f"{file}: all {result.steps} steps match")
        return
    st = result.mismatch
    assert st is not None
    click.echo(f"{file}:{st.lineno}: step {result.steps} differs", err=True)
    click.echo(f"  event:    {st.event!r}", err=True)
    click.echo(f"  recorded: {list(st.commands)!r}", err=True)
    click.echo(f"  replayed: {list(result.got)!r}", err=True)
    sys.exit(1)


def _show_progress(statuses: Iterator[dict[str, Any]]) -> None:
    """A pull, push or create status stream as Ollama shows it, on stderr: status lines in
    order, and while a step moves bytes (a status with ``digest`` and ``total``: a layer, or
    the quantize step) a progress bar for it; the bars end before the next status line."""
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TaskID, TaskProgressColumn,
                               TextColumn, TransferSpeedColumn)

    bars: dict[tuple[str, str], TaskID] = {}
    progress: Progress | None = None
    try:
        for status in statuses:
            text = status.get("status", "")
            digest = status.get("digest")
            if digest and status.get("total"):
                if progress is None:
                    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                        TaskProgressColumn(), DownloadColumn(),
                                        TransferSpeedColumn(), console=Console(stderr=True))
                    progress.start()
                key = (digest, text)
                if key not in bars:
                    bars[key] = progress.add_task(text, total=status["total"])
                progress.update(bars[key], completed=status.get("completed", 0))
                continue
            if progress is not None:  # the step is done: finish its bars first
                progress.stop()
                progress = None
                bars.clear()
            click.echo(text, err=True)
    finally:
        if progress is not None:
            progress.stop()


def _transfer(client: Client, path: str, model: str, insecure: bool = False) -> None:
    """/api/pull or /api/push of ``model``, its progress shown."""
    body: dict[str, Any] = {"model": model}
    if insecure:
        body["insecure"] = True
    _show_progress(client.stream(path, body))


def _pull(client: Client, model: str, insecure: bool = False) -> None:
    _transfer(client, "/api/pull", model, insecure)


@cli.command()
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Use an insecure registry (plain http)")
def pull(model: str, insecure: bool) -> None:
    """Pull a model from the built-in library (smollm2) or a registry
    (another pollama: host:port/namespace/model:tag with --insecure)."""
    _pull(Client(), model, insecure)


@cli.command()
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Use an insecure registry (plain http)")
def push(model: str, insecure: bool) -> None:
    """Push a model to the registry its name starts with (host:port/namespace/model:tag)."""
    _transfer(Client(), "/api/push", model, insecure)


@cli.command()
@click.argument("model")
@click.option("-f", "--file", "modelfile", default="Modelfile", show_default=True,
              help="Name of the Modelfile")
@click.option("-q", "--quantize", default="",
              help="Quantize model to this level (e.g. q4_K_M, q4_K_S, q8_0)")
def create(model: str, modelfile: str, quantize: str) -> None:
    """Create a model from a Modelfile."""
    from pollama.core.modelfile import decode_modelfile, parse_modelfile, resolve_path

    try:
        with open(modelfile, "rb") as f:
            text = decode_modelfile(f.read())
    except OSError as exc:
        raise click.ClickException(f"reading {modelfile}: {exc.strerror}") from None
    spec = parse_modelfile(text).to_create_spec()
    for warning in spec.warnings:
        click.echo(f"warning: {warning}", err=True)
    client = Client()
    base = os.path.dirname(os.path.abspath(modelfile))
    home = os.path.expanduser("~")
    body: dict[str, Any] = {"model": model}
    files: dict[str, str] = {}
    click.echo("gathering model components", err=True)
    for value in spec.from_:
        path = resolve_path(value, base, home)
        if os.path.isfile(path):
            digest = _upload(client, path)
            files[os.path.basename(path)] = digest
        elif os.path.isdir(path):
            for name in _model_dir_files(path, value):
                files[name] = _upload(client, os.path.join(path, name))
        else:
            body["from"] = value
    if files:
        body["files"] = files
    adapters: dict[str, str] = {}
    for value in spec.adapters:
        path = resolve_path(value, base, home)
        if os.path.isdir(path):  # a PEFT LoRA directory
            for name in _adapter_dir_files(path, value):
                adapters[name] = _upload(client, os.path.join(path, name))
            continue
        if not os.path.isfile(path):
            raise click.ClickException(f"ADAPTER {value}: no such file")
        adapters[os.path.basename(path)] = _upload(client, path)
    if adapters:
        body["adapters"] = adapters
    if spec.template is not None:
        body["template"] = spec.template
    if spec.system is not None:
        body["system"] = spec.system
    if spec.parameters:
        body["parameters"] = spec.parameters
    if spec.messages:
        body["messages"] = [dict(m) for m in spec.messages]
    if spec.license:
        body["license"] = list(spec.license)
    if quantize:
        body["quantize"] = quantize
    _show_progress(client.stream("/api/create", body))


def _model_dir_files(path: str, value: str) -> list[str]:
    """The files of a model directory to send (Ollama's parser filesForModel): its GGUF, or
    its Safetensors weights with the config and tokenizer files beside them."""
    from pollama.core.hf_convert import MODEL_DIR_FILES

    names = sorted(os.listdir(path))
    ggufs = [n for n in names if n.lower().endswith(".gguf")]
    if ggufs:
        return ggufs
    weights = [n for n in names if n.endswith(".safetensors")]
    if not weights:
        raise click.ClickException(f"{value}: no safetensors or gguf files found")
    return weights + [n for n in names if n in MODEL_DIR_FILES]


def _adapter_dir_files(path: str, value: str) -> list[str]:
    """The files of a LoRA directory to send: its GGUF, or its Safetensors and config."""
    from pollama.core.hf_convert import ADAPTER_DIR_FILES

    names = sorted(os.listdir(path))
    ggufs = [n for n in names if n.lower().endswith(".gguf")]
    if ggufs:
        return ggufs
    weights = [n for n in names if n.endswith(".safetensors")]
    if not weights or "adapter_config.json" not in names:
        raise click.ClickException(
            f"ADAPTER {value}: no GGUF, or adapter_config.json with safetensors, found")
    return weights + [n for n in names if n in ADAPTER_DIR_FILES]


def _upload(client: Client, path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            h.update(chunk)
    digest = f"sha256:{h.hexdigest()}"
    if client.head(f"/api/blobs/{digest}") != 200:
        client.upload(f"/api/blobs/{digest}", path)
    click.echo(f"copying file {digest} 100%", err=True)
    return digest


class _RunCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from pollama.core.repl_session import think_args

        return super().parse_args(ctx, think_args(args))


@cli.command(cls=_RunCommand)
@click.argument("model")
@click.argument("prompt", nargs=-1)
@click.option("--format", "format_", default="", help="Response format (e.g. json)")
@click.option("--keepalive", default="", help="Duration to keep a model loaded (e.g. 5m)")
@click.option("--think", default=None, metavar="[=true|false|high|medium|low|max]",
              help="Enable thinking mode: true/false or high/medium/low for supported models")
@click.option("--hidethinking", is_flag=True, help="Hide thinking output (if provided)")
@click.option("--insecure", is_flag=True, help="Use an insecure registry")
@click.option("--nowordwrap", is_flag=True,
              help="Don't wrap words to the next line automatically")
@click.option("--verbose", is_flag=True, help="Show timings for response")
def run(model: str, prompt: tuple[str, ...], format_: str, keepalive: str, think: str | None,
        hidethinking: bool, insecure: bool, nowordwrap: bool, verbose: bool) -> None:
    """Run a model: answer PROMPT (or piped input), or chat interactively without one."""
    from . import repl

    repl.run(model, prompt, format_=format_, keepalive=keepalive, think=think,
             hidethinking=hidethinking, insecure=insecure, nowordwrap=nowordwrap,
             verbose=verbose)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(pollama completion bash)"."""
    from click.shell_completion import get_completion_class

    comp_cls = get_completion_class(shell)
    assert comp_cls is not None
    click.echo(comp_cls(cli, {}, "pollama", "_POLLAMA_COMPLETE").source())


def main() -> None:
    """Every failure is one ``Error:`` line on stderr and a non-zero exit, never a traceback
    (POLLAMA_DEBUG=1 shows it)."""
    try:
        cli(prog_name="pollama", complete_var="_POLLAMA_COMPLETE", standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # `pollama run ... | head`: the reader left; leave quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:
        if os.environ.get("POLLAMA_DEBUG", os.environ.get("OLLAMA_DEBUG", "")) not in ("", "0"):
            raise
        click.echo(f"Error: {exc or type(exc).__name__}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
