"""What the metadata of each kind of relstitch file must hold, checked before any tensor is read.

A file that names an unknown kind, lacks a key its loader needs, stores a value of the wrong type, or
comes from a newer format is refused with one line that names the file, what it is, and what was
expected. Keys not listed here are allowed (files carry provenance this module need not know), and
optional keys are checked only when present. Pure Python: no torch import, so ``inspect`` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import RelstitchError

FORMAT_VERSION = 1
"""The newest file format this relstitch reads and writes (``relstitch.version``)."""


@dataclass(frozen=True)
class Type:
    """A JSON value type: a name for messages and a test."""

    name: str
    test: Callable[[Any], bool]

    def __or__(self, other: Type) -> Type:
        return Type(f"{self.name} or {other.name}", lambda v: self.test(v) or other.test(v))


STRING = Type("a string", lambda v: isinstance(v, str))
INTEGER = Type("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
COUNT = Type("a positive integer", lambda v: INTEGER.test(v) and v >= 1)
SIZE = Type("a non-negative integer", lambda v: INTEGER.test(v) and v >= 0)
OBJECT = Type("an object", lambda v: isinstance(v, dict))
NULL = Type("null", lambda v: v is None)
NAMES = Type("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
SHAPE = Type("a list of sizes", lambda v: isinstance(v, list) and all(SIZE.test(x) for x in v))
HASH = Type(
    "a hash string", lambda v: isinstance(v, str) and bool(v)
)  # sources may hash other ways: any non-empty string


def one_of(*values: str) -> Type:
    return Type("one of " + ", ".join(repr(v) for v in values), lambda v: v in values)


@dataclass(frozen=True)
class Key:
    """One metadata key (without the ``relstitch.`` prefix): its type, whether it is required, what it
    means."""

    name: str
    type: Type
    meaning: str
    required: bool = True


def _optional(name: str, type_: Type, meaning: str) -> Key:
    return Key(name, type_, meaning, required=False)


_TRAINING = _optional("training", OBJECT, "how it was trained")
_NAME = _optional("name", STRING, "its name")

SCHEMAS: dict[str, tuple[Key, ...]] = {
    "anchors": (
        Key("hash", HASH, "the content hash of the anchors"),
        _optional("dataset", OBJECT, "the dataset the anchors come from"),
        _optional("strategy", STRING, "how the anchors were picked"),
        _optional("seed", INTEGER, "the selection seed"),
        _optional("count", COUNT, "the number of anchors"),
        _optional("parameters", OBJECT, "the strategy's parameters"),
        _optional("classes", NAMES, "the class names"),
        _optional("modality", STRING, "image or text"),
        _optional("text_views", NAMES, "the names of the text views"),
        _optional("default_view", STRING | NULL, "the default text view"),
    ),
    "encoder": (
        Key("architecture", OBJECT, "the architecture (registry name and arguments)"),
        Key("input", OBJECT, "the input spec"),
        Key("latent_dim", SIZE, "the latent size"),
        _NAME,
        _optional("hash", HASH, "the content hash of the weights"),
        _TRAINING,
    ),
    "decoder": (
        Key("architecture", OBJECT, "the architecture (registry name and arguments)"),
        Key("space", one_of("relative", "absolute"), "the space it reads"),
        Key("input_dim", COUNT, "its input size"),
        Key("task", OBJECT, "its task"),
        _optional("projection", OBJECT | NULL, "the projection config it was trained with"),
        _optional("anchor_hash", HASH | NULL, "the hash of the anchors it was trained with"),
        _optional("encoder_hash", HASH | NULL, "the hash of the encoder it was trained with"),
        _NAME,
        _optional("hash", HASH, "the content hash of the weights"),
        _TRAINING,
    ),
    "embeddings": (
        Key("encoder", OBJECT, "the encoder that produced it"),
        Key("anchor_hash", STRING, "the hash of its anchors ('' for absolute-only)"),
        Key("dataset", OBJECT, "the dataset it encodes"),
        _optional("projection", OBJECT | NULL, "the projection of its relative vectors"),
    ),
    "predictions": (
        Key("encoder", OBJECT, "the encoder of the pair (name, hash)"),
        Key("decoder", OBJECT, "the decoder of the pair (name, hash)"),
        Key("anchor_hash", STRING | NULL, "the hash of the anchors the encoder was run with"),
        Key("data", OBJECT, "the dataset predicted on"),
        Key("method", STRING, "how the pair was wired: relative, absolute or a translation"),
        Key("task", OBJECT, "the decoder's task"),
        _optional("scores", OBJECT, "the task metrics of these predictions"),
    ),
}
"""File kind → the keys of its metadata."""
KINDS = tuple(SCHEMAS)

# Nested objects whose inner keys a loader relies on.
_NESTED: dict[tuple[str, str], tuple[Key, ...]] = {
    ("encoder", "architecture"): (
        Key("name", STRING, "the registry name"),
        _optional("args", OBJECT | NULL, "arguments"),
    ),
    ("decoder", "architecture"): (
        Key("name", STRING, "the registry name"),
        _optional("args", OBJECT | NULL, "arguments"),
    ),
    ("decoder", "task"): (Key("type", one_of("classification", "reconstruction"), "the task type"),),
    ("embeddings", "encoder"): (
        _optional("name", STRING, "the encoder's name"),
        _optional("hash", STRING, "its hash"),
    ),
    ("predictions", "task"): (Key("type", one_of("classification", "reconstruction"), "the task type"),),
}


def _describe(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


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
    if not isinstance(kind, str) or kind not in SCHEMAS:
        shown = repr(kind)[:40]
        raise RelstitchError(
            f"unknown relstitch file kind {shown} (known: {', '.join(KINDS)}); expected {label} file",
            path=path,
            hint="it may come from a newer relstitch",
        )
    if kind not in wanted:
        raise RelstitchError(f"is a relstitch {kind} file, expected {label} file", path=path)
    version = metadata.get("version")
    if not (isinstance(version, int) and COUNT.test(version)):
        raise RelstitchError(
            f"corrupt {kind} file: relstitch.version is {_describe(version)}, expected a positive integer",
            path=path,
        )
    if version > FORMAT_VERSION:
        raise RelstitchError(
            f"{kind} file written by a newer relstitch "
            f"(format {version}, this one reads up to {FORMAT_VERSION})",
            path=path,
            hint="upgrade relstitch",
        )
    _check_keys(metadata, SCHEMAS[kind], kind, "relstitch.", path)
    for (owner, key), inner in _NESTED.items():
        if owner == kind and isinstance(metadata.get(key), dict):
            _check_keys(metadata[key], inner, kind, f"relstitch.{key}.", path)
    if kind == "decoder":
        _check_decoder(metadata, path)
    return kind


def _check_keys(values: dict[str, Any], keys: tuple[Key, ...], kind: str, prefix: str, path: object) -> None:
    for key in keys:
        if key.name not in values:
            if key.required:
                raise RelstitchError(
                    f"corrupt {kind} file: {prefix}{key.name} ({key.meaning}) is missing, "
                    f"expected {key.type.name}",
                    path=path,
                )
            continue
        value = values[key.name]
        if not key.type.test(value):
            raise RelstitchError(
                f"corrupt {kind} file: {prefix}{key.name} ({key.meaning}) is {_describe(value)}, "
                f"expected {key.type.name}",
                path=path,
            )


def _check_decoder(metadata: dict[str, Any], path: object) -> None:
    """The keys a decoder needs depend on its space and its task."""
    if metadata["space"] == "relative":
        _check_keys(
            metadata,
            (
                Key("projection", OBJECT, "the projection config it was trained with"),
                Key("anchor_hash", HASH, "the hash of the anchors it was trained with"),
            ),
            "relative decoder",
            "relstitch.",
            path,
        )
    task = metadata["task"]
    if task["type"] == "classification":
        _check_keys(
            task,
            (Key("classes", NAMES, "the class names"),),
            "classification decoder",
            "relstitch.task.",
            path,
        )
        if not task["classes"]:
            raise RelstitchError(
                "corrupt classification decoder file: relstitch.task.classes is empty", path=path
            )
    else:
        _check_keys(
            task,
            (Key("shape", SHAPE, "the reconstructed image shape"),),
            "reconstruction decoder",
            "relstitch.task.",
            path,
        )
