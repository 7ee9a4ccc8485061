"""Human-readable sizes and times for CLI tables, as Ollama's format package (format/format.go)
prints them."""

from __future__ import annotations

__all__ = ["human_bytes", "human_time", "table"]


def human_bytes(n: int) -> str:
    """Decimal units; integer when ≥ 10, else one decimal unless whole: 4.7 GB, 12 GB, 2 GB."""
    units = ("B", "KB", "MB", "GB", "TB")
    value = float(n)
    unit = units[0]
    for u in units:
        unit = u
        if value < 1000 or u == units[-1]:
            break
        value /= 1000
    if unit == "B":
        return f"{n} B"
    if value >= 10:
        return f"{value:.0f} {unit}"
    if value == int(value):
        return f"{value:.0f} {unit}"
    return f"{value:.1f} {unit}"


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = minutes // 60
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    days = hours // 24
    if days < 14:
        return f"{days} days"
    if days < 60:
        return f"{days // 7} weeks"
    if days < 730:
        return f"{days // 30} months"
    return f"{days // 365} years"


def human_time(then_ns: int, now_ns: int) -> str:
    """``3 weeks ago`` / ``4 minutes from now``; zero ⇒ ``Never``; > 20 years ahead ⇒
    ``Forever``."""
    if then_ns == 0:
        return "Never"
    delta = (then_ns - now_ns) / 1e9
    if delta > 20 * 365 * 86400:
        return "Forever"
    if delta >= 0:
        return f"{_duration(delta)} from now"
    return f"{_duration(-delta)} ago"


def table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns, no borders, 4 spaces between columns (Ollama's tabwriter)."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("    ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
