"""The one JSON-Schema-subset validator (relstitch/io/schema.py) and the schemas it checks: the report's and
every kind of file's metadata (relstitch/schemas/metadata.schema.json), hostile values included."""

from __future__ import annotations

import copy
import json
import re
import sys
import time
from pathlib import Path

import pytest
import torch

from relstitch.anchors import load_anchors
from relstitch.checkpoints import load_decoder, load_encoder
from relstitch.encoding import encode, save_embeddings
from relstitch.errors import RelstitchError
from relstitch.export import export_stitched
from relstitch.io.artifacts import check_kind, read_header, serialize
from relstitch.io.metadata_schema import FORMAT_VERSION, KINDS, SCHEMA_NAME, check_metadata, metadata_schema
from relstitch.io.schema import (
    MAX_DEPTH,
    MISSING,
    check_schema,
    expected,
    first_violation,
    load_schema,
    violations,
)
from relstitch.projection import ProjectionConfig
from relstitch.reports import report_schema, schema_errors

REPO = Path(__file__).resolve().parent.parent


def errors(document, schema) -> list[str]:
    check_schema(schema)
    return [str(v) for v in violations(document, schema)]


# ------------------------------------------------------------------------------------ the validator
@pytest.mark.parametrize(
    ("schema", "good", "bad", "message"),
    [
        ({"type": "integer"}, 3, 3.0, "$: expected integer, got float"),
        ({"type": "integer"}, -1, True, "$: expected integer, got bool"),  # JSON true is not a number
        ({"type": "number"}, 2.5, False, "$: expected number, got bool"),
        ({"type": ["string", "null"]}, None, 1, "$: expected string or null, got int"),
        ({"const": 1}, 1.0, True, "$: expected 1, got True"),  # 1 == 1.0 in JSON, true is not 1
        ({"enum": ["a", None]}, None, "b", "$: 'b' is not one of ['a', None]"),
        ({"enum": [0]}, 0, False, "$: False is not one of [0]"),
        ({"minimum": 1}, 1, 0, "$: 0 is below the minimum 1"),
        ({"minLength": 1}, "x", "", "$: '' is shorter than 1 character(s)"),
        ({"pattern": "^[0-9a-f]{4}$"}, "00ff", "00fg", "$: '00fg' does not match '^[0-9a-f]{4}$'"),
        ({"minItems": 2}, [1, 2], [1], "$: has 1 item(s), fewer than 2"),
        ({"items": {"type": "string"}}, ["a"], ["a", 2], "$[1]: expected string, got int"),
        ({"required": ["a"]}, {"a": 1}, {"b": 1}, "$: missing required field 'a'"),
        ({"properties": {"a": {"type": "object"}}}, {"a": {}}, {"a": []}, "$.a: expected object, got list"),
        (
            {"additionalProperties": False, "properties": {"a": {}}},
            {"a": 1},
            {"b": 1},
            "$: unexpected field 'b'",
        ),
        ({"additionalProperties": {"type": "null"}}, {"x": None}, {"x": 0}, "$.x: expected null, got int"),
        ({"$defs": {"n": {"type": "null"}}, "$ref": "#/$defs/n"}, None, 0, "$: expected null, got int"),
        ({"allOf": [{"minimum": 0}, {"minimum": 2}]}, 2, 1, "$: 1 is below the minimum 2"),
    ],
)
def test_each_keyword_accepts_and_refuses(schema, good, bad, message):
    assert errors(good, schema) == []
    assert errors(bad, schema) == [message]


def test_if_then_else_applies_the_branch_the_condition_picks():
    schema = {
        "if": {"required": ["space"], "properties": {"space": {"const": "relative"}}},
        "then": {"required": ["anchor_hash"]},
        "else": {"properties": {"anchor_hash": {"type": "null"}}},
    }
    assert errors({"space": "relative", "anchor_hash": "h"}, schema) == []
    assert errors({"space": "relative"}, schema) == ["$: missing required field 'anchor_hash'"]
    assert errors({"space": "absolute"}, schema) == []
    assert errors({"space": "absolute", "anchor_hash": "h"}, schema) == [
        "$.anchor_hash: expected null, got str"
    ]
    assert errors({}, schema) == []  # no space: the `if` fails, the `else` allows no anchor_hash


def test_violations_carry_place_schema_title_and_stop_at_the_limit():
    schema = {
        "title": "thing",
        "type": "object",
        "required": ["a", "b"],
        "properties": {"a": {"type": "integer", "description": "the a"}, "b": {}},
    }
    found = violations({}, schema)
    assert [(v.where, v.keyword, v.value, v.title) for v in found] == [
        (("a",), "required", MISSING, "thing"),
        (("b",), "required", MISSING, "thing"),
    ]
    assert found[0].schema == {"type": "integer", "description": "the a"} and found[0].parent is schema
    assert len(violations({}, schema, limit=1)) == 1
    assert first_violation({"a": 1, "b": 2}, schema) is None


def test_schema_order_decides_the_first_violation_not_the_files_key_order():
    schema = {"properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    assert first_violation({"b": 1, "a": 1}, schema).where == ("a",)


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "integer", "minimum": 0}, "a non-negative integer"),
        ({"type": "integer", "minimum": 1}, "a positive integer"),
        ({"type": "integer", "minimum": 5}, "an integer of at least 5"),
        ({"type": "number", "minimum": 1}, "a number of at least 1"),
        ({"type": "string", "minLength": 1}, "a non-empty string"),
        ({"type": ["object", "null"]}, "an object or null"),
        ({"type": "array", "items": {"type": "string"}, "minItems": 1}, "a non-empty list of strings"),
        ({"type": "array", "items": {"type": "integer", "minimum": 0}}, "a list of non-negative integers"),
        ({"type": "array", "items": {"enum": ["a"]}}, "a list of items, each one of 'a'"),
        ({"enum": ["relative", "absolute", None]}, "one of 'relative', 'absolute', null"),
        ({"const": True}, "true"),
        (
            {"$ref": "#/$defs/h", "$defs": {"h": {"type": "string", "pattern": "^x$"}}},
            "a string matching '^x$'",
        ),
        ({}, "any value"),
    ],
)
def test_expected_says_in_words_what_a_schema_accepts(schema, words):
    assert expected(schema, schema) == words


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"format": "date"}, "['format'] at # are not supported"),
        ({"properties": {"a": {"oneOf": []}}}, "['oneOf'] at #/properties/a are not supported"),
        ({"$ref": "#/$defs/nowhere"}, "does not resolve"),
        ({"$ref": "https://example.com/s.json"}, "only local $ref"),
        ({"type": "float"}, "unknown type 'float'"),
        ({"items": []}, "is not an object"),
        ({"if": {"maximum": 3}}, "['maximum'] at #/if"),
    ],
)
def test_a_schema_beyond_the_subset_is_refused(schema, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        check_schema(schema)
    with pytest.raises(ValueError, match=re.escape(problem)):
        schema_errors({}, schema)  # the report's entry point checks a schema it is given, too


def test_hostile_documents_cost_little_and_give_short_one_line_messages():
    schema = {"type": "object", "additionalProperties": {"enum": ["up", "down"]}}
    huge = {"k\n\x1b[31m": "x" * 10_000_000}
    (message,) = errors(huge, schema)
    assert "\n" not in message and "\x1b" not in message and len(message) < 150, message
    many = list(range(1_000_000))
    start = time.perf_counter()
    assert len(violations(many, {"items": {"type": "string"}}, limit=3)) == 3
    assert time.perf_counter() - start < 0.5  # stops at the limit, not after a million findings
    # nesting deeper than the schema describes is never walked
    deep: list = []
    for _ in range(10 * sys.getrecursionlimit()):
        deep = [deep]
    assert errors({"a": deep}, {"properties": {"a": {"type": "array"}}}) == []


def test_recursive_and_looping_schemas_stop_at_max_depth_instead_of_crashing():
    tree = {"$defs": {"t": {"type": "array", "items": {"$ref": "#/$defs/t"}}}, "$ref": "#/$defs/t"}
    deep: list = []
    for _ in range(5 * sys.getrecursionlimit()):
        deep = [deep]
    (found,) = violations(deep, tree)
    assert found.keyword == "depth" and "nested deeper than the 64 levels" in str(found)
    assert violations([[[]]], tree) == []
    loop = {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
    assert [v.keyword for v in violations(1, loop)] == ["depth"]
    looping_if = {"$defs": {"a": {"if": {"$ref": "#/$defs/a"}}}, "$ref": "#/$defs/a"}
    violations(1, looping_if)  # returns (the condition is false at the depth limit); no RecursionError
    assert MAX_DEPTH < sys.getrecursionlimit() // 4


# --------------------------------------------------------------------------------- shipped schemas
def test_both_shipped_schemas_load_through_the_one_validator():
    assert load_schema("report.schema.json") is report_schema()
    assert load_schema(SCHEMA_NAME) is metadata_schema()
    for name in (p.name for p in (REPO / "relstitch" / "schemas").glob("*.json")):
        load_schema(name)  # every shipped schema stays within the checked subset
    # the kinds: the `kind` enum, one $defs entry and one dispatch rule each
    schema = metadata_schema()
    assert KINDS == ("anchors", "encoder", "decoder", "embeddings", "predictions", "stitched")
    assert all(kind in schema["$defs"] and schema["$defs"][kind]["title"] == f"{kind} file" for kind in KINDS)
    dispatch = [rule["if"]["properties"]["kind"]["const"] for rule in schema["allOf"]]
    assert dispatch == list(KINDS)
    assert [rule["then"]["$ref"] for rule in schema["allOf"]] == [f"#/$defs/{k}" for k in KINDS]


# Minimal metadata each kind's loader accepts.
VALID = {
    "anchors": {"hash": "h"},
    "encoder": {"architecture": {"name": "cnn"}, "input": {}, "latent_dim": 32},
    "decoder": {
        "architecture": {"name": "mlp", "args": None},
        "space": "relative",
        "input_dim": 64,
        "task": {"type": "classification", "classes": ["a", "b"]},
        "projection": {},
        "anchor_hash": "h",
    },
    "embeddings": {"encoder": {}, "anchor_hash": "", "dataset": {}},
    "predictions": {
        "encoder": {},
        "decoder": {},
        "anchor_hash": None,
        "data": {},
        "method": "relative",
        "task": {"type": "reconstruction"},
    },
    "stitched": {
        "encoder": {"architecture": {"name": "cnn"}, "latent_dim": 32},
        "decoder": {"architecture": {"name": "vision-head"}, "input_dim": 64},
        "input": {},
        "projection": {},
        "task": {"type": "classification", "classes": ["a", "b"]},
        "anchor_hash": "h",
        "anchor_count": 64,
    },
}


def meta(of: str, /, **changes) -> dict:
    """The minimal metadata of kind ``of`` with ``changes`` (a key set to MISSING is removed)."""
    out = {"kind": of, "version": FORMAT_VERSION, **copy.deepcopy(VALID[of])}
    for key, value in changes.items():
        if value is MISSING:
            out.pop(key)
        else:
            out[key] = value
    return out


def refusal(metadata: dict, kind: str) -> str:
    with pytest.raises(RelstitchError) as info:
        check_metadata(metadata, kind, "f.safetensors")
    text = str(info.value)
    assert text.startswith("f.safetensors: ") and "\n" not in text
    return text.removeprefix("f.safetensors: ")


@pytest.mark.parametrize("kind", KINDS)
def test_each_kinds_minimal_metadata_passes_both_ways_and_each_required_key_is_needed(kind):
    assert check_metadata(meta(kind), kind, "f") == kind
    assert violations(meta(kind), metadata_schema()) == []  # the whole schema dispatches on the kind
    for key in metadata_schema()["$defs"][kind]["required"]:
        message = refusal(meta(kind, **{key: MISSING}), kind)
        assert (
            message.startswith(f"corrupt {kind} file: relstitch.{key} (")
            and " is missing, expected " in message
        )
        assert [v.where for v in violations(meta(kind, **{key: MISSING}), metadata_schema())] == [(key,)]


ENC, DEC = "corrupt encoder file: relstitch.", "corrupt decoder file: relstitch."


@pytest.mark.parametrize(
    ("metadata", "kind", "message"),
    [
        # the envelope: kind and version, each with its own message
        (
            {"version": 1},
            "encoder",
            "not a relstitch file (no relstitch.kind in its metadata); expected an encoder",
        ),
        (
            meta("encoder", kind="model"),
            "encoder",
            "unknown relstitch file kind 'model' (known: anchors, encoder,",
        ),
        (meta("encoder", kind=["encoder"]), "encoder", "unknown relstitch file kind ['encoder']"),
        (meta("encoder", kind="y" * 10_000), "anchors", "unknown relstitch file kind 'yyyyyyyyyyy"),
        (
            meta("encoder"),
            ("decoder", "anchors"),
            "is a relstitch encoder file, expected a decoder or anchors file",
        ),
        (
            meta("encoder", version="1"),
            "encoder",
            ENC + "version (the file format version) is a string, expected a positive integer",
        ),
        (meta("encoder", version=True), "encoder", ENC + "version (the file format version) is a boolean"),
        (
            meta("encoder", version=0),
            "encoder",
            ENC + "version (the file format version) is 0, expected a positive",
        ),
        (meta("encoder", version=MISSING), "encoder", ENC + "version (the file format version) is missing"),
        (
            meta("encoder", version=2**80, latent_dim="x"),
            "encoder",
            f"encoder file written by a newer relstitch (format {2**80}, this one reads up to 1) "
            "— upgrade relstitch",
        ),
        # each kind's keys
        (
            meta("anchors", hash=""),
            "anchors",
            "corrupt anchors file: relstitch.hash (the content hash of the anchors) is an empty string, "
            "expected a non-empty string",
        ),
        (
            meta("anchors", count=0),
            "anchors",
            "relstitch.count (the number of anchors) is 0, expected a positive",
        ),
        (
            meta("anchors", classes=["a", 1]),
            "anchors",
            "relstitch.classes[1] (in the class names) is an integer, expected a string",
        ),
        (
            meta("anchors", default_view=3),
            "anchors",
            "relstitch.default_view (the default text view) is an integer, expected a string or null",
        ),
        (
            meta("encoder", latent_dim=-1),
            "encoder",
            ENC + "latent_dim (the latent size) is -1, expected a non-negative integer",
        ),
        (
            meta("encoder", latent_dim=2.0),
            "encoder",
            ENC + "latent_dim (the latent size) is a number, expected",
        ),
        (
            meta("encoder", architecture={"args": {}}),
            "encoder",
            ENC + "architecture.name (the registry name) is missing, expected a string",
        ),
        (
            meta("encoder", architecture="cnn"),
            "encoder",
            ENC
            + "architecture (the architecture (registry name and arguments)) is a string, expected an object",
        ),
        (
            meta("decoder", space="Relative"),
            "decoder",
            DEC + "space (the space it reads) is 'Relative', expected one of 'relative', 'absolute'",
        ),
        (
            meta("decoder", space="r" * 1_000_000),
            "decoder",
            DEC + "space (the space it reads) is a string, expected",
        ),
        (
            meta("decoder", input_dim=0),
            "decoder",
            DEC + "input_dim (its input size) is 0, expected a positive integer",
        ),
        (
            meta("decoder", task={"type": "ranking"}),
            "decoder",
            DEC
            + "task.type (the task type) is 'ranking', expected one of 'classification', 'reconstruction'",
        ),
        (meta("decoder", task=[]), "decoder", DEC + "task (its task) is an empty list, expected an object"),
        (
            meta("embeddings", encoder={"name": 7}),
            "embeddings",
            "corrupt embeddings file: relstitch.encoder.name (the encoder's name) is an integer, "
            "expected a string",
        ),
        (
            meta("embeddings", anchor_hash=None),
            "embeddings",
            "relstitch.anchor_hash (the hash of its anchors ('' for absolute-only)) is null, "
            "expected a string",
        ),
        (
            meta("predictions", method=["relative"]),
            "predictions",
            "corrupt predictions file: relstitch.method (how the pair was wired: relative, absolute or a "
            "translation) is a list, expected a string",
        ),
        (
            meta("predictions", scores=1),
            "predictions",
            "relstitch.scores (the task metrics of these predictions)",
        ),
        # the rules that depend on another key (if/then in the schema) name the case
        (
            meta("decoder", anchor_hash=MISSING),
            "decoder",
            "corrupt relative decoder file: relstitch.anchor_hash (the hash of the anchors it was trained "
            "with) is missing, expected a non-empty string",
        ),
        (
            meta("decoder", projection=None),
            "decoder",
            "corrupt relative decoder file: relstitch.projection (the projection config it was trained with) "
            "is null, expected an object",
        ),
        (
            meta("decoder", task={"type": "classification"}),
            "decoder",
            "corrupt classification decoder file: relstitch.task.classes (the class names) is missing, "
            "expected a non-empty list of strings",
        ),
        (
            meta("decoder", task={"type": "classification", "classes": []}),
            "decoder",
            "corrupt classification decoder file: relstitch.task.classes (the class names) is an empty list",
        ),
        (
            meta("decoder", task={"type": "reconstruction"}),
            "decoder",
            "corrupt reconstruction decoder file: relstitch.task.shape (the reconstructed image shape) "
            "is missing, expected a list of non-negative integers",
        ),
        (
            meta("decoder", task={"type": "reconstruction", "shape": [1, True]}),
            "decoder",
            "relstitch.task.shape[1] (in the reconstructed image shape) is a boolean, expected a non-neg",
        ),
    ],
)
def test_each_refusal_is_one_line_naming_the_key_what_it_means_and_what_was_expected(metadata, kind, message):
    assert message in refusal(metadata, kind)


def test_an_absolute_decoder_needs_no_anchors_and_unknown_keys_are_allowed():
    absolute = meta(
        "decoder", space="absolute", projection=MISSING, anchor_hash=None, provenance={"any": [1]}
    )
    assert check_metadata(absolute, "decoder", "f") == "decoder"


@pytest.fixture(scope="module")
def written(tiny_zoo, test_data, tmp_path_factory) -> dict[str, Path]:
    """One file of every kind, written by relstitch itself."""
    from typer.testing import CliRunner

    from relstitch.cli import app

    out = tmp_path_factory.mktemp("kinds")
    encoder, anchors = load_encoder(tiny_zoo.encoder("cnn-rel-s0")), load_anchors(tiny_zoo.anchors_path)
    space = encode(encoder, anchors, test_data.subset(torch.arange(20)))
    embeddings = save_embeddings(space, out / "e.safetensors", projection=ProjectionConfig())
    predictions = out / "p.safetensors"
    args = [tiny_zoo.encoder("cnn-rel-s1"), tiny_zoo.decoder("cnn-rel-s0"), "-a", tiny_zoo.anchors_path]
    result = CliRunner().invoke(
        app, ["stitch", *map(str, args), "--limit", "20", "--predictions", str(predictions)]
    )
    assert result.exit_code == 0, result.output
    return {
        "anchors": tiny_zoo.anchors_path,
        "encoder": tiny_zoo.encoder("cnn-rel-s0"),
        "decoder": tiny_zoo.decoder("cnn-abs-s0"),
        "embeddings": embeddings,
        "predictions": predictions,
        "stitched": export_stitched(
            encoder, load_decoder(tiny_zoo.decoder("cnn-rel-s1")), anchors, out / "s.safetensors"
        ).path,
    }


@pytest.mark.parametrize("kind", KINDS)
def test_files_relstitch_writes_follow_their_kinds_schema(written, kind):
    header = read_header(written[kind])
    assert check_kind(header, kind) == kind
    assert violations(header.metadata, metadata_schema()) == []


def _with_metadata(source: Path, target: Path, **values: object) -> Path:
    """``source`` re-written with some ``relstitch.*`` metadata values replaced (JSON-encoded)."""
    from safetensors.torch import load_file

    raw = dict(read_header(source).raw_metadata)
    raw.update({f"relstitch.{k}": json.dumps(v) for k, v in values.items()})
    target.write_bytes(serialize(load_file(str(source)), raw))
    return target


def test_hostile_metadata_in_a_real_file_is_refused_in_one_short_line(written, tmp_path):
    deep: object = "leaf"
    for _ in range(900):  # as deep as the JSON parser takes; no schema walks that far
        deep = {"d": deep}
    ok = _with_metadata(
        written["decoder"], tmp_path / "ok.safetensors", training=deep, extra=list(range(100_000))
    )
    assert check_kind(read_header(ok), "decoder") == "decoder"
    cases = [
        ("task", {"type": "classification", "classes": list(range(200_000))}, "relstitch.task.classes[0]"),
        ("space", "z" * 5_000_000, "relstitch.space (the space it reads) is a string"),
        ("kind", "transformer", "unknown relstitch file kind 'transformer'"),
    ]
    for key, value, wanted in cases:
        path = _with_metadata(written["decoder"], tmp_path / f"{key}.safetensors", **{key: value})
        with pytest.raises(RelstitchError) as info:
            check_kind(read_header(path), "decoder")
        assert wanted in str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 400


def test_the_report_schema_keeps_its_messages():
    assert schema_errors({"schema": "relstitch-report"})[0] == "$: missing required field 'schema_version'"
    broken = {"metrics": {"accuracy": {"direction": "up", "x": 1}}}
    found = [e for e in schema_errors(broken) if e.startswith("$.metrics")]
    assert found == [
        "$.metrics.accuracy.direction: 'up' is not one of ['higher', 'lower']",
        "$.metrics.accuracy: unexpected field 'x'",
    ]
