"""What the client sees of a generation: runner text split into thinking, content and tool
calls, in stream order.

The runner streams text (stop sequences already applied). When thinking is enabled the text
first goes through a ``ThinkingParser``; the answer part then goes through a ``ToolCallParser``
when the request sent ``tools``. Each ``feed`` returns the pieces that are ready; ``finish``
flushes what was held back. The adapter turns pieces into NDJSON chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .thinking import ThinkingParser, ThinkingState, ThinkingTags
from .tools import ToolCall, ToolCallParser

__all__ = ["OutputPipeline", "Piece"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Piece:
    content: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not (self.content or self.thinking or self.tool_calls)


class OutputPipeline:
    def __init__(self, thinking: ThinkingParser | None = None,
                 tools: ToolCallParser | None = None) -> None:
        self._thinking = thinking
        self._tools = tools

    @property
    def thinking_tags(self) -> ThinkingTags | None:
        return self._thinking.tags if self._thinking is not None else None

    @property
    def thinking_done(self) -> bool:
        """The model has left its reasoning (closed the tag, or answered without one): from
        here a ``format`` grammar applies (Ollama's api/types.go ThinkValue)."""
        return self._thinking is not None and self._thinking.state in (
            ThinkingState.THINKING_DONE, ThinkingState.THINKING_DONE_EATING_WHITESPACE)

    def without_thinking(self) -> OutputPipeline:
        """The pipeline for the answer pass that follows the reasoning."""
        return OutputPipeline(tools=self._tools)

    def feed(self, text: str) -> list[Piece]:
        thought, answer = self._thinking.feed(text) if self._thinking else ("", text)
        return self._split(thought, answer, final=False)

    def finish(self) -> list[Piece]:
        thought, answer = self._thinking.finish() if self._thinking else ("", "")
        return self._split(thought, answer, final=True)

    def _split(self, thought: str, answer: str, *, final: bool) -> list[Piece]:
        out: list[Piece] = []
        content: str = answer
        calls: list[ToolCall] = []
        if self._tools is not None:
            content, calls = self._tools.feed(answer) if answer else ("", [])
            if final:
                more, late = self._tools.finish()
                content += more
                calls += late
        if thought or content:
            out.append(Piece(content=content, thinking=thought))
        if calls:
            # Tool calls arrive in a chunk of their own with empty content (Ollama's
            # server/routes.go ChatHandler).
            out.append(Piece(tool_calls=tuple(calls)))
        return out
