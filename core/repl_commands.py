"""What a line typed at ``pollama run``'s prompt means, as Ollama's ``cmd/interactive.go`` reads
it.

Pure: the adapter (``cli/repl.py``) reads a line from the terminal and feeds it to a
:class:`LineReader`; what comes back is a frozen command for the adapter to carry out, a
:class:`Say` to print, or ``None`` (nothing to do yet). No I/O, no server, no terminal here.

Theory of operation
-------------------
The reader has one piece of state, the open block (:class:`Block`). With no block open a line
is a command (it starts with ``/``) or a prompt. Three double quotes open a block: at the start
of a prompt line (``Block.PROMPT``) or after ``/set system`` / ``/set template``. While a block
is open every line is text; the block closes on a line ending in three double quotes, and the
text (lines joined with newlines, the quotes cut) becomes a :class:`Prompt`,
:class:`SetSystem` or :class:`SetTemplate`. Ctrl+C drops an open block (:meth:`LineReader.reset`).

Commands match by prefix as Ollama's do (``/clearall`` clears, ``/byeee`` leaves); their words
are split on whitespace. Deliberate differences, in the user's favour:

- a ``/set system \"\"\"`` block keeps the line break after its first line (Ollama joins the first
  two lines without one), and a multi-line system message replaces a system message that ends
  the conversation as the one-line form does (Ollama appends a second one);
- ``/set template`` (Ollama had it until 0.2; pollama applies it, see ``repl_session``) is listed
  in ``/? set``; an unknown ``/? topic`` shows the general help instead of nothing;
- a prompt of only spaces is not sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from . import options
from .errors import PollamaError
from .jsonwire import go_quote

__all__ = [
    "QUOTES", "USAGE_PARAMETERS", "USAGE_SET", "USAGE_SHORTCUTS", "USAGE_SHOW", "Block", "Bye",
    "Clear", "Command", "LineReader", "ListModels", "Load", "Prompt", "Save", "Say",
    "SessionCommand", "SetFormat", "SetHistory", "SetParameter", "SetSystem", "SetTemplate",
    "SetThink", "SetVerbose", "SetWordWrap", "Show", "ShowTopic", "Unknown", "parse_parameter",
    "usage"
]

QUOTES = '"""'


class Block(enum.Enum):
    NONE = "none"
    PROMPT = "prompt"
    SYSTEM = "system"
    TEMPLATE = "template"


class ShowTopic(enum.Enum):
    INFO = "info"
    LICENSE = "license"
    MODELFILE = "modelfile"
    PARAMETERS = "parameters"
    SYSTEM = "system"
    TEMPLATE = "template"

    def __repr__(self) -> str:
        return f"ShowTopic.{self.name}"


# -- commands --------------------------------------------------------------------------------
# Frozen, with reprs that are valid Python. ``reply`` is what Ollama prints on stdout once the
# adapter has applied the command ("" for nothing).


@dataclass(frozen=True, slots=True, kw_only=True)
class Prompt:
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetParameter:
    name: str
    value: Any
    raw: tuple[str, ...]

    @property
    def reply(self) -> str:
        return f"Set parameter '{self.name}' to '{', '.join(self.raw)}'"


@dataclass(frozen=True, slots=True, kw_only=True)
class SetSystem:
    text: str

    @property
    def reply(self) -> str:
        return "Set system message."


@dataclass(frozen=True, slots=True, kw_only=True)
class SetTemplate:
    text: str

    @property
    def reply(self) -> str:
        return "Set prompt template."


@dataclass(frozen=True, slots=True, kw_only=True)
class SetVerbose:
    on: bool

    @property
    def reply(self) -> str:
        return "Set 'verbose' mode." if self.on else "Set 'quiet' mode."


@dataclass(frozen=True, slots=True, kw_only=True)
class SetWordWrap:
    on: bool

    @property
    def reply(self) -> str:
        return "Set 'wordwrap' mode." if self.on else "Set 'nowordwrap' mode."


@dataclass(frozen=True, slots=True, kw_only=True)
class SetHistory:
    on: bool

    @property
    def reply(self) -> str:
        return ""  # Ollama says nothing


@dataclass(frozen=True, slots=True, kw_only=True)
class SetFormat:
    format: str  # "" for none

    @property
    def reply(self) -> str:
        return f"Set format to '{self.format}' mode." if self.format else "Disabled format."


@dataclass(frozen=True, slots=True, kw_only=True)
class SetThink:
    value: bool | str  # True, False or a level ("high", ...) the server validates

    @property
    def reply(self) -> str:
        if self.value is False:
            return "Set 'nothink' mode."
        if self.value is True:
            return "Set 'think' mode."
        return f"Set 'think' mode to '{self.value}'."


@dataclass(frozen=True, slots=True, kw_only=True)
class Show:
    topic: ShowTopic


@dataclass(frozen=True, slots=True, kw_only=True)
class Load:
    model: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Save:
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ListModels:
    prefix: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Clear:
    @property
    def reply(self) -> str:
        return "Cleared session context"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Say:
    """Text to print as it is (help and usage go to stderr, as Ollama prints them)."""

    text: str
    err: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown:
    """A ``/word`` that is no command. For a vision model the adapter first checks whether it
    starts an image path (Ollama sends such a line as a prompt)."""

    word: str
    line: str

    @property
    def reply(self) -> str:
        return f"Unknown command '{self.word}'. Type /? for help"


Command = (Prompt | SetParameter | SetSystem | SetTemplate | SetVerbose | SetWordWrap
           | SetHistory | SetFormat | SetThink | Show | Load | Save | ListModels | Clear | Bye
           | Say | Unknown)
SessionCommand = (SetParameter | SetSystem | SetTemplate | SetVerbose | SetWordWrap | SetHistory
                  | SetFormat | SetThink | Clear)


# -- help texts (Ollama's wording; stderr) ---------------------------------------------------

def usage(multimodal: bool = False) -> str:
    lines = [
        "Available Commands:",
        "  /set            Set session variables",
        "  /show           Show model information",
        "  /load <model>   Load a session or model",
        "  /save <model>   Save your current session",
        "  /clear          Clear session context",
        "  /bye            Exit",
        "  /?, /help       Help for a command",
        "  /? shortcuts    Help for keyboard shortcuts",
        "",
        'Use """ to begin a multi-line message.',
    ]
    if multimodal:
        lines.append("Use /path/to/file to include .jpg, .png, or .webp images.")
    return "\n".join(lines) + "\n\n"


USAGE_SET = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set template <string> Set prompt template
  /set history           Enable history
  /set nohistory         Disable history
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking

"""

USAGE_SHOW = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template

"""

USAGE_SHORTCUTS = """Available keyboard shortcuts:
  Ctrl + a            Move to the beginning of the line (Home)
  Ctrl + e            Move to the end of the line (End)
   Alt + b            Move back (left) one word
   Alt + f            Move forward (right) one word
  Ctrl + k            Delete the sentence after the cursor
  Ctrl + u            Delete the sentence before the cursor
  Ctrl + w            Delete the word before the cursor

  Up / Down           Previous / next line from the history
  Ctrl + r            Search the history
  Ctrl + l            Clear the screen
  Ctrl + g            Open default editor to compose a prompt
  Ctrl + c            Stop the model from responding
  Ctrl + d            Exit pollama (/bye)

"""

# Only the most common parameters, as Ollama lists them.
USAGE_PARAMETERS = """Available Parameters:
  /set parameter seed <int>             Random number seed
  /set parameter num_predict <int>      Max number of tokens to predict
  /set parameter top_k <int>            Pick from top k num of tokens
  /set parameter top_p <float>          Pick token based on sum of probabilities
  /set parameter min_p <float>          Pick token based on top token probability * min_p
  /set parameter num_ctx <int>          Set the context size
  /set parameter temperature <float>    Set creativity level
  /set parameter repeat_penalty <float> How strongly to penalize repetitions
  /set parameter repeat_last_n <int>    Set how far back to look for repetitions
  /set parameter num_gpu <int>          The number of layers to send to the GPU
  /set parameter stop <string> <string> ...   Set the stop parameters

"""


# -- parsing ---------------------------------------------------------------------------------

def _cut_suffix(text: str, suffix: str) -> tuple[str, bool]:
    return (text[: -len(suffix)], True) if text.endswith(suffix) else (text, False)


def parse_parameter(name: str, values: tuple[str, ...]) -> SetParameter | Say:
    """``/set parameter NAME VALUE...`` (Ollama's ``api.FormatParams``): a list option takes
    every value, any other the first one."""
    try:
        spec = options.SPECS.get(name)
        if spec is not None and spec.kind is options.Kind.STRINGS:
            value: Any = list(values)
        else:
            value = options.parse_parameter(name, values[0])
    except PollamaError as exc:
        return Say(text=f"Couldn't set parameter: {go_quote(exc.message)}")
    return SetParameter(name=name, value=value, raw=values)


class LineReader:
    """Turns typed lines into commands; see the module docstring."""

    def __init__(self, *, multimodal: bool = False) -> None:
        self.multimodal = multimodal  # the help mentions image paths
        self.block = Block.NONE
        self._parts: list[str] = []

    @property
    def continuing(self) -> bool:
        """A block is open: the adapter shows the ``... `` prompt."""
        return self.block is not Block.NONE

    def reset(self) -> None:
        self.block = Block.NONE
        self._parts = []

    def feed(self, line: str) -> Command | None:
        if self.block is not Block.NONE:
            return self._continue_block(line)
        if line.startswith(QUOTES):
            body, closed = _cut_suffix(line[len(QUOTES):], QUOTES)
            if closed:
                return _prompt(body)
            self._open(Block.PROMPT, body)
            return None
        if not line.startswith("/"):
            return _prompt(line)
        return self._command(line)

    def _open(self, block: Block, first: str) -> None:
        self.block = block
        self._parts = [first, "\n"]

    def _continue_block(self, line: str) -> Command | None:
        before, closed = _cut_suffix(line, QUOTES)
        self._parts.append(before)
        if not closed:
            self._parts.append("\n")
            return None
        text, block = "".join(self._parts), self.block
        self.reset()
        if block is Block.SYSTEM:
            return SetSystem(text=text)
        if block is Block.TEMPLATE:
            return SetTemplate(text=text)
        return _prompt(text)

    def _command(self, line: str) -> Command | None:
        args = line.split()
        for prefix, handler in _PREFIXES:
            if line.startswith(prefix):
                return handler(self, args)
        return Unknown(word=args[0], line=line)

    # -- one handler per command prefix, in Ollama's order of tests --------------------------

    def _list(self, args: list[str]) -> Command:
        return ListModels(prefix=args[1] if len(args) > 1 else "")

    def _load(self, args: list[str]) -> Command:
        if len(args) != 2:
            return Say(text="Usage:\n  /load <modelname>\n")
        return Load(model=args[1])

    def _save(self, args: list[str]) -> Command:
        if len(args) != 2:
            return Say(text="Usage:\n  /save <modelname>\n")
        return Save(name=args[1])

    def _clear(self, args: list[str]) -> Command:
        return Clear()

    def _set(self, args: list[str]) -> Command | None:
        if len(args) < 2:
            return Say(text=USAGE_SET, err=True)
        word = args[1]
        flags: dict[str, Command] = {
            "history": SetHistory(on=True), "nohistory": SetHistory(on=False),
            "wordwrap": SetWordWrap(on=True), "nowordwrap": SetWordWrap(on=False),
            "verbose": SetVerbose(on=True), "quiet": SetVerbose(on=False),
            "noformat": SetFormat(format=""), "nothink": SetThink(value=False),
        }
        if word in flags:
            return flags[word]
        if word == "think":
            return SetThink(value=args[2] if len(args) > 2 else True)
        if word == "format":
            if len(args) < 3 or args[2] != "json":
                return Say(text="Invalid or missing format. For 'json' mode use "
                                "'/set format json'\n")
            return SetFormat(format="json")
        if word == "parameter":
            if len(args) < 4:
                return Say(text=USAGE_PARAMETERS, err=True)
            return parse_parameter(args[2], tuple(args[3:]))
        if word in ("system", "template"):
            if len(args) < 3:
                return Say(text=USAGE_SET, err=True)
            return self._set_text(Block.SYSTEM if word == "system" else Block.TEMPLATE,
                                  " ".join(args[2:]))
        return Say(text=f"Unknown command '/set {word}'. Type /? for help\n")

    def _set_text(self, block: Block, text: str) -> Command | None:
        if text.startswith(QUOTES):
            body, closed = _cut_suffix(text[len(QUOTES):], QUOTES)
            if not closed:
                self._open(block, body)
                return None
            text = body
        return SetSystem(text=text) if block is Block.SYSTEM else SetTemplate(text=text)

    def _show(self, args: list[str]) -> Command:
        if len(args) < 2:
            return Say(text=USAGE_SHOW, err=True)
        try:
            return Show(topic=ShowTopic(args[1]))
        except ValueError:
            return Say(text=f"Unknown command '/show {args[1]}'. Type /? for help\n")

    def _help(self, args: list[str]) -> Command:
        topic = args[1] if len(args) > 1 else ""
        if topic in ("set", "/set"):
            return Say(text=USAGE_SET, err=True)
        if topic in ("show", "/show"):
            return Say(text=USAGE_SHOW, err=True)
        if topic in ("shortcut", "shortcuts"):
            return Say(text=USAGE_SHORTCUTS, err=True)
        return Say(text=usage(self.multimodal), err=True)

    def _bye(self, args: list[str]) -> Command:
        return Bye()


def _prompt(text: str) -> Prompt | None:
    return Prompt(text=text) if text.strip() else None


_PREFIXES = (
    ("/list", LineReader._list),
    ("/load", LineReader._load),
    ("/save", LineReader._save),
    ("/clear", LineReader._clear),
    ("/set", LineReader._set),
    ("/show", LineReader._show),
    ("/help", LineReader._help),
    ("/?", LineReader._help),
    ("/exit", LineReader._bye),
    ("/bye", LineReader._bye),
)
