"""core/humanize.py: sizes, times and tables for the CLI, as Ollama's format package prints
them."""

from __future__ import annotations

import pytest

from pollama.core import humanize


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (999, "999 B"), (1000, "1 KB"), (4_700_000_000, "4.7 GB"),
    (12_000_000_000, "12 GB"), (2_000_000_000, "2 GB"), (98_362_830, "98 MB"),
    (1_500_000, "1.5 MB"),
])
def test_human_bytes(n: int, text: str) -> None:
    assert humanize.human_bytes(n) == text


@pytest.mark.parametrize(("delta", "text"), [
    (-0.5, "Less than a second ago"), (-1, "1 second ago"), (-30, "30 seconds ago"),
    (-90, "About a minute ago"), (-600, "10 minutes ago"), (-3600, "About an hour ago"),
    (-3 * 86400, "3 days ago"), (-21 * 86400, "3 weeks ago"), (240, "4 minutes from now"),
    (30 * 365 * 86400, "Forever"),
])
def test_human_time(delta: float, text: str) -> None:
    now = 10**18
    assert humanize.human_time(now + int(delta * 1e9), now) == text
    assert humanize.human_time(0, now) == "Never"


def test_table() -> None:
    out = humanize.table(["NAME", "ID"], [["a:latest", "123"], ["bb", "4"]])
    assert out == "NAME        ID\na:latest    123\nbb          4\n"
