"""core/ stays I/O-free: no module imports I/O, clock, randomness or framework modules."""

from __future__ import annotations

import ast
import os

import pytest

CORE = os.path.join(os.path.dirname(__file__), "..", "..", "core")
FORBIDDEN = {
    "asyncio", "anyio", "socket", "subprocess", "os", "time", "random", "threading", "h11",
    "wsproto", "click", "llama_cpp", "httpx", "shutil", "pathlib", "tempfile", "signal",
    "logging", "uuid", "io", "sys", "gguf", "urllib", "http", "select", "multiprocessing",
}


def _modules() -> list[str]:
    """Every module of core/, subpackages (core/gotemplate/) included, relative to core/."""
    return sorted(os.path.relpath(os.path.join(folder, f), CORE)
                  for folder, _, files in os.walk(CORE) for f in files if f.endswith(".py"))


@pytest.mark.parametrize("module", _modules())
def test_core_module_imports_nothing_impure(module: str) -> None:
    with open(os.path.join(CORE, module)) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{module} imports {name}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "open", f"{module} calls open()"
