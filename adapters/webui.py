"""The web chat page served at ``GET /ui``.

One self-contained HTML file (``webui.html``: inline CSS and JS, no CDN, no fonts) that talks
JSON-RPC 2.0 to the same server over the WebSocket at ``/api/ws``. Since every byte it needs
comes from this server, the policy below allows nothing but 'self'; inline style and script
are the only exception, which is what a single-file page needs. Model output is untrusted: the
page builds it from text nodes only, never ``innerHTML``.
"""

from __future__ import annotations

import functools
from importlib import resources

CSP = ("default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
       "script-src 'self' 'unsafe-inline'")

HEADERS: list[tuple[str, str]] = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    # Revalidate every load, so an upgraded server never runs against a stale page.
    ("Cache-Control", "no-cache"),
]


@functools.cache
def page() -> bytes:
    """The page's bytes (UTF-8), read from the package once."""
    return resources.files(__package__ or "pollama.adapters").joinpath("webui.html").read_bytes()
