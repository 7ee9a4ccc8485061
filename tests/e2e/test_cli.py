"""The CLI against a real server: run (one-shot), list, create."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import Server

pytestmark = pytest.mark.e2e


def pollama(server: Server, *args: str, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pollama.cli.main", *args],
                          env={**server.env, **(env or {})}, input=stdin, text=True,
                          capture_output=True, timeout=300)


def test_run_one_shot(server: Server) -> None:
    r = pollama(server, "run", "smol", "Why is the sky blue?")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) > 3


def test_run_piped_stdin(server: Server) -> None:
    r = pollama(server, "run", "smol", stdin="Say hello.")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_run_unknown_model_fails_cleanly(server: Server) -> None:
    r = pollama(server, "run", "missing-model-xyz", "hi")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    # Not in the built-in library: the registry client tries registry.ollama.ai, which is not
    # reachable from a sandbox (or answers 404): either way one clear line, no traceback.
    assert "pull model manifest" in r.stderr


def test_list_table(server: Server) -> None:
    r = pollama(server, "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    row = next(line for line in lines if line.startswith("smol:latest"))
    cols = row.split("    ")
    assert cols[0].strip() == "smol:latest"
    assert "98 MB" in row
    assert row.rstrip().endswith("ago")


def test_create_from_modelfile(server: Server, smollm2_gguf: str, tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "Modelfile")
    with open(path, "w") as f:
        f.write(f"FROM {smollm2_gguf}\nSYSTEM \"\"\"You answer in French.\"\"\"\n"
                "PARAMETER temperature 0\nPARAMETER num_predict 12\n")
    r = pollama(server, "create", "french", "-f", path)
    assert r.returncode == 0, r.stderr
    assert "success" in r.stderr
    r = pollama(server, "run", "french", "Hello!")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    assert "french:latest" in pollama(server, "list").stdout


def test_create_bad_modelfile(server: Server, tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "Modelfile")
    with open(path, "w") as f:
        f.write("FROB x\n")
    r = pollama(server, "create", "bad", "-f", path)
    assert r.returncode != 0
    assert "command must be one of" in r.stderr
    assert "Traceback" not in r.stderr


def test_no_server_non_loopback_says_serve(server: Server) -> None:
    r = pollama(server, "list", env={"POLLAMA_HOST": "10.255.255.1:9"})
    assert r.returncode != 0
    assert "pollama serve" in r.stderr
    assert "Traceback" not in r.stderr


def test_run_interactive_keeps_history(server: Server) -> None:
    """Drive the REPL through a pseudo-terminal; the second turn must carry the first."""
    import pty
    import select
    import time


    master, slave = pty.openpty()
    env = {**server.env}
    proc = subprocess.Popen([sys.executable, "-m", "pollama.cli.main", "run", "smol", "--verbose"],
                            env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""

    def read_until(marker: bytes, timeout: float = 120) -> None:
        nonlocal out
        deadline = time.monotonic() + timeout
        while marker not in out:
            assert time.monotonic() < deadline, out.decode(errors="replace")
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break

    try:
        read_until(b">>> ")
        out = b""
        # The prompt is redrawn as keys arrive (prompt_toolkit): wait for what each line
        # prints, the timing block ending an answer, rather than for the next ">>> ".
        os.write(master, b"/set parameter num_predict 8\n")
        read_until(b"Set parameter")
        out = b""
        os.write(master, b"My name is Ada.\n")
        read_until(b"\neval rate:")
        first_answer = out
        out = b""
        os.write(master, b"What is my name?\n")
        read_until(b"\neval rate:")
        second_answer = out
        os.write(master, b"/bye\n")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    import re

    def counts(block: bytes) -> tuple[int, int]:
        text = block.decode(errors="replace")
        prompt = int(re.search(r"prompt eval count:\s+(\d+)",  # type: ignore[union-attr]
                               text).group(1))
        evals = int(re.search(r"\neval count:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
        return prompt, evals

    p1, e1 = counts(first_answer)
    p2, _ = counts(second_answer)
    assert e1 <= 8  # /set parameter num_predict reached the server
    # The second prompt holds the first exchange (its prompt and answer) plus the new question.
    assert p2 > p1 + e1
