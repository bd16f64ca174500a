"""What the metadata of each kind of relstitch file must hold, checked before any tensor is read.

The rules are data: ``relstitch/schemas/metadata.schema.json``, a JSON Schema with one ``$defs`` entry per
kind (required keys, types, and the rules that depend on another key: a relative decoder needs its
projection and anchor hash, a classification decoder its class names), checked by the one validator
(:mod:`relstitch.io.schema`). This module reads the envelope first, in Python, because each of its
failures has its own message or hint: no ``relstitch.kind`` (not a relstitch file), an unknown kind, a
kind the caller cannot use, and a format newer than :data:`FORMAT_VERSION`.

A file that breaks its kind's schema is refused with one line that names the file, what it is, the key,
what the key means and what was expected. Keys not in the schema are allowed (files carry provenance
this module need not know), and optional keys are checked only when present. Pure Python: no torch
import, so ``inspect`` stays instant.
"""

from __future__ import annotations

from typing import Any

from ..errors import RelstitchError
from .schema import (
    Violation,
    describe,
    describe_content,
    first_violation,
    json_path,
    load_schema,
    meaning,
)
from .schema import expected as expected_value

FORMAT_VERSION = 1
"""The newest file format this relstitch reads and writes (``relstitch.version``)."""
SCHEMA_NAME = "metadata.schema.json"
"""The metadata schema, in ``relstitch/schemas/``."""


def metadata_schema() -> dict[str, Any]:
    """The JSON Schema of every kind's metadata (shipped as package data; cached, read-only)."""
    return load_schema(SCHEMA_NAME)


KINDS: tuple[str, ...] = tuple(metadata_schema()["properties"]["kind"]["enum"])
"""The kinds of relstitch file, each with a ``$defs`` entry in the schema."""


def check_metadata(metadata: dict[str, Any], expected: str | tuple[str, ...], path: object) -> str:
    """Validate a file's decoded ``relstitch.*`` metadata against the schema of its kind; return the kind.

    ``expected`` is the kind (or kinds) the caller can use. Raises :class:`RelstitchError` naming
    ``path``, what the file is and what was expected.
    """
    wanted = (expected,) if isinstance(expected, str) else expected
    label = " or ".join(wanted)
    label = ("an " if label[0] in "aeiou" else "a ") + label  # "an anchors file", "a decoder file"
    kind = metadata.get("kind")
    if kind is None:
        raise RelstitchError(
            f"not a relstitch file (no relstitch.kind in its metadata); expected {label} file", path=path
        )
    if not isinstance(kind, str) or kind not in KINDS:
        raise RelstitchError(
            f"unknown relstitch file kind {repr(kind)[:40]} (known: {', '.join(KINDS)}); "
            f"expected {label} file",
            path=path,
            hint="it may come from a newer relstitch",
        )
    if kind not in wanted:
        raise RelstitchError(f"is a relstitch {kind} file, expected {label} file", path=path)
    schema = metadata_schema()
    # The envelope (kind and version) before the kind's keys: a newer file is told to upgrade, not that
    # its keys look wrong.
    envelope = {key: schema[key] for key in ("type", "required", "properties")}
    _refuse(first_violation(metadata, envelope, root=schema), kind, path)
    if metadata["version"] > FORMAT_VERSION:
        raise RelstitchError(
            f"{kind} file written by a newer relstitch "
            f"(format {metadata['version']}, this one reads up to {FORMAT_VERSION})",
            path=path,
            hint="upgrade relstitch",
        )
    _refuse(first_violation(metadata, schema["$defs"][kind], root=schema), kind, path)
    return kind


def _refuse(violation: Violation | None, kind: str, path: object) -> None:
    """Raise the one-line error for ``violation``: ``corrupt encoder file: relstitch.latent_dim (the
    latent size) is a string, expected a non-negative integer``."""
    if violation is None:
        return
    schema = metadata_schema()
    key = json_path(violation.where, "relstitch")
    what = meaning(violation.schema, schema)
    if (
        what is None
        and violation.parent is not None
        and violation.where
        and isinstance(violation.where[-1], int)
    ):
        outer = meaning(violation.parent, schema)  # an item of a list: say which list
        what = f"in {outer}" if outer else None
    shown_key = f"{key} ({what})" if what else key
    # A wrong type is said in words (the value may be huge); a wrong value of the right type is shown.
    found = describe(violation.value) if violation.keyword == "type" else describe_content(violation.value)
    if violation.keyword == "depth":
        found = "nested too deeply"
    raise RelstitchError(
        f"corrupt {violation.title or kind + ' file'}: {shown_key} is {found}, "
        f"expected {expected_value(violation.schema, schema)}",
        path=path,
    )
