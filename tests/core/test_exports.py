"""Every core module says what it exports (``__all__``), and every exported name exists."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import pollama.core

MODULES = sorted(m.name for m in pkgutil.walk_packages(pollama.core.__path__, "pollama.core."))


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_its_exports(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list) and exported, f"{name} has no __all__"
    assert len(set(exported)) == len(exported)
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names {item!r}, which it lacks"
