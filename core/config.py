"""Server and client configuration from environment variables (Ollama's envconfig/config.go), as
pure functions.

The adapter passes ``os.environ`` (and the home directory) in; nothing here reads them itself.
Every variable is ``POLLAMA_*``; Ollama's ``OLLAMA_*`` spelling is accepted as a fallback so an
existing setup keeps working. Values are trimmed of spaces and surrounding quotes as Ollama does.

``VARIABLES`` lists every variable with its default (the README's table and ``pollama serve
--help`` say the same; a test holds them to it), and ``effective`` is what ``pollama serve``
logs at startup as ``server config``, as Ollama logs ``envconfig.Values()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from . import access
from .errors import BadRequest
from .limits import Limits
from .limits import from_env as limits_from_env
from .limits import MiB
from .requests import FOREVER, keep_alive_from_seconds, parse_go_duration
from .store_check import env_flag

__all__ = [
    "DEFAULT_PORT", "VARIABLES", "Config", "HostAddress", "Variable", "api_key_from_file",
    "effective", "go_duration", "load", "parse_flash_attention", "parse_host",
    "parse_keep_alive_env", "parse_log_format"
]

DEFAULT_PORT = 11434


def _get(env: Mapping[str, str], key: str) -> str:
    raw = env.get(f"POLLAMA_{key}")
    if raw is None:
        raw = env.get(f"OLLAMA_{key}", "")
    return raw.strip().strip("\"'").strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class HostAddress:
    scheme: str
    host: str
    port: int
    path: str = ""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


def parse_host(raw: str) -> HostAddress:
    """``POLLAMA_HOST``: bare host ⇒ port 11434; ``http://h`` ⇒ 80; ``https://h`` ⇒ 443."""
    raw = raw.strip().strip("\"'").strip()
    if not raw:
        return HostAddress(scheme="http", host="127.0.0.1", port=DEFAULT_PORT)
    scheme, sep, rest = raw.partition("://")
    if not sep:
        scheme, rest = "http", raw
        default_port = DEFAULT_PORT
    else:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise BadRequest(f"invalid host scheme {scheme!r}")
        default_port = 443 if scheme == "https" else 80
    hostport, slash, path = rest.partition("/")
    path = (slash + path).rstrip("/") if slash else ""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise BadRequest(f"invalid host {raw!r}")
        host, tail = hostport[1:end], hostport[end + 1:]
        port_text = tail[1:] if tail.startswith(":") else ""
    elif hostport.count(":") == 1:
        host, port_text = hostport.split(":")
    else:
        host, port_text = hostport, ""
    host = host or "127.0.0.1"
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
            raise BadRequest(f"invalid port in host {raw!r}")
        port = int(port_text)
    return HostAddress(scheme=scheme, host=host, port=port, path=path)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    host: HostAddress
    models_dir: str
    home_dir: str  # ~/.pollama: logs, keys, history
    keep_alive_ns: int
    context_length: int
    num_parallel: int
    max_loaded_models: int
    max_queue: int
    debug: bool
    trace_path: str | None = None
    flash_attention: int = -1  # -1 auto (on, off where the backend refuses), 0 off, 1 on
    # POLLAMA_ORIGINS first, then Ollama's default allow-list (core/access.py).
    origins: tuple[str, ...] = field(default_factory=access.default_origins)
    # POLLAMA_API_KEY, or the first line of the file POLLAMA_API_KEY_FILE names (the adapter
    # reads it): every route but GET/HEAD / then needs ``Authorization: Bearer <key>``.
    api_key: str | None = None
    api_key_file: str | None = None
    limits: Limits = field(default_factory=Limits)
    log_format: str = "text"  # POLLAMA_LOG_FORMAT: "text" (key=value) or "json" (JSON lines)
    noprune: bool = False  # POLLAMA_NOPRUNE (the store's startup cleanup reads it itself)
    nohistory: bool = False  # POLLAMA_NOHISTORY: the REPL records no ~/.pollama/history
    # POLLAMA_RAY_ADDRESS: run runners on this Ray cluster (adapters/ray_cluster.py).
    ray_address: str | None = None
    replicas: int = 1  # POLLAMA_REPLICAS: runners of a busy model, on distinct nodes
    ray_stream_timeout: float = 30.0  # POLLAMA_RAY_STREAM_TIMEOUT: seconds a node may be silent


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    text = _get(env, key)
    try:
        return int(text) if text else default
    except ValueError:
        return default  # Ollama: invalid uint ⇒ default


def parse_flash_attention(text: str) -> int:
    """``POLLAMA_FLASH_ATTENTION``: unset or ``auto`` ⇒ -1 (Ollama HEAD's default), a Go
    boolean (1/t/true, 0/f/false) forces it; anything else is auto."""
    value = text.lower()
    if value in ("1", "t", "true"):
        return 1
    if value in ("0", "f", "false"):
        return 0
    return -1


def parse_keep_alive_env(text: str) -> int:
    if not text:
        return 5 * 60 * 1_000_000_000
    try:
        secs = int(text)
    except ValueError:
        ns = parse_go_duration(text)
        return FOREVER if ns < 0 else ns
    return keep_alive_from_seconds(secs)


def load(env: Mapping[str, str], home: str) -> Config:
    pollama_home = f"{home.rstrip('/')}/.pollama"
    models = _get(env, "MODELS") or f"{pollama_home}/models"
    debug_text = _get(env, "DEBUG").lower()
    return Config(
        host=parse_host(_get(env, "HOST")),
        models_dir=models,
        home_dir=pollama_home,
        keep_alive_ns=parse_keep_alive_env(_get(env, "KEEP_ALIVE")),
        context_length=_int(env, "CONTEXT_LENGTH", 4096),
        # NUM_PARALLEL 0: auto (core.memory.parallel_choices)
        num_parallel=max(0, _int(env, "NUM_PARALLEL", 0)),
        max_loaded_models=_int(env, "MAX_LOADED_MODELS", 3),
        max_queue=_int(env, "MAX_QUEUE", 512),
        debug=debug_text not in ("", "0", "false", "info"),
        trace_path=_get(env, "TRACE") or None,
        flash_attention=parse_flash_attention(_get(env, "FLASH_ATTENTION")),
        origins=access.default_origins(_get(env, "ORIGINS")),
        api_key=_get(env, "API_KEY") or None,
        api_key_file=_get(env, "API_KEY_FILE") or None,
        limits=limits_from_env(lambda key: _get(env, key)),
        log_format=parse_log_format(_get(env, "LOG_FORMAT")),
        noprune=env_flag(_get(env, "NOPRUNE")),
        nohistory=env_flag(_get(env, "NOHISTORY")),
        ray_address=_get(env, "RAY_ADDRESS") or None,
        replicas=max(1, _int(env, "REPLICAS", 1)),
        ray_stream_timeout=_positive(_get(env, "RAY_STREAM_TIMEOUT"), 30.0),
    )


def _positive(text: str, default: float) -> float:
    try:
        value = float(text) if text else default
    except ValueError:
        return default
    return value if value > 0 else default


def parse_log_format(text: str) -> str:
    """``POLLAMA_LOG_FORMAT``: ``json`` for JSON lines; anything else is the key=value text."""
    return "json" if text.lower() == "json" else "text"


def api_key_from_file(text: str) -> str | None:
    """The key in a ``POLLAMA_API_KEY_FILE``: its first line, trimmed; None when empty."""
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    return line or None


@dataclass(frozen=True, slots=True, kw_only=True)
class Variable:
    name: str  # without its POLLAMA_ / OLLAMA_ prefix
    default: str  # as the README's table shows it
    meaning: str  # one line, for ``pollama serve --help``


VARIABLES: tuple[Variable, ...] = (
    Variable(name="HOST", default="127.0.0.1:11434",
             meaning="address the server binds and the CLI connects to"),
    Variable(name="MODELS", default="~/.pollama/models", meaning="model store"),
    Variable(name="KEEP_ALIVE", default="5m", meaning="how long an idle model stays loaded"),
    Variable(name="CONTEXT_LENGTH", default="4096", meaning="default num_ctx"),
    Variable(name="NUM_PARALLEL", default="auto",
             meaning="requests one loaded model serves at once (auto: 4 where memory allows)"),
    Variable(name="MAX_LOADED_MODELS", default="3", meaning="models loaded at once"),
    Variable(name="MAX_QUEUE", default="512", meaning="waiting requests before 503"),
    Variable(name="FLASH_ATTENTION", default="auto", meaning="flash attention: auto, 1 or 0"),
    Variable(name="DEBUG", default="off", meaning="1 logs debug lines too"),
    Variable(name="LOG_FORMAT", default="text", meaning="text (key=value) or json (JSON lines)"),
    Variable(name="TRACE", default="unset",
             meaning="append scheduler decisions to this JSON-lines file"),
    Variable(name="ORIGINS", default="unset",
             meaning="extra allowed browser origins, comma-separated (* allows all)"),
    Variable(name="API_KEY", default="unset",
             meaning="require 'Authorization: Bearer <key>' on every route but /"),
    Variable(name="API_KEY_FILE", default="unset",
             meaning="read that key from the first line of this file"),
    Variable(name="MAX_BODY_MB", default="128",
             meaning="largest generate/chat/create/embed body in MiB"),
    Variable(name="MAX_CONNECTIONS", default="1024", meaning="connections served at once"),
    Variable(name="HEADER_TIMEOUT", default="30", meaning="seconds to send a request head"),
    Variable(name="BODY_TIMEOUT", default="120", meaning="seconds a request body may stall"),
    Variable(name="IDLE_TIMEOUT", default="300",
             meaning="seconds an idle keep-alive connection stays open"),
    Variable(name="NOPRUNE", default="off",
             meaning="keep unused blobs and debris at startup"),
    Variable(name="NOHISTORY", default="off",
             meaning="pollama run records no prompt history"),
    Variable(name="RAY_ADDRESS", default="unset",
             meaning="run models on this Ray cluster (pollama[ray])"),
    Variable(name="REPLICAS", default="1",
             meaning="runners of one busy model, on distinct cluster nodes"),
    Variable(name="RAY_STREAM_TIMEOUT", default="30",
             meaning="seconds a cluster node may stay silent before its runner counts as lost"),
)


def go_duration(ns: int) -> str:
    """A duration as Go's ``time.Duration.String`` writes it (``5m0s``, ``1h0m0s``, ``250ms``);
    FOREVER is ``forever``."""
    if ns < 0:
        return "forever"
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{ns / size:.9f}".rstrip("0").rstrip(".") + unit
    hours, rest = divmod(ns, 3600 * 1_000_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000_000)
    seconds = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def _number_text(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def effective(cfg: Config) -> dict[str, str | list[str]]:
    """Every variable's value as the server uses it, under its ``POLLAMA_*`` name; the API key
    itself is never shown, only whether one is set."""
    flash = {-1: "auto", 0: "false", 1: "true"}.get(cfg.flash_attention, "auto")
    values: dict[str, str | list[str]] = {
        "HOST": cfg.host.url,
        "MODELS": cfg.models_dir,
        "KEEP_ALIVE": go_duration(cfg.keep_alive_ns),
        "CONTEXT_LENGTH": str(cfg.context_length),
        "NUM_PARALLEL": str(cfg.num_parallel) if cfg.num_parallel else "auto",
        "MAX_LOADED_MODELS": str(cfg.max_loaded_models),
        "MAX_QUEUE": str(cfg.max_queue),
        "FLASH_ATTENTION": flash,
        "DEBUG": "DEBUG" if cfg.debug else "INFO",
        "LOG_FORMAT": cfg.log_format,
        "TRACE": cfg.trace_path or "",
        "ORIGINS": list(cfg.origins),
        "API_KEY": "(set)" if cfg.api_key else "",
        "API_KEY_FILE": cfg.api_key_file or "",
        "MAX_BODY_MB": _number_text(cfg.limits.large_body / MiB),
        "MAX_CONNECTIONS": str(cfg.limits.max_connections),
        "HEADER_TIMEOUT": _number_text(cfg.limits.header_timeout),
        "BODY_TIMEOUT": _number_text(cfg.limits.body_timeout),
        "IDLE_TIMEOUT": _number_text(cfg.limits.idle_timeout),
        "NOPRUNE": "true" if cfg.noprune else "false",
        "NOHISTORY": "true" if cfg.nohistory else "false",
        "RAY_ADDRESS": cfg.ray_address or "",
        "REPLICAS": str(cfg.replicas),
        "RAY_STREAM_TIMEOUT": _number_text(cfg.ray_stream_timeout),
    }
    return {f"POLLAMA_{v.name}": values[v.name] for v in VARIABLES}
