"""``pollama run`` against a real server and the real SmolLM2: the interactive prompt driven in
a pseudo-terminal (pexpect), and the one-shot flags, version and completion as subprocesses.

Generation is bounded with ``num_predict``; every wait is for an outcome (a generous pexpect
timeout, never a timing assertion).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pexpect
import pytest

from tests.conftest import Server, upload_and_create

pytestmark = pytest.mark.e2e

# prompt_toolkit turns bracketed paste off once a line is accepted: everything after this is
# what the line caused, and the next ">>> " is the next prompt (the prompt is redrawn as keys
# arrive, so ">>> " alone is no sign the answer is over).
LINE_DONE = "\x1b[?2004l"
LINE_START = "\x1b[?2004h"
WAIT = 300  # seconds: an outcome wait on a slow, busy machine
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")
_SPINNER = re.compile("[\u2800-\u28ff]")


def clean(text: str) -> str:
    return _SPINNER.sub("", _ANSI.sub("", text)).replace("\r", "")


def answer_of(output: str) -> str:
    """The answer text of a turn's output (without the --verbose block)."""
    return output.split("total duration:")[0].strip()


def eval_count(output: str) -> int:
    m = re.search(r"^eval count:\s+(\d+) token", output, re.M)
    assert m, output
    return int(m.group(1))


class Repl:
    def __init__(self, server: Server, home: str, *args: str, columns: int = 250) -> None:
        env = {**server.env, "HOME": home, "TERM": "xterm",
               # pexpect's terminal does not answer cursor position requests; say so up front
               # instead of letting prompt_toolkit wait and warn.
               "PROMPT_TOOLKIT_NO_CPR": "1"}
        self.child = pexpect.spawn(sys.executable, ["-m", "pollama.cli.main", "run", *args],
                                   env=env, encoding="utf-8", timeout=WAIT,
                                   dimensions=(50, columns))
        # What was printed before the first prompt (it may hold ">>> " itself: a saved
        # session's conversation); the prompt begins by turning bracketed paste on.
        self.child.expect_exact(LINE_START)
        self.start = clean(self.child.before)
        self.prompt()

    def prompt(self) -> str:
        self.child.expect_exact(">>> ")
        return clean(self.child.before)

    def line(self, text: str) -> None:
        self.child.send(text + "\r")
        self.child.expect_exact(LINE_DONE)

    def key(self, control: str) -> None:
        """Ctrl+<control> at the prompt (it ends the prompt as a line does)."""
        self.child.sendcontrol(control)
        self.child.expect_exact(LINE_DONE)

    def command(self, text: str) -> str:
        """Type a line; return what it printed up to the next prompt."""
        self.line(text)
        return self.prompt()

    def quit(self) -> int:
        self.child.sendcontrol("d")
        self.child.expect(pexpect.EOF)
        self.child.close()
        assert self.child.exitstatus is not None
        return self.child.exitstatus

    def kill(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def repl(server: Server, tmp_path: Any) -> Iterator[Any]:
    opened: list[Repl] = []

    def open_repl(*args: str, columns: int = 250) -> Repl:
        r = Repl(server, str(tmp_path), *args, columns=columns)
        opened.append(r)
        return r

    yield open_repl
    for r in opened:
        r.kill()


def show(server: Server, model: str) -> dict[str, Any]:
    r = httpx.post(f"{server.url}/api/show", json={"model": model}, timeout=60)
    assert r.status_code == 200, r.text
    return dict(r.json())


def pollama(server: Server, *args: str, stdin: str | None = "",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pollama.cli.main", *args],
                          env={**server.env, **(env or {})}, input=stdin, text=True,
                          capture_output=True, timeout=WAIT)


@pytest.fixture(scope="module")
def smol_t0(server: Server, smollm2_gguf: str) -> str:
    """A deterministic model: temperature 0, short answers."""
    upload_and_create(server.url, smollm2_gguf, "smol-t0",
                      parameters={"temperature": 0, "seed": 1, "num_predict": 40})
    return "smol-t0"


# -- the interactive prompt ------------------------------------------------------------------

def test_set_parameter_reaches_the_model_and_temperature_0_repeats(repl: Any) -> None:
    r = repl("smol")
    assert "Set parameter 'temperature' to '0'" in r.command("/set parameter temperature 0")
    assert "Set parameter 'seed' to '42'" in r.command("/set parameter seed 42")
    assert "Set parameter 'num_predict' to '12'" in r.command("/set parameter num_predict 12")
    assert "Set 'verbose' mode." in r.command("/set verbose")
    first = r.command("Name three colors.")
    assert eval_count(first) <= 12
    assert "Cleared session context" in r.command("/clear")
    second = r.command("Name three colors.")
    assert answer_of(first) and answer_of(first) == answer_of(second)
    assert 'Couldn\'t set parameter: "invalid int value [many]"' in \
        r.command("/set parameter num_predict many")
    assert "Available Parameters:" in r.command("/set parameter")
    assert r.quit() == 0


def test_show_variants(repl: Any) -> None:
    r = repl("smol")
    info = r.command("/show info")
    assert "Model" in info and "architecture" in info and "Capabilities" in info
    assert "No license was specified for this model." in r.command("/show license")
    params = r.command("/show parameters")
    assert "Model defined parameters:" in params
    assert re.search(r"num_predict\s+200", params)
    assert "User defined parameters:" not in params
    r.command("/set parameter seed 7")
    assert re.search(r"User defined parameters:\n\s+seed\s+7", r.command("/show parameters"))
    assert "No system message was specified for this model." in r.command("/show system")
    assert "Set system message." in r.command("/set system You are terse.")
    assert "You are terse." in r.command("/show system")
    modelfile = r.command("/show modelfile")
    assert "FROM " in modelfile and "SYSTEM You are terse." in modelfile
    assert "<|im_start|>" in r.command("/show template")  # SmolLM2's own chat template
    r.line('/set template """{{ .System }} Q: {{ .Prompt }}')
    assert "Set prompt template." in r.command('A:"""')
    assert "{{ .System }} Q: {{ .Prompt }}\nA:" in r.command("/show template")
    assert "Unknown command '/show nonsense'. Type /? for help" in r.command("/show nonsense")
    assert "/show modelfile" in r.command("/show")
    assert "Available Commands:" in r.command("/?")
    assert "Ctrl + r" in r.command("/? shortcuts")
    assert "Unknown command '/nonsense'. Type /? for help" in r.command("/nonsense")
    assert r.quit() == 0


def test_session_template_is_used(repl: Any) -> None:
    r = repl("smol")
    r.command("/set parameter num_predict 6")
    r.command("/set verbose")
    plain = r.command("Hi")
    r.line('/set template """A much longer prompt template that the model is given, word for')
    assert "Set prompt template." in r.command('word, before {{ .Prompt }}"""')
    templated = r.command("Hi")
    count = re.compile(r"prompt eval count:\s+(\d+)")
    m1, m2 = count.search(plain), count.search(templated)
    assert m1 and m2
    # the template's own words are in the prompt now, the chat template's tokens are not
    assert int(m2.group(1)) != int(m1.group(1))
    assert r.quit() == 0


def test_save_then_show_the_saved_model(repl: Any, server: Server) -> None:
    r = repl("smol")
    r.command("/set system You are a pirate.")
    r.command("/set parameter num_predict 7")
    r.command("/set parameter temperature 0")
    answer = r.command("Hello there")
    assert answer.strip()
    assert "Created new model 'pirate-chat'" in r.command("/save pirate-chat")
    assert "error: The model name 'no:good:name' is invalid" in r.command("/save no:good:name")
    assert "Usage:\n  /save <modelname>" in r.command("/save")
    assert r.quit() == 0

    saved = show(server, "pirate-chat")
    assert saved["system"] == "You are a pirate."
    assert re.search(r"num_predict\s+7", saved["parameters"])
    assert re.search(r"temperature\s+0", saved["parameters"])
    assert saved["messages"][:2] == [{"role": "system", "content": "You are a pirate."},
                                     {"role": "user", "content": "Hello there"}]
    assert saved["messages"][2]["role"] == "assistant"
    assert saved["messages"][2]["content"].strip() == answer.strip()

    out = pollama(server, "show", "pirate-chat", "--modelfile")
    assert out.returncode == 0, out.stderr
    assert "SYSTEM You are a pirate." in out.stdout
    assert "PARAMETER num_predict 7" in out.stdout
    assert "MESSAGE user Hello there" in out.stdout
    assert "MESSAGE assistant" in out.stdout

    # Running the saved session shows its conversation first, as Ollama does.
    again = repl("pirate-chat")
    assert ">>> Hello there" in again.start
    assert again.quit() == 0


def test_load_switches_model_and_keeps_no_conversation(repl: Any, server: Server,
                                                       smollm2_gguf: str) -> None:
    upload_and_create(server.url, smollm2_gguf, "smol-cat", system="You are a cat.")
    r = repl("smol")
    r.command("/set parameter num_predict 5")
    r.command("My name is Ada.")
    assert "Couldn't find model 'no-such-model'" in r.command("/load no-such-model")
    assert "No system message was specified" in r.command("/show system")  # still smol
    out = r.command("/load smol-cat")
    assert "Loading model 'smol-cat'" in out
    assert "You are a cat." in r.command("/show system")
    assert "Usage:\n  /load <modelname>" in r.command("/load")
    assert "Created new model 'after-load'" in r.command("/save after-load")
    assert r.quit() == 0
    saved = show(server, "after-load")
    assert saved["system"] == "You are a cat."  # the loaded model's own
    assert "messages" not in saved  # nothing from before /load
    assert re.search(r"num_predict\s+5", saved["parameters"])  # parameters stay, as in Ollama


def test_multiline_input(repl: Any, server: Server) -> None:
    r = repl("smol")
    r.command("/set parameter num_predict 5")
    r.line('"""First line')
    r.child.expect_exact("... ")
    r.command('second line"""')
    r.line('/set system """You are')
    r.child.expect_exact("... ")
    assert "Set system message." in r.command('brief."""')
    assert "You are\nbrief." in r.command("/show system")
    r.command("/save multi-line")
    assert r.quit() == 0
    messages = show(server, "multi-line")["messages"]
    assert messages[0] == {"role": "user", "content": "First line\nsecond line"}
    assert messages[-1] == {"role": "system", "content": "You are\nbrief."}


def test_ctrl_c_stops_a_generation_and_the_repl_goes_on(repl: Any) -> None:
    r = repl("smol")
    r.command("/set verbose")
    r.command("/set parameter num_predict 3000")
    r.line("Write a very long story about a dragon and a knight.")
    r.child.expect(r"[A-Za-z]{4,}")  # the answer has begun
    r.child.sendcontrol("c")
    interrupted = r.prompt()
    assert "eval rate" not in interrupted  # it never finished
    assert "Traceback" not in interrupted
    r.command("/set parameter num_predict 5")
    answered = r.command("Hi")
    assert 1 <= eval_count(answered) <= 5
    r.key("c")  # at the prompt: a hint, and the prompt again
    assert "Use Ctrl + d or /bye to exit." in r.prompt()
    r.line('"""an unfinished block')
    r.child.expect_exact("... ")
    r.key("c")  # drops the block
    assert "Use Ctrl" not in r.prompt()
    assert "Set 'quiet' mode." in r.command("/set quiet")
    assert r.quit() == 0


def test_bye_leaves_with_0(repl: Any) -> None:
    r = repl("smol")
    r.line("/bye")
    r.child.expect(pexpect.EOF)
    r.child.close()
    assert r.child.exitstatus == 0


def test_history_across_sessions_arrows_and_ctrl_r(repl: Any, tmp_path: Any) -> None:
    r = repl("smol")
    r.command("/show license")
    r.command("/set parameter seed 3")
    r.command("/set nohistory")
    r.command("/set parameter seed 99")  # not recorded
    assert r.quit() == 0
    path = os.path.join(str(tmp_path), ".pollama", "history")
    with open(path) as f:
        assert f.read().splitlines() == ["/show license", "/set parameter seed 3",
                                         "/set nohistory"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    r = repl("smol")
    r.child.send("\x1b[A\x1b[A")  # Up, Up: the line before the last
    assert "Set parameter 'seed' to '3'" in r.command("")
    r.child.send("\x12lice")  # Ctrl+R, then Enter runs what it found
    assert "No license was specified for this model." in r.command("")
    assert r.quit() == 0


def test_answers_are_word_wrapped_to_the_terminal(repl: Any) -> None:
    r = repl("smol", columns=40)
    r.command("/set parameter num_predict 60")
    out = r.command("Describe the sea in a few sentences.")
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and all(len(line) <= 35 for line in lines), out
    assert r.quit() == 0


# -- one-shot runs -----------------------------------------------------------------------------

def test_piped_stdin_is_the_prompt(server: Server, smol_t0: str) -> None:
    r = pollama(server, "run", smol_t0, stdin="Say hello.")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    assert r.stdout.endswith("\n\n")  # Ollama ends an answer with a blank line
    # piped text first, then the arguments, as one prompt
    both = pollama(server, "run", smol_t0, "--verbose", "What is this city's country?",
                   stdin="Paris.")
    alone = pollama(server, "run", smol_t0, "--verbose", "What is this city's country?")
    count = re.compile(r"prompt eval count:\s+(\d+)")
    m_both, m_alone = count.search(both.stderr), count.search(alone.stderr)
    assert m_both and m_alone
    assert int(m_both.group(1)) > int(m_alone.group(1))


def test_format_json_output_parses(server: Server, smol_t0: str) -> None:
    r = pollama(server, "run", smol_t0, "--format", "json",
                'Give me a JSON object with a single key "color" naming one color.')
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout), dict)


def test_verbose_prints_the_timing_block(server: Server, smol_t0: str) -> None:
    r = pollama(server, "run", smol_t0, "--verbose", "--keepalive", "10m", "--nowordwrap",
                "--hidethinking", "Hi")
    assert r.returncode == 0, r.stderr
    labels = ["total duration:", "prompt eval count:", "prompt eval duration:",
              "prompt eval rate:", "eval count:", "eval duration:", "eval rate:"]
    found = [re.search(f"^{label}", r.stderr, re.M) for label in labels]
    positions = [m.start() if m else -1 for m in found]
    assert -1 not in positions and positions == sorted(positions), r.stderr
    assert re.search(r"^total duration:\s+[\d.]+(ms|s)$", r.stderr, re.M)
    assert re.search(r"^eval rate:\s+[\d.]+ tokens/s$", r.stderr, re.M)
    assert "duration" not in r.stdout


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ")
    return last


def test_errors_are_one_line(server: Server) -> None:
    # not in the built-in library, and the public registry is unreachable (or says 404)
    assert "pull model manifest" in one_error_line(pollama(server, "run", "no-such-xyz", "hi"))
    assert one_error_line(pollama(server, "run", "smol", "--think", "hi")) == \
        'Error: "smol" does not support thinking'
    assert one_error_line(pollama(server, "run", "smol", "--think=maybe", "hi")) == \
        'Error: invalid value for --think: "maybe" (must be true, false, high, medium, low, ' \
        'or max)'
    assert one_error_line(pollama(server, "run", "smol", "--keepalive", "5x", "hi")) == \
        'Error: time: unknown unit "x" in duration "5x"'
    assert "invalid format" in one_error_line(pollama(server, "run", "smol", "--format", "{",
                                                      "hi"))
    # --insecure reaches the pull: plain http to a registry that is not there
    one_error_line(pollama(server, "run", "--insecure", "127.0.0.1:9/library/none:latest", "hi"))


def test_version(server: Server) -> None:
    r = pollama(server, "--version")
    assert r.returncode == 0, r.stderr
    assert re.match(r"pollama version is \S+\nserver at http://127\.0\.0\.1:\d+ serves Ollama API "
                    r"version \d+\.\d+\.\d+\n$", r.stdout)
    r = pollama(server, "-v", env={"POLLAMA_HOST": "127.0.0.1:9"})
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == "Warning: could not connect to a running pollama instance"
    assert re.match(r"Warning: client version is \S+$", r.stdout.splitlines()[1])


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(server: Server, shell: str) -> None:
    r = pollama(server, "completion", shell)
    assert r.returncode == 0, r.stderr
    assert "_POLLAMA_COMPLETE" in r.stdout


def test_completion_protocol_answers(server: Server) -> None:
    r = pollama(server, env={"_POLLAMA_COMPLETE": "bash_complete", "COMP_WORDS": "pollama ru",
                             "COMP_CWORD": "1"})
    assert r.returncode == 0, r.stderr
    assert "plain,run" in r.stdout.splitlines()
    assert "Invalid value" in one_error_line(pollama(server, "completion", "tcsh"))
