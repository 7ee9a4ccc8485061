"""The web chat page (``GET /ui``) in a real headless Chromium against a real ``pollama serve``
and SmolLM2: the model picker, a streamed answer stopped mid-way ($/cancelRequest over
``/api/ws``), a follow-up turn that carries the history and completes with its timing line, an
error turn, escaping of untrusted model output, nothing fetched from another origin, and a
WebSocket that reconnects when the server comes back.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and ``selenium``
(the ``test`` extras). Waits are outcome waits with a generous bound, never timing assertions.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.e2e

WAIT = 120  # seconds; a bound for slow, busy machines, not an expectation
MODEL = "smol:latest"
CSP = ("default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
       "script-src 'self' 'unsafe-inline'")
# Temperature 0 makes this run to num_predict (checked with SmolLM2: it repeats itself rather
# than stopping), so there is a long stream to stop; num_predict bounds it all the same.
LONG = {"num_predict": 1000, "temperature": 0}
SHORT = {"num_predict": 16, "temperature": 0}

# Records every frame the page sends on its WebSocket (the prototype is patched, so the socket
# the page already opened is covered too).
SPY = """
if (!window.__sent) {
  window.__sent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    window.__sent.push(String(data));
    return send.call(this, data);
  };
}
"""
LAST = "const a = [...document.querySelectorAll('#messages .assistant')].pop();"


def _missing(what: str) -> str:
    return (f"{what} is not installed: this test drives a real headless Chromium. `.ci/run` "
            "installs it (apt-get install chromium chromium-driver; pip install -e '.[test]' "
            "for selenium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(_missing("selenium"))
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chrome is None:
        pytest.fail(_missing("chromium"))
    if driver is None:
        pytest.fail(_missing("chromedriver (Debian package chromium-driver)"))
    options = Options()
    options.binary_location = chrome
    # --no-sandbox: CI runs as root in a container, where Chromium's sandbox cannot start.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Explicit driver path: Selenium Manager is never asked to download anything.
    drv = webdriver.Chrome(service=Service(driver), options=options)
    drv.set_page_load_timeout(WAIT)
    drv.set_script_timeout(WAIT)
    try:
        yield drv
    finally:
        drv.quit()


def wait(drv: Any, what: str, check: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, WAIT, poll_frequency=0.05).until(check, f"timed out: {what}")


def js(drv: Any, script: str, *args: Any) -> Any:
    return drv.execute_script(script, *args)


def open_page(drv: Any, server: Server) -> None:
    drv.get(f"{server.url}/ui")
    wait(drv, f"{MODEL} in the model picker",
         lambda d: MODEL in js(d, "return [...document.getElementById('model').options]"
                                  ".map(o => o.value)"))
    js(drv, SPY)


def set_options(drv: Any, options: dict[str, Any]) -> None:
    js(drv, "document.getElementById('options').value = arguments[0]", json.dumps(options))


def last_assistant(drv: Any) -> dict[str, Any]:
    return js(drv, LAST + """
      if (!a) return null;
      const q = (s) => { const e = a.querySelector(s); return e ? e.textContent : null; };
      return {done: a.dataset.done || null, state: a.dataset.state || null,
              content: q('.content'), timing: q('.timing'), error: q('.error'),
              note: q('.note')};""")


def sent(drv: Any) -> list[dict[str, Any]]:
    return [json.loads(s) for s in js(drv, "return window.__sent")]


def ask(drv: Any, text: str, *, enter: bool = False) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = drv.find_element(By.ID, "prompt")
    box.send_keys(text)
    if enter:
        box.send_keys(Keys.ENTER)
    else:
        drv.find_element(By.ID, "send").click()


def wait_done(drv: Any, n: int) -> dict[str, Any]:
    """Wait for the n-th assistant message (1-based) to end; return the last one's state."""
    wait(drv, f"assistant message {n} to end",
         lambda d: js(d, "const a = document.querySelectorAll('#messages .assistant');"
                         "return a.length === arguments[0] && a[a.length - 1].dataset.done"
                         " === 'true'", n))
    return last_assistant(drv)


def test_ui_is_served_self_contained_with_its_policy(server: Server) -> None:
    r = httpx.get(f"{server.url}/ui", timeout=WAIT)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-cache"
    assert len(r.content) < 50_000
    # Nothing is loaded from anywhere: no URLs, no src/href attributes, no CSS imports.
    for pattern in (rb"://", rb"\b(?:src|href)\s*=", rb"url\(", rb"@import"):
        assert not re.search(pattern, r.content), pattern
    assert httpx.head(f"{server.url}/ui", timeout=WAIT).status_code == 200


def test_chat_streams_stops_and_continues(browser: Any, server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    drv = browser
    open_page(drv, server)
    Select(drv.find_element(By.ID, "model")).select_by_value(MODEL)

    # 1. A long answer, stopped while it streams.
    set_options(drv, LONG)
    ask(drv, "Tell me a very long story.")
    first = wait(drv, "streamed text in the assistant message",
                 lambda d: (m := last_assistant(d)) and (m["content"] or m["done"]) and m)
    assert first["done"] is None, f"the stream ended before Stop could be pressed: {first}"
    assert drv.find_element(By.ID, "send").get_attribute("disabled") is not None
    drv.find_element(By.ID, "stop").click()
    stopped = wait_done(drv, 1)
    assert stopped["state"] == "cancelled", stopped
    assert stopped["note"] == "stopped", "the server answers the cancel (-32800)"
    assert stopped["content"], "the partial answer stays on the page"
    chat1 = next(m for m in sent(drv) if m.get("method") == "chat")
    assert chat1["params"] == {"model": MODEL, "stream": True, "options": LONG,
                               "messages": [{"role": "user",
                                             "content": "Tell me a very long story."}]}
    assert {"jsonrpc": "2.0", "method": "$/cancelRequest",
            "params": {"id": chat1["id"]}} in sent(drv)
    assert drv.find_element(By.ID, "stop").get_attribute("disabled") is not None

    # 2. The server still serves after the cancel: a short turn (sent with Enter) completes,
    # carrying the whole conversation, the partial answer included.
    set_options(drv, SHORT)
    ask(drv, "Now say hello.", enter=True)
    done = wait_done(drv, 2)
    assert done["state"] == "done", done
    assert done["error"] is None
    assert done["timing"] and "tokens/s" in done["timing"], done
    # "12.3 tokens/s · 16 tokens · 0.40 s"
    count = re.search(r"\u00b7 (\d+) tokens \u00b7", done["timing"])
    assert count and 1 <= int(count.group(1)) <= SHORT["num_predict"], done
    chat2 = [m for m in sent(drv) if m.get("method") == "chat"][-1]
    history = chat2["params"]["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert history[1]["content"] == js(drv, "return pollamaUI.history()[1].content")
    assert history[1]["content"], "the partial answer is part of the history"
    assert history[2] == {"role": "user", "content": "Now say hello."}
    assert chat2["params"]["options"] == SHORT
    assert len(js(drv, "return pollamaUI.history()")) == 4

    # 3. A failing turn (a model that does not exist) shows the server's error text.
    js(drv, "const s = document.getElementById('model');"
            "s.appendChild(new Option('nope:latest', 'nope:latest')); s.value = 'nope:latest';")
    ask(drv, "Hello?")
    failed = wait_done(drv, 3)
    assert failed["state"] == "error", failed
    assert "not found" in (failed["error"] or ""), failed

    # 4. New chat clears the page and the history.
    drv.find_element(By.ID, "new").click()
    assert js(drv, "return document.getElementById('messages').children.length") == 0
    assert js(drv, "return pollamaUI.history()") == []

    # Every request the page made stayed on this origin, and the policy refused nothing.
    origin = server.url
    urls = js(drv, "return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(u.startswith(origin + "/") for u in urls), urls
    assert js(drv, "return location.origin") == origin
    refused = [e for e in drv.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == []


UNTRUSTED = ("<script>window.__pwned = 1</script> and <img src=x onerror=\"window.__pwned = 2\">"
             " then `<b>inline</b>`\n```html\n<img src=y onerror=\"window.__pwned = 3\">\n"
             "<script>window.__pwned = 4</script>\n```\nafter <iframe srcdoc=x></iframe>")


def test_model_output_is_rendered_as_text(browser: Any, server: Server) -> None:
    drv = browser
    open_page(drv, server)
    out = js(drv, """
      const box = document.createElement('div');
      box.appendChild(pollamaUI.render(arguments[0]));
      document.body.appendChild(box);
      const tags = [...box.querySelectorAll('*')].map(e => e.tagName.toLowerCase());
      return {tags, text: box.textContent, pre: box.querySelector('pre code')?.textContent,
              inline: box.querySelector(':scope > code')?.textContent};""", UNTRUSTED)
    assert sorted(set(out["tags"])) == ["code", "pre"], out["tags"]
    assert out["pre"] == ("<img src=y onerror=\"window.__pwned = 3\">\n"
                          "<script>window.__pwned = 4</script>")
    assert out["inline"] == "<b>inline</b>"
    for literal in ("<script>window.__pwned = 1</script>", "<img src=x onerror=",
                    "<iframe srcdoc=x></iframe>"):
        assert literal in out["text"]
    # Had anything been parsed as HTML, an onerror would have fired by now; give it the chance.
    js(drv, "return new Promise(r => setTimeout(r, 200))")
    assert js(drv, "return window.__pwned === undefined")


def test_page_reconnects_when_the_server_comes_back(browser: Any, tmp_path: Any) -> None:
    """The page outlives a server restart: its WebSocket reconnects and calls work again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"POLLAMA_HOST": f"127.0.0.1:{port}"}
    srv = start_server(str(tmp_path / "a"), env)
    drv = browser
    try:
        drv.get(f"{srv.url}/ui")
        status = "return document.getElementById('status').textContent"
        wait(drv, "the page to connect", lambda d: js(d, status) == "connected")
        stop_server(srv)
        wait(drv, "the page to notice", lambda d: "reconnecting" in js(d, status))
        srv = start_server(str(tmp_path / "b"), env)
        wait(drv, "the page to reconnect", lambda d: js(d, status) == "connected")
        # It listed the (empty) store of the new server.
        wait(drv, "the empty model list", lambda d: js(
            d, "return [...document.getElementById('model').options].map(o => o.value)") == [""])
    finally:
        stop_server(srv)
