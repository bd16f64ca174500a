"""The report's JSON Schema and a small validator for the subset of JSON Schema it uses.

``jsonschema`` would be one more dependency for one file; the schema uses only ``type``, ``enum``,
``const``, ``properties``, ``required``, ``additionalProperties``, ``items``, ``minimum``, ``pattern``
and local ``$ref``, which take a few dozen lines to check. Unknown keywords are refused rather than
silently ignored, so the schema cannot drift beyond what is checked.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_RESOURCE = ("schemas", "report.schema.json")

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}
_ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description", "$comment"}
_CHECKED = {
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minimum",
    "pattern",
    "$ref",
}


@cache
def report_schema() -> dict[str, Any]:
    """The JSON Schema of the current report version (shipped as package data)."""
    resource = resources.files("relstitch")
    for (
        part
    ) in SCHEMA_RESOURCE:  # one part a call: Traversable.joinpath takes a single name before Python 3.11
        resource = resource.joinpath(part)
    text = resource.read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _is_type(value: Any, name: str) -> bool:
    # bool is an int in Python but not a number in JSON.
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def schema_errors(document: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Every place where ``document`` breaks ``schema`` (the report schema by default), as ``$.path: why``."""
    root = report_schema() if schema is None else schema
    errors: list[str] = []
    _check(document, root, root, "$", errors)
    return errors


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref are supported, got {ref!r}")
    node: dict[str, Any] = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str, errors: list[str]) -> None:
    unknown = set(schema) - _CHECKED - _ANNOTATIONS
    if unknown:
        raise ValueError(
            f"schema keyword(s) {sorted(unknown)} at {where} are not supported by this validator"
        )
    if "$ref" in schema:
        _check(value, _resolve(schema["$ref"], root), root, where, errors)
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: expected {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, n) for n in names):
            errors.append(f"{where}: expected {' or '.join(names)}, got {type(value).__name__}")
            return  # the remaining keywords assume the right type
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errors.append(f"{where}: {value!r} does not match {schema['pattern']!r}")
    if "minimum" in schema and _is_type(value, "number") and value < schema["minimum"]:
        errors.append(f"{where}: {value} is below the minimum {schema['minimum']}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], root, f"{where}[{i}]", errors)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: missing required field {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                _check(item, properties[key], root, f"{where}.{key}", errors)
            elif extra is False:
                errors.append(f"{where}: unexpected field {key!r}")
            elif isinstance(extra, dict):
                _check(item, extra, root, f"{where}.{key}", errors)
