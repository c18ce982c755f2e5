"""Load a pipeline file: YAML source → pydantic model → cross-checks, every problem at its
``file:line:col``. Nothing is raised before all of a stage's problems are collected."""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from runner import errors
from runner.config import locate, models, payloads, source
from runner.config.durations import format_duration

MAX_LISTED = 10
"""Names listed in one message (known queues, registered handlers)."""


@dataclass(frozen=True)
class LoadedPipeline:
    """A valid pipeline file, its model and its schemas, able to place further diagnostics."""

    path: Path
    """The pipeline file as given (not resolved)."""
    display: str
    """``str(path)`` as given: the ``file`` of every diagnostic."""
    root: Path
    """The project root, resolved: the folder containing the pipeline's folder."""
    model: models.Pipeline
    schemas: Mapping[str, Mapping[str, Any]]
    """Job type name → its JSON Schema (loaded from ``schemas/`` or inline)."""
    document: source.Document = field(repr=False, compare=False)

    def locate(self, *loc: str | int) -> tuple[int, int]:
        """``(line, col)`` of a path such as ``("jobs", "email.send", "handler")``; a path
        absent from the file (a default) falls back to its nearest written ancestor."""
        return locate.position(self.document, loc)

    def diagnostic(self, loc: tuple[str | int, ...], message: str) -> errors.Diagnostic:
        """A diagnostic at ``loc``, its message prefixed with the dotted ``loc``."""
        line, col = self.locate(*loc)
        return errors.Diagnostic(self.display, line, col, _prefixed(loc, message))


def load_pipeline(path: str | Path) -> LoadedPipeline:
    """Read, validate and cross-check a pipeline file.

    Raises ``NotFound`` if the file does not exist and ``ConfigInvalid`` with every
    diagnostic otherwise.
    """
    given = Path(path)
    display = str(path)
    document = source.read(given, display=display)
    try:
        model = models.Pipeline.model_validate(document.data)
    except pydantic.ValidationError as exc:
        raise errors.ConfigInvalid(_model_diagnostics(document, exc)) from None
    root = given.absolute().parent.parent.resolve()
    draft = LoadedPipeline(given, display, root, model, {}, document)
    schemas, problems = _load_schemas(draft)
    problems += _check_jobs(draft, schemas)
    if problems:
        raise errors.ConfigInvalid(problems)
    return LoadedPipeline(given, display, root, model, schemas, document)


def check_handlers(loaded: LoadedPipeline, registered: Collection[str]) -> list[errors.Diagnostic]:
    """One diagnostic per job whose handler is not among ``registered``."""
    known = sorted(set(registered))
    problems: list[errors.Diagnostic] = []
    for name, job in loaded.model.jobs.items():
        if job.handler in registered:
            continue
        message = f"unknown handler {job.handler!r}{_did_you_mean(job.handler, known)}"
        if known:
            message += f" (registered handlers: {_listing(known)})"
        else:
            message += " (no handler is registered: check the 'plugins' list)"
        problems.append(loaded.diagnostic(("jobs", name, "handler"), message))
    return problems


# -- pydantic errors ----------------------------------------------------------------------

_TYPE_MESSAGES = {
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
}


def _model_diagnostics(
    document: source.Document, exc: pydantic.ValidationError
) -> list[errors.Diagnostic]:
    """Every pydantic error, placed and reworded; a union's failed branches are merged."""
    entries: dict[object, tuple[locate.Located, list[str]]] = {}
    for index, error in enumerate(exc.errors(include_url=False)):
        where = locate.locate_error(document, error["loc"], error["type"])
        # Errors whose loc runs past the file are a union's branches: one entry per value.
        key: object = (where.path, "union") if where.rest else index
        entries.setdefault(key, (where, []))[1].append(_reword(error, where))
    return [
        errors.Diagnostic(
            document.file, where.line, where.col, _prefixed(where.path, _join_messages(messages))
        )
        for where, messages in entries.values()
    ]


def _join_messages(messages: list[str]) -> str:
    """``expected a string, not a number`` + ``expected a mapping, not a number`` (a union's
    branches) → ``expected a string or a mapping, not a number``."""
    unique = list(dict.fromkeys(messages))
    matches = [re.fullmatch(r"expected (.+), not (.+)", message) for message in unique]
    found = [match for match in matches if match is not None]
    if 1 < len(found) == len(unique) and len({match[2] for match in found}) == 1:
        return f"expected {' or '.join(match[1] for match in found)}, not {found[0][2]}"
    return "; ".join(unique)


def _reword(error: Any, where: locate.Located) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing" and where.missing is not None:
        return f"missing required key {where.missing!r}"
    if kind == "extra_forbidden":
        key = str(where.path[-1]) if where.path else "?"
        known = _known_keys(where.path[:-1])
        hint = _did_you_mean(key, known)
        if not hint and known:
            hint = f" (expected one of: {', '.join(known)})"
        return f"unknown key {key!r}{hint}"
    if kind == "string_pattern_mismatch":
        return _pattern_message(ctx.get("pattern"), value, where.path)
    if kind in _TYPE_MESSAGES:
        return f"{_TYPE_MESSAGES[kind]}, not {_shown(value)}"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "too_short" and isinstance(value, dict):
        return f"must define at least {ctx.get('min_length', 1)} entry"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}"
    message: str = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _pattern_message(pattern: object, value: object, path: source.Loc) -> str:
    shown = _short(value)
    if pattern == models.NAME_PATTERN:
        return f"invalid name {shown}: use 1 to 64 letters, digits, '.', '_' or '-'"
    if path[:1] == ("plugins",):
        return f"invalid module name {shown}: expected a dotted Python module path"
    return f"{shown} does not match the pattern {pattern}"


def _shown(value: object) -> str:
    """A scalar as YAML writes it (shortened); a mapping or a list by its kind."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str | int | float):
        return _short(value)
    return source.describe(value)


def _short(value: object, limit: int = 70) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _known_keys(path: source.Loc) -> list[str]:
    """The keys allowed in the mapping at ``path`` (aliases first), for did-you-mean."""
    current: Any = models.Pipeline
    for part in path:
        current = _child_type(current, part)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _child_type(annotation: Any, part: str | int) -> Any:
    for candidate in _members(annotation):
        if isinstance(candidate, type) and issubclass(candidate, pydantic.BaseModel):
            for name, info in candidate.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
            return None
        origin = typing.get_origin(candidate)
        if origin is dict and isinstance(part, str):
            return typing.get_args(candidate)[1]
        if origin is list and isinstance(part, int):
            return typing.get_args(candidate)[0]
    return None


def _members(annotation: Any) -> list[Any]:
    """``Annotated[X, ...]`` → ``[X]``; ``X | Y`` → ``[X, Y]``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


# -- cross-checks -----------------------------------------------------------------------------


def _load_schemas(
    loaded: LoadedPipeline,
) -> tuple[dict[str, Mapping[str, Any]], list[errors.Diagnostic]]:
    schemas: dict[str, Mapping[str, Any]] = {}
    problems: list[errors.Diagnostic] = []
    for name, job in loaded.model.jobs.items():
        loc = ("jobs", name, "schema")
        try:
            if isinstance(job.payload_schema, str):
                schema = _read_schema_file(loaded.root, job.payload_schema)
            else:
                schema = _inline_schema(job.payload_schema)
        except ValueError as exc:
            problems.append(loaded.diagnostic(loc, str(exc)))
        else:
            schemas[name] = schema
    return schemas, problems


def _read_schema_file(root: Path, value: str) -> Mapping[str, Any]:
    """``email.json`` or ``schemas/email.json``, under ``<root>/schemas/``."""
    relative = Path(value)
    if relative.is_absolute():
        raise ValueError(f"schema path {value!r} must be relative to {root / 'schemas'}")
    base = root if relative.parts[:1] == ("schemas",) else root / "schemas"
    resolved = (base / relative).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"schema path {value!r} resolves to {resolved}, outside the project root")
    if not resolved.is_file():
        missing = "is not a file" if resolved.exists() else "not found"
        raise ValueError(f"schema file {missing}: {resolved}")
    try:
        text = resolved.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read schema file {resolved}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"schema file {resolved} is not valid UTF-8") from None
    try:
        schema = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise ValueError(f"schema file {resolved} is not valid JSON: {reason}") from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"schema file {resolved} is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        kind = source.describe(schema)
        raise ValueError(f"schema file {resolved} must hold a JSON object, not {kind}")
    try:
        payloads.check_schema(schema)
    except ValueError as exc:
        raise ValueError(f"schema file {resolved} is not a valid JSON Schema: {exc}") from None
    return schema


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _inline_schema(schema: dict[str, Any]) -> Mapping[str, Any]:
    try:
        json.dumps(schema, allow_nan=False)
    except ValueError:
        raise ValueError("the inline schema must be plain JSON (no .nan or .inf)") from None
    try:
        payloads.check_schema(schema)
    except ValueError as exc:
        raise ValueError(f"the inline schema is not a valid JSON Schema: {exc}") from None
    return schema


def _check_jobs(
    loaded: LoadedPipeline, schemas: Mapping[str, Mapping[str, Any]]
) -> list[errors.Diagnostic]:
    problems: list[errors.Diagnostic] = []
    queues = loaded.model.queues
    for name, job in loaded.model.jobs.items():
        queue = queues.get(job.queue)
        if queue is None:
            message = (
                f"unknown queue {job.queue!r}{_did_you_mean(job.queue, list(queues))} "
                f"(queues: {_listing(sorted(queues))})"
            )
            problems.append(loaded.diagnostic(("jobs", name, "queue"), message))
        elif job.timeout >= queue.visibility_timeout and not job.heartbeat:
            timeout = _setting(loaded, job.timeout, ("jobs", name, "timeout"))
            lease_loc = ("queues", job.queue, "visibility_timeout")
            lease = _setting(loaded, queue.visibility_timeout, lease_loc)
            message = (
                f"timeout {timeout} must be shorter than the visibility_timeout {lease} of "
                f"queue {job.queue!r}, or a running job would be delivered again "
                "(or set heartbeat: true to renew the lease while it runs)"
            )
            problems.append(loaded.diagnostic(("jobs", name, "timeout"), message))
        if job.idempotency_key is not None:
            for message in _key_problems(job.idempotency_key, schemas.get(name)):
                problems.append(loaded.diagnostic(("jobs", name, "idempotency_key"), message))
    return problems


def _setting(loaded: LoadedPipeline, seconds: float, loc: source.Loc) -> str:
    """A duration for a message, marked when the file leaves it to the default."""
    written = loaded.document.exists(loc)
    return format_duration(seconds) + ("" if written else " (the default)")


def _key_problems(template: str, schema: Mapping[str, Any] | None) -> list[str]:
    try:
        fields = payloads.validate_template(template)
    except ValueError as exc:
        return [str(exc)]
    declared = schema.get("properties") if schema is not None else None
    if not isinstance(declared, Mapping):
        return []
    listing = _listing(sorted(declared))
    return [
        f"field {name!r} is not a property of the job's schema"
        f"{_did_you_mean(name, list(declared))} (properties: {listing})"
        for name in fields
        if name not in declared
    ]


# -- wording ------------------------------------------------------------------------------------


def _prefixed(loc: source.Loc, message: str) -> str:
    return f"{locate.format_loc(loc)}: {message}" if loc else message


def _did_you_mean(word: str, candidates: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _listing(names: list[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:MAX_LISTED])
    hidden = len(names) - MAX_LISTED
    return f"{shown} and {hidden} more" if hidden > 0 else shown
