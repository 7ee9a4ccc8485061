"""Stop sequences over streamed text.

A stop string may arrive split across tokens, so text that could still be the start of a stop
sequence is held back until it is decided. The runner calls ``feed`` per decoded piece and emits
what comes back; on a match, everything from the stop string on is dropped (Ollama does not
include the stop sequence in the response).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["StopMatcher"]


class StopMatcher:
    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add decoded text; return the part that is safe to emit now."""
        if self.stopped:
            return ""
        pending = self._held + text
        first = -1
        for stop in self._stops:
            i = pending.find(stop)
            if i >= 0 and (first < 0 or i < first):
                first = i
        if first >= 0:
            self.stopped = True
            self._held = ""
            return pending[:first]
        keep = self._longest_partial(pending)
        self._held = pending[len(pending) - keep:] if keep else ""
        return pending[: len(pending) - keep]

    def flush(self) -> str:
        """At the end of generation the held text was not a stop after all."""
        out, self._held = self._held, ""
        return "" if self.stopped else out

    def _longest_partial(self, text: str) -> int:
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
