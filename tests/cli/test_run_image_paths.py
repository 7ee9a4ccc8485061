"""`pollama run` finds image paths in a prompt the way `ollama run` does."""

from __future__ import annotations

from pathlib import Path

from pollama.cli import images


def test_candidates() -> None:
    assert images.candidates("what is /tmp/a.png and ./b.JPG?") == ["/tmp/a.png", "./b.JPG"]
    assert images.candidates(r"see /tmp/my\ cat.jpeg now") == [r"/tmp/my\ cat.jpeg"]
    assert images.candidates("C:\\pics\\x.webp") == ["C:\\pics\\x.webp"]
    assert images.candidates("a.png without a leading slash, /x.gif") == []


def test_extract_takes_existing_files_only(tmp_path: Path) -> None:
    a = tmp_path / "a.png"
    a.write_bytes(b"PNGDATA")
    spaced = tmp_path / "my cat.png"
    spaced.write_bytes(b"CAT")
    text, found = images.extract(f"Compare {a} with '{tmp_path}/my%20cat.png' and /no/such.png")
    assert found == [(str(a), b"PNGDATA"), (str(spaced), b"CAT")]
    assert text == "Compare  with  and /no/such.png"
