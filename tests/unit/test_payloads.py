"""Payload rules: JSON parsing, schema problems per field, limits, secrets, idempotency keys.

No payload value may ever appear in an error: every test that fails a payload checks it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner import errors, json_array
from runner.config import payloads
from runner.json_array import JsonArray

CANARY = "CANARY-7f3a9"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["userId", "templateId"],
    "properties": {
        "userId": {"type": "integer", "minimum": 1},
        "templateId": {"type": "string", "maxLength": 64, "pattern": "^[a-z_]+$"},
        "email": {"type": "string", "format": "email"},
        "kind": {"enum": ["welcome", "reset"]},
        "items": {
            "type": "array",
            "maxItems": 5,
            "items": {
                "type": "object",
                "required": ["sku"],
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
            },
        },
        "meta": {"type": "object"},
    },
    "additionalProperties": False,
}


def rules(max_bytes: int = 4096, key: str | None = "email:{templateId}:{userId}") -> Any:
    return payloads.PayloadRules("email.send", SCHEMA, max_bytes=max_bytes, idempotency_key=key)


def refused(payload: object, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(errors.InvalidPayload) as caught:
        rules(**kwargs).prepare(payload, line=7)
    assert caught.value.line == 7
    assert caught.value.job_type == "email.send"
    assert CANARY not in str(caught.value)
    return caught.value.problems


# -- parse_json ---------------------------------------------------------------------------------


def test_parse_json_valid() -> None:
    assert payloads.parse_json('{"a": [1, 2.5, null]}', job_type="t") == {"a": [1, 2.5, None]}
    assert payloads.parse_json('{"a": "\u00e9"}'.encode(), job_type="t") == {"a": "\u00e9"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"a": "caf\xe9 ' + CANARY.encode() + b'"}', "payload is not valid UTF-8"),
        ('{"a": "' + CANARY + '",}', "invalid JSON: Expecting property name"),
        ('{"a": NaN, "b": "' + CANARY + '"}', "NaN and Infinity are not JSON numbers"),
        ('{"a": -Infinity}', "NaN and Infinity are not JSON numbers"),
        ('{"a": 1e999}', "a number is out of range"),
        ('{"a": 1, "a": "' + CANARY + '"}', "an object has the same key twice"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": ' + "9" * 5000 + "}", "a number is too long"),
        (CANARY, "invalid JSON: Expecting value at line 1 column 1"),
    ],
)
def test_parse_json_refuses_without_echo(text: str | bytes, message: str) -> None:
    with pytest.raises(errors.InvalidPayload) as caught:
        payloads.parse_json(text, job_type="email.send", line=3)
    assert caught.value.line == 3
    [(path, got)] = caught.value.problems
    assert path == "$"
    assert got.startswith(message) or message in got
    assert CANARY not in str(caught.value)
    assert str(caught.value).startswith("line 3: invalid payload for email.send: $: ")


# -- prepare ------------------------------------------------------------------------------------


def test_valid_payload() -> None:
    prepared = rules().prepare({"userId": 42, "templateId": "welcome", "kind": "welcome"})
    assert prepared.json_text == '{"userId":42,"templateId":"welcome","kind":"welcome"}'
    assert prepared.idempotency_key == "email:welcome:42"
    assert rules(key=None).prepare({"userId": 1, "templateId": "x"}).idempotency_key is None
    unicode = rules().prepare({"userId": 1, "templateId": "x", "meta": {"n": "\u00e9\u4e2d"}})
    assert unicode.json_text.endswith('"meta":{"n":"\u00e9\u4e2d"}}')


def test_problems_listed_per_field() -> None:
    payload = {
        "userId": CANARY,
        "email": "not-an-email-" + CANARY,
        "kind": CANARY,
        "items": [{"sku": "a"}, {"sku": "b", "qty": "1"}, {"qty": 1}],
        "templateId": "x" * 65,
        "extra": CANARY,
    }
    assert sorted(refused(payload)) == sorted(
        [
            ("$.userId", "must be of type integer"),
            ("$.templateId", "must be at most 64 characters"),
            ("$.email", "must be a valid email"),
            ("$.kind", 'is not one of the allowed values: "welcome", "reset"'),
            ("$.items[1].qty", "must be of type integer"),
            ("$.items[2].sku", "required property 'sku' is missing"),
            ("$.extra", "unknown property 'extra'"),
        ]
    )


def test_missing_fields_and_idempotency_key_fields() -> None:
    assert refused({"kind": "reset"}) == [
        ("$.userId", "required property 'userId' is missing"),
        ("$.templateId", "required property 'templateId' is missing"),
    ]
    no_schema = payloads.PayloadRules("t", {}, max_bytes=1000, idempotency_key="{a}:{b}:{c}")
    with pytest.raises(errors.InvalidPayload) as caught:
        no_schema.prepare({"a": None, "b": {"x": CANARY}})
    assert caught.value.problems == [
        ("$.a", "idempotency_key field 'a' is missing"),
        ("$.b", "idempotency_key field 'b' must be a string, number or boolean"),
        ("$.c", "idempotency_key field 'c' is missing"),
    ]
    assert no_schema.prepare({"a": 1, "b": True, "c": "z"}).idempotency_key == "1:true:z"
    with pytest.raises(errors.InvalidPayload) as caught:
        no_schema.prepare({"a": 10**5000, "b": float("nan"), "c": 1.5})
    assert caught.value.problems == [
        ("$.a", "number is too large"),
        ("$.b", "NaN and Infinity are not allowed in JSON"),
    ]


def test_schema_messages_come_from_the_schema_side() -> None:
    problems = refused({"userId": 0, "templateId": "Bad-" + CANARY})
    assert problems == [
        ("$.userId", "must be at least 1"),
        ("$.templateId", 'must match the pattern "^[a-z_]+$"'),
    ]


def test_payload_must_be_an_object() -> None:
    for payload, kind in [([CANARY], "an array"), (CANARY, "a string"), (None, "a null")]:
        assert refused(payload) == [("$", f"payload must be a JSON object, not {kind}")]


def test_deep_nesting() -> None:
    ok: dict[str, Any] = {}
    deep: dict[str, Any] = ok
    for _ in range(payloads.MAX_DEPTH - 2):
        deep["m"] = {}
        deep = deep["m"]
    rules_ = payloads.PayloadRules("t", {}, max_bytes=10_000, idempotency_key=None)
    rules_.prepare({"meta": ok})  # depth 32 exactly
    deep["m"] = {"x": CANARY}
    with pytest.raises(errors.InvalidPayload) as caught:
        rules_.prepare({"meta": ok})
    [(path, message)] = caught.value.problems
    assert path.startswith("$.meta.m.m") and message == "nested deeper than 32 levels"
    hostile: list[Any] = []
    for _ in range(100_000):
        hostile = [hostile]
    with pytest.raises(errors.InvalidPayload, match="nested deeper than 32 levels"):
        rules_.prepare({"a": hostile})


def test_size_limit() -> None:
    payload = {"userId": 1, "templateId": "x", "meta": {"blob": CANARY * 10_000}}
    size = len(json.dumps(payload, separators=(",", ":")).encode())
    assert refused(payload, max_bytes=1024) == [
        ("$", f"payload is {size} bytes, over the limit of 1024")
    ]
    multibyte = {"userId": 1, "templateId": "x", "meta": {"t": "\u00e9" * 600}}
    assert refused(multibyte, max_bytes=1024)[0][1].startswith("payload is 12")


def test_non_json_values() -> None:
    payload = {
        "userId": float("nan"),
        "templateId": "lone \ud800 surrogate",
        "meta": {1: "int key", "s": {1, 2}, "inf": float("-inf"), "big": 10**5000},
    }
    assert refused(payload) == [
        ("$.userId", "NaN and Infinity are not allowed in JSON"),
        ("$.templateId", "text is not encodable as UTF-8"),
        ("$.meta", "object keys must be strings, not an integer"),
        ("$.meta.s", "not a JSON value (a Python set)"),
        ("$.meta.inf", "NaN and Infinity are not allowed in JSON"),
        ("$.meta.big", "number is too large"),
    ]


SECRET_MESSAGE = (
    "secret-looking key refused: put a reference (an id, a vault path) in the payload, "
    "never the secret"
)


def test_secret_keys_anywhere() -> None:
    payload = {
        "userId": 1,
        "templateId": "x",
        "meta": {
            "billing": {"card_number": CANARY, "holder": "A"},
            "headers": [{"Authorization": CANARY}, {"X-Api-Key": CANARY}],
            "Session-ID": CANARY,
            "user_ssn": CANARY,
            "ibanCode": CANARY,
            "auth": CANARY,
            "PAN": CANARY,
        },
    }
    expected = [
        "$.meta.billing.card_number",
        "$.meta.headers[0].Authorization",
        '$.meta.headers[1]["X-Api-Key"]',
        '$.meta["Session-ID"]',
        "$.meta.user_ssn",
        "$.meta.ibanCode",
        "$.meta.auth",
        "$.meta.PAN",
    ]
    assert payloads.find_secret_paths(payload) == expected
    assert refused(payload) == [(path, SECRET_MESSAGE) for path in expected]


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_passwd",
        "passPhrase",
        "clientSecret",
        "refresh-token",
        "apiKey",
        "AWS_ACCESS_KEY",
        "private_key",
        "set-cookie",
        "creditCard",
        "cc_number",
        "CVV",
        "cvc2",
    ],
)
def test_secret_key_names(key: str) -> None:
    assert payloads.is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["userId", "businessName", "className", "address_number", "author", "pane", "panel"]
)
def test_ordinary_key_names(key: str) -> None:
    assert not payloads.is_secret_key(key)


def test_unresolvable_ref_is_a_payload_problem() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "https://example.com/x.json"}}}
    rules_ = payloads.PayloadRules("t", schema, max_bytes=1000, idempotency_key=None)
    with pytest.raises(errors.InvalidPayload, match=r"\$ref that cannot be resolved"):
        rules_.prepare({"a": CANARY})


def test_declared_draft_is_used() -> None:
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"n": {"exclusiveMinimum": 5}},
    }
    rules_ = payloads.PayloadRules("t", draft7, max_bytes=1000, idempotency_key=None)
    with pytest.raises(errors.InvalidPayload) as caught:
        rules_.prepare({"n": 5})
    assert caught.value.problems == [("$.n", "must be greater than 5")]
    with pytest.raises(ValueError, match=r"unknown \$schema"):
        payloads.PayloadRules("t", {"$schema": "x:y"}, max_bytes=1000, idempotency_key=None)


# -- templates ----------------------------------------------------------------------------------


def test_validate_template() -> None:
    assert payloads.validate_template("email:{templateId}:{userId}:{userId}") == [
        "templateId",
        "userId",
    ]
    assert payloads.validate_template("{{literal}}-{a}") == ["a"]
    for bad, message in [
        ("static", "no {field} placeholder"),
        ("{{only literal}}", "no {field} placeholder"),
        ("{}", "invalid placeholder {}"),
        ("{0}", "invalid placeholder {0}"),
        ("{user.id}", "invalid placeholder {user.id}"),
        ("{items[0]}", "invalid placeholder {items[0]}"),
        ("{a!r}", "must not have a conversion or format spec"),
        ("{a:>10}", "must not have a conversion or format spec"),
        ("{a", "invalid template"),
        ("a}", "invalid template"),
    ]:
        with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("[", r"\[")):
            payloads.validate_template(bad)


def test_long_idempotency_key() -> None:
    rules_ = payloads.PayloadRules("t", {}, max_bytes=10_000, idempotency_key="k:{a}")
    with pytest.raises(errors.InvalidPayload) as caught:
        rules_.prepare({"a": "v" * 600})
    assert caught.value.problems == [("$", "the idempotency key has 602 characters, over 512")]
    assert rules_.prepare({"a": "v" * 510}).idempotency_key == "k:" + "v" * 510


# -- property: any payload is accepted or refused cleanly, never echoed -----------------------

_KEYS = st.sampled_from(
    ["userId", "templateId", "email", "kind", "items", "sku", "qty", "meta", "token", "x y"]
) | st.text(max_size=8)
_TEXT = (
    st.text(max_size=12)
    | st.just(CANARY)
    | st.text(max_size=4).map(lambda s: s + CANARY)
    | st.text(
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2
    ).map(lambda s: CANARY + s)
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | _TEXT
    | st.sampled_from([1e308 * 10])
    | st.integers(4400, 5000).map(lambda digits: 10**digits)  # too long to print
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_KEYS, inner, max_size=5)
        | st.dictionaries(st.integers(0, 3), inner, max_size=2)
    ),
    max_leaves=25,
)
_PAYLOADS = st.dictionaries(_KEYS, _VALUES, max_size=6) | _VALUES


@settings(max_examples=300, deadline=None)
@given(_PAYLOADS)
def test_any_payload_is_prepared_or_refused_without_echo(payload: object) -> None:
    rules_ = rules(max_bytes=512)
    try:
        prepared = rules_.prepare(payload, line=1)
    except errors.InvalidPayload as exc:
        assert exc.problems
        assert CANARY not in str(exc)
        for path, message in exc.problems:
            assert CANARY not in message
            assert path.startswith("$")
    else:
        assert json.loads(prepared.json_text) == payload
        assert len(prepared.json_text.encode()) <= 512


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | _TEXT.map(lambda s: '{"k": "' + s + '"'))
def test_any_text_is_parsed_or_refused_without_echo(text: bytes | str) -> None:
    try:
        payloads.parse_json(text, job_type="t")
    except errors.InvalidPayload as exc:
        assert CANARY not in str(exc)


@settings(max_examples=500, deadline=None)
@given(_PAYLOADS)
def test_the_fast_check_passes_only_what_the_full_inspection_passes(payload: object) -> None:
    # prepare() skips the path-building inspection when the fast check passes: the two
    # must never disagree in that direction (a refused payload accepted).
    if payloads._plain(payload, 1):
        assert payloads._inspect(payload) == ([], [])


def test_the_fast_check_refuses_what_the_full_inspection_reports() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    for payload in (
        {"password": "x"},
        {"a": [{"apiKey": 1}]},
        {"a": float("nan")},
        {"a": "\ud800"},
        {1: "x"},
        {"a": 10**5000},
        {"a": {1, 2}},
        deep,
    ):
        assert not payloads._plain(payload, 1)
        assert payloads._inspect(payload) != ([], [])


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    """``good`` four times in five (``|`` would flatten and weigh every branch alike)."""
    return st.integers(0, 4).flatmap(lambda n: bad if n == 0 else good)


_USER_IDS = st.integers(1, 10**6)
_NEAR_VALID = st.fixed_dictionaries(  # mostly valid under SCHEMA; now and then not
    {
        "userId": _mostly(_USER_IDS, _SCALARS),
        "templateId": _mostly(st.sampled_from(["welcome", "reset_pw"]), _TEXT),
    },
    optional={
        "kind": st.sampled_from(["welcome", "reset", "other"]),
        "meta": st.dictionaries(
            st.sampled_from(["a", "note", "é", "token"]),
            _mostly(st.integers() | st.text(max_size=6) | st.floats(-1e3, 1e3), _SCALARS),
            max_size=3,
        ),
        "items": st.lists(
            st.fixed_dictionaries({"sku": _mostly(st.text(max_size=6), _TEXT)}),
            max_size=3,
        ),
    },
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_mostly(_NEAR_VALID, _PAYLOADS), max_size=5),
    st.sampled_from([None, "email:{templateId}:{userId}"]),
    st.sampled_from([96, 4096]),
)
def test_a_batch_is_accepted_whole_only_as_each_payload_would_be(
    batch: list[object], key: str | None, max_bytes: int
) -> None:
    # enqueue_many takes the batch path when prepare_many accepts the batch: it must give
    # exactly what prepare gives each payload, and never accept one prepare refuses.
    rules_ = rules(max_bytes=max_bytes, key=key)
    accepted = rules_.prepare_many(batch)
    each: list[payloads.Prepared] | None = []
    for payload in batch:
        try:
            each.append(rules_.prepare(payload))  # type: ignore[union-attr]
        except errors.InvalidPayload:
            each = None
            break
    if accepted is not None:
        assert each is not None
        texts, keys = accepted
        assert list(texts) == [p.json_text for p in each]
        # what the bulk insert binds: the array of exactly those texts
        assert json_array.joined(texts) == "[" + ",".join(p.json_text for p in each) + "]"
        assert keys == ([p.idempotency_key for p in each] if key else None)


def test_a_batch_of_valid_payloads_takes_the_batch_path_and_one_bad_payload_does_not() -> None:
    rules_ = rules(max_bytes=64)
    good = [{"userId": n, "templateId": "welcome", "kind": "reset"} for n in range(1, 4)]
    texts, keys = rules_.prepare_many(good)
    assert [json.loads(t) for t in texts] == good
    assert keys == ["email:welcome:1", "email:welcome:2", "email:welcome:3"]
    for bad in (
        {"userId": 0, "templateId": "welcome"},  # the schema's minimum
        {"userId": 1, "templateId": "welcome", "meta": {"password": "x"}},  # a secret
        {"userId": 1, "templateId": "welcome", "meta": {"note": "é" * 40}},  # 81+ bytes
        {"userId": 1, "templateId": "welcome", "meta": {"x": float("nan")}},
        {"templateId": "welcome"},  # the key's field is missing
    ):
        assert rules_.prepare_many([*good, bad]) is None
        with pytest.raises(errors.InvalidPayload):
            rules_.prepare(bad)


def test_a_batch_without_keys_is_encoded_in_runs_each_within_the_size_limit() -> None:
    rules_ = rules(max_bytes=64, key=None)
    batch = [
        {"userId": n, "templateId": "t" * (1 + n % 10), "meta": {"é": n}} for n in range(1, 41)
    ]
    texts_each = [rules_.prepare(p).json_text for p in batch]
    assert sum(map(len, texts_each)) > 64 * 10  # the whole batch is far over the limit

    accepted = rules_.prepare_many(batch)

    assert accepted is not None
    texts, keys = accepted
    assert isinstance(texts, JsonArray) and keys is None and len(texts) == 40
    assert texts.text == "[" + ",".join(texts_each) + "]"
    assert list(texts) == texts_each and texts[3] == texts_each[3]
    assert rules_._run <= 2  # no two payloads fit in one run: the run is kept short
    # one payload at exactly the limit does not fit a run ("[" and "]"): prepare judges
    # the batch, and accepts it
    meta: dict[str, str] = {"note": ""}
    exact = {"userId": 1, "templateId": "x", "meta": meta}
    meta["note"] = "n" * (64 - len(rules_.prepare(exact).json_text))
    assert len(rules_.prepare(exact).json_text) == 64
    assert rules_.prepare_many([*batch, exact]) is None
    # and one over the limit is refused by the batch path too
    meta["note"] += "n"
    assert rules_.prepare_many([exact]) is None


def test_a_json_array_gives_each_elements_text_only_when_asked() -> None:
    splits: list[str] = []

    def split(text: str) -> list[str]:
        splits.append(text)
        return [json.dumps(v, separators=(",", ":")) for v in json.loads(text)]

    texts = JsonArray('[{"a":1},[2,3],"x"]', 3, split)
    assert len(texts) == 3 and json_array.joined(texts) == '[{"a":1},[2,3],"x"]'
    assert splits == []
    assert texts[1] == "[2,3]" and texts[-1] == '"x"' and texts[:1] == ['{"a":1}']
    assert texts == ['{"a":1}', "[2,3]", '"x"'] and splits == ['[{"a":1},[2,3],"x"]']
    assert json_array.joined(["1", "2"]) == "[1,2]"
    with pytest.raises(ValueError, match="2 elements, not 3"):
        JsonArray("[1,2]", 3, split).elements()


# -- the compiled validator only ever says "valid" sooner --------------------------------------

_SCHEMA_DIR = Path(__file__).parents[2] / "schemas"
_VALID_PAYLOADS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        json.loads((_SCHEMA_DIR / "email_send.json").read_text()),
        {"userId": 7, "templateId": "welcome", "to": "a@example.com", "locale": "en"},
    ),
    (
        json.loads((_SCHEMA_DIR / "billing_retry_charge.json").read_text()),
        {"invoiceId": "in_1", "customerId": "cus_a_1", "amountCents": 100, "currency": "eur"},
    ),
    (
        json.loads((_SCHEMA_DIR / "image_thumbnail.json").read_text()),
        {"imageId": "img_1", "source_url": "https://example.com/a.png", "sizes": [64, 128]},
    ),
    (
        json.loads((_SCHEMA_DIR / "report_build.json").read_text()),
        {"reportId": "r1", "accountId": 3, "kind": "usage", "from": "2024-02-29"},
    ),
    (SCHEMA, {"userId": 1, "templateId": "welcome", "email": "a@b", "kind": "reset"}),
]
_FIELD_TEXT = st.sampled_from(
    [
        "a@b",
        "a@example.com",
        "a@@b",
        "@",
        "not-an-email",
        "2024-02-30",
        "2024-02-29",
        "2024-2-29",
        "2024-02-29\n",
        "https://example.com/x.png",
        "https://exa mple.com",
        "//example.com",
        "no scheme",
        "in_123",
        "in_12\n",
        "cus_a_b",
        "cus_\u0663",
        "welcome",
        "welcome\n",
        "WELCOME",
        "",
        "eur",
        "EUR",
        "img_9",
        "\u0663",
        "invoices",
    ]
) | st.text(max_size=6)
_FIELD_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 5000)
    | st.sampled_from([1.0, 0.5, 16.0, 4096.0, 4097, 600.0, 600.5, 2**64])
    | _FIELD_TEXT,
    lambda inner: st.lists(inner, max_size=9) | st.dictionaries(_FIELD_TEXT, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(_VALID_PAYLOADS), st.data())
def test_the_compiled_validator_never_accepts_what_jsonschema_refuses(
    case: tuple[dict[str, Any], dict[str, Any]], data: st.DataObject
) -> None:
    schema, valid = case
    fast = payloads._fast_validator(schema)
    assert fast is not None  # every sample schema takes the fast path
    checker = payloads._validator_class(schema)
    slow = checker(schema, format_checker=checker.FORMAT_CHECKER)
    assert fast.is_valid(valid) and list(slow.iter_errors(valid)) == []
    # a valid payload with one or two fields changed (or dropped, or one added)
    names = [*sorted(schema.get("properties", {})), "extra"]
    payload = dict(valid)
    for name in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=2)):
        if data.draw(st.booleans()) and name in payload:
            del payload[name]
        else:
            payload[name] = data.draw(_FIELD_VALUES)
    if fast.is_valid(payload):
        assert list(slow.iter_errors(payload)) == []


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": {"a": {"type": "string", "pattern": r"^\D+$"}}},
        {"properties": {"a": {"type": "string", "format": "regex"}}},
        {"properties": {"a": {"$ref": "https://example.com/schema.json"}}},
        {"patternProperties": {r"^\w+\s$": {"type": "string"}}},
        {"properties": {"a": {"type": "string", "format": "my-own-format"}}},
    ],
)
def test_schemas_the_compiled_validator_could_judge_differently_skip_it(
    schema: dict[str, Any],
) -> None:
    assert payloads._fast_validator(schema) is None


def test_a_property_named_like_a_keyword_keeps_the_fast_path() -> None:
    schema = {"properties": {"format": {"type": "string"}, "pattern": {"type": "integer"}}}
    assert payloads._fast_validator(schema) is not None


def test_a_pattern_python_cannot_compile_makes_the_schema_invalid() -> None:
    # ECMA-262 accepts this named group; Python's re (which validates payloads) does not:
    # the compiled meta-validator alone would let the schema through.
    with pytest.raises(ValueError, match="regex"):
        payloads.check_schema({"properties": {"a": {"type": "string", "pattern": "(?<n>x)"}}})


def test_loading_a_pipeline_does_not_import_jsonschema() -> None:
    # Start-up weight of `runner up` and of most CLI calls: jsonschema is imported only
    # when a schema or a payload is refused (to word the problems).
    root = Path(__file__).parents[2]
    code = (
        "import sys, runner; "
        f"runner.load({str(root / 'pipelines' / 'email.yaml')!r}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jsonschema', 'rich')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={**os.environ, "RUNNER_DATABASE_URL": "sqlite://"},
    )
    assert done.stdout.strip() == "[]"
