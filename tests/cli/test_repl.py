"""The REPL adapter's own pieces: the history file, chunk reading, --format, the click wiring."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pollama.cli import repl
from pollama.cli.main import cli


def history(path: Path) -> object:
    return repl._history_class()(str(path))


def test_history_file_is_plain_lines_newest_last(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "history"
    h = history(path)
    h.append_string("first")  # type: ignore[attr-defined]
    h.append_string("/set verbose")  # type: ignore[attr-defined]
    assert path.read_text() == "first\n/set verbose\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    strings = history(path).load_history_strings()  # type: ignore[attr-defined]
    assert list(strings) == ["/set verbose", "first"]


def test_history_keeps_the_last_100(tmp_path: Path) -> None:
    path = tmp_path / "history"
    path.write_text("".join(f"line {i}\n" for i in range(150)) + "\n   \n")
    h = history(path)
    loaded = list(h.load_history_strings())  # type: ignore[attr-defined]
    assert len(loaded) == 100 and loaded[0] == "line 149" and loaded[-1] == "line 50"
    h.append_string("new")  # type: ignore[attr-defined]
    lines = path.read_text().splitlines()
    assert len(lines) == 100 and lines[-1] == "new" and lines[0] == "line 51"


def test_disabled_history_records_nothing(tmp_path: Path) -> None:
    path = tmp_path / "history"
    h = history(path)
    h.enabled = False  # type: ignore[attr-defined]
    h.append_string("secret")  # type: ignore[attr-defined]
    assert not path.exists()
    assert list(h.get_strings()) == []  # type: ignore[attr-defined]


def test_unreadable_history_is_empty(tmp_path: Path) -> None:
    strings = history(tmp_path / "missing").load_history_strings()  # type: ignore[attr-defined]
    assert list(strings) == []


def test_pieces_of_chat_and_generate_chunks() -> None:
    assert repl._pieces({"message": {"role": "assistant", "content": "a", "thinking": "t"}}) == (
        "t", "a")
    assert repl._pieces({"response": "b", "thinking": "u"}) == ("u", "b")
    assert repl._pieces({"done": True, "message": {"content": ""}}) == ("", "")


def test_format_flag() -> None:
    assert repl._parse_format("") is None
    assert repl._parse_format("json") == "json"
    assert repl._parse_format('{"type": "object"}') == {"type": "object"}
    with pytest.raises(click.ClickException, match="invalid format"):
        repl._parse_format("yaml")


def test_run_help_lists_ollamas_flags() -> None:
    out = CliRunner().invoke(cli, ["run", "--help"]).output
    for flag in ("--format", "--keepalive", "--think", "--hidethinking", "--insecure",
                 "--nowordwrap", "--verbose"):
        assert flag in out


def test_bad_think_value_is_one_line_before_any_request() -> None:
    result = CliRunner().invoke(cli, ["run", "m", "--think=perhaps", "hi"],
                                env={"POLLAMA_HOST": "127.0.0.1:9"})
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(
        'Error: invalid value for --think: "perhaps"')
