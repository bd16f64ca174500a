"""One small validator for the subset of JSON Schema (2020-12) that relstitch's own schemas use.

Two schemas ship with the package (``relstitch/schemas/``): the JSON report's and the ``relstitch.*``
metadata of each kind of file. ``jsonschema`` would be one more dependency for them; the subset they use
takes a page to check:

- ``type`` (``integer`` is an int, never a bool or a float), ``enum``, ``const`` (``true`` never equals
  ``1``), ``minimum``, ``minLength``, ``pattern``, ``minItems``, ``items``, ``properties``, ``required``,
  ``additionalProperties``;
- ``$ref`` to a local JSON pointer (``#/$defs/NAME``), ``allOf`` and ``if``/``then``/``else`` (a rule that
  depends on another field, such as a relative decoder needing its anchors' hash);
- annotations: ``$schema``, ``$id``, ``$defs``, ``$comment``, ``title``, ``description``.

Any other keyword makes the schema itself refused (:func:`check_schema`, run when a shipped schema is
loaded), so a schema cannot drift beyond what is checked. Each finding is a :class:`Violation`: where
in the document, which rule, the schema declared there; ``str()`` gives the ``$.path: why`` line and
:func:`expected` says in words what the schema accepts, so a caller can phrase its own message.

The recursion follows the schema, not the document: a value nested deeper than the schema describes is
never walked, and :data:`MAX_DEPTH` bounds the rest. Values in messages are shortened (:func:`shown`).
Pure Python, no torch.
"""

from __future__ import annotations

import json
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

from ..errors import printable

SCHEMA_FOLDER = "schemas"
"""Where the package keeps its schemas (package data, ``relstitch/schemas/*.json``)."""
MAX_DEPTH = 64
"""Schema levels followed at most (``$ref`` and conditionals count); deeper is a violation, not a crash."""

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}
TYPE_NAMES = frozenset(_TYPES) | {"integer", "number"}
ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description", "$comment"})
KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "minimum",
        "minLength",
        "pattern",
        "minItems",
        "items",
        "properties",
        "required",
        "additionalProperties",
        "$ref",
        "allOf",
        "if",
        "then",
        "else",
    }
)
"""The keywords this validator checks; :data:`ANNOTATIONS` are allowed and ignored."""

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()
"""The value of a :class:`Violation` for a required field that is absent."""

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40
_SHORT.maxlist = _SHORT.maxdict = 4
_SHORT.maxlevel = 2


def shown(value: Any) -> str:
    """``repr(value)`` cut short (strings, long lists, nesting), as a one-line message shows a value read from
    a file: a 100 MB string costs no more than a short one."""
    try:
        return printable(_SHORT.repr(value))
    except ValueError:  # an int beyond Python's str-conversion limit (sys.set_int_max_str_digits)
        return (
            f"<an integer of about {value.bit_length() * 3 // 10} digits>" if isinstance(value, int) else "?"
        )


@dataclass(frozen=True)
class Violation:
    """One place where a document breaks its schema.

    ``where`` is the path to the value (for ``required``: to the missing field, for
    ``additionalProperties``: to the unexpected one), ``keyword`` the rule that failed, ``value`` the value
    there (:data:`MISSING` when absent), ``schema`` the schema the document declares for that place (its
    ``description`` says what the value means; :func:`expected` says what it may be), and ``title`` the
    innermost ``title`` of the schemas applied on the way (a conditional branch can name the case it is),
    ``parent`` the schema declared for the enclosing object or list (None at the top).
    """

    where: tuple[str | int, ...]
    keyword: str
    value: Any = field(repr=False)  # may be huge: str() shows it shortened
    schema: Mapping[str, Any] = field(repr=False)
    rule: Any = None  # the keyword's value in the schema that failed
    title: str | None = None
    parent: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def location(self) -> str:
        """``$`` and the path, ``$.pairs[0].scores``; for a missing or unexpected field, its object."""
        parts = self.where[:-1] if self.keyword in ("required", "additionalProperties") else self.where
        return json_path(parts)

    @property
    def reason(self) -> str:
        """What is wrong, in the report validator's words."""
        value, rule = self.value, self.rule
        if self.keyword == "required":
            return f"missing required field {shown(self.where[-1])}"
        if self.keyword == "additionalProperties":
            return f"unexpected field {shown(self.where[-1])}"
        if self.keyword == "type":
            return f"expected {' or '.join(_type_list(rule))}, got {type(value).__name__}"
        if self.keyword == "const":
            return f"expected {rule!r}, got {shown(value)}"  # the rule comes from the schema: shown whole
        if self.keyword == "enum":
            return f"{shown(value)} is not one of {rule!r}"
        if self.keyword == "pattern":
            return f"{shown(value)} does not match {rule!r}"
        if self.keyword == "minimum":
            return f"{shown(value)} is below the minimum {rule}"
        if self.keyword == "minLength":
            return f"{shown(value)} is shorter than {rule} character(s)"
        if self.keyword == "minItems":
            return f"has {len(value)} item(s), fewer than {rule}"
        return f"nested deeper than the {MAX_DEPTH} levels this validator follows"

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


def json_path(where: tuple[str | int, ...], start: str = "$") -> str:
    """A path into a document as messages write it: ``$.pairs[0].scores`` (keys made printable)."""
    return start + "".join(f"[{p}]" if isinstance(p, int) else f".{printable(p)}" for p in where)


# ------------------------------------------------------------------------------------------ loading
@cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema shipped with the package (``relstitch/schemas/NAME``), checked by :func:`check_schema`.

    Cached: treat the result as read-only."""
    resource = resources.files("relstitch").joinpath(SCHEMA_FOLDER).joinpath(name)  # one name a call (3.10)
    schema: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    check_schema(schema)
    return schema


def check_schema(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> None:
    """Refuse (ValueError) a schema using a keyword this validator does not check, an unknown type name, or a
    ``$ref`` that does not resolve."""
    root = schema if root is None else root
    _check_node(schema, root, "#")


def _check_node(node: Any, root: Mapping[str, Any], at: str) -> None:
    if not isinstance(node, Mapping):
        raise ValueError(f"schema at {at} is not an object")
    unknown = set(node) - KEYWORDS - ANNOTATIONS
    if unknown:
        raise ValueError(f"schema keyword(s) {sorted(unknown)} at {at} are not supported by this validator")
    for name in _type_list(node.get("type", [])):
        if name not in TYPE_NAMES:
            raise ValueError(f"unknown type {name!r} at {at}")
    if "$ref" in node:
        _resolve(node["$ref"], root)
    for key in ("items", "if", "then", "else"):
        if key in node:
            _check_node(node[key], root, f"{at}/{key}")
    if isinstance(node.get("additionalProperties"), Mapping):
        _check_node(node["additionalProperties"], root, f"{at}/additionalProperties")
    for key in ("properties", "$defs"):
        for name, sub in node.get(key, {}).items():
            _check_node(sub, root, f"{at}/{key}/{name}")
    for i, sub in enumerate(node.get("allOf", [])):
        _check_node(sub, root, f"{at}/allOf/{i}")


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
        raise ValueError(f"only local $ref are supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/") if ref != "#" else ():
        part = part.replace("~1", "/").replace("~0", "~")  # JSON pointer escapes
        if not isinstance(node, Mapping) or part not in node:
            raise ValueError(f"$ref {ref!r} does not resolve")
        node = node[part]
    if not isinstance(node, Mapping):
        raise ValueError(f"$ref {ref!r} does not point at a schema")
    return node


def _type_list(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else [value]


# --------------------------------------------------------------------------------------- validating
class _Enough(Exception):
    """Raised inside the walk once ``limit`` violations are found."""


def violations(
    document: Any,
    schema: Mapping[str, Any],
    *,
    root: Mapping[str, Any] | None = None,
    limit: int | None = None,
) -> list[Violation]:
    """Every place where ``document`` breaks ``schema`` (at most ``limit``, in schema order), ``[]`` when it
    follows it. ``root`` resolves ``$ref`` (default: ``schema`` itself); ``schema`` is assumed checked
    (:func:`check_schema`)."""
    return _run(document, schema, root if root is not None else schema, limit, 0)


def _run(
    document: Any, schema: Mapping[str, Any], root: Mapping[str, Any], limit: int | None, depth: int
) -> list[Violation]:
    found: list[Violation] = []
    try:
        _Walk(root, found, limit).check(document, schema, _Place((), schema, None, None), depth)
    except _Enough:
        pass
    return found


def first_violation(
    document: Any, schema: Mapping[str, Any], *, root: Mapping[str, Any] | None = None
) -> Violation | None:
    """The first place where ``document`` breaks ``schema``, or None: all a loader that refuses needs."""
    found = violations(document, schema, root=root, limit=1)
    return found[0] if found else None


def is_type(value: Any, name: str) -> bool:
    """Whether ``value`` has JSON type ``name``; a bool is not a number, a float not an integer."""
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1`` (Python says it is), ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    return bool(a == b)


class _Place(NamedTuple):  # a tuple: the walk makes one per value checked
    """Where the walk is: the path, the schema declared there and the one declared for its container."""

    where: tuple[str | int, ...]
    declared: Mapping[str, Any]
    parent: Mapping[str, Any] | None
    title: str | None

    def child(self, key: str | int, declared: Mapping[str, Any]) -> _Place:
        return _Place((*self.where, key), declared, self.declared, self.title)


@dataclass
class _Walk:
    root: Mapping[str, Any]
    found: list[Violation]
    limit: int | None

    def fail(self, place: _Place, keyword: str, value: Any, rule: Any) -> None:
        self.found.append(
            Violation(place.where, keyword, value, place.declared, rule, place.title, place.parent)
        )
        if self.limit is not None and len(self.found) >= self.limit:
            raise _Enough

    def matches(self, value: Any, schema: Mapping[str, Any], depth: int) -> bool:
        """Whether ``value`` follows ``schema`` (an ``if``): found nothing, recorded nothing."""
        return not _run(value, schema, self.root, 1, depth)  # depth goes on: a looping `if` stops too

    def check(self, value: Any, schema: Mapping[str, Any], place: _Place, depth: int) -> None:
        """Check ``value`` at ``place`` against ``schema``: the schema declared there, or one it leads to
        through ``$ref``, ``allOf`` or a condition."""
        if "title" in schema:
            place = place._replace(title=schema["title"])
        if depth >= MAX_DEPTH:
            self.fail(place, "depth", value, MAX_DEPTH)
            return
        if "$ref" in schema:
            self.check(value, _resolve(schema["$ref"], self.root), place, depth + 1)
        if "const" in schema and not _equal(value, schema["const"]):
            self.fail(place, "const", value, schema["const"])
        if "enum" in schema and not any(_equal(value, option) for option in schema["enum"]):
            self.fail(place, "enum", value, schema["enum"])
        kinds = schema.get("type")
        if kinds is not None and not (
            is_type(value, kinds) if isinstance(kinds, str) else any(is_type(value, n) for n in kinds)
        ):
            self.fail(place, "type", value, schema["type"])
            return  # the remaining keywords assume the right type
        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                self.fail(place, "minLength", value, schema["minLength"])
            if "pattern" in schema and not re.search(schema["pattern"], value):
                self.fail(place, "pattern", value, schema["pattern"])
        if "minimum" in schema and is_type(value, "number") and value < schema["minimum"]:
            self.fail(place, "minimum", value, schema["minimum"])
        if isinstance(value, list):
            if "minItems" in schema and len(value) < schema["minItems"]:
                self.fail(place, "minItems", value, schema["minItems"])
            if "items" in schema:
                items = schema["items"]
                for i, item in enumerate(value):
                    self.check(item, items, place.child(i, items), depth + 1)
        if isinstance(value, dict):
            self.check_object(value, schema, place, depth)
        for sub in schema.get("allOf", ()):
            self.check(value, sub, place, depth + 1)
        if "if" in schema:
            branch = "then" if self.matches(value, schema["if"], depth + 1) else "else"
            if branch in schema:
                self.check(value, schema[branch], place, depth + 1)

    def check_object(
        self, value: dict[str, Any], schema: Mapping[str, Any], place: _Place, depth: int
    ) -> None:
        properties: Mapping[str, Any] = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                self.fail(place.child(key, properties.get(key, {})), "required", MISSING, schema["required"])
        for key, sub in properties.items():  # schema order: the first violation does not depend on the file
            if key in value:
                self.check(value[key], sub, place.child(key, sub), depth + 1)
        extra = schema.get("additionalProperties", True)
        if extra is True:
            return
        for key, item in value.items():
            if key in properties:
                continue
            if extra is False:
                self.fail(place.child(key, {}), "additionalProperties", item, False)
            else:
                self.check(item, extra, place.child(key, extra), depth + 1)


# ------------------------------------------------------------------------------------------- words
def describe(value: Any) -> str:
    """What a value is, in words: ``a string``, ``an empty list``, ``null`` (never the value itself)."""
    if value is MISSING:
        return "missing"
    if isinstance(value, (list, str)) and not value:
        return "an empty list" if isinstance(value, list) else "an empty string"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
    return "null" if value is None else "an object" if isinstance(value, dict) else names[type(value)]


def describe_content(value: Any) -> str:
    """A value as a message about its content shows it: short scalars themselves (``-1``, ``'up'``),
    containers and long strings in words (:func:`describe`)."""
    if isinstance(value, (bool, int, float)) or (isinstance(value, str) and 0 < len(value) <= 40):
        return shown(value)
    return describe(value)


def merged(schema: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    """``schema``'s own keywords over those of the schemas its ``$ref`` chain leads to (at most
    :data:`MAX_DEPTH` links)."""
    chain = [schema]
    while "$ref" in chain[-1] and len(chain) < MAX_DEPTH:
        chain.append(_resolve(chain[-1]["$ref"], root))
    out: dict[str, Any] = {}
    for node in reversed(chain):
        out.update(node)
    return out


def meaning(schema: Mapping[str, Any], root: Mapping[str, Any]) -> str | None:
    """What a value means: the ``description`` of its schema (or of the one its ``$ref`` leads to)."""
    text = merged(schema, root).get("description")
    return text if isinstance(text, str) else None


def expected(schema: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    """What ``schema`` accepts, in words: ``a positive integer``, ``a list of strings``, ``an object or
    null``, ``one of 'relative', 'absolute'``. Conditions (``allOf``, ``if``) are not described."""
    full = merged(schema, root)
    if "const" in full:
        return _literal(full["const"])
    if "enum" in full:
        return "one of " + ", ".join(_literal(v) for v in full["enum"])
    if "type" not in full:
        return "any value"
    return " or ".join(_phrase(name, full, root, plural=False) for name in _type_list(full["type"]))


def _literal(value: Any) -> str:
    return "null" if value is None else json.dumps(value) if isinstance(value, bool) else shown(value)


_NOUNS = {
    "integer": ("an integer", "integers"),
    "number": ("a number", "numbers"),
    "string": ("a string", "strings"),
    "boolean": ("a boolean", "booleans"),
    "object": ("an object", "objects"),
    "array": ("a list", "lists"),
    "null": ("null", "nulls"),
}


def _phrase(name: str, schema: Mapping[str, Any], root: Mapping[str, Any], *, plural: bool) -> str:
    singular, many = _NOUNS[name]
    noun = many if plural else singular.split(" ", 1)[-1]
    adjective = ""
    if name in ("integer", "number") and "minimum" in schema:
        low = schema["minimum"]
        adjective = "non-negative " if low == 0 else "positive " if low == 1 and name == "integer" else ""
        if not adjective:
            noun += f" of at least {low}"
    elif name == "string" and schema.get("minLength", 0) >= 1:
        adjective = "non-empty " if schema["minLength"] == 1 else ""
        if not adjective:
            noun += f" of at least {schema['minLength']} characters"
    elif name == "array" and schema.get("minItems", 0) >= 1:
        adjective = "non-empty " if schema["minItems"] == 1 else ""
        if not adjective:
            noun += f" of at least {schema['minItems']} items"
    if name == "string" and "pattern" in schema:
        noun += f" matching {schema['pattern']!r}"
    if name == "array" and isinstance(schema.get("items"), Mapping):
        items = merged(schema["items"], root)
        kinds = _type_list(items.get("type", []))
        if "enum" not in items and "const" not in items and kinds:
            noun += " of " + " or ".join(_phrase(k, items, root, plural=True) for k in kinds)
        else:
            noun += " of items, each " + expected(items, root)
    if plural or name == "null":
        return adjective + noun
    article = "an" if (adjective or noun)[0] in "aeiou" else "a"
    return f"{article} {adjective}{noun}"
