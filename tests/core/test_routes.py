"""core/routes.py: the route table, gin's bare 404 and 405."""

from __future__ import annotations

import pytest

from pollama.core import routes
from pollama.core.errors import MethodNotAllowed, NotFound


@pytest.mark.parametrize(("method", "path", "handler"), [
    ("GET", "/", "root"), ("HEAD", "/", "root"), ("GET", "/api/version", "version"),
    ("HEAD", "/api/tags", "tags"), ("POST", "/api/chat", "chat"),
    ("POST", "/api/generate/", "generate"),
    ("HEAD", "/api/blobs/sha256:abc", "blob"), ("POST", "/api/create", "create"),
    ("POST", "/api/pull?x=1", "pull"),
])
def test_routes(method: str, path: str, handler: str) -> None:
    assert routes.match(method, path).handler == handler


def test_route_errors() -> None:
    with pytest.raises(NotFound, match="404 page not found"):
        routes.match("GET", "/api/nope")
    with pytest.raises(MethodNotAllowed):
        routes.match("GET", "/api/chat")
    with pytest.raises(MethodNotAllowed):
        routes.match("POST", "/api/tags")
    assert routes.match("POST", "/api/blobs/x").params == {"digest": "x"}
