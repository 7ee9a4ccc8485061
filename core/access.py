"""Who may talk to the server: the Host guard, CORS and the optional API key, as pure decisions.

A local model server is reachable from every web page its user opens. Three checks run before any
route, in this order (Ollama's ``allowedHostsMiddleware`` and its gin CORS config,
server/routes.go):

1. Host (DNS rebinding). Only while the server listens on a loopback address: a ``Host`` that is
   not a loopback, private, unspecified or local-interface IP, nor ``localhost``, the machine's
   hostname or a ``*.localhost`` / ``*.local`` / ``*.internal`` name, gets 403.
2. Origin. A request with an ``Origin`` that is neither same-origin (``http(s)://`` + Host) nor on
   the allow-list gets 403 on every route, whatever its method or content type: a cross-origin
   "simple" request (``text/plain``) never reaches a handler. The default list is Ollama's;
   ``POLLAMA_ORIGINS`` extends it, and ``*`` allows every origin only when set there explicitly.
   A preflight (``OPTIONS``) from an allowed origin is answered 204 with the CORS headers.
3. API key (beyond Ollama). With ``POLLAMA_API_KEY`` set, every route but ``GET /`` and
   ``HEAD /`` needs ``Authorization: Bearer <key>`` (``Basic`` with the key as password is also
   accepted, as OCI clients send registry credentials; under ``/v1/`` ``x-api-key: <key>`` is
   too, as Anthropic's SDK sends it); compared in constant time.

The adapter passes the request's method, path and headers and the server's facts in; the answer
is ``Allow`` (with headers to add to the response), ``Preflight`` or ``Deny``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ALLOW_HEADERS", "ALLOW_METHODS", "MAX_AGE", "Allow", "Decision", "Deny", "Policy",
    "Preflight", "check", "default_origins", "host_allowed", "origin_allowed"
]

# Ollama's envconfig.AllowedOrigins defaults.
_LOCAL_ORIGIN_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0")
_APP_ORIGINS = ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")
# gin-contrib/cors AllowBrowserExtensions.
_EXTENSION_SCHEMES = ("chrome-extension://", "safari-extension://", "moz-extension://",
                      "ms-browser-extension://")
_LOCAL_TLDS = ("localhost", "local", "internal")

ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
# Ollama's CORS AllowHeaders, which include what the OpenAI SDKs send.
ALLOW_HEADERS = ", ".join((
    "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With", "OpenAI-Beta",
    "x-stainless-arch", "x-stainless-async", "x-stainless-custom-poll-interval",
    "x-stainless-helper-method", "x-stainless-lang", "x-stainless-os",
    "x-stainless-package-version", "x-stainless-poll-helper", "x-stainless-retry-count",
    "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-timeout",
    "anthropic-version", "anthropic-beta", "x-api-key",
))
MAX_AGE = "43200"  # gin-contrib/cors DefaultConfig: 12 hours


def default_origins(extra: str = "") -> tuple[str, ...]:
    """``POLLAMA_ORIGINS`` (comma list, first) followed by Ollama's defaults."""
    out = [o.strip() for o in extra.split(",") if o.strip()]
    for host in _LOCAL_ORIGIN_HOSTS:
        out += [f"http://{host}", f"https://{host}", f"http://{host}:*", f"https://{host}:*"]
    out += _APP_ORIGINS
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    origins: tuple[str, ...] = field(default_factory=default_origins)
    api_key: str | None = None
    # The server listens on a loopback address: the Host guard is on.
    loopback: bool = True
    hostname: str = ""
    local_ips: frozenset[str] = frozenset()

    @property
    def allow_all_origins(self) -> bool:
        return "*" in self.origins


@dataclass(frozen=True, slots=True, kw_only=True)
class Allow:
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Preflight:
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Deny:
    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()


Decision = Allow | Preflight | Deny


# Go's netip.Addr.IsPrivate (RFC 1918, RFC 4193); Python's is_private also counts documentation
# and reserved ranges, which are not local.
_PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


def _go_private(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip.version == net.version and ip in net for net in _PRIVATE)


def _split_host(host: str) -> str:
    """The host part of a ``Host`` header (Go's net.SplitHostPort, else the whole value)."""
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def host_allowed(host_header: str, policy: Policy) -> bool:
    if not policy.loopback:
        return True
    host = _split_host(host_header.strip()).lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        mapped = getattr(ip, "ipv4_mapped", None)
        if mapped is not None:
            ip = mapped
        return (ip.is_loopback or _go_private(ip) or ip.is_unspecified
                or str(ip) in policy.local_ips)
    if host in ("", "localhost") or (policy.hostname and host == policy.hostname.lower()):
        return True
    return any(host.endswith("." + tld) for tld in _LOCAL_TLDS)


def _wildcard_match(pattern: str, origin: str) -> bool:
    """gin-contrib/cors with AllowWildcard: one ``*`` stands for any run of characters."""
    if "*" not in pattern:
        return pattern == origin
    prefix, _, suffix = pattern.partition("*")
    return (len(origin) >= len(prefix) + len(suffix) and origin.startswith(prefix)
            and origin.endswith(suffix))


def origin_allowed(origin: str, policy: Policy) -> bool:
    if policy.allow_all_origins:
        return True
    if origin.startswith(_EXTENSION_SCHEMES):
        return True
    return any(_wildcard_match(p, origin) for p in policy.origins if p != "*")


def _key_matches(authorization: str | None, key: str) -> bool:
    if not authorization:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        value = decoded.partition(":")[2]
    elif scheme != "bearer":
        return False
    return _same_key(value, key)


def _same_key(value: str, key: str) -> bool:
    return hmac.compare_digest(value.strip().encode("utf-8", "surrogateescape"),
                               key.encode("utf-8", "surrogateescape"))


def _presents_key(path: str, headers: Sequence[tuple[str, str]], key: str) -> bool:
    if _key_matches(_get(headers, "authorization"), key):
        return True
    x_api_key = _get(headers, "x-api-key") if path.startswith("/v1/") else None
    return x_api_key is not None and _same_key(x_api_key, key)


def _get(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v
    return None


def check(method: str, path: str, headers: Sequence[tuple[str, str]], policy: Policy) -> Decision:
    """Decide one request. ``headers`` are (lower-case name, value) pairs."""
    host = _get(headers, "host") or ""
    if not host_allowed(host, policy):
        return Deny(status=403, message="forbidden: host not allowed")
    origin = _get(headers, "origin")
    cors: tuple[tuple[str, str], ...] = ()
    if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
        if not origin_allowed(origin, policy):
            return Deny(status=403, message="forbidden: origin not allowed")
        cors = (("Access-Control-Allow-Origin", "*" if policy.allow_all_origins else origin),
                ("Vary", "Origin"))
    if method == "OPTIONS":
        # A preflight carries no credentials; it only learns what the real request may do.
        return Preflight(headers=cors + (
            ("Access-Control-Allow-Methods", ALLOW_METHODS),
            ("Access-Control-Allow-Headers", ALLOW_HEADERS),
            ("Access-Control-Max-Age", MAX_AGE)) if cors else ())
    if policy.api_key is not None and not (method in ("GET", "HEAD") and path == "/"):
        if not _presents_key(path, headers, policy.api_key):
            registry = path == "/v2" or path.startswith("/v2/")
            challenge = 'Basic realm="pollama"' if registry else 'Bearer realm="pollama"'
            return Deny(status=401, message="unauthorized: a valid API key is required",
                        headers=cors + (("WWW-Authenticate", challenge),))
    return Allow(headers=cors)
