"""core/access.py: the Host guard, CORS and API-key decisions, as table cases and properties."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import access
from pollama.core.access import Allow, Deny, Policy, Preflight

LOCAL = Policy()


def decide(method: str = "GET", path: str = "/api/tags", policy: Policy = LOCAL,
           **headers: str) -> access.Decision:
    hs = [(k.replace("_", "-").lower(), v) for k, v in headers.items()]
    return access.check(method, path, hs, policy)


@pytest.mark.parametrize("host", [
    "127.0.0.1:11434", "localhost", "localhost:11434", "[::1]:11434", "10.0.0.5:11434",
    "192.168.1.2", "0.0.0.0:11434", "foo.localhost:11434", "box.local", "svc.internal:80",
    "LOCALHOST:1", "", "[::ffff:127.0.0.1]:11434",
])
def test_local_hosts_pass_the_guard(host: str) -> None:
    assert isinstance(decide(host=host), Allow)


@pytest.mark.parametrize("host", [
    "attacker.example.com", "attacker.example.com:11434", "8.8.8.8:11434", "localhost.evil.com",
    "[2001:db8::1]:11434", "evil.com.", "1.2.3.4",
])
def test_foreign_hosts_are_403_while_bound_to_loopback(host: str) -> None:
    d = decide(host=host)
    assert isinstance(d, Deny) and d.status == 403
    # Bound to every interface, Ollama does not check Host; nor do we.
    assert isinstance(decide(host=host, policy=Policy(loopback=False)), Allow)


def test_the_machine_name_and_its_addresses_are_local() -> None:
    pol = Policy(hostname="MyBox", local_ips=frozenset({"203.0.113.7"}))
    assert isinstance(decide(host="mybox:11434", policy=pol), Allow)
    assert isinstance(decide(host="203.0.113.7:11434", policy=pol), Allow)


@pytest.mark.parametrize("origin", [
    "http://localhost", "https://localhost:3000", "http://127.0.0.1:8080", "http://0.0.0.0:1",
    "app://obsidian.md", "file://", "tauri://localhost", "vscode-webview://abc",
    "vscode-file://vscode-app", "chrome-extension://abcdef", "moz-extension://x",
])
def test_default_origins_are_allowed_with_cors_headers(origin: str) -> None:
    d = decide("POST", "/api/create", host="127.0.0.1:11434", origin=origin)
    assert isinstance(d, Allow)
    assert ("Access-Control-Allow-Origin", origin) in d.headers


@pytest.mark.parametrize("origin", [
    "https://evil.example", "http://localhost.evil.example", "null", "http://127.0.0.1.nip.io",
    "https://localhostx", "http://[::1]:3000",
])
def test_foreign_origins_are_403_on_every_route_and_method(origin: str) -> None:
    for method, path in (("POST", "/api/create"), ("GET", "/api/tags"), ("POST", "/api/copy"),
                         ("PUT", "/v2/library/x/manifests/latest"), ("OPTIONS", "/api/chat"),
                         ("GET", "/")):
        d = decide(method, path, host="127.0.0.1:11434", origin=origin,
                   content_type="text/plain")
        assert isinstance(d, Deny) and d.status == 403, (method, path)


def test_same_origin_is_not_cross_origin() -> None:
    assert isinstance(decide(host="127.0.0.1:11434", origin="http://127.0.0.1:11434"), Allow)


def test_preflight_from_an_allowed_origin() -> None:
    d = decide("OPTIONS", "/api/chat", host="localhost:11434", origin="http://localhost:5173",
               access_control_request_method="POST")
    assert isinstance(d, Preflight)
    hs = dict(d.headers)
    assert hs["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert "POST" in hs["Access-Control-Allow-Methods"]
    assert "Authorization" in hs["Access-Control-Allow-Headers"]


def test_pollama_origins_extend_the_list_and_star_allows_all() -> None:
    pol = Policy(origins=access.default_origins("https://chat.example.com, https://*.corp.dev"))
    assert isinstance(decide(host="localhost", origin="https://chat.example.com", policy=pol),
                      Allow)
    assert isinstance(decide(host="localhost", origin="https://a.corp.dev", policy=pol), Allow)
    assert isinstance(decide(host="localhost", origin="https://evil.example", policy=pol), Deny)
    star = Policy(origins=access.default_origins("*"))
    d = decide(host="localhost", origin="https://anything.example", policy=star)
    assert isinstance(d, Allow) and ("Access-Control-Allow-Origin", "*") in d.headers
    # '*' only when set explicitly: the defaults never contain it.
    assert "*" not in access.default_origins()


KEYED = Policy(api_key="s3cret-key")


def test_api_key_required_everywhere_but_root() -> None:
    assert isinstance(decide("GET", "/", KEYED, host="localhost"), Allow)
    assert isinstance(decide("HEAD", "/", KEYED, host="localhost"), Allow)
    for method, path in (("GET", "/api/tags"), ("POST", "/api/generate"), ("POST", "/"),
                         ("GET", "/v2/"), ("GET", "/api/version")):
        d = decide(method, path, KEYED, host="localhost")
        assert isinstance(d, Deny) and d.status == 401, (method, path)
        assert any(k == "WWW-Authenticate" for k, _ in d.headers)


def test_api_key_forms() -> None:
    ok = [f"Bearer s3cret-key", "bearer   s3cret-key ",
          "Basic " + base64.b64encode(b"anyone:s3cret-key").decode()]
    bad = ["Bearer s3cret-keyx", "Bearer", "s3cret-key", "Token s3cret-key",
           "Basic " + base64.b64encode(b"s3cret-key").decode(), "Basic !!!",
           "Bearer s3cret-ke\u00ff"]
    for value in ok:
        assert isinstance(decide(policy=KEYED, host="localhost", authorization=value), Allow)
    for value in bad:
        assert isinstance(decide(policy=KEYED, host="localhost", authorization=value), Deny)


def test_preflight_needs_no_key_but_the_real_request_does() -> None:
    d = decide("OPTIONS", "/api/chat", KEYED, host="localhost", origin="http://localhost:3000")
    assert isinstance(d, Preflight)
    d2 = decide("POST", "/api/chat", KEYED, host="localhost", origin="http://localhost:3000")
    assert isinstance(d2, Deny) and d2.status == 401
    # The browser may read the 401: it carries the CORS headers.
    assert ("Access-Control-Allow-Origin", "http://localhost:3000") in d2.headers


@given(st.text(max_size=40), st.text(max_size=40), st.text(max_size=60),
       st.sampled_from(["GET", "POST", "OPTIONS", "PUT", "DELETE", "HEAD"]))
def test_never_raises_and_foreign_origin_never_allowed(host: str, origin: str, auth: str,
                                                        method: str) -> None:
    d = access.check(method, "/api/chat", [("host", host), ("origin", origin),
                                           ("authorization", auth)], KEYED)
    assert isinstance(d, (Allow, Deny, Preflight))
    if isinstance(d, (Allow, Preflight)) and origin not in (f"http://{host}", f"https://{host}"):
        assert access.origin_allowed(origin, KEYED)
    if isinstance(d, Allow):
        assert auth.strip().lower().startswith(("bearer", "basic"))


def test_x_api_key_counts_under_v1_only() -> None:
    """Anthropic's SDK sends its key as ``x-api-key``: accepted on /v1, nowhere else."""
    def with_x(path: str, value: str) -> object:
        return access.check("POST", path, [("host", "localhost"), ("x-api-key", value)], KEYED)
    assert isinstance(with_x("/v1/messages", "s3cret-key"), Allow)
    assert isinstance(with_x("/v1/chat/completions", "s3cret-key"), Allow)
    assert isinstance(with_x("/v1/messages", "wrong"), Deny)
    assert isinstance(with_x("/api/chat", "s3cret-key"), Deny)
    assert isinstance(with_x("/v2/x/y/manifests/latest", "s3cret-key"), Deny)
