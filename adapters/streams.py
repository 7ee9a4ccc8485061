"""What anyio raises when the other end of a byte stream has gone, named once.

A peer that resets or closes its socket or pipe shows up as one of ``CLOSED`` when we send
(``RECEIVE_CLOSED`` adds the clean end of stream, when we receive). Each edge maps them once,
as httpcore's backends do: the HTTP connection into ``ClientDisconnected`` (or end of data),
the runner pipe into ``RunnerTerminated``; where nobody is left to tell, they are suppressed.
"""

from __future__ import annotations

import anyio

CLOSED: tuple[type[Exception], ...] = (anyio.BrokenResourceError, anyio.ClosedResourceError,
                                       OSError)
RECEIVE_CLOSED: tuple[type[Exception], ...] = (anyio.EndOfStream, *CLOSED)
