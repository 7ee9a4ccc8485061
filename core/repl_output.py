"""How ``pollama run`` prints an answer: word wrap, the thinking block, the ``--verbose`` timings.

Pure: :class:`AnswerDisplay` takes the streamed pieces of an answer and returns the text to
write; the adapter writes it. Mirrors Ollama's ``displayResponse``, ``thinkingOutputOpeningText``
and ``api.Metrics.Summary`` (``cmd/cmd.go``, ``api/types.go``).

Word wrap differs from Ollama's in how, not in what: Ollama prints each character at once and,
when a word overflows the line, moves the cursor back over it with escape sequences and prints it
again on the next line. Here a word is held back until it ends (a space, a line break, or the end
of the answer), then placed on the current line or the next one; the output is plain text
that reads the same in a terminal, a pipe or a log.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BOLD", "GREY", "RESET", "AnswerDisplay", "WordWrap", "char_width", "go_duration",
    "text_width", "thinking_closing", "thinking_opening", "timing_lines"
]

# Ollama's readline colours for the thinking block.
GREY = "\x1b[38;5;245m"
BOLD = "\x1b[1m"
RESET = "\x1b[0m"


def char_width(ch: str) -> int:
    """Terminal columns of one character: 2 for East Asian wide/full-width, 0 for combining."""
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


class WordWrap:
    """Streaming word wrap at ``width`` columns (Ollama wraps at the terminal width less 5)."""

    def __init__(self, width: int) -> None:
        if width < 1:
            raise ValueError("width must be at least 1")
        self.width = width
        self.column = 0
        self._word = ""
        self._broke = False  # the current line began at a break made here, not in the text

    def _place(self) -> str:
        word, self._word = self._word, ""
        if not word:
            return ""
        w = text_width(word)
        out = ""
        if self.column > 0 and self.column + w > self.width:
            out, self.column = "\n", 0
        self.column += w
        self._broke = False
        return out + word

    def feed(self, text: str) -> str:
        out: list[str] = []
        for ch in text:
            if ch in "\r\n":
                out.append(self._place() + "\n")
                self.column, self._broke = 0, False
            elif ch in " \t":
                out.append(self._place())
                if self.column + 1 > self.width:
                    out.append("\n")  # the space that ends a full line becomes the break
                    self.column, self._broke = 0, True
                elif not (self.column == 0 and self._broke):  # no space to open a wrapped line
                    out.append(ch)
                    self.column += 1
            else:
                if self._word and text_width(self._word) + char_width(ch) > self.width:
                    out.append(self._place())  # a word longer than a line is broken
                self._word += ch
        return "".join(out)

    def flush(self) -> str:
        return self._place()


class _Plain:
    """No wrapping (``--nowordwrap``, ``/set nowordwrap``, or not a terminal)."""

    def feed(self, text: str) -> str:
        return text

    def flush(self) -> str:
        return ""


def thinking_opening(plain: bool) -> str:
    text = "Thinking...\n"
    return text if plain else GREY + BOLD + text + RESET + GREY


def thinking_closing(plain: bool) -> str:
    text = "...done thinking.\n\n"
    return text if plain else GREY + BOLD + text + RESET


class AnswerDisplay:
    """The text to print for each streamed piece of an answer.

    ``width`` is the wrap width (``None``: no wrap); ``plain`` leaves out colours (output that
    is not a terminal). Thinking is shown dimmed between "Thinking..." and "...done thinking.",
    unless ``hide_thinking``; the answer follows it, separated by a blank line.
    """

    def __init__(self, *, width: int | None, plain: bool, hide_thinking: bool = False) -> None:
        self.width = width
        self.plain = plain
        self.hide_thinking = hide_thinking
        self._wrap: WordWrap | _Plain = self._new_wrap()
        self._thinking_open = False
        self._thought_ends_line = True
        self.thinking = ""
        self.content = ""

    def _new_wrap(self) -> WordWrap | _Plain:
        return WordWrap(self.width) if self.width else _Plain()

    def feed(self, *, thinking: str = "", content: str = "") -> str:
        self.thinking += thinking
        self.content += content
        out = ""
        if thinking and not self.hide_thinking:
            if not self._thinking_open:
                out += thinking_opening(self.plain)
                self._thinking_open = True
            out += self._wrap.feed(thinking)
            self._thought_ends_line = thinking.endswith("\n")
        if content and self._thinking_open:
            out += self._close_thinking()
        return out + self._wrap.feed(content)

    def _close_thinking(self) -> str:
        out = self._wrap.flush()
        if not self._thought_ends_line:
            out += "\n"
        out += thinking_closing(self.plain)
        self._thinking_open = False
        self._wrap = self._new_wrap()
        return out

    def finish(self) -> str:
        """What is left to print when the answer ends (or is interrupted)."""
        out = self._wrap.flush()
        if self._thinking_open and not self.plain:
            out += RESET  # an answer that stopped mid-thought leaves no grey behind
        return out


# -- --verbose ---------------------------------------------------------------------------------

def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: ``1.5s``, ``2m3.25s``, ``12.5ms``, ``800µs``, ``0s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return sign + _fraction(u, 1_000) + "µs"
    if u < 1_000_000_000:
        return sign + _fraction(u, 1_000_000) + "ms"
    hours, rest = divmod(u, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    out = _fraction(rest, 1_000_000_000) + "s"
    if hours or minutes:
        out = f"{minutes}m" + out
    if hours:
        out = f"{hours}h" + out
    return sign + out


def _fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def timing_lines(final: Mapping[str, Any]) -> list[str]:
    """The block ``--verbose`` / ``/set verbose`` prints on stderr after an answer (Ollama's
    ``Metrics.Summary``): each line only when its figure is above zero."""

    def num(key: str) -> int:
        value = final.get(key)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    lines = []
    total, load = num("total_duration"), num("load_duration")
    p_count, p_dur = num("prompt_eval_count"), num("prompt_eval_duration")
    e_count, e_dur = num("eval_count"), num("eval_duration")
    if total > 0:
        lines.append(f"total duration:       {go_duration(total)}")
    if load > 0:
        lines.append(f"load duration:        {go_duration(load)}")
    if p_count > 0:
        lines.append(f"prompt eval count:    {p_count} token(s)")
    if p_dur > 0:
        lines.append(f"prompt eval duration: {go_duration(p_dur)}")
        lines.append(f"prompt eval rate:     {p_count / (p_dur / 1e9):.2f} tokens/s")
    if e_count > 0:
        lines.append(f"eval count:           {e_count} token(s)")
    if e_dur > 0:
        lines.append(f"eval duration:        {go_duration(e_dur)}")
        lines.append(f"eval rate:            {e_count / (e_dur / 1e9):.2f} tokens/s")
    return lines
