"""Versions: pollama's own (the installed package's) and the Ollama API it serves."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# /api/version answers this: the Ollama release whose API pollama serves.
OLLAMA_COMPAT_VERSION = "0.13.0"


def pollama_version() -> str:
    """The installed pollama package's version ("0.0.0" when run from a bare checkout)."""
    try:
        return version("pollama")
    except PackageNotFoundError:
        return "0.0.0"
