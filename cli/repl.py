"""``pollama run``: one answer, or Ollama's interactive prompt on a terminal.

The adapter half: it reads the terminal (prompt_toolkit: history in ~/.pollama/history, the
arrow keys, Ctrl+R search), talks to the server over HTTP and writes what the pure modules
decide: ``core.repl_commands`` (what a typed line means), ``core.repl_session`` (the session and
its requests) and ``core.repl_output`` (how an answer is printed).

Ctrl+C while an answer streams closes the request (the server stops generating when the client
hangs up) and returns to the prompt; at the prompt it drops the line; Ctrl+D or ``/bye`` leave.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import sys
from collections.abc import Generator, Iterable
from typing import Any, cast

import click

from pollama.core import repl_commands as rc
from pollama.core.repl_output import AnswerDisplay, timing_lines
from pollama.core.repl_session import Session, parse_think_flag, show_text
from pollama.core.requests import parse_go_duration

from . import images
from .client import APIError, Client

HISTORY_LIMIT = 100  # entries kept in ~/.pollama/history, as Ollama keeps in ~/.ollama/history


# -- terminal ----------------------------------------------------------------------------------

def _out(text: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text)
    stream.flush()


class Spinner:
    """Ollama's braille spinner on stderr while a model loads or an answer has not begun."""

    def __init__(self) -> None:
        self._status: Any = None
        if sys.stderr.isatty():
            from rich.console import Console

            self._status = Console(stderr=True).status("", spinner="dots")

    def __enter__(self) -> Spinner:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def _history_class() -> type:
    from prompt_toolkit.history import History

    class LineHistory(History):
        """Ollama's history file: one entry a line, the last 100, mode 0600. While disabled
        (``/set nohistory``, POLLAMA_NOHISTORY) nothing new is recorded."""

        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path
            self.enabled = True

        def load_history_strings(self) -> Iterable[str]:
            try:
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    lines = [line.strip() for line in f if line.strip()]
            except OSError:
                return []
            return list(reversed(lines[-HISTORY_LIMIT:]))  # newest first

        def append_string(self, string: str) -> None:
            if self.enabled:
                super().append_string(string)

        def store_string(self, string: str) -> None:
            entries = list(reversed(list(self.load_history_strings()))) + [string]
            try:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.writelines(e + "\n" for e in entries[-HISTORY_LIMIT:])
            except OSError:
                pass  # a read-only home must not end the chat

    return LineHistory


class Terminal:
    """Reads one line at a time with prompt_toolkit: ``>>> `` or ``... `` in a block."""

    def __init__(self, history_path: str, history: bool) -> None:
        from prompt_toolkit import PromptSession, search
        from prompt_toolkit.filters import is_searching
        from prompt_toolkit.formatted_text import FormattedText
        from prompt_toolkit.key_binding import KeyBindings

        self.history = _history_class()(history_path)
        self.history.enabled = history
        self.interrupted_text = ""
        keys = KeyBindings()

        @keys.add("c-c")
        def _interrupt(event: Any) -> None:
            self.interrupted_text = event.current_buffer.text
            event.app.exit(exception=KeyboardInterrupt, style="class:aborting")

        @keys.add("c-g", filter=~is_searching)  # in a search Ctrl+G still cancels it
        def _editor(event: Any) -> None:
            event.current_buffer.open_in_editor()

        @keys.add("enter", filter=is_searching)
        def _run_found(event: Any) -> None:  # Enter in a Ctrl+R search runs the line, as bash
            search.accept_search()
            event.app.layout.current_buffer.validate_and_handle()

        self._placeholder = FormattedText([("fg:ansibrightblack", "Send a message (/? for help)")])
        self._alt_placeholder = FormattedText([("fg:ansibrightblack", "Press Enter to send")])
        self.session: Any = PromptSession(history=self.history, key_bindings=keys)

    def read(self, continuing: bool) -> str:
        self.interrupted_text = ""
        return str(self.session.prompt("... " if continuing else ">>> ",
                                       placeholder=self._alt_placeholder if continuing
                                       else self._placeholder))


# -- talking to the server ---------------------------------------------------------------------

def _wrap_width(session: Session) -> int | None:
    if not session.wordwrap or not sys.stdout.isatty():
        return None
    width = shutil.get_terminal_size((80, 24)).columns
    return width - 5 if width >= 10 else None


def _pieces(chunk: dict[str, Any]) -> tuple[str, str]:
    """(thinking, content) of a /api/chat or /api/generate chunk."""
    if "message" in chunk:
        msg = chunk.get("message") or {}
        return str(msg.get("thinking") or ""), str(msg.get("content") or "")
    return str(chunk.get("thinking") or ""), str(chunk.get("response") or "")


class Answer:
    """One streamed answer: printed as it comes, with what it came to."""

    def __init__(self, session: Session) -> None:
        self.display = AnswerDisplay(width=_wrap_width(session), plain=not sys.stdout.isatty(),
                                     hide_thinking=session.hide_thinking)
        self.final: dict[str, Any] = {}
        self.interrupted = False

    def stream(self, client: Client, path: str, body: dict[str, Any]) -> None:
        """Print the answer; Ctrl+C ends it early (``interrupted``), an error raises."""
        spinner = Spinner().__enter__()
        chunks = cast(Generator[dict[str, Any], None, None], client.stream(path, body))
        try:
            for chunk in chunks:
                thinking, content = _pieces(chunk)
                if content or (thinking and not self.display.hide_thinking):
                    spinner.stop()
                _out(self.display.feed(thinking=thinking, content=content))
                if chunk.get("done"):
                    self.final = chunk
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            spinner.stop()
            chunks.close()  # closes the response: the server stops generating
            _out(self.display.finish())


def _user_message(text: str, vision: bool) -> dict[str, Any]:
    """A user turn; for a vision model, image file paths in the text become its images."""
    if not vision:
        return {"role": "user", "content": text}
    text, found = images.extract(text)
    for path, _ in found:
        click.echo(f"Added image '{path}'", err=True)
    msg: dict[str, Any] = {"role": "user", "content": text}
    if found:
        msg["images"] = [base64.b64encode(data).decode("ascii") for _, data in found]
    return msg


def _show(client: Client, model: str, insecure: bool) -> dict[str, Any]:
    """/api/show, pulling the model first when the server does not have it (as Ollama's run)."""
    try:
        return dict(client.post("/api/show", {"model": model}))
    except APIError as exc:
        if exc.status != 404:
            raise
    from .main import _pull

    _pull(client, model, insecure)
    return dict(client.post("/api/show", {"model": model}))


def _parse_format(value: str) -> Any:
    """``--format``: ``json``, or a JSON schema (Ollama sends the text as raw JSON)."""
    if not value or value == "json":
        return value or None
    try:
        return json.loads(value)
    except ValueError:
        raise click.ClickException(f'invalid format "{value}": use json or a JSON schema') \
            from None


# -- the command -------------------------------------------------------------------------------

def run(model: str, words: tuple[str, ...], *, format_: str = "", keepalive: str = "",
        think: str | None = None, hidethinking: bool = False, insecure: bool = False,
        nowordwrap: bool = False, verbose: bool = False) -> None:
    """``pollama run MODEL [PROMPT...]`` (Ollama's ``RunHandler``)."""
    session = Session(model=model, verbose=verbose, wordwrap=not nowordwrap,
                      hide_thinking=hidethinking, format=_parse_format(format_))
    if keepalive:
        parse_go_duration(keepalive)  # a PollamaError: the command group reports it
        session.keep_alive = keepalive
    if think is not None:
        try:
            session.think = parse_think_flag(think)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        session.think_explicit = True

    prompts = list(words)
    interactive = True
    if not sys.stdin.isatty():  # piped input goes first, then the arguments
        piped = sys.stdin.read()
        if piped:
            prompts.insert(0, piped)
        interactive = False
    if prompts or not sys.stdout.isatty():
        interactive = False

    client = Client()
    info = _show(client, model, insecure)
    session.take_model_info(info)
    caps = info.get("capabilities") or []
    vision = "vision" in caps
    if "embedding" in caps:
        _embed(client, session, " ".join(prompts))
    elif interactive:
        Repl(client, session, vision).run()
    else:
        _one_shot(client, session, " ".join(prompts), vision)


def _embed(client: Client, session: Session, text: str) -> None:
    if not text:
        raise click.ClickException("embedding models require input text. Usage: pollama run "
                                   f'{session.model} "your text here"')
    body: dict[str, Any] = {"model": session.model, "input": text}
    if session.keep_alive is not None:
        body["keep_alive"] = session.keep_alive
    vectors = client.post("/api/embed", body).get("embeddings") or []
    if not vectors:
        raise click.ClickException("no embeddings returned")
    click.echo(json.dumps(vectors[0], separators=(",", ":")))


def _one_shot(client: Client, session: Session, text: str, vision: bool) -> None:
    """Ollama's ``generate``: one /api/generate; the answer, a blank line, the timings."""
    msg = _user_message(text, vision) if text else {"content": ""}
    body = session.generate_request(msg["content"], msg.get("images", ()))
    answer = Answer(session)
    answer.stream(client, "/api/generate", body)
    if answer.interrupted:
        _out("\n")
        sys.exit(130)
    if text:
        _out("\n\n")
    if session.verbose and answer.final:
        _out("".join(line + "\n" for line in timing_lines(answer.final)), err=True)


class Repl:
    """The interactive loop (Ollama's ``generateInteractive``)."""

    def __init__(self, client: Client, session: Session, vision: bool) -> None:
        self.client = client
        self.session = session
        self.vision = vision
        self.reader = rc.LineReader(multimodal=vision)

    def run(self) -> None:
        from .client import config

        with Spinner():
            self.client.post("/api/generate", self.session.load_request())
        self._replay_saved_messages()
        cfg = config()
        self.session.history = not cfg.nohistory
        term = Terminal(os.path.join(cfg.home_dir, "history"), self.session.history)
        while True:
            try:
                line = term.read(self.reader.continuing)
            except EOFError:
                return
            except KeyboardInterrupt:
                if not term.interrupted_text and not self.reader.continuing:
                    _out("Use Ctrl + d or /bye to exit.\n")
                self.reader.reset()
                continue
            cmd = self.reader.feed(line)
            if cmd is None:
                continue
            if isinstance(cmd, rc.Bye):
                return
            self.do(cmd, term)

    def _replay_saved_messages(self) -> None:
        """A saved session's messages, as Ollama shows them when it starts."""
        for msg in self.session.loaded_messages:
            if msg.get("role") == "user":
                _out(f">>> {msg.get('content', '')}\n")
            elif msg.get("role") == "assistant":
                display = AnswerDisplay(width=_wrap_width(self.session), plain=True)
                _out(display.feed(content=str(msg.get("content", ""))) + display.finish() + "\n\n")

    def do(self, cmd: rc.Command, term: Terminal) -> None:
        if isinstance(cmd, rc.Prompt):
            self.turn(cmd.text)
        elif isinstance(cmd, rc.Say):
            _out(cmd.text, err=cmd.err)
        elif isinstance(cmd, rc.Unknown):
            if self.vision and any(c.startswith(cmd.word) for c in images.candidates(cmd.line)):
                self.turn(cmd.line)  # an image path, not a command
            else:
                _out(cmd.reply + "\n")
        elif isinstance(cmd, rc.Show):
            self.show(cmd.topic)
        elif isinstance(cmd, rc.Load):
            self.load(cmd.model)
        elif isinstance(cmd, rc.Save):
            self.save(cmd.name)
        elif isinstance(cmd, rc.ListModels):
            from .main import list_table

            _out(list_table(self.client, cmd.prefix))
        elif isinstance(cmd, rc.Bye):
            pass
        else:
            reply = self.session.apply(cmd)
            if isinstance(cmd, rc.SetHistory):
                term.history.enabled = cmd.on
            if reply:
                _out(reply + "\n")
            if isinstance(cmd, rc.SetThink):
                self._warn_if_cannot_think()

    def _warn_if_cannot_think(self) -> None:
        try:
            caps = self.client.post("/api/show", {"model": self.session.model}).get(
                "capabilities") or []
        except click.ClickException:
            return
        if "thinking" not in caps:
            _out(f'warning: model "{self.session.model}" does not support thinking output\n',
                 err=True)

    def turn(self, text: str) -> None:
        path, body = self.session.turn_request(_user_message(text, self.vision))
        answer = Answer(self.session)
        try:
            answer.stream(self.client, path, body)
        except click.ClickException as exc:
            self.session.drop_last_user()
            _out("\n" if answer.display.content or answer.display.thinking else "")
            _out(f"Error: {exc.format_message()}\n", err=True)
            return
        display = answer.display
        self.session.record_answer(display.content, display.thinking,
                                   answer.final.get("context") if path == "/api/generate"
                                   else None)
        if answer.interrupted:
            _out("\n")
            return
        _out("\n\n")
        if self.session.verbose and answer.final:
            _out("".join(line + "\n" for line in timing_lines(answer.final)), err=True)

    def show(self, topic: rc.ShowTopic) -> None:
        try:
            info = self.client.post("/api/show", self.session.show_request())
        except click.ClickException as exc:
            _out(f"error: couldn't get model: {exc.format_message()}\n")
            return
        text, err = show_text(topic, info, self.session)
        _out(text, err=err)

    def load(self, model: str) -> None:
        _out(f"Loading model '{model}'\n")
        before = copy.deepcopy(self.session)
        try:
            info = self.client.post("/api/show", {"model": model})
            self.session.switch_model(model, info)
            with Spinner():
                self.client.post("/api/generate", self.session.load_request())
        except click.ClickException as exc:
            self.session = before
            message = exc.format_message()
            if isinstance(exc, APIError) and exc.status == 404 or "not found" in message:
                _out(f"Couldn't find model '{model}'\n")
            else:
                _out(f"error: {message}\n")
            return
        self.vision = "vision" in (info.get("capabilities") or [])
        self.reader.multimodal = self.vision

    def save(self, name: str) -> None:
        try:
            self.client.post("/api/create", self.session.create_request(name))
        except click.ClickException as exc:
            message = exc.format_message()
            if "invalid model name" in message or f'"{name}" is invalid' in message:
                _out(f"error: The model name '{name}' is invalid\n")
            else:
                _out(f"error: {message}\n")
            return
        _out(f"Created new model '{name}'\n")
