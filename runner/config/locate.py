"""Map a path, or a pydantic error ``loc``, to a 1-based ``(line, col)`` in a pipeline file.

A bad value is reported at the value, an unknown key or a bad mapping key at the key, a
missing key at the key of the mapping that lacks it. Anything not found in the file falls
back to its nearest ancestor, and to 1:1 at the root.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.config import source

KEY_MARKER = "[key]"
"""The element pydantic appends to a ``loc`` when a dict key, not its value, is invalid."""


@dataclass(frozen=True)
class Located:
    """Where a pydantic error points in the file."""

    path: source.Loc
    """The part of the error's ``loc`` present in the file: what the message names."""
    line: int
    col: int
    missing: str | None = None
    """For a missing key: its name (``path`` is then the mapping lacking it)."""
    rest: tuple[str | int, ...] = ()
    """Trailing ``loc`` elements absent from the file, such as union branch names."""


def position(doc: source.Document, loc: source.Loc) -> source.Position:
    """The value at ``loc``; else the nearest ancestor written in the file; else 1:1."""
    exact = doc.value_position(loc)
    if exact is not None:
        return exact
    for end in range(len(loc) - 1, 0, -1):
        ancestor = loc[:end]
        found = doc.key_position(ancestor) or doc.value_position(ancestor)
        if found is not None:
            return found
    return 1, 1


def key_position(doc: source.Document, loc: source.Loc) -> source.Position:
    """The key ending ``loc`` (the item itself in a list), with ``position``'s fallback."""
    return doc.key_position(loc) or position(doc, loc)


def missing_position(doc: source.Document, parent: source.Loc) -> source.Position:
    """Where to report a key missing from the mapping at ``parent``: its own key, else its
    first key; the root reports at 1:1."""
    if not parent:
        return 1, 1
    return doc.key_position(parent) or position(doc, parent)


def locate_error(doc: source.Document, loc: tuple[str | int, ...], error_type: str) -> Located:
    """Place one pydantic error (its ``loc``, with aliases, and its ``type``)."""
    present, rest, key_error = _walk(doc.data, tuple(loc))
    if key_error:
        return Located(present, *key_position(doc, present), rest=rest)
    if error_type == "missing" and len(rest) == 1:
        return Located(present, *missing_position(doc, present), missing=str(rest[0]))
    if error_type == "extra_forbidden" and not rest:
        return Located(present, *key_position(doc, present))
    return Located(present, *position(doc, present), rest=rest)


def _walk(data: Any, loc: tuple[str | int, ...]) -> tuple[source.Loc, source.Loc, bool]:
    """Split ``loc`` into the prefix present in ``data`` and the rest; flag a key error.

    A real key spelled ``[key]`` wins over the marker, since it is looked up first.
    """
    node = data
    for index, part in enumerate(loc):
        node = source.child(node, part)
        if node is source.MISSING:
            key_error = part == KEY_MARKER and index > 0
            rest = loc[index + 1 :] if key_error else loc[index:]
            return loc[:index], rest, key_error
    return loc, (), False


def format_loc(loc: source.Loc) -> str:
    """``("jobs", "email.send", "retry")`` → ``jobs.email.send.retry``; ints as ``[0]``."""
    text = ""
    for part in loc:
        if type(part) is int:
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
