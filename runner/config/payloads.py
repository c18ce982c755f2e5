"""Payload rules, checked at enqueue: JSON only, size, depth, secrets, JSON Schema, and the
idempotency key rendered from a template.

Every problem is reported as ``(json_path, message)``. Messages are built from the schema and
the rules only: a payload value never reaches a message, a log line or the terminal.
"""

from __future__ import annotations

import functools
import json
import math
import re
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

import jsonschema_rs

from runner import errors
from runner.json_array import JsonArray

if TYPE_CHECKING:  # jsonschema is imported when a schema or a payload needs it (below)
    import jsonschema

MAX_DEPTH = 32
"""Nesting allowed in a payload; the top-level object is depth 1."""
MAX_KEY_LENGTH = 512
"""Longest idempotency key, in characters (it is indexed by the database)."""
MAX_PROBLEMS = 50
"""Problems listed for one payload; the rest are counted."""

_MAX_INT_BITS = 14_000
"""About 4200 digits: Python refuses to print longer integers (sys.get_int_max_str_digits)."""
_SECRET_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "authorization",
    "cookie",
    "sessionid",
    "cardnumber",
    "creditcard",
    "ccnumber",
)
"""Refused anywhere in a normalised key."""
_SECRET_WORDS = frozenset({"ssn", "cvv", "cvc", "iban"})
"""Refused as a whole word of a key (``user_ssn``, ``ibanCode``; not ``businessName``)."""
_SECRET_KEYS = frozenset({"auth", "pan"})
"""Refused as the whole normalised key only."""
_SECRET_MESSAGE = (
    "secret-looking key refused: put a reference (an id, a vault path) in the payload, "
    "never the secret"
)
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""Compact UTF-8 JSON without NaN; one encoder (json.dumps would build one per call)."""


def _canonical_encoder() -> Callable[[object], str]:
    """``_CANONICAL.encode`` without its per-call set-up: the C encoder, built once.

    ``encode`` builds a new C encoder for every payload (~0.65 of its ~1 µs). This one has
    no circular-reference check: a payload reaches it only after ``_plain``/``_inspect``
    bounded its depth, and a cycle would still end in RecursionError, reported as
    unencodable.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return _CANONICAL.encode
    c_encode = make(
        None,  # markers: no circular check (see above)
        _CANONICAL.default,
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,  # indent
        ":",
        ",",
        False,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )

    def encode(payload: object) -> str:
        return "".join(c_encode(payload, 0))

    return encode


_encode_canonical = _canonical_encoder()
_MAX_RUN = 1024  # payloads in one call of the encoder (prepare_many)


def _canonical_elements(array_text: str) -> list[str]:
    """Each element's text of a canonical JSON array: decoded and encoded again, which
    gives canonical JSON back exactly (key order kept, floats by their shortest repr)."""
    return [_encode_canonical(value) for value in json.loads(array_text)]


class Prepared(NamedTuple):
    """A payload accepted for enqueue."""

    json_text: str
    """Canonical JSON: compact separators, UTF-8 text, no NaN."""
    idempotency_key: str | None


class _Refused(ValueError):
    """Raised inside the JSON parser hooks, with a message safe to show."""


def parse_json(text: str | bytes, *, job_type: str, line: int | None = None) -> object:
    """Parse one JSON payload; raises ``InvalidPayload`` (never echoing the content)."""
    try:
        decoded = text.decode("utf-8") if isinstance(text, bytes) else text
    except UnicodeDecodeError as exc:
        message = f"payload is not valid UTF-8 (bad byte at offset {exc.start})"
        raise errors.InvalidPayload(job_type, [("$", message)], line=line) from None
    try:
        return json.loads(
            decoded,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        message = f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except _Refused as exc:
        message = str(exc)
    except RecursionError:
        message = "invalid JSON: nested too deeply"
    except ValueError:
        # int() refuses numbers over sys.get_int_max_str_digits(); its message is safe,
        # but keep the wording ours.
        message = "invalid JSON: a number is too long"
    raise errors.InvalidPayload(job_type, [("$", message)], line=line) from None


def _refuse_constant(name: str) -> object:
    raise _Refused("invalid JSON: NaN and Infinity are not JSON numbers")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("invalid JSON: a number is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Refused("invalid JSON: an object has the same key twice")
    return result


def validate_template(template: str) -> list[str]:
    """The field names of an idempotency key template such as ``email:{templateId}:{userId}``.

    Placeholders are plain identifiers (no attribute, index, conversion or format spec);
    at least one is required. Raises ``ValueError`` with a message for the user.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        reason = f"{exc} (write a literal brace as {{{{ or }}}})"
        raise ValueError(f"invalid template: {reason}") from None
    fields: list[str] = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _IDENTIFIER.match(name):
            raise ValueError(
                f"invalid placeholder {{{name}}}: use a top-level payload field name, "
                "e.g. {userId}"
            )
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} must not have a conversion or format spec")
        if name not in fields:
            fields.append(name)
    if not fields:
        raise ValueError(
            "the template has no {field} placeholder: every job would get the same key "
            "and all but the first would be duplicates"
        )
    return fields


_DRAFTS = frozenset(
    {
        "https://json-schema.org/draft/2020-12/schema",
        "https://json-schema.org/draft/2019-09/schema",
        "http://json-schema.org/draft-07/schema#",
        "http://json-schema.org/draft-06/schema#",
        "http://json-schema.org/draft-04/schema#",
    }
)
"""``$schema`` values checked by the compiled meta-validator; others go to jsonschema."""


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` with a readable reason unless ``schema`` is a valid JSON Schema.

    The compiled meta-validator answers first (no jsonschema import: ``runner up`` and
    most CLI calls start ~35 ms sooner); jsonschema decides, and words the reason, when
    it does not say valid.
    """
    if _surely_valid(schema):
        return
    import jsonschema

    cls = _validator_class(schema)
    try:
        cls.check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        where = exc.json_path if exc.path else "the top level"
        raise ValueError(f"{exc.message} (at {where} of the schema)") from None


def _surely_valid(schema: Mapping[str, Any]) -> bool:
    """A known draft, valid against its meta-schema, every regex compiling in Python (the
    meta-schema's ``regex`` format, which jsonschema checks with ``re``)."""
    declared = schema.get("$schema")
    if declared is not None and declared not in _DRAFTS:
        return False
    try:
        if not jsonschema_rs.meta.is_valid(dict(schema)):
            return False
    except Exception:
        return False
    return _regexes_compile(schema)


def _regexes_compile(schema: Mapping[str, Any]) -> bool:
    for pattern in _patterns(schema):
        try:
            re.compile(pattern)
        except re.error:
            return False
    return True


def _keywords(node: object) -> Iterator[tuple[str, Any]]:
    """Every ``(key, value)`` of every object in a schema, depth first."""
    if isinstance(node, list):
        for item in node:
            yield from _keywords(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key), value
            yield from _keywords(value)


def _patterns(schema: Mapping[str, Any]) -> Iterator[str]:
    """The regexes of a schema: ``pattern`` values and ``patternProperties`` keys (a dict
    under "pattern" is the schema of a property so named)."""
    for key, value in _keywords(schema):
        if key == "pattern" and isinstance(value, str):
            yield value
        elif key == "patternProperties" and isinstance(value, dict):
            yield from (str(p) for p in value)


def _validator_class(schema: Mapping[str, Any]) -> type[jsonschema.protocols.Validator]:
    """The draft ``$schema`` declares, default 2020-12; an unknown ``$schema`` is an error."""
    from jsonschema import validators

    declared = schema.get("$schema")
    if declared is None:
        return validators.Draft202012Validator
    if not isinstance(declared, str):
        raise ValueError(
            "$schema must be a string such as https://json-schema.org/draft/2020-12/schema"
        )
    first = validators.validator_for(schema, default=validators.Draft202012Validator)
    second = validators.validator_for(schema, default=validators.Draft4Validator)
    if first is not second:
        raise ValueError(
            f"unknown $schema {declared!r}: use a JSON Schema draft URI such as "
            "https://json-schema.org/draft/2020-12/schema"
        )
    return first


_REGEX_DIALECT_GAPS = re.compile(r"\\[DWSsBbpP]|\(\?[a-z]*i")
"""Regex parts where JSON Schema's ECMA-262 dialect can match text Python's ``re`` does
not (ASCII-only negated classes and boundaries, \\s, Unicode properties, case folding)."""
_FORMATS_AT_LEAST_AS_STRICT = frozenset(
    {
        "date",
        "date-time",
        "time",
        "duration",
        "email",
        "idn-email",
        "hostname",
        "idn-hostname",
        "ipv4",
        "ipv6",
        "uri",
        "uri-reference",
        "iri",
        "iri-reference",
        "uuid",
        "json-pointer",
        "relative-json-pointer",
    }
)
"""Formats the compiled validator checks at least as strictly as jsonschema's checker."""


def _fast_validator(schema: Mapping[str, Any]) -> Any:
    """A compiled validator (jsonschema-rs) for the accept path, or None.

    jsonschema stays the judge: the compiled one only says "valid" sooner, and a payload
    it refuses is checked again by jsonschema, which lists the problems (and accepts it if
    it finds none). So it is used only where it cannot accept what jsonschema refuses:
    no remote ``$ref`` (it would fetch it), no format it may check more loosely, no regex
    construct where the two dialects differ in that direction.
    """
    if not _fast_safe(schema):
        return None
    try:
        return jsonschema_rs.validator_for(dict(schema), validate_formats=True)
    except Exception:  # a construct it does not support: jsonschema alone
        return None


def _fast_safe(schema: Mapping[str, Any]) -> bool:
    for key, value in _keywords(schema):
        if key == "$ref" and not (isinstance(value, str) and value.startswith("#")):
            return False
        # (a dict under "format" is the schema of a property so named)
        if key == "format" and isinstance(value, str) and value not in _FORMATS_AT_LEAST_AS_STRICT:
            return False
        if key in ("$dynamicRef", "$recursiveRef"):
            return False
    return not any(_REGEX_DIALECT_GAPS.search(p) for p in _patterns(schema))


class PayloadRules:
    """The checks for one job type, with its JSON Schema validator compiled once."""

    def __init__(
        self,
        job_type: str,
        schema: Mapping[str, Any],
        *,
        max_bytes: int,
        idempotency_key: str | None,
    ) -> None:
        """Raises ``ValueError`` for an invalid schema or template (the loader checks both)."""
        check_schema(schema)
        self.job_type = job_type
        self.max_bytes = max_bytes
        self.template = idempotency_key
        self.key_fields = validate_template(idempotency_key) if idempotency_key else []
        self._schema = dict(schema)
        self._fast = _fast_validator(schema)
        self._run = _MAX_RUN  # payloads encoded in one call (_encode_runs); a hint, racy

    @cached_property
    def _validator(self) -> jsonschema.protocols.Validator:
        """jsonschema's validator, built the first time a payload needs it."""
        cls = _validator_class(self._schema)
        return cls(self._schema, format_checker=cls.FORMAT_CHECKER)

    def prepare(self, payload: object, *, line: int | None = None) -> Prepared:
        """Check ``payload`` and return its canonical JSON and idempotency key.

        Raises ``InvalidPayload`` listing every problem found.
        """
        if not isinstance(payload, dict):
            message = f"payload must be a JSON object, not {_json_type(payload)}"
            raise errors.InvalidPayload(self.job_type, [("$", message)], line=line)
        problems, secrets = ([], []) if _plain(payload, 1) else _inspect(payload)
        json_text = ""
        if not problems:
            json_text, problems = self._encode(payload)
        # Only JSON within the size limit is worth validating against the schema.
        validate = not problems
        problems += [(path, _SECRET_MESSAGE) for path in secrets]
        if validate:
            problems += self._schema_problems(payload)
        key = self._render_key(payload, problems) if self.template else None
        if problems:
            raise errors.InvalidPayload(self.job_type, _capped(_unique(problems)), line=line)
        return Prepared(json_text, key)

    def prepare_many(
        self, payloads: Sequence[object]
    ) -> tuple[Sequence[str], list[str | None] | None] | None:
        """The canonical JSON of every payload of a batch (and their idempotency keys, with a
        template), when every one passes every check ``prepare`` makes; None as soon as one
        may not, and the caller then runs ``prepare`` on each, which says what is wrong and
        where (or accepts what only looked unusual: a dict subclass, say).

        The same checks as ``prepare`` in the same order of strictness, for a fraction of
        its cost a payload: no problem lists and no result object per payload. Without a
        key template the texts come as one ``JsonArray``, encoded a run of payloads at a
        time (``_encode_runs``); with one, the keyed insert wants each text on its own."""
        if self._fast is None:  # jsonschema judges these payloads, one by one
            return None
        for payload in payloads:
            if type(payload) is not dict or not _plain(payload, 1):
                return None
        texts: Sequence[str] | None
        if self.template is None:
            texts = self._encode_runs(payloads)
        else:
            try:
                texts = list(map(_encode_canonical, payloads))
            except (ValueError, TypeError, RecursionError):
                return None
            if not self._all_fit(texts):
                return None
        if texts is None:
            return None
        try:
            if not all(map(self._fast.is_valid, payloads)):
                return None
        except Exception:  # e.g. a number it cannot represent: jsonschema decides
            return None
        if self.template is None:
            return texts, None
        keys: list[str | None] = []
        for payload in payloads:
            problems: list[tuple[str, str]] = []
            key = self._render_key(payload, problems)  # type: ignore[arg-type]
            if key is None or problems:
                return None
            keys.append(key)
        return texts, keys

    def _encode_runs(self, payloads: Sequence[object]) -> JsonArray | None:
        """The payloads' canonical JSON as one array text, when each one is within
        ``max_bytes``: encoded a run of payloads at a time, each run's text within the
        limit (so every payload in it is). A run that is not is halved and encoded again,
        down to a single payload, which is then over the limit itself (None; at exactly
        the limit, the two brackets tip it over and ``prepare`` judges it). The run length
        that worked is kept for the next batch."""
        limit, count = self.max_bytes, len(payloads)
        runs: list[str] = []
        start, step = 0, self._run
        try:
            while start < count:
                text = _encode_canonical(payloads[start : start + step])
                if len(text) <= limit and (text.isascii() or len(text.encode()) <= limit):
                    runs.append(text)
                    start += step
                    self._run = step
                    step = min(2 * step, _MAX_RUN)
                elif step > 1:
                    step //= 2
                else:
                    return None
        except (ValueError, TypeError, RecursionError):
            return None
        if len(runs) == 1:
            return JsonArray(runs[0], count, _canonical_elements)
        return JsonArray("[" + ",".join(r[1:-1] for r in runs) + "]", count, _canonical_elements)

    def _all_fit(self, texts: list[str]) -> bool:
        """Whether every text is at most ``max_bytes`` of UTF-8 (a code point is at most 4
        bytes: only texts longer than a quarter of the limit are encoded to count)."""
        limit = self.max_bytes
        if not texts or max(map(len, texts)) * 4 <= limit:
            return True
        return all(len(t) <= limit if t.isascii() else len(t.encode()) <= limit for t in texts)

    def _encode(self, payload: dict[Any, Any]) -> tuple[str, list[tuple[str, str]]]:
        try:
            text = _encode_canonical(payload)
        except (ValueError, TypeError, RecursionError):
            return "", [("$", "payload cannot be encoded as JSON")]
        size = len(text.encode("utf-8"))
        if size > self.max_bytes:
            return text, [("$", f"payload is {size} bytes, over the limit of {self.max_bytes}")]
        return text, []

    def _schema_problems(self, payload: dict[str, Any]) -> list[tuple[str, str]]:
        if self._fast is not None:
            try:
                if self._fast.is_valid(payload):
                    return []
            except Exception:  # e.g. a number it cannot represent: jsonschema decides
                pass
        import referencing.exceptions

        problems: list[tuple[str, str]] = []
        try:
            for error in self._validator.iter_errors(payload):
                problems.extend(_describe(error))
        except referencing.exceptions.Unresolvable:
            problems.append(("$", "the job's schema has a $ref that cannot be resolved"))
        return problems

    def _render_key(self, payload: dict[str, Any], problems: list[tuple[str, str]]) -> str | None:
        assert self.template is not None
        values: dict[str, str] = {}
        reported = {path for path, _ in problems}
        for name in self.key_fields:
            path = _join("$", name)
            value = payload.get(name)
            if isinstance(value, str | int | float) and _scalar_problem(value) is None:
                values[name] = value if isinstance(value, str) else json.dumps(value)
            elif path in reported:
                continue  # the schema already said what is wrong with this field
            elif value is None:
                problems.append((path, f"idempotency_key field {name!r} is missing"))
            else:
                message = f"idempotency_key field {name!r} must be a string, number or boolean"
                problems.append((path, message))
        if len(values) < len(self.key_fields):
            return None
        key = self.template.format(**values)
        if len(key) > MAX_KEY_LENGTH:
            message = f"the idempotency key has {len(key)} characters, over {MAX_KEY_LENGTH}"
            problems.append(("$", message))
        return key


def find_secret_paths(payload: object) -> list[str]:
    """JSON paths of secret-looking keys anywhere in ``payload`` (dicts inside lists too)."""
    return _inspect(payload)[1]


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a payload key looks like it holds a secret (see the module's lists).
    Cached: producers send the same few field names over and over."""
    normalised = re.sub(r"[^a-z0-9]", "", key.lower())
    if normalised in _SECRET_KEYS or any(part in normalised for part in _SECRET_PARTS):
        return True
    return any(word.lower() in _SECRET_WORDS for word in _WORDS.findall(key))


_PLAIN_KEYS: set[str] = set()
"""Keys ``_plain`` has passed (str, encodable, not secret-looking): producers send the same
few names over and over. Bounded by ``_PLAIN_KEYS_MAX``; past it, keys are judged anew."""
_PLAIN_KEYS_MAX = 4096


def _plain_key(key: object) -> bool:
    if type(key) is not str or is_secret_key(key) or not (key.isascii() or _encodable(key)):
        return False
    if len(_PLAIN_KEYS) < _PLAIN_KEYS_MAX:
        _PLAIN_KEYS.add(key)
    return True


def _plain(value: object, depth: int) -> bool:
    """True when ``_inspect`` would find nothing: JSON types only, string keys that do not
    look secret, encodable text, finite numbers, no deeper than MAX_DEPTH. No paths are
    built, so this costs a fraction of ``_inspect``, which runs only when this is False
    (to say what is wrong and where). Scalars inside a container are checked without a
    recursive call, and keys once per process (``_PLAIN_KEYS``)."""
    if type(value) is dict:
        if depth > MAX_DEPTH:
            return False
        for key, child in value.items():
            if not (type(key) is str and key in _PLAIN_KEYS) and not _plain_key(key):
                return False
            kind = type(child)  # the commonest values first, without a call
            if kind is str:
                if not (child.isascii() or _encodable(child)):
                    return False
            elif kind is int:
                if child.bit_length() > _MAX_INT_BITS:
                    return False
            elif not _plain_scalar(child) and not _plain(child, depth + 1):
                return False
        return True
    if type(value) is list:
        if depth > MAX_DEPTH:
            return False
        return all(_plain_scalar(item) or _plain(item, depth + 1) for item in value)
    return _plain_scalar(value)


def _plain_scalar(value: object) -> bool:
    """True for a JSON scalar ``_inspect`` would pass; False for anything else (including
    every container, which ``_plain`` walks)."""
    if type(value) is str:
        return value.isascii() or _encodable(value)
    if type(value) is int:
        return value.bit_length() <= _MAX_INT_BITS
    if type(value) is bool or value is None:
        return True
    if type(value) is float:
        return math.isfinite(value)
    return False


def _inspect(payload: object) -> tuple[list[tuple[str, str]], list[str]]:
    """One pass over the payload: structural problems (types, NaN, encoding, depth) and the
    paths of secret-looking keys. Iterative, so hostile nesting cannot exhaust the stack."""
    structure: list[tuple[str, str]] = []
    secrets: list[str] = []
    too_deep = False
    # (value, its path, its depth, the key it sits under), in document order.
    stack: list[tuple[object, str, int, object]] = [(payload, "$", 1, None)]
    while stack:
        value, path, depth, key = stack.pop()
        if isinstance(key, str):
            if not _encodable(key):
                structure.append((path, "key is not encodable as UTF-8"))
            if is_secret_key(key):
                secrets.append(path)
        if isinstance(value, dict | list) and depth > MAX_DEPTH:
            if not too_deep:
                structure.append((path, f"nested deeper than {MAX_DEPTH} levels"))
                too_deep = True
            continue
        children: list[tuple[object, str, int, object]] = []
        if isinstance(value, dict):
            for child_key, child in value.items():
                if isinstance(child_key, str):
                    children.append((child, _join(path, child_key), depth + 1, child_key))
                else:
                    kind = _json_type(child_key)
                    structure.append((path, f"object keys must be strings, not {kind}"))
        elif isinstance(value, list):
            children = [(item, f"{path}[{i}]", depth + 1, None) for i, item in enumerate(value)]
        else:
            problem = _scalar_problem(value)
            if problem is not None:
                structure.append((path, problem))
        stack.extend(reversed(children))
    return structure, secrets


def _scalar_problem(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if value.bit_length() <= _MAX_INT_BITS else "number is too large"
    if isinstance(value, float):
        return None if math.isfinite(value) else "NaN and Infinity are not allowed in JSON"
    if isinstance(value, str):
        return None if _encodable(value) else "text is not encodable as UTF-8"
    return f"not a JSON value (a Python {type(value).__name__})"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_type(value: object) -> str:
    for cls, name in _JSON_TYPES.items():
        if type(value) is cls:
            return f"an {name}" if name[0] in "aeiou" else f"a {name}"
    return f"a Python {type(value).__name__}"


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.match(key):
        return f"{path}.{key}"
    shown = key if len(key) <= 64 else key[:64] + "..."
    return f"{path}[{json.dumps(shown)}]"


def _path_of(error: jsonschema.ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path = _join(path, part)
    return path


def _unique(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(problems))


def _capped(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    hidden = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], ("$", f"{hidden} more problems not shown")]


def _short(value: object, limit: int = 80) -> str:
    """A schema-side value for a message (never a payload value)."""
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: jsonschema.ValidationError) -> Iterator[tuple[str, str]]:
    """``(path, message)`` for one schema error, from the schema side only."""
    path = _path_of(error)
    keyword = error.validator
    expected: Any = error.validator_value
    instance = error.instance
    if keyword == "required" and isinstance(instance, dict):
        for name in expected:
            if name not in instance:
                yield _join(path, name), f"required property {name!r} is missing"
        return
    if keyword == "dependentRequired" and isinstance(instance, dict):
        for trigger, needed in expected.items():
            for name in needed if trigger in instance else ():
                if name not in instance:
                    yield (
                        _join(path, name),
                        (f"required property {name!r} is missing (required with {trigger!r})"),
                    )
        return
    if keyword == "additionalProperties" and isinstance(instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        declared, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
        for name in instance:
            if name not in declared and not any(re.search(p, name) for p in patterns):
                yield _join(path, name), f"unknown property {name!r}"
        return
    yield path, _keyword_message(str(keyword), expected)


def _keyword_message(keyword: str, expected: Any) -> str:
    simple: dict[str, Callable[[Any], str]] = {
        "type": lambda v: "must be of type " + (" or ".join(v) if isinstance(v, list) else str(v)),
        "enum": lambda v: "is not one of the allowed values: " + _short(v, 200).strip("[]"),
        "const": lambda v: f"must be {_short(v)}",
        "maxLength": lambda v: f"must be at most {v} characters",
        "minLength": lambda v: f"must be at least {v} characters",
        "maximum": lambda v: f"must be at most {v}",
        "minimum": lambda v: f"must be at least {v}",
        "exclusiveMaximum": lambda v: f"must be less than {v}",
        "exclusiveMinimum": lambda v: f"must be greater than {v}",
        "multipleOf": lambda v: f"must be a multiple of {v}",
        "pattern": lambda v: f"must match the pattern {_short(v)}",
        "format": lambda v: f"must be a valid {v}",
        "maxItems": lambda v: f"must have at most {v} items",
        "minItems": lambda v: f"must have at least {v} items",
        "uniqueItems": lambda v: "must not contain duplicate items",
        "maxProperties": lambda v: f"must have at most {v} properties",
        "minProperties": lambda v: f"must have at least {v} properties",
        "contains": lambda v: "must contain an item matching the schema's 'contains'",
        "minContains": lambda v: f"must contain at least {v} matching items",
        "maxContains": lambda v: f"must contain at most {v} matching items",
        "anyOf": lambda v: "must match at least one of the allowed alternatives (anyOf)",
        "oneOf": lambda v: "must match exactly one of the allowed alternatives (oneOf)",
        "not": lambda v: "must not match the schema given in 'not'",
        "items": lambda v: "has more items than the schema allows",
        "additionalItems": lambda v: "has more items than the schema allows",
        "unevaluatedItems": lambda v: "has items the schema does not allow",
        "unevaluatedProperties": lambda v: "has properties the schema does not allow",
        "dependencies": lambda v: "does not meet the schema's 'dependencies'",
        "propertyNames": lambda v: "has a property name the schema does not allow",
    }
    describe = simple.get(keyword)
    if describe is not None:
        return describe(expected)
    if keyword in ("None", "False", "false"):
        return "is not allowed by the schema"
    return f"does not satisfy the schema keyword {keyword!r}"
