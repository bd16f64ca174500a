"""The report's JSON Schema (``relstitch/schemas/report.schema.json``) and its check.

The validator is the package's one JSON-Schema-subset validator, :mod:`relstitch.io.schema` (the files'
metadata schema goes through it too); this module names the report's schema and keeps the report's
error form, ``$.path: why``.
"""

from __future__ import annotations

from typing import Any

from ..io.schema import SCHEMA_FOLDER, check_schema, load_schema, violations

SCHEMA_RESOURCE = (SCHEMA_FOLDER, "report.schema.json")


def report_schema() -> dict[str, Any]:
    """The JSON Schema of the current report version (shipped as package data; cached, read-only)."""
    return load_schema(SCHEMA_RESOURCE[1])


def schema_errors(document: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Every place where ``document`` breaks ``schema`` (the report schema by default), as ``$.path: why``.

    A ``schema`` given here is checked first: a keyword the validator does not support raises ValueError.
    """
    if schema is None:
        schema = report_schema()
    else:
        check_schema(schema)
    return [str(v) for v in violations(document, schema)]
