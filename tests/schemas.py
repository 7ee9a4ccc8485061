"""JSON schemas shared by the structured-output tests (core schema limits, e2e generation)."""

from __future__ import annotations

from typing import Any

# A small object with every bound a grammar must honour: string length, integer range, item count.
PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 24},
                   "age": {"type": "integer", "minimum": 0, "maximum": 120},
                   "hobbies": {"type": "array", "maxItems": 3,
                               "items": {"type": "string", "maxLength": 24}}},
    "required": ["name", "age", "hobbies"],
}
