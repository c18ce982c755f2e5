"""Read a pipeline YAML file into plain data, keeping the line:col of every key and value.

The only module that imports ruamel.yaml. Files are loaded round-trip (``typ="rt"``), which
never constructs Python objects from tags; explicit tags are refused anyway, from the event
stream, before anything is constructed. Every ruamel problem becomes a ``Diagnostic``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ruamel.yaml
from ruamel.yaml import comments, constructor, error, reader, scalarbool

from runner import errors

Loc = tuple[str | int, ...]
"""A path into the document: mapping keys and sequence indexes."""
Position = tuple[int, int]
"""A 1-based ``(line, col)``."""

MAX_VALUES = 100_000
"""Values allowed after expanding aliases (a guard against "billion laughs")."""
MAX_DEPTH = 64
"""Nesting allowed in a pipeline file."""

_DATE_LIKE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})")


@dataclass(frozen=True)
class Document:
    """A pipeline file as plain data, with the position of each key and value by path."""

    file: str
    data: dict[str, Any]
    """The content as dict/list/str/int/float/bool/None, for pydantic."""
    values: Mapping[Loc, Position] = field(repr=False)
    keys: Mapping[Loc, Position] = field(repr=False)
    tree: Any = field(repr=False, compare=False)
    """The ruamel ``CommentedMap`` itself (comments, styles), should a caller need it."""

    def value_position(self, loc: Loc) -> Position | None:
        """Where the value at ``loc`` starts; None if unknown (absent or merged by ``<<``)."""
        return self.values.get(loc)

    def key_position(self, loc: Loc) -> Position | None:
        """Where the mapping key ending ``loc`` is written; None for the root and list items."""
        return self.keys.get(loc)

    def exists(self, loc: Loc) -> bool:
        """Whether ``loc`` names a value present in the data."""
        node: Any = self.data
        for part in loc:
            node = child(node, part)
            if node is MISSING:
                return False
        return True


MISSING: Any = object()
"""Returned by ``child`` for a path element absent from the data."""


def child(node: Any, part: str | int) -> Any:
    """``node[part]`` in plain data (a str key of a dict, an int index of a list), or MISSING."""
    if isinstance(node, dict) and isinstance(part, str):
        return node.get(part, MISSING)
    if isinstance(node, list) and type(part) is int and 0 <= part < len(node):
        return node[part]
    return MISSING


def read(path: Path, *, display: str) -> Document:
    """Read and parse ``path``; raises ``NotFound`` or ``ConfigInvalid``."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise errors.NotFound(f"pipeline file not found: {display}") from None
    except IsADirectoryError:
        raise errors.NotFound(f"{display} is a directory, not a pipeline file") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise errors.ConfigInvalid(
            [errors.Diagnostic(display, 1, 1, f"cannot read the file: {reason}")]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        message = "the file is not valid UTF-8 (save it as UTF-8)"
        raise errors.ConfigInvalid([errors.Diagnostic(display, line, col, message)]) from None
    return parse(text, display=display)


def parse(text: str, *, display: str) -> Document:
    """Parse YAML text; raises ``ConfigInvalid`` with every tag found, or the first
    syntax problem (YAML cannot be parsed past one)."""
    date_like = _check_events(text, display)
    tree = _load(text, display, date_like)
    return from_tree(tree, display=display)


def from_tree(tree: Any, *, display: str) -> Document:
    """Convert a round-trip tree to plain data with positions; raises ``ConfigInvalid``.

    Tagged nodes (``CommentedMap``/``CommentedSeq`` with a tag, ``TaggedScalar``), keys that
    are not strings and values other than plain scalars are refused at their position.
    """
    if tree is None:
        message = "the file is empty: expected a mapping with 'queues' and 'jobs'"
        raise errors.ConfigInvalid([errors.Diagnostic(display, 1, 1, message)])
    if not isinstance(tree, comments.CommentedMap):
        line, col = _own_position(tree) or (1, 1)
        message = f"the top level must be a mapping with 'queues' and 'jobs', not {describe(tree)}"
        raise errors.ConfigInvalid([errors.Diagnostic(display, line, col, message)])
    converter = _Converter(display)
    data = converter.convert_root(tree)
    if converter.problems:
        raise errors.ConfigInvalid(converter.problems)
    return Document(display, data, converter.values, converter.keys, tree)


def _yaml() -> ruamel.yaml.YAML:
    # One instance per call: ruamel instances hold parser state and are not thread-safe.
    return ruamel.yaml.YAML(typ="rt")


def _check_events(text: str, display: str) -> list[tuple[str, Position]]:
    """Refuse explicit tags (``!!python/...``, ``!custom``, ``!!int``) at their position.

    Returns the plain scalars that look like dates, to place a constructor error.
    """
    problems: list[errors.Diagnostic] = []
    date_like: list[tuple[str, Position]] = []
    try:
        for event in _events(text):
            mark = event.start_mark
            tag = getattr(event, "ctag", None)
            if tag is not None:
                message = (
                    f"YAML tags are not allowed: {_show_tag(tag)} "
                    "(write plain values; nothing is constructed from tags)"
                )
                problems.append(errors.Diagnostic(display, mark.line + 1, mark.column + 1, message))
            value = getattr(event, "value", None)
            if isinstance(value, str) and event.style is None and _DATE_LIKE.match(value):
                date_like.append((value, (mark.line + 1, mark.column + 1)))
    except error.YAMLError as exc:
        raise errors.ConfigInvalid([_yaml_diagnostic(exc, text, display)]) from None
    except RecursionError:
        raise errors.ConfigInvalid([_too_deep(display)]) from None
    if problems:
        raise errors.ConfigInvalid(problems)
    return date_like


def _events(text: str) -> Iterator[Any]:
    yield from _yaml().parse(text)


def _show_tag(tag: Any) -> str:
    handle, suffix = getattr(tag, "handle", None), getattr(tag, "suffix", None)
    if handle and suffix:
        return f"{handle}{suffix}"
    if suffix == "!":
        return "!"
    if suffix:
        return f"!<{suffix}>"
    return str(tag)


def _load(text: str, display: str, date_like: list[tuple[str, Position]]) -> Any:
    try:
        return _yaml().load(text)
    except error.YAMLError as exc:
        raise errors.ConfigInvalid([_yaml_diagnostic(exc, text, display)]) from None
    except RecursionError:
        raise errors.ConfigInvalid([_too_deep(display)]) from None
    except (ValueError, OverflowError) as exc:
        # ruamel's constructor raises bare ValueError for impossible dates (2024-13-45).
        raise errors.ConfigInvalid([_value_diagnostic(exc, date_like, display)]) from None


def _yaml_diagnostic(exc: error.YAMLError, text: str, display: str) -> errors.Diagnostic:
    if isinstance(exc, reader.ReaderError):
        line, col = _offset_position(text, exc.position)
        char = exc.character
        code = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        return errors.Diagnostic(display, line, col, f"character {code} is not allowed in YAML")
    if not isinstance(exc, error.MarkedYAMLError):
        return errors.Diagnostic(display, 1, 1, f"invalid YAML: {exc}")
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = str(exc.problem or exc.context or "invalid YAML")
    if isinstance(exc, constructor.DuplicateKeyError):
        found = re.search(r'duplicate (?:merge )?key "(.*?)"', problem)
        key = found.group(1) if found else "?"
        message = f"duplicate key {key!r}: a key may appear only once in a mapping"
    elif "another document" in problem:
        message = "a pipeline file holds one YAML document; remove the second '---'"
    elif "'\\t'" in problem:
        message = "tab character: YAML indentation must use spaces"
    else:
        message = f"invalid YAML: {problem}"
        context = exc.context_mark
        if exc.context and context is not None and context is not mark:
            message += f" ({exc.context} at {context.line + 1}:{context.column + 1})"
    return errors.Diagnostic(display, line, col, message)


def _value_diagnostic(
    exc: Exception, date_like: list[tuple[str, Position]], display: str
) -> errors.Diagnostic:
    for value, (line, col) in date_like:
        match = _DATE_LIKE.match(value)
        assert match is not None
        try:
            dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError as bad:
            message = f"invalid date {value!r}: {bad}; quote it if it is not meant as a date"
            return errors.Diagnostic(display, line, col, message)
    return errors.Diagnostic(display, 1, 1, f"invalid YAML value: {exc}")


def _too_deep(display: str) -> errors.Diagnostic:
    return errors.Diagnostic(display, 1, 1, "the file is nested too deeply to read")


def _offset_position(text: str, offset: int) -> Position:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _own_position(node: Any) -> Position | None:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return None
    return lc.line + 1, lc.col + 1


def _lookup(getter: Callable[[Any], Any], key: Any) -> Position | None:
    try:
        line, col = getter(key)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        return None
    return int(line) + 1, int(col) + 1


def describe(value: Any) -> str:
    """The kind of a plain value for messages: "a mapping", "a list", "null", "a number"..."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple | set | frozenset):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else f"a {type(value).__name__}"


def _explicit_tag(node: Any) -> str | None:
    tag = getattr(node, "tag", None)
    if tag is None:
        return None
    if isinstance(tag, str):
        return tag
    return _show_tag(tag) if getattr(tag, "trval", None) else None


class _TooLarge(Exception):
    pass


class _Converter:
    """ruamel's round-trip types to dict/list/str/int/float/bool/None, recording positions."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.values: dict[Loc, Position] = {}
        self.keys: dict[Loc, Position] = {}
        self.problems: list[errors.Diagnostic] = []
        self._count = 0
        self._active: set[int] = set()

    def convert_root(self, tree: comments.CommentedMap) -> dict[str, Any]:
        self.values[()] = (1, 1)
        try:
            data = self._convert(tree, (), (1, 1))
        except _TooLarge:
            message = f"the file expands to more than {MAX_VALUES} values (check its aliases)"
            self.problems = [errors.Diagnostic(self.display, 1, 1, message)]
            return {}
        return data if isinstance(data, dict) else {}

    def _problem(self, where: Position, message: str) -> None:
        self.problems.append(errors.Diagnostic(self.display, where[0], where[1], message))

    def _convert(self, node: Any, loc: Loc, where: Position) -> Any:
        self._count += 1
        if self._count > MAX_VALUES:
            raise _TooLarge
        if isinstance(node, comments.CommentedMap | comments.CommentedSeq):
            tag = _explicit_tag(node)
            if tag is not None:
                self._problem(where, f"YAML tags are not allowed: {tag}")
                return None
            if id(node) in self._active:
                self._problem(where, "an alias refers to a value that contains it")
                return None
            if len(loc) >= MAX_DEPTH:
                self._problem(where, f"nested deeper than {MAX_DEPTH} levels")
                return None
            self._active.add(id(node))
            try:
                if isinstance(node, comments.CommentedMap):
                    return self._mapping(node, loc)
                return self._sequence(node, loc)
            finally:
                self._active.discard(id(node))
        return self._scalar(node, where)

    def _mapping(self, node: comments.CommentedMap, loc: Loc) -> dict[str, Any]:
        result: dict[str, Any] = {}
        own = self.values.get(loc, (1, 1))
        for key, value in node.items():
            key_at = _lookup(node.lc.key, key)
            if not isinstance(key, str):
                hint = f": quote it, as '{key}'" if isinstance(key, int | float | bool) else ""
                message = f"mapping keys must be strings, not {describe(key)}{hint}"
                self._problem(key_at or own, message)
                continue
            path = (*loc, str(key))
            value_at = _lookup(node.lc.value, key)
            if key_at is not None:
                self.keys[path] = key_at
                if value_at is None or (value is None and value_at[0] > key_at[0]):
                    # An empty value: ruamel reports the next token, often lines below.
                    value_at = key_at
            if value_at is not None:
                self.values[path] = value_at
            result[str(key)] = self._convert(value, path, value_at or key_at or own)
        return result

    def _sequence(self, node: comments.CommentedSeq, loc: Loc) -> list[Any]:
        result: list[Any] = []
        own = self.values.get(loc, (1, 1))
        for index, item in enumerate(node):
            path = (*loc, index)
            item_at = _lookup(node.lc.item, index)
            if item_at is not None:
                self.values[path] = item_at
            result.append(self._convert(item, path, item_at or own))
        return result

    def _scalar(self, node: Any, where: Position) -> Any:
        if isinstance(node, comments.TaggedScalar):
            self._problem(where, f"YAML tags are not allowed: {_explicit_tag(node)}")
            return None
        if node is None or isinstance(node, bool):
            return node
        if isinstance(node, scalarbool.ScalarBoolean):
            return bool(node)
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        if isinstance(node, str):
            return str(node)
        if isinstance(node, dt.date):
            return node.isoformat()
        self._problem(where, f"unsupported YAML value: {describe(node)}")
        return None
