"""Model sources: one registry of kinds, each reference written ``kind:locator[#option=value,...]``.

This module holds what every kind shares: the registry (:data:`MODEL_SOURCES`), the source options and
how they are read, and :func:`load_encoder_ref`, which turns a reference into a loaded encoder. The kinds
themselves live beside it (:mod:`.checkpoint`, :mod:`.precomputed`, :mod:`.hf`, :mod:`.vision`,
:mod:`.python`) and register on import of :mod:`relstitch.adapters`.

Options come from keyword arguments (the CLI's ``--view`` and ``-O key=value``) and, per reference,
after ``#``: ``hf:models/fr#view=fr,pooling=mean``; a reference's own options win. Lists are written
with commas: ``mean=0.485,0.456,0.406``. Remote code is never enabled by an option string: only
``trust_remote_code=True`` (the CLI's ``--trust-remote-code``).
"""

from __future__ import annotations

import ast
import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from ..components import Encoder
from ..errors import RelstitchError, RelstitchWarning, UsageError
from ..errors import first_line as first_line  # re-exported: the adapters import it from here
from ..refs import parse_size, split_fragment, split_options
from ..registry import Registry

if TYPE_CHECKING:
    from ..encoding import EncodedSpace


# ------------------------------------------------------------------------------------- options
def _floats(text: str) -> float | list[float]:
    values = [float(p) for p in text.split(",") if p.strip()]
    return values[0] if len(values) == 1 else values


def _bool(text: str) -> bool:
    """``true/false``, ``yes/no``, ``1/0`` (any case); anything else is a ValueError."""
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise ValueError(f"expected true or false, got {text!r}")
    return value


OPTION_TYPES: dict[str, Callable[[str], Any]] = {
    "view": str,
    "pooling": str,
    "normalize": _bool,
    "max_length": int,
    "dtype": str,
    "name": str,
    "weights": str,
    "layer": str,
    "resize": parse_size,
    "crop": parse_size,
    "channels": int,
    "mean": _floats,
    "std": _floats,
}
"""Source options and how each is read from text."""


def parse_options(text: str) -> dict[str, Any]:
    """``"pooling=mean,mean=0.5,0.5,0.5"`` → ``{"pooling": "mean", "mean": [0.5, 0.5, 0.5]}``."""
    return {key: _coerce(key, value) for key, value in split_options(text).items()}


def _coerce(key: str, value: Any) -> Any:
    if key in ("trust_remote_code", "trust_code"):
        what = "remote code" if key == "trust_remote_code" else "a checkpoint's factory"
        flag = key.replace("_", "-")
        raise UsageError(f"{what} is enabled only by the --{flag} flag ({key}=True), not an option")
    if key not in OPTION_TYPES:
        close = difflib.get_close_matches(key, OPTION_TYPES, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known options: {', '.join(OPTION_TYPES)}"
        raise UsageError(f"unknown source option {key!r}", hint=hint)
    if not isinstance(value, str):
        return value
    read = OPTION_TYPES[key]
    try:
        return read(value)
    except ValueError as exc:  # relstitch's own readers say what they expected; int()'s words are Python's
        why = f" ({exc})" if read not in (int, str) else ""
        raise UsageError(
            f"bad value {value!r} for source option {key!r}{why}",
            hint=f"fix -O {key}= (or {key}= after the reference's #)",
        ) from None


@dataclass(frozen=True)
class SourceOptions:
    """How to load and feed one model source (each kind reads the options that concern it)."""

    view: str | None = None
    pooling: str | None = None  # None: the source's own (a sentence-transformers folder's), else cls
    normalize: bool | None = None  # None: the source's own (a Normalize module), else off
    max_length: int | None = None
    dtype: str | None = None
    name: str | None = None
    weights: str | None = None
    layer: str | None = None
    resize: list[int] | None = None
    crop: list[int] | None = None
    channels: int | None = None
    mean: float | list[float] | None = None
    std: float | list[float] | None = None
    trust_remote_code: bool = False
    trust_code: bool = False  # a checkpoint of a user's own module imports its recorded factory


@dataclass
class SourceEncoder(Encoder):
    """An encoder a model source loaded, and what its reference resolved to on this machine.

    ``resolved`` (the folder, the Hub snapshot's commit, the weights file, the preprocessing) travels into
    embeddings files through :meth:`provenance`, so a result can be traced to the exact files. It is never
    part of the hash: the same files found another way are the same encoder.
    """

    resolved: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "resolved": self.resolved}


def parse_call(locator: str) -> tuple[str, dict[str, Any]]:
    """``pkg.mod:build(width=8)`` → (``pkg.mod:build``, ``{"width": 8}``); literal keyword arguments only."""
    if not locator.endswith(")") or "(" not in locator:
        return locator, {}
    target, _, args = locator.partition("(")
    refused = UsageError(
        f"cannot read the arguments of {locator!r}",
        hint="write keyword arguments with literal values, e.g. build(width=8, name='a')",
    )
    try:
        call = ast.parse(f"f({args}", mode="eval").body
        # checked with if, not assert: under python -O an assert vanishes and build(3, width=8) would
        # drop the 3
        if not isinstance(call, ast.Call) or call.args or any(kw.arg is None for kw in call.keywords):
            raise refused
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    except (SyntaxError, ValueError):
        raise refused from None
    return target, kwargs


# ------------------------------------------------------------------------------------ registry
SourceLoader = Callable[[str, SourceOptions], "Encoder | EncodedSpace"]


@dataclass(frozen=True)
class ModelSource:
    """One kind of model reference: its loader, the options it reads, and a one-line description."""

    load: SourceLoader
    reads: frozenset[str]
    help: str


MODEL_SOURCES: Registry[ModelSource] = Registry("model source kind")
"""Model reference kind -> :class:`ModelSource`; ``register_model_source`` adds one."""


def register_model_source(
    kind: str, reads: tuple[str, ...], help: str
) -> Callable[[SourceLoader], SourceLoader]:
    """Register a loader for references ``kind:locator``."""

    def decorator(load: SourceLoader) -> SourceLoader:
        MODEL_SOURCES.register(kind, ModelSource(load, frozenset(reads + ("name",)), help))
        return load

    return decorator


@overload
def load_encoder_ref(
    ref: str | os.PathLike[str],
    *,
    trust_remote_code: bool = ...,
    trust_code: bool = ...,
    allow_embeddings: Literal[False],
    **options: Any,
) -> Encoder: ...


@overload
def load_encoder_ref(
    ref: str | os.PathLike[str],
    *,
    trust_remote_code: bool = ...,
    trust_code: bool = ...,
    allow_embeddings: bool = ...,
    **options: Any,
) -> Encoder | EncodedSpace: ...


def load_encoder_ref(
    ref: str | os.PathLike[str],
    *,
    trust_remote_code: bool = False,
    trust_code: bool = False,
    allow_embeddings: bool = True,
    **options: Any,
) -> Encoder | EncodedSpace:
    """Load the model a reference names (any registered kind; a plain path is a relstitch file).

    A ``str`` is a reference the user typed: its kind and ``#key=value`` options are read from it. A
    :class:`~pathlib.Path` (a glob's match, a default, anything found on disk) is a relstitch file and is
    never parsed, whatever its name says (:mod:`relstitch.refs`).
    ``options`` are defaults (strings are parsed as on the command line); the reference's own
    ``#key=value`` options override them. ``allow_embeddings=False`` refuses precomputed vectors
    (for verbs that must run an encoder). ``trust_code``: a checkpoint of a user's own module may import
    the factory it records (:func:`relstitch.checkpoints.load_encoder`).
    """
    merged = {
        key: _coerce(key.replace("-", "_"), value) for key, value in options.items() if value is not None
    }
    kind, source, locator, own = _source_of(ref)
    ignored = sorted(set(own) - source.reads)
    if ignored:
        raise UsageError(
            f"option(s) {', '.join(ignored)} do not apply to {kind}: references",
            hint=f"{kind}: reads {', '.join(sorted(source.reads))}",
        )
    opts = SourceOptions(
        **{k: v for k, v in {**merged, **own}.items() if k in source.reads},
        trust_remote_code=trust_remote_code,
        trust_code=trust_code,
    )
    if not locator:
        raise UsageError(
            f"{kind}: reference without a locator", hint=f"write {kind}:{_EXAMPLES.get(kind, 'LOCATOR')}"
        )
    loaded = source.load(locator, opts)
    if not allow_embeddings and not isinstance(loaded, Encoder):
        raise RelstitchError(
            f"{ref} holds precomputed embeddings, not an encoder to run",
            hint="use it directly in fit, stitch or eval-matrix",
        )
    return loaded


def check_options_apply(refs: Sequence[str | os.PathLike[str]], options: Mapping[str, Any]) -> None:
    """Warn about a default source option (the CLI's ``-O``) that none of ``refs`` reads: it does nothing.

    Each reference takes only the options its kind reads (``pooling`` for ``hf:``, ``weights`` for
    ``torchvision:``/``python:``...), so one ``-O`` serves a mixed matrix and a script looping over
    encoders of several kinds; one that no reference reads (``encode CKPT -O weights=w.pt``) is said in
    one ``warning:`` line before any work, not silently dropped. (A reference's own ``#key=value`` that
    its kind does not read is refused: it was written for that reference.)
    """
    import warnings  # noqa: PLC0415

    kinds = {_source_of(ref)[0] for ref in refs}
    for key, value in options.items():
        if not any(key in MODEL_SOURCES[kind].reads for kind in kinds):
            readers = sorted(kind + ":" for kind, source in MODEL_SOURCES.items() if key in source.reads)
            warnings.warn(
                RelstitchWarning(
                    f"-O {key}={value} does nothing here: no model given is a "
                    f"{' or '.join(readers) or 'kind that reads it'}"
                    f" reference (given: {', '.join(sorted(kinds))})"
                ),
                stacklevel=2,
            )


def _source_of(ref: str | os.PathLike[str]) -> tuple[str, ModelSource, str, dict[str, Any]]:
    """The kind, source, locator and own ``#options`` of a reference; a ``Path`` is a relstitch file,
    unparsed."""
    if isinstance(ref, os.PathLike):  # a file: its name is never read as a kind, options or a call
        return "relstitch", MODEL_SOURCES["relstitch"], os.fspath(ref), {}
    text, fragment = split_fragment(ref)
    own = parse_options(fragment)
    kind, sep, locator = text.partition(":")
    if kind in MODEL_SOURCES:
        return kind, MODEL_SOURCES[kind], locator, own
    if Path(text).exists() or not sep or "/" in kind or "\\" in kind or "." in kind:
        return "relstitch", MODEL_SOURCES["relstitch"], text, own
    close = difflib.get_close_matches(kind, MODEL_SOURCES, n=1)
    hint = (
        f"did you mean {close[0]!r}?"
        if close
        else f"use one of: {', '.join(k + ':' for k in MODEL_SOURCES)} or a path"
    )
    raise RelstitchError(f"unknown model source kind {kind!r} in {ref!r}", hint=hint)


_EXAMPLES = {
    "hf": "DIR or hf:ORG/NAME[@REVISION]",
    "timm": "resnet18",
    "torchvision": "resnet18#weights=FILE",
    "python": "package.module:function",
    "embeddings": "FILE",
    "relstitch": "FILE",
}


def list_model_sources() -> dict[str, str]:
    """Kind → one-line description, for help texts."""
    return {kind: source.help for kind, source in MODEL_SOURCES.items()}
