"""The state of one ``pollama run`` chat and the requests it makes (Ollama's ``runOptions``).

Pure: the adapter (``cli/repl.py``) applies the commands ``repl_commands`` decides, sends the
request bodies built here over HTTP and feeds the answers back. Which text ``/show`` prints is
decided here too, from the ``/api/show`` response.

A turn normally goes to ``/api/chat`` with the whole conversation. Once ``/set template`` gave
the session its own template, turns go to ``/api/generate`` with that ``template`` (the chat API
takes none), the session's ``system`` and the ``context`` the previous such turn returned, so the
template is really used and the conversation still carries on; ``/clear``, ``/load`` and a new
template start the context afresh. ``/save`` records the template as the new model's TEMPLATE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import repl_commands as rc
from .errors import ModelfileError
from .modelfile import Command, Modelfile, parse_modelfile
from .show import show_sections

__all__ = [
    "THINK_LEVELS", "Session", "go_v", "info_text", "modelfile_with_template", "parse_think_flag",
    "show_text", "think_args"
]

THINK_LEVELS = ("high", "medium", "low", "max")


def parse_think_flag(value: str) -> bool | str:
    """``--think[=VALUE]`` as Ollama's ``run`` reads it."""
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    if value in THINK_LEVELS:
        return value
    raise ValueError(f'invalid value for --think: "{value}" '
                     "(must be true, false, high, medium, low, or max)")


def think_args(args: list[str]) -> list[str]:
    """Command-line words with each ``--think`` given its value explicitly: a bare ``--think``
    is ``--think=true`` and does not take the next word (cobra's ``NoOptDefVal``, so
    ``run MODEL --think "why?"`` keeps its prompt) unless that word is a think value."""
    out: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            return out + args[i:]
        if word == "--think":
            following = args[i + 1] if i + 1 < len(args) else None
            if following in ("true", "false", *THINK_LEVELS):
                out.append(f"--think={following}")
                i += 2
                continue
            word = "--think=true"
        out.append(word)
        i += 1
    return out


def go_v(value: Any) -> str:
    """A parameter value as Go's ``%v`` prints it (``/show parameters``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, list):
        return "[" + " ".join(go_v(v) for v in value) + "]"
    return str(value)


@dataclass(slots=True, kw_only=True)
class Session:
    model: str
    system: str = ""  # set with /set system; "" is the model's own
    template: str | None = None  # set with /set template
    options: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    # The model's own MESSAGEs (a saved session): shown at start, kept by /save.
    loaded_messages: list[dict[str, Any]] = field(default_factory=list)
    format: Any = None  # "json", a JSON schema, or None
    think: bool | str | None = None  # None: not sent
    think_explicit: bool = False  # set by --think or /set [no]think: a /load keeps it
    hide_thinking: bool = False
    keep_alive: str | None = None
    verbose: bool = False
    wordwrap: bool = True
    history: bool = True
    context: list[int] | None = None  # template mode: what the last /api/generate returned

    # -- commands that only change the session ---------------------------------------------
    def apply(self, cmd: rc.SessionCommand) -> str:
        """Apply a command; return what to print (Ollama's confirmation line, may be "")."""
        if isinstance(cmd, rc.SetParameter):
            self.options[cmd.name] = cmd.value
        elif isinstance(cmd, rc.SetSystem):
            self.set_system(cmd.text)
        elif isinstance(cmd, rc.SetTemplate):
            self.template = cmd.text
            self.context = None
        elif isinstance(cmd, rc.SetVerbose):
            self.verbose = cmd.on
        elif isinstance(cmd, rc.SetWordWrap):
            self.wordwrap = cmd.on
        elif isinstance(cmd, rc.SetHistory):
            self.history = cmd.on
        elif isinstance(cmd, rc.SetFormat):
            self.format = cmd.format or None
        elif isinstance(cmd, rc.SetThink):
            self.think = cmd.value
            self.think_explicit = True
        elif isinstance(cmd, rc.Clear):
            self.clear()
        return cmd.reply

    def set_system(self, text: str) -> None:
        """Ollama's ``/set system``: a system message ending the conversation is replaced,
        else one is appended."""
        self.system = text
        msg = {"role": "system", "content": text}
        if self.messages and self.messages[-1].get("role") == "system":
            self.messages[-1] = msg
        else:
            self.messages.append(msg)

    def clear(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.context = None

    def switch_model(self, model: str, info: Mapping[str, Any]) -> None:
        """``/load``: another model, and nothing of the conversation, system or template.
        Parameters, format and modes stay, as in Ollama."""
        self.model = model
        self.messages = []
        self.system = ""
        self.template = None
        self.context = None
        self.take_model_info(info)

    def take_model_info(self, info: Mapping[str, Any]) -> None:
        """What the session takes from ``/api/show``: the saved messages and whether the model
        thinks (thinking is on for a thinking model unless the user said otherwise)."""
        self.loaded_messages = [dict(m) for m in info.get("messages") or []]
        if not self.think_explicit:
            self.think = True if "thinking" in (info.get("capabilities") or []) else None

    # -- requests ----------------------------------------------------------------------------
    def _common(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.options:
            body["options"] = dict(self.options)
        if self.format is not None:
            body["format"] = self.format
        if self.think is not None:
            body["think"] = self.think
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        return body

    def load_request(self) -> dict[str, Any]:
        """The empty ``/api/generate`` that loads the model (and fails early on a ``think``
        the model cannot do), as Ollama's ``loadOrUnloadModel``."""
        body: dict[str, Any] = {"model": self.model}
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        if self.think is not None:
            body["think"] = self.think
        return body

    def generate_request(self, prompt: str, images: Sequence[str] = ()) -> dict[str, Any]:
        """A ``/api/generate`` for ``prompt``: a one-shot ``run`` (Ollama's ``generate``), or a
        turn of a session with its own template."""
        body: dict[str, Any] = {"model": self.model, "prompt": prompt}
        if self.template is not None:
            body["template"] = self.template
        if self.system:
            body["system"] = self.system
        if self.context:
            body["context"] = list(self.context)
        if images:
            body["images"] = list(images)
        return self._common(body)

    def turn_request(self, user: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Add the user's message and return ``(path, body)`` for the answer."""
        self.messages.append(user)
        if self.template is None:
            return "/api/chat", self._common({"model": self.model,
                                              "messages": list(self.messages)})
        return "/api/generate", self.generate_request(str(user.get("content", "")),
                                                      user.get("images", ()))

    def record_answer(self, content: str, thinking: str = "",
                      context: Sequence[int] | None = None) -> None:
        """The assistant's answer (or what came of it before Ctrl+C) joins the conversation;
        an empty interrupted answer leaves the user's message alone, as Ollama does."""
        if content or thinking:
            msg: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                msg["thinking"] = thinking
            self.messages.append(msg)
        if context is not None:
            self.context = list(context)

    def drop_last_user(self) -> None:
        """A turn the server refused leaves no trace."""
        if self.messages and self.messages[-1].get("role") == "user":
            self.messages.pop()

    def show_request(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model}
        if self.system:
            body["system"] = self.system
        if self.options:
            body["options"] = dict(self.options)
        return body

    def create_request(self, name: str, parent_model: str = "") -> dict[str, Any]:
        """``/save NAME`` (Ollama's ``NewCreateRequest``): from the base model, with the
        session's system, parameters and every message so far (the model's own first)."""
        body: dict[str, Any] = {"model": name, "from": parent_model or self.model,
                                "stream": False}
        if self.system:
            body["system"] = self.system
        if self.template is not None:
            body["template"] = self.template
        if self.options:
            body["parameters"] = dict(self.options)
        messages = [{"role": m["role"], "content": m.get("content", "")}
                    for m in self.loaded_messages + self.messages]
        if messages:
            body["messages"] = messages
        return body


# -- /show -----------------------------------------------------------------------------------

def info_text(info: Mapping[str, Any]) -> str:
    """``pollama show MODEL`` and ``/show info``: the sections Ollama prints."""
    return show_sections(info.get("model_info") or {}, info.get("details") or {},
                         info.get("capabilities") or [], info.get("parameters") or "",
                         info.get("system"), [info["license"]] if info.get("license") else [],
                         projector=info.get("projector_info"))


def modelfile_with_template(text: str, template: str) -> str:
    """The Modelfile ``/api/show`` gave, with the session's template in place of the model's
    (the server's show takes no template since Ollama 0.2.6)."""
    lines = text.splitlines(keepends=True)
    head = ""
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        head += lines.pop(0)
    try:
        commands = list(parse_modelfile("".join(lines)).commands)
    except ModelfileError:
        return text
    mine = Command(name="template", args=template)
    at = next((i for i, c in enumerate(commands) if c.name == "template"), None)
    if at is not None:
        commands[at] = mine
    else:
        at = next((i for i, c in enumerate(commands) if c.name not in ("from", "adapter")),
                  len(commands))
        commands.insert(at, mine)
    return head + Modelfile(commands=tuple(commands)).to_text()


def show_text(topic: rc.ShowTopic, info: Mapping[str, Any], session: Session) -> tuple[str, bool]:
    """What ``/show TOPIC`` prints, and whether on stderr (Ollama prints the info there)."""
    if topic is rc.ShowTopic.INFO:
        return info_text(info), True
    if topic is rc.ShowTopic.LICENSE:
        return (info.get("license") or "No license was specified for this model.") + "\n", False
    if topic is rc.ShowTopic.MODELFILE:
        text = info.get("modelfile") or ""
        if session.template is not None:
            text = modelfile_with_template(text, session.template)
        return text + "\n", False
    if topic is rc.ShowTopic.PARAMETERS:
        out = ["Model defined parameters:"]
        params = info.get("parameters") or ""
        if params:
            out += [f"  {line}" for line in params.split("\n")]
        else:
            out.append("  No additional parameters were specified for this model.")
        out.append("")
        if session.options:
            out.append("User defined parameters:")
            out += [f"  {k:<30} {go_v(v)}" for k, v in session.options.items()]
            out.append("")
        return "\n".join(out) + "\n", False
    if topic is rc.ShowTopic.SYSTEM:
        system = session.system or info.get("system") or ""
        if not system:
            return "No system message was specified for this model.\n", False
        return system + "\n\n", False
    template = session.template if session.template is not None else info.get("template")
    if not template:
        return "No prompt template was specified for this model.\n", False
    return template + "\n", False
