"""adapters/devices.py: discovery on this machine, and robustness when tools misbehave."""

from __future__ import annotations

import shutil
import sys

import pytest

from pollama.adapters import devices
from pollama.core.memory import Inventory


def test_discover_finds_system_ram() -> None:
    inv = devices.discover()
    assert isinstance(inv, Inventory)
    ram = inv.cpu()
    assert ram is not None and ram.kind == "cpu"
    assert ram.total > 0 and 0 <= ram.free <= ram.total


@pytest.mark.skipif(any(shutil.which(t) for t in ("nvidia-smi", "rocm-smi"))
                    or sys.platform == "darwin", reason="this machine has GPU tooling")
def test_no_gpus_here() -> None:
    assert devices.discover().gpus() == ()


def test_cpu_fallback_without_proc_meminfo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_read", lambda path: None)
    ram = devices.cpu()
    assert ram is not None and ram.total > 0 and 0 <= ram.free <= ram.total


def test_missing_tool_is_no_device() -> None:
    assert devices.run_tool(["pollama-no-such-tool-xyz", "--json"]) is None


def test_failing_or_slow_tool_is_no_device() -> None:
    assert devices.run_tool([sys.executable, "-c", "import sys; sys.exit(3)"]) is None
    assert devices.run_tool([sys.executable, "-c", "import time; time.sleep(5)"],
                            timeout=0.5) is None
    assert devices.run_tool([sys.executable, "-c", "print('ok')"]) == "ok\n"


def test_discover_parses_tool_output(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = {
        "nvidia-smi": "0, NVIDIA GeForce RTX 3060, 12288, 11000\n",
        "rocm-smi": "garbage, not json",
    }
    monkeypatch.setattr(devices, "run_tool",
                        lambda argv, timeout=devices.TIMEOUT: outputs.get(argv[0]))
    inv = devices.discover()
    assert [d.id for d in inv.gpus()] == ["cuda:0"]
    assert inv.cpu() is not None
