"""Image paths typed into a prompt, as ``ollama run`` finds them for vision models: a path
starting with ``/``, ``./``, ``\\`` or a drive letter and ending in .jpg/.jpeg/.png/.webp
(spaces escaped as ``\\ `` or ``%20``). Paths of files that exist are taken out of the
prompt and their bytes sent as images; anything else stays text."""

from __future__ import annotations

import os
import re

_PATH = re.compile(r"(?:[a-zA-Z]:)?(?:\./|/|\\)[\S\\ ]+?\.(?i:jpg|jpeg|png|webp)\b")


def candidates(text: str) -> list[str]:
    return _PATH.findall(text)


def normalize(path: str) -> str:
    return path.replace("\\ ", " ").replace("%20", " ")


def extract(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """``(prompt without the image paths, [(path, bytes), ...])``."""
    found: list[tuple[str, bytes]] = []
    for raw in candidates(text):
        path = normalize(raw)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            found.append((path, f.read()))
        for form in (f"'{path}'", f"'{raw}'", raw):
            text = text.replace(form, "")
    return text.strip(), found
