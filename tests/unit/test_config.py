"""Pipeline files: YAML source, positions, pydantic errors, cross-checks, golden corpus."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from runner import errors
from runner.config import loader, locate, source

BROKEN = Path(__file__).parent / "broken"

PIPELINE = """\
database: sqlite:///var/runner.db
plugins:
  - plugins.email
queues:
  default:
    concurrency: 4
    visibility_timeout: 2m
    dlq:
      owner: team-email
jobs:
  email.send:
    queue: default
    handler: email.send
    schema: email_send.json
    idempotency_key: "email:{templateId}:{userId}"
    timeout: 30s
    retry:
      max_attempts: 5
  email.digest:
    queue: default
    handler: email.digest
    schema: schemas/email_send.json
  audit.write:
    queue: default
    handler: audit.write
    schema:
      type: object
      properties:
        id: {type: integer}
"""

SCHEMA = {
    "type": "object",
    "required": ["userId", "templateId"],
    "properties": {"userId": {"type": "integer"}, "templateId": {"type": "string"}},
}


def write_project(root: Path, pipeline: str = PIPELINE, **schemas: object) -> Path:
    """``root/pipelines/x.yaml`` and ``root/schemas/*.json``; returns the pipeline path."""
    (root / "pipelines").mkdir(parents=True, exist_ok=True)
    (root / "schemas").mkdir(exist_ok=True)
    for name, schema in {"email_send.json": SCHEMA, **schemas}.items():
        (root / "schemas" / name).write_text(json.dumps(schema))
    path = root / "pipelines" / "x.yaml"
    path.write_text(pipeline)
    return path


def load_error(path: str | Path) -> list[str]:
    with pytest.raises(errors.ConfigInvalid) as caught:
        loader.load_pipeline(path)
    return [str(d) for d in caught.value.diagnostics]


# -- golden corpus ------------------------------------------------------------------------------

GOLDEN: dict[str, list[str]] = {
    "bad_syntax.yaml": [
        "pipelines/bad_syntax.yaml:11:19: invalid YAML: expected ',' or ']'",
    ],
    "tabs.yaml": [
        "pipelines/tabs.yaml:3:1: tab character: YAML indentation must use spaces",
    ],
    "duplicate_key.yaml": [
        "pipelines/duplicate_key.yaml:10:5: duplicate key 'timeout'",
    ],
    "empty.yaml": [
        "pipelines/empty.yaml:1:1: the file is empty",
    ],
    "top_level_list.yaml": [
        "pipelines/top_level_list.yaml:1:1: the top level must be a mapping",
    ],
    "unknown_key_top.yaml": [
        "pipelines/unknown_key_top.yaml:1:1: plugin: unknown key 'plugin'; did you mean 'plugins'?",
    ],
    "unknown_key_nested.yaml": [
        "pipelines/unknown_key_nested.yaml:3:5: queues.default.concurency: unknown key "
        "'concurency'; did you mean 'concurrency'?",
        "pipelines/unknown_key_nested.yaml:4:26: queues.default.dlq.alerts: unknown key "
        "'alerts'; did you mean 'alert'?",
        "pipelines/unknown_key_nested.yaml:11:7: jobs.send.retry.max_attempt: unknown key "
        "'max_attempt'; did you mean 'max_attempts'?",
        "pipelines/unknown_key_nested.yaml:12:7: jobs.send.retry.colour: unknown key 'colour' "
        "(expected one of: max_attempts, backoff,",
    ],
    "wrong_types.yaml": [
        "pipelines/wrong_types.yaml:1:10: plugins: expected a list, not 'plugins.email'",
        "pipelines/wrong_types.yaml:4:18: queues.default.concurrency: expected a whole number, "
        "not 'lots'",
        "pipelines/wrong_types.yaml:5:13: queues.default.paused: expected true or false, "
        "not 'maybe'",
        "pipelines/wrong_types.yaml:6:10: queues.default.dlq: expected a mapping, not a list",
        "pipelines/wrong_types.yaml:11:13: jobs.send.schema: expected a string or a mapping, not 5",
        "pipelines/wrong_types.yaml:12:15: jobs.send.priority: expected a whole number, not a list",
        "pipelines/wrong_types.yaml:14:16: jobs.send.retry.backoff: expected 'exponential' "
        "or 'fixed'",
        "pipelines/wrong_types.yaml:15:15: jobs.send.retry.jitter: jitter must be",
    ],
    "bad_durations.yaml": [
        "pipelines/bad_durations.yaml:3:25: queues.default.visibility_timeout: invalid "
        "duration '5x'",
        "pipelines/bad_durations.yaml:10:14: jobs.send.timeout: invalid duration '-3s'",
        "pipelines/bad_durations.yaml:12:13: jobs.send.retry.base: must be greater than zero",
        "pipelines/bad_durations.yaml:13:12: jobs.send.retry.max: a duration must be finite",
    ],
    "missing_queue.yaml": [
        "pipelines/missing_queue.yaml:8:12: jobs.send.queue: unknown queue 'emails'; "
        "did you mean 'email'? (queues: billing, email)",
    ],
    "missing_schema.yaml": [
        "pipelines/missing_schema.yaml:8:13: jobs.send.schema: schema file not found: ",
    ],
    "invalid_schema.yaml": [
        "pipelines/invalid_schema.yaml:8:13: jobs.not_json.schema: schema file ",
        "pipelines/invalid_schema.yaml:12:13: jobs.not_a_schema.schema: schema file ",
        "pipelines/invalid_schema.yaml:17:7: jobs.inline.schema: the inline schema is not "
        "a valid JSON Schema: 'userId' is not of type 'array'",
    ],
    "schema_escape.yaml": [
        "pipelines/schema_escape.yaml:8:13: jobs.send.schema: schema path "
        "'../../test_config.py' resolves to ",
    ],
    "retries_inf.yaml": [
        "pipelines/retries_inf.yaml:10:21: jobs.send.retry.max_attempts: max_attempts must "
        "be a finite whole number of at least 1",
    ],
    "retries_zero.yaml": [
        "pipelines/retries_zero.yaml:9:27: jobs.send.retry.max_attempts: Input should be "
        "greater than or equal to 1",
    ],
    "retries_null.yaml": [
        "pipelines/retries_null.yaml:10:7: jobs.send.retry.max_attempts: max_attempts must "
        "be a finite whole number",
    ],
    "visibility_below_timeout.yaml": [
        "pipelines/visibility_below_timeout.yaml:10:14: jobs.send.timeout: timeout 2m must be "
        "shorter than the visibility_timeout 10s of queue 'default'",
        # The timeout is a default: reported at the job's key.
        "pipelines/visibility_below_timeout.yaml:11:3: jobs.defaulted.timeout: timeout 30s "
        "(the default) must be shorter than the visibility_timeout 10s",
    ],
    "missing_dlq_owner.yaml": [
        "pipelines/missing_dlq_owner.yaml:3:5: queues.no_owner.dlq: missing required key 'owner'",
        "pipelines/missing_dlq_owner.yaml:5:3: queues.no_dlq: missing required key 'dlq'",
        "pipelines/missing_dlq_owner.yaml:8:18: queues.blank_owner.dlq.owner: must not be empty",
    ],
    "yaml_tag.yaml": [
        "pipelines/yaml_tag.yaml:7:14: YAML tags are not allowed: !!python/object/apply:os.system",
        "pipelines/yaml_tag.yaml:8:13: YAML tags are not allowed: !custom",
    ],
    "bad_queue_name.yaml": [
        "pipelines/bad_queue_name.yaml:2:3: queues.bad';drop: invalid name \"bad';drop\"",
        'pipelines/bad_queue_name.yaml:6:12: jobs.send.queue: invalid name "bad\';drop"',
    ],
    "unicode_names.yaml": [
        "pipelines/unicode_names.yaml:2:3: queues.déjà-vu: invalid name 'déjà-vu'",
        "pipelines/unicode_names.yaml:5:3: jobs.send; DELETE FROM runner_jobs: invalid name",
        "pipelines/unicode_names.yaml:6:12: jobs.send; DELETE FROM runner_jobs.queue: invalid",
    ],
    "idempotency_unknown_field.yaml": [
        "pipelines/idempotency_unknown_field.yaml:9:22: jobs.send.idempotency_key: field "
        "'userid' is not a property of the job's schema; did you mean 'userId'?",
    ],
    "idempotency_no_placeholder.yaml": [
        "pipelines/idempotency_no_placeholder.yaml:9:22: jobs.send.idempotency_key: the "
        "template has no {field} placeholder",
        "pipelines/idempotency_no_placeholder.yaml:14:22: jobs.send_attr.idempotency_key: "
        "invalid placeholder {user.id}",
    ],
    "several_errors.yaml": [
        "pipelines/several_errors.yaml:2:26: plugins[1]: invalid module name 'not a module'",
        "pipelines/several_errors.yaml:5:18: queues.default.concurrency: Input should be "
        "greater than or equal to 1",
        "pipelines/several_errors.yaml:6:5: queues.default.dlq: missing required key 'owner'",
        "pipelines/several_errors.yaml:7:3: queues.no spaces: invalid name 'no spaces'",
        "pipelines/several_errors.yaml:10:3: jobs.send: missing required key 'handler'",
        "pipelines/several_errors.yaml:12:5: jobs.send.handlr: unknown key 'handlr'; "
        "did you mean 'handler'?",
        "pipelines/several_errors.yaml:14:14: jobs.send.timeout: invalid duration 'soon'",
        "pipelines/several_errors.yaml:16:21: jobs.send.retry.max_attempts: max_attempts "
        "must be a finite whole number",
    ],
    "cross_checks.yaml": [
        "pipelines/cross_checks.yaml:7:12: jobs.send.queue: unknown queue 'defualt'; "
        "did you mean 'default'?",
        "pipelines/cross_checks.yaml:10:22: jobs.send.idempotency_key: field 'tenant' is not "
        "a property of the job's schema (properties: templateId, userId)",
        "pipelines/cross_checks.yaml:14:13: jobs.receive.schema: schema file not found: ",
        "pipelines/cross_checks.yaml:15:14: jobs.receive.timeout: timeout 30s must be shorter "
        "than the visibility_timeout 30s",
    ],
}


def test_every_corpus_file_has_golden_expectations() -> None:
    files = sorted(p.name for p in (BROKEN / "pipelines").glob("*.yaml"))
    assert files == sorted(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_broken_corpus(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)
    lines = load_error(f"pipelines/{name}")
    assert len(lines) == len(GOLDEN[name]), "\n".join(lines)
    for line, expected in zip(lines, GOLDEN[name], strict=True):
        assert line.startswith(expected), f"\n got: {line}\nwant: {expected}"
        assert re.match(rf"^pipelines/{re.escape(name)}:\d+:\d+: \S", line)


def test_schema_file_messages_name_the_resolved_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)
    lines = load_error("pipelines/invalid_schema.yaml")
    schemas = (BROKEN / "schemas").resolve()
    assert f"{schemas / 'not_json.json'} is not valid JSON: Expecting property name" in lines[0]
    assert f"{schemas / 'not_a_schema.json'} is not a valid JSON Schema: 'strin'" in lines[1]
    missing = load_error("pipelines/missing_schema.yaml")[0]
    assert missing.endswith(f"schema file not found: {schemas / 'nope.json'}")
    escape = load_error("pipelines/schema_escape.yaml")[0]
    assert escape.endswith("outside the project root")


# -- YAML tags: nothing is ever constructed -----------------------------------------------------


def test_yaml_tags_never_execute(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = PIPELINE.replace(
        "    handler: email.send\n",
        f'    handler: !!python/object/apply:os.system ["touch {marker}"]\n',
        1,
    ).replace(
        "  default:\n",
        f"  default: !!python/object/new:pathlib.Path ['{marker}']\n  other:\n",
        1,
    )
    path = write_project(tmp_path, text)
    lines = load_error(path)
    assert not marker.exists()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{path}:5:12", f"{path}:14:14"]
    assert all("YAML tags are not allowed" in line for line in lines)


def test_round_trip_loading_constructs_nothing_and_tags_are_refused(tmp_path: Path) -> None:
    # Belt and braces: even past the event check, ruamel's round-trip loader keeps unknown
    # tags as plain tagged nodes, and the converter refuses every one of them.
    from ruamel.yaml import YAML

    marker = tmp_path / "pwned"
    text = (
        f'a: !!python/object/apply:os.system ["touch {marker}"]\n'
        f"b: !!python/object/new:pathlib.Path ['{marker}']\n"
        "c: !custom {x: 1}\n"
        "d: !custom scalar\n"
    )
    tree = YAML(typ="rt").load(text)
    assert not marker.exists()
    with pytest.raises(errors.ConfigInvalid) as caught:
        source.from_tree(tree, display="f.yaml")
    assert [str(d) for d in caught.value.diagnostics] == [
        "f.yaml:1:4: YAML tags are not allowed: !!python/object/apply:os.system",
        "f.yaml:2:4: YAML tags are not allowed: !!python/object/new:pathlib.Path",
        "f.yaml:3:4: YAML tags are not allowed: !custom",
        "f.yaml:4:4: YAML tags are not allowed: !custom",
    ]


@pytest.mark.parametrize(
    "value",
    ["!!int '7'", "!!str 5", "!!binary aGk=", "!!set {a}", "!!omap [a: 1]", "! x", "!<tag:x> y"],
)
def test_every_explicit_tag_is_refused(tmp_path: Path, value: str) -> None:
    path = write_project(tmp_path, PIPELINE.replace("team-email", value))
    (line,) = load_error(path)
    assert line.startswith(f"{path}:9:14: YAML tags are not allowed: ")


# -- a valid project ----------------------------------------------------------------------------


def test_valid_pipeline_loads(tmp_path: Path) -> None:
    path = write_project(tmp_path / "proj")
    loaded = loader.load_pipeline(path)
    assert loaded.path == path
    assert loaded.display == str(path)
    assert loaded.root == (tmp_path / "proj").resolve()
    assert loaded.model.queues["default"].visibility_timeout == 120.0
    assert loaded.model.jobs["email.send"].retry.max_attempts == 5
    assert loaded.schemas["email.send"] == SCHEMA
    assert loaded.schemas["email.digest"] == SCHEMA  # "schemas/..." form
    assert loaded.schemas["audit.write"] == {
        "type": "object",
        "properties": {"id": {"type": "integer"}},
    }
    assert type(loaded.document.data["jobs"]) is dict


def test_root_does_not_depend_on_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path / "proj")
    monkeypatch.chdir(tmp_path / "proj" / "pipelines")
    loaded = loader.load_pipeline("x.yaml")
    assert loaded.root == (tmp_path / "proj").resolve()
    assert loaded.display == "x.yaml"
    assert loaded.path == Path("x.yaml")
    monkeypatch.chdir(tmp_path)
    assert loader.load_pipeline("proj/pipelines/x.yaml").root == (tmp_path / "proj").resolve()


def test_locate_and_diagnostic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path / "proj")
    monkeypatch.chdir(tmp_path)
    loaded = loader.load_pipeline("proj/pipelines/x.yaml")
    assert loaded.locate("plugins", 0) == (3, 5)
    assert loaded.locate("jobs", "email.send", "handler") == (13, 14)
    assert loaded.locate("jobs", "email.send", "retry", "max_attempts") == (18, 21)
    # Absent (defaulted) values fall back to the nearest key written in the file.
    assert loaded.locate("jobs", "email.digest", "timeout") == (19, 3)
    assert loaded.locate("jobs", "nope", "handler") == (10, 1)
    assert loaded.locate() == (1, 1)
    diag = loaded.diagnostic(("jobs", "email.send", "handler"), "no such handler")
    assert str(diag) == "proj/pipelines/x.yaml:13:14: jobs.email.send.handler: no such handler"
    assert str(loaded.diagnostic(("plugins", 0), "cannot import")) == (
        "proj/pipelines/x.yaml:3:5: plugins[0]: cannot import"
    )


def test_check_handlers(tmp_path: Path) -> None:
    loaded = loader.load_pipeline(write_project(tmp_path))
    assert loader.check_handlers(loaded, {"email.send", "email.digest", "audit.write"}) == []
    problems = loader.check_handlers(loaded, {"email.sent", "email.digest", "audit.write"})
    assert [(d.line, d.col) for d in problems] == [(13, 14)]
    assert problems[0].message == (
        "jobs.email.send.handler: unknown handler 'email.send'; did you mean 'email.sent'? "
        "(registered handlers: audit.write, email.digest, email.sent)"
    )
    many = [f"h{i:02}" for i in range(25)]
    (first, *_) = loader.check_handlers(loaded, many)
    assert "(registered handlers: h00, h01" in first.message
    assert first.message.endswith("h09 and 15 more)")
    nothing = loader.check_handlers(loaded, [])
    assert len(nothing) == 3
    assert "no handler is registered" in nothing[0].message


# -- file-level problems ------------------------------------------------------------------------


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="pipeline file not found"):
        loader.load_pipeline(tmp_path / "nope.yaml")
    with pytest.raises(errors.NotFound, match="is a directory"):
        loader.load_pipeline(tmp_path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = write_project(tmp_path)
    path.write_bytes(PIPELINE.encode().replace(b"team-email", b"team-\xe9mail"))
    assert load_error(path) == [f"{path}:9:19: the file is not valid UTF-8 (save it as UTF-8)"]


def test_bad_date_and_control_character(tmp_path: Path) -> None:
    path = write_project(tmp_path, PIPELINE.replace("team-email", "2024-13-45"))
    assert load_error(path)[0].startswith(f"{path}:9:14: invalid date '2024-13-45'")
    path.write_text(PIPELINE.replace("team-email", "team\x07"))
    assert load_error(path)[0].startswith(f"{path}:9:18: character U+0007 is not allowed")


def test_second_document_and_non_string_keys(tmp_path: Path) -> None:
    path = write_project(tmp_path, PIPELINE + "---\nqueues: {}\n")
    assert load_error(path)[0].startswith(f"{path}:30:1: a pipeline file holds one YAML document")
    path.write_text(PIPELINE.replace("      owner: team-email\n", "      1: x\n      null: y\n"))
    assert load_error(path) == [
        f"{path}:9:7: mapping keys must be strings, not a number: quote it, as '1'",
        f"{path}:10:7: mapping keys must be strings, not null",
    ]


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = write_project(tmp_path, PIPELINE + "\n".join(levels) + "\n")
    (line,) = load_error(path)
    assert "expands to more than" in line


def test_aliases_and_merge_keys_are_expanded(tmp_path: Path) -> None:
    text = PIPELINE.replace(
        "queues:\n",
        "queues:\n  base: &base\n    dlq: {owner: shared}\n  extra:\n    <<: *base\n"
        "    concurrency: 0\n",
    )
    path = write_project(tmp_path, text)
    # An error in a merging mapping points at that mapping's own key.
    assert load_error(path) == [
        f"{path}:9:18: queues.extra.concurrency: Input should be greater than or equal to 1"
    ]
    path.write_text(text.replace("concurrency: 0", "concurrency: 2"))
    loaded = loader.load_pipeline(path)
    assert loaded.model.queues["extra"].dlq.owner == "shared"
    # Values brought in by an alias are placed where they are written: at the anchor.
    assert loaded.locate("queues", "extra", "dlq", "owner") == (6, 18)


def test_unknown_schema_draft_and_nan_in_inline_schema(tmp_path: Path) -> None:
    path = write_project(tmp_path, **{"email_send.json": {"$schema": "http://example.com/x"}})
    lines = load_error(path)
    assert len(lines) == 2
    assert all("unknown $schema 'http://example.com/x'" in line for line in lines)
    path = write_project(tmp_path, PIPELINE.replace("{type: integer}", "{maximum: .nan}"))
    assert load_error(path) == [
        f"{path}:27:7: jobs.audit.write.schema: the inline schema must be plain JSON "
        "(no .nan or .inf)"
    ]


def test_absolute_schema_path_and_directory(tmp_path: Path) -> None:
    path = write_project(tmp_path, PIPELINE.replace("schema: email_send.json", "schema: /etc/x"))
    assert "must be relative to" in load_error(path)[0]
    path.write_text(PIPELINE.replace("schema: email_send.json", "schema: ''"))
    assert "schema file is not a file" in load_error(path)[0]


def test_schema_symlink_leaving_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    path = write_project(tmp_path / "proj")
    os.symlink(outside, tmp_path / "proj" / "schemas" / "link.json")
    path.write_text(PIPELINE.replace("schema: email_send.json", "schema: link.json"))
    assert "outside the project root" in load_error(path)[0]


def test_all_model_errors_before_any_cross_check(tmp_path: Path) -> None:
    text = PIPELINE.replace("queue: default\n    handler: email.send", "queue: nope\n    handlr: x")
    path = write_project(tmp_path, text)
    # The unknown queue is a cross-check: it waits until the model itself is valid.
    assert [line.split(": ", 2)[1] for line in load_error(path)] == [
        "jobs.email.send",
        "jobs.email.send.handlr",
    ]


def test_each_missing_key_is_its_own_diagnostic(tmp_path: Path) -> None:
    path = write_project(tmp_path, "queues:\n  q: {dlq: {owner: a}}\njobs:\n  send: {}\n")
    assert load_error(path) == [
        f"{path}:4:3: jobs.send: missing required key 'handler'",
        f"{path}:4:3: jobs.send: missing required key 'queue'",
        f"{path}:4:3: jobs.send: missing required key 'schema'",
    ]
    path.write_text("queues:\njobs: {send: {queue: q, handler: 7, schema: x, dedupe: [1]}}\n")
    assert load_error(path) == [
        f"{path}:1:1: queues: expected a mapping, not null",
        f"{path}:2:34: jobs.send.handler: expected a string, not 7",
        f"{path}:2:56: jobs.send.dedupe: expected true or false, not a list",
    ]
    path.write_text("jobs: {}\n")
    assert load_error(path) == [
        f"{path}:1:1: missing required key 'queues'",
        f"{path}:1:7: jobs: must define at least 1 entry",
    ]


# -- locate -------------------------------------------------------------------------------------


def test_locate_error_kinds() -> None:
    doc = source.parse(
        "queues:\n  'bad name':\n    dlq: {}\n  '[key]': {x: 1}\nlist: [a, b]\n",
        display="f.yaml",
    )
    key = locate.locate_error(doc, ("queues", "bad name", "[key]"), "string_pattern_mismatch")
    assert (key.path, key.line, key.col) == (("queues", "bad name"), 2, 3)
    missing = locate.locate_error(doc, ("queues", "bad name", "dlq", "owner"), "missing")
    assert (missing.path, missing.missing, missing.line, missing.col) == (
        ("queues", "bad name", "dlq"),
        "owner",
        3,
        5,
    )
    root_missing = locate.locate_error(doc, ("jobs",), "missing")
    assert (root_missing.path, root_missing.line, root_missing.col) == ((), 1, 1)
    extra = locate.locate_error(doc, ("queues", "[key]", "x"), "extra_forbidden")
    assert (extra.path, extra.line, extra.col) == (("queues", "[key]", "x"), 4, 13)
    # A real key spelled "[key]" is looked up before the marker.
    real = locate.locate_error(doc, ("queues", "[key]", "[key]"), "string_pattern_mismatch")
    assert (real.path, real.line, real.col) == (("queues", "[key]"), 4, 3)
    union = locate.locate_error(doc, ("list", 1, "str"), "string_type")
    assert (union.path, union.rest, union.line, union.col) == (("list", 1), ("str",), 5, 11)
    assert locate.format_loc(("jobs", "a.b", "retry", 0, "x")) == "jobs.a.b.retry[0].x"


def test_empty_value_is_placed_on_its_key_line() -> None:
    doc = source.parse("a:\n  b:\n\n  c: 1\n", display="f.yaml")
    assert doc.data == {"a": {"b": None, "c": 1}}
    assert doc.value_position(("a", "b")) == (2, 3)
    assert doc.exists(("a", "c")) and not doc.exists(("a", "d"))
