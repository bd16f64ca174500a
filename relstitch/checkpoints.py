"""Encoder and decoder checkpoints: weights plus everything needed to use them correctly.

- An **encoder** file carries its architecture (registry name + arguments), its input spec
  (modality, shape, preprocessing) and latent size.
- A **decoder** file carries its architecture, the **space** it reads (``relative`` or
  ``absolute``), its input size, the task (with class names), and — for relative decoders — the
  **anchor hash** and **projection config** it was trained with, plus the hash of the encoder it was
  trained with (so a matrix knows its diagonal).

Identity is by content: an encoder's hash covers its weights and architecture, not its file name.

A module relstitch did not build is saved with the **factory** that builds it, ``pkg.mod:fn`` plus
keyword arguments (``save_encoder(module, path, factory=..., input_spec=...)``), recorded in its
architecture as ``{"name": "python:pkg.mod:fn", "factory": "pkg.mod:fn", "args": {...}}``. Loading such
a file imports that factory: code named by a file, so it runs only with ``trust_code=True`` (the CLI's
``--trust-code``) and is refused in one line, naming the factory, without it.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .architectures import create_decoder, create_encoder
from .components import Decoder, Encoder
from .data import check_input_spec, prepare_images
from .errors import RelstitchError, UsageError, first_line, printable, shorten_path
from .hygiene import warn
from .io.artifacts import content_hash, load_artifact, read_header, save_artifact, short
from .io.metadata_schema import FORMAT_VERSION, check_metadata, metadata_schema
from .nn import RelativeHead, RelativeProjection
from .projection import ProjectionConfig

if TYPE_CHECKING:
    from .anchor_set import Anchors

SPACES = ("relative", "absolute")
ENCODER_SUFFIX = ".encoder.safetensors"
DECODER_SUFFIX = ".decoder.safetensors"


def default_name(path: str | os.PathLike[str]) -> str:
    """``zoo/cnn-rel-s0.encoder.safetensors`` → ``cnn-rel-s0`` (control characters escaped:
    :func:`name_of`)."""
    name = Path(path).name
    for suffix in (ENCODER_SUFFIX, DECODER_SUFFIX, ".safetensors"):
        if name.endswith(suffix):
            return printable(name[: -len(suffix)])
    return printable(name)


def name_of(meta: dict[str, Any], path: Path) -> str:
    """A checkpoint's display name: its recorded ``name``, else its file name; never a control character.

    Names are read from files a stranger may have written, and end up in terminal tables and reports:
    an ANSI escape or a line break in one must show as text, not act.
    """
    recorded = meta.get("name")
    return printable(recorded) if isinstance(recorded, str) and recorded else default_name(path)


def _fresh_hash(owner: Encoder | Decoder) -> str:
    """The hash of the weights as they are now, refreshing the cached one.

    A file's recorded hash must describe the tensors written beside it (loading verifies it): a module
    changed after its hash was first read (fine-tuned, edited) would otherwise be saved under its old hash
    and refused as tampered with on the next load.
    """
    owner.__dict__["hash"] = content_hash(owner.module.state_dict(), extra=owner.architecture)
    return owner.hash


# ------------------------------------------------------------------------------------- factories
FACTORY_PATTERN: str = metadata_schema()["$defs"]["architecture"]["properties"]["factory"]["pattern"]
"""``package.module:function`` (``Class.method`` too): the only form a recorded factory may take (the
schema's rule, so saving and loading agree)."""
TRUST_HINT = "read that code, then pass --trust-code (trust_code=True) only if you trust it"


def build_from_factory(target: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """Import ``package.module:function`` and call it with ``kwargs``; the ``nn.Module`` it returns.

    This runs code: the caller decides that it may (the ``python:`` reference a user typed, or a
    checkpoint's factory behind ``trust_code``). Every failure is one line naming ``target``.
    """
    module_name, sep, function_name = target.rpartition(":")
    if not sep or not module_name or not function_name:
        raise UsageError(f"python:{target}: expected python:package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while importing
        raise RelstitchError(
            f"cannot import {module_name!r}: {first_line(exc)}",
            hint="check the module path and that it is installed (or on PYTHONPATH)",
        ) from None
    factory: Any = module
    for part in function_name.split("."):  # Class.classmethod works too (EfficientNet.from_name)
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise RelstitchError(f"module {module_name!r} has no function {function_name!r}")
    try:
        model = factory(**kwargs)
    except Exception as exc:  # the user's factory failed: report it in one line
        raise RelstitchError(f"{target}({', '.join(kwargs)}) raised {first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise RelstitchError(f"{target} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def factory_architecture(factory: str, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The architecture record of a module built by ``factory(**kwargs)``, checked to be one a file can
    hold and a loader can import (the same name a ``python:`` reference gives it)."""
    if not isinstance(factory, str) or not re.match(FACTORY_PATTERN, factory):
        raise UsageError(
            f"factory must be 'package.module:function', got {factory!r}",
            hint="name an importable function that builds the module, e.g. factory='my_models:build'",
        )
    if factory.partition(":")[0] == "__main__":
        raise UsageError(
            f"factory {factory!r} lives in the script being run, which a loader cannot import",
            hint="move it to a module of its own (my_models.py) and name that module",
        )
    args = dict(kwargs or {})
    try:
        json.dumps(args, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"factory_kwargs of {factory} must be JSON values (numbers, strings, lists, dicts): {exc}"
        ) from None
    return {"name": f"python:{factory}", "factory": factory, "args": args}


def _check_rebuilds(module: nn.Module, architecture: dict[str, Any], what: str) -> None:
    """Refuse to save a module its factory does not rebuild (names, shapes, dtypes), before any file is
    written: a checkpoint that cannot load is found now, not on another machine. Built on the meta
    device: no memory, no random init."""
    with torch.device("meta"):
        probe = build_from_factory(architecture["factory"], architecture["args"])
    expected, found = probe.state_dict(), module.state_dict()
    label = "the module its factory builds"
    try:
        check_shapes(expected, found, label)
        check_weights(expected, found, label, exact=True, hint=_REBUILD, finite_hint=RETRAIN)
    except RelstitchError as exc:
        raise RelstitchError(f"{what}: {exc}", hint=_REBUILD) from None


_REBUILD = "pass the factory and factory_kwargs that build this very module"


def _probe(module: nn.Module, batch: torch.Tensor, what: str) -> torch.Tensor:
    """The module's output on one probe batch (eval mode, no grad; its mode restored), or one line."""
    was_training = module.training
    parameter = next(module.parameters(), None)
    try:
        with torch.no_grad():
            out = module.eval()(batch.to(parameter.device) if parameter is not None else batch)
    except Exception as exc:  # the user's module cannot read what its contract says it reads
        raise RelstitchError(f"{what} raised {first_line(exc)}") from None
    finally:
        module.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise RelstitchError(f"{what} returned {type(out).__name__}, not a tensor")
    return out


def _user_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    extra = dict(meta or {})
    try:
        json.dumps(extra, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"meta must hold JSON values: {exc}") from None
    return extra


def _checked(meta: dict[str, Any], kind: str, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata about to be written, refused now if its loader would refuse it (the same schema)."""
    check_metadata(dict(json.loads(json.dumps(meta)), kind=kind, version=FORMAT_VERSION), kind, path)
    return meta


def module_encoder(
    module: nn.Module,
    *,
    factory: str,
    factory_kwargs: Mapping[str, Any] | None = None,
    input_spec: Mapping[str, Any],
    latent_dim: int | None = None,
    name: str = "encoder",
    meta: Mapping[str, Any] | None = None,
) -> Encoder:
    """An :class:`Encoder` record for a module relstitch did not build: its ``factory`` (``pkg.mod:fn``
    and keyword arguments), its ``input_spec`` (as :func:`relstitch.data.default_image_spec` writes
    one) and its latent size (measured on one zero input of the spec's shape when not given)."""
    architecture = factory_architecture(factory, factory_kwargs)
    _check_rebuilds(module, architecture, f"encoder built by {factory}")
    spec = check_input_spec(input_spec)  # refused now, not by the loader of the file it goes into
    if latent_dim is None:
        shape = spec.get("shape")
        if not isinstance(shape, list | tuple) or not all(isinstance(n, int) and n > 0 for n in shape):
            raise UsageError(
                "cannot measure the latent size: input_spec has no 'shape'", hint="pass latent_dim="
            )
        zeros = prepare_images(torch.zeros((1, *shape), dtype=torch.uint8), spec)
        out = _probe(module, zeros, f"the encoder ({factory}) on one input of shape {list(shape)}")
        if out.ndim != 2:
            raise RelstitchError(
                f"the encoder ({factory}) returned latents of shape {list(out.shape)}; relstitch needs "
                "[batch, dim]",
                hint="flatten or pool inside the module",
            )
        latent_dim = int(out.shape[1])
    return Encoder(
        module=module,
        architecture=architecture,
        input_spec=spec,
        latent_dim=latent_dim,
        name=name,
        meta=_user_meta(meta),
    )


def save_encoder(
    encoder: Encoder | nn.Module,
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    factory: str | None = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    input_spec: Mapping[str, Any] | None = None,
    latent_dim: int | None = None,
    name: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write an encoder checkpoint: an :class:`Encoder` record, or any ``nn.Module`` with the ``factory``
    that builds it and its ``input_spec`` (:func:`module_encoder`). Loading the latter needs
    ``trust_code=True``: it imports the factory."""
    if not isinstance(encoder, Encoder):
        if factory is None or input_spec is None:
            raise UsageError(
                f"a {type(encoder).__name__} relstitch did not build is saved with factory= "
                "('package.module:function' that builds it) and input_spec=",
            )
        encoder = module_encoder(
            encoder,
            factory=factory,
            factory_kwargs=factory_kwargs,
            input_spec=input_spec,
            latent_dim=latent_dim,
            name=name or default_name(path),
            meta=meta,
        )
    elif any(v is not None for v in (factory, factory_kwargs, input_spec, latent_dim, name, meta)):
        raise UsageError(
            "an Encoder record carries its own architecture: factory= and the rest are for modules"
        )
    meta = dict(
        encoder.meta,
        name=encoder.name,
        architecture=encoder.architecture,
        input=encoder.input_spec,
        latent_dim=encoder.latent_dim,
        hash=_fresh_hash(encoder),
    )
    return save_artifact(
        path, "encoder", encoder.module.state_dict(), _checked(meta, "encoder", path), force=force
    )


def module_decoder(
    module: nn.Module,
    *,
    task: Mapping[str, Any],
    space: str | None = None,
    factory: str | None = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    input_dim: int | None = None,
    anchors: Anchors | str | None = None,
    projection: ProjectionConfig | None = None,
    encoder: Encoder | str | os.PathLike[str] | None = None,
    name: str = "decoder",
    meta: Mapping[str, Any] | None = None,
) -> Decoder:
    """A :class:`Decoder` record for a head relstitch did not build.

    A :class:`relstitch.nn.RelativeHead` needs no factory: its head is a registry architecture, its
    projection and anchor hash come from its layer. Any other module needs ``factory`` and the
    ``space`` it reads; a relative one its ``anchors`` (an anchor set or its hash) and ``projection``
    (default cosine). ``encoder``: the encoder it was trained with (a record or its saved file), so a
    matrix knows its diagonal. The module is run once on zeros of ``[1, input_dim]``: a head that
    cannot read its own contract is refused before anything is written.
    """
    anchor_hash = anchors if isinstance(anchors, str) or anchors is None else anchors.hash
    if isinstance(module, RelativeHead):
        layer = module.projection
        if factory is not None or space not in (None, "relative"):
            raise UsageError(
                "a RelativeHead is saved by its registry head, relative: drop factory= and space="
            )
        if projection is not None and projection != layer.config:
            raise UsageError("a RelativeHead projects with its layer's config: drop projection=")
        if anchor_hash is not None and layer.anchor_hash not in (None, anchor_hash):
            raise RelstitchError(
                f"anchors {short(anchor_hash)} are not the RelativeHead's own ({short(layer.anchor_hash)})"
            )
        architecture = module.architecture
        space, projection = "relative", layer.config
        anchor_hash, input_dim = anchor_hash or layer.anchor_hash, layer.output_dim
        weights: nn.Module = module.head
    else:
        if any(isinstance(m, RelativeProjection) for m in module.modules()):
            raise UsageError(
                "the module holds a RelativeProjection: save the head that reads its output (relstitch "
                "projects the encoder's latents itself), or use relstitch.nn.RelativeHead",
            )
        if factory is None or space is None:
            raise UsageError(
                f"a {type(module).__name__} relstitch did not build is saved with factory= "
                "('package.module:function' that builds it), space= and task=",
            )
        architecture = factory_architecture(factory, factory_kwargs)
        _check_rebuilds(module, architecture, f"decoder built by {factory}")
        if space == "relative":
            projection = projection or ProjectionConfig()
            if input_dim is None and anchors is not None and not isinstance(anchors, str):
                input_dim = projection.output_dim(len(anchors))
        elif projection is not None or anchors is not None:
            raise UsageError(f"a {space} decoder reads no anchors: drop anchors= and projection=")
        weights = module
    if space == "relative" and anchor_hash is None:
        raise UsageError("a relative decoder records the anchors it was trained with: pass anchors=")
    encoder_hash = encoder.hash if isinstance(encoder, Encoder) else _recorded_hash(encoder)
    if input_dim is None and space == "absolute" and isinstance(encoder, Encoder):
        input_dim = encoder.latent_dim
    if input_dim is None and encoder is not None and not isinstance(encoder, Encoder) and space == "absolute":
        latent = read_header(encoder).metadata.get("latent_dim")
        input_dim = latent if isinstance(latent, int) else None
    if input_dim is None:
        raise UsageError("cannot tell the decoder's input size: pass input_dim=")
    out = _probe(weights, torch.zeros(1, input_dim), f"the decoder on a [1, {input_dim}] input")
    classes = task.get("classes")
    if task.get("type") == "classification" and isinstance(classes, list) and out.shape[-1] != len(classes):
        raise RelstitchError(
            f"the decoder gives {out.shape[-1]} outputs per sample for {len(classes)} classes",
            hint="pass the task's class names in the order of the head's outputs",
        )
    return Decoder(
        module=weights,
        architecture=architecture,
        space=space,
        input_dim=input_dim,
        task=dict(task),
        name=name,
        projection=projection if space == "relative" else None,
        anchor_hash=anchor_hash if space == "relative" else None,
        encoder_hash=encoder_hash,
        meta=_user_meta(meta),
    )


def _recorded_hash(encoder: str | os.PathLike[str] | None) -> str | None:
    """The hash an encoder file records (its header only: no tensor read)."""
    if encoder is None:
        return None
    header = read_header(encoder)
    check_metadata(header.metadata, "encoder", header.path)
    recorded = header.metadata.get("hash")
    return recorded if isinstance(recorded, str) else None


def save_decoder(
    decoder: Decoder | nn.Module,
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    task: Mapping[str, Any] | None = None,
    space: str | None = None,
    factory: str | None = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    input_dim: int | None = None,
    anchors: Anchors | str | None = None,
    projection: ProjectionConfig | None = None,
    encoder: Encoder | str | os.PathLike[str] | None = None,
    name: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a decoder checkpoint: a :class:`Decoder` record, a :class:`relstitch.nn.RelativeHead`, or
    any ``nn.Module`` with its ``factory`` (:func:`module_decoder` says what each needs). ``task``:
    ``{"type": "classification", "classes": [...]}`` or ``{"type": "reconstruction", "shape": [...]}``."""
    if not isinstance(decoder, Decoder):
        if task is None:
            raise UsageError(
                "a decoder relstitch did not build is saved with its task=: "
                "{'type': 'classification', 'classes': [...]}"
            )
        decoder = module_decoder(
            decoder,
            task=task,
            space=space,
            factory=factory,
            factory_kwargs=factory_kwargs,
            input_dim=input_dim,
            anchors=anchors,
            projection=projection,
            encoder=encoder,
            name=name or default_name(path),
            meta=meta,
        )
    elif any(
        v is not None
        for v in (task, space, factory, factory_kwargs, input_dim, anchors, projection, encoder, name, meta)
    ):
        raise UsageError(
            "a Decoder record carries its own contract: task=, factory= and the rest are for modules"
        )
    meta = dict(
        decoder.meta,
        name=decoder.name,
        architecture=decoder.architecture,
        space=decoder.space,
        input_dim=decoder.input_dim,
        task=decoder.task,
        projection=decoder.projection.to_dict() if decoder.projection else None,
        anchor_hash=decoder.anchor_hash,
        encoder_hash=decoder.encoder_hash,
        hash=_fresh_hash(decoder),
    )
    return save_artifact(
        path, "decoder", decoder.module.state_dict(), _checked(meta, "decoder", path), force=force
    )


def _require(meta: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = meta.get(key)
    if not isinstance(value, kind):
        raise RelstitchError(f"corrupt metadata: relstitch.{key} missing or of the wrong type", path=path)
    return value


def check_shapes(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], what: str) -> None:
    """Refuse weights whose names or shapes differ from a module's state dict, naming each kind of misfit
    (the caller adds the path). One check for relstitch's checkpoints and for foreign ``weights=`` files."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshapen = [
        f"{k} has shape {list(found[k].shape)}, {what} needs {list(expected[k].shape)}"
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or misshapen:
        parts = [
            f"{label} {len(keys)}: {', '.join(keys[:4])}{', …' if len(keys) > 4 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen))
            if keys
        ]
        raise RelstitchError(f"weights do not fit {what}: " + "; ".join(parts))


RESAVE = "re-save it with relstitch (`relstitch train` or `fit`, or save_encoder/save_decoder)"
"""The fix for a relstitch checkpoint whose tensors cannot be the ones relstitch wrote."""
RETRAIN = "use an intact copy, or retrain it (NaN/Inf weights: the training diverged)"
"""The fix for a checkpoint holding NaN/Inf: no re-save repairs those values."""


def _dtype_kind(dtype: torch.dtype) -> str:
    """floating, complex, bool or integer: casting across kinds changes what the numbers mean."""
    if dtype.is_floating_point:
        return "floating"
    if dtype.is_complex:
        return "complex"
    return "bool" if dtype == torch.bool else "integer"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_weights(
    expected: Mapping[str, torch.Tensor],
    found: Mapping[str, torch.Tensor],
    what: str,
    *,
    exact: bool,
    hint: str,
    finite_hint: str,
) -> None:
    """Refuse weights of another dtype than the module's, or holding NaN/±Inf, naming the first tensor.

    Dtype policy: ``exact=True`` for relstitch's own checkpoints, which relstitch wrote from the very
    module it rebuilds, so any difference (an F32 bias declared I32 over the same bytes) is an edit or
    corruption, never a choice. ``exact=False`` for foreign weights files (``weights=FILE``): publishers
    legitimately ship float16/bfloat16 copies of float32 models, so a float→float cast is allowed, but a
    change of kind (integer or bool where the module has floats, or the reverse) is refused: its numbers
    would be reinterpreted, not rounded. Names missing from ``found`` are left to the caller's own check.
    ``hint`` is the fix for a wrong dtype, ``finite_hint`` for NaN/Inf; the caller adds the path.
    """
    for name, own in expected.items():
        tensor = found.get(name)
        if tensor is None or tensor.dtype == own.dtype:
            continue
        if exact or _dtype_kind(tensor.dtype) != _dtype_kind(own.dtype):
            raise RelstitchError(
                f"weight {name!r} is stored as {_dtype_name(tensor.dtype)}, but {what} has "
                f"{_dtype_name(own.dtype)} there",
                hint=hint,
            )
    for name in sorted(found):
        tensor = found[name]
        # one reduction per floating tensor, a sum (a NaN or an infinity anywhere makes it non-finite, and
        # it allocates no mask: 12x cheaper than isfinite().all() on ViT-B/16); the exact test and the
        # counts only when it is not finite (a huge but finite tensor can overflow the sum)
        if (
            tensor.is_floating_point()
            and not bool(torch.isfinite(tensor.sum()))
            and not bool(torch.isfinite(tensor).all())
        ):
            nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
            raise RelstitchError(
                f"weight {name!r} holds {nan} NaN and {inf} infinite value(s) of {tensor.numel()}: "
                f"{what} cannot compute anything meaningful with it",
                hint=finite_hint,
            )


def assignable(probe: nn.Module, state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` can become the tensors of ``probe``, a module built on the meta device
    (``load_state_dict(assign=True)``) instead of building it again for real, drawing a random init and
    copying every weight over it (ViT-B/16: 1.4 s of init for nothing).

    Only when the weights cover every buffer (a non-persistent one would stay on meta), no parameter is
    shared (assigning would untie it) and no plain tensor attribute was built on meta.
    """
    return (
        {n for n, _ in probe.named_buffers()} <= state.keys()
        and len(list(probe.parameters())) == len(list(probe.named_parameters(remove_duplicate=False)))
        and not any(isinstance(v, torch.Tensor) for m in probe.modules() for v in vars(m).values())
    )


def _builder(kind: str, architecture: dict[str, Any], path: Path, trust_code: bool) -> Callable[..., Any]:
    """What builds a checkpoint's module: the registry, or the recorded factory when ``trust_code``."""
    factory = architecture.get("factory")
    if factory is None:
        return create_encoder if kind == "encoder" else create_decoder
    if not trust_code:
        # The file names code to import: never run without the user's say-so (as hf: remote code).
        raise RelstitchError(
            f"{kind} is built by the Python factory {printable(str(factory))!r}: loading it runs that code",
            path=path,
            hint=TRUST_HINT,
        )
    # The one place a file's factory is imported: say which, and from which file, before it runs (a glob
    # given --trust-code trusts every match; the user sees each one on stderr, a warning: line).
    warn(f"trusting factory {printable(str(factory))} (from {printable(shorten_path(str(path)))})")
    return lambda _name, **args: build_from_factory(factory, args)


def _build(
    kind: str,
    architecture: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    path: Path,
    recorded: Any,
    trust_code: bool = False,
) -> tuple[nn.Module, str]:
    """The module a checkpoint describes, with its weights, and its content hash.

    Every encoder and decoder load passes here, so the weights are checked once, at the root: names,
    shapes and dtypes against the architecture, every value finite, and the content hash against the
    one recorded at save time (``recorded``; files without one predate it and are taken as they are).
    """
    name = _require(architecture, "name", str, path)
    args = architecture.get("args") or {}
    if not isinstance(args, dict):
        raise RelstitchError(
            f"corrupt metadata: arguments of architecture {name!r} are not an object", path=path
        )
    create = _builder(kind, architecture, path, trust_code)
    try:
        # Built first on the meta device (no memory): a file declaring absurd sizes ("hidden": 10**9)
        # is refused by comparing shapes before a single real parameter is allocated.
        with torch.device("meta"):
            probe = create(name, **args)
        check_shapes(probe.state_dict(), tensors, f"architecture {name!r}")
        check_weights(
            probe.state_dict(), tensors, f"{kind} {name!r}", exact=True, hint=RESAVE, finite_hint=RETRAIN
        )
        covered = assignable(probe, tensors)
        # No cast here: check_weights made every dtype equal to the architecture's (a silent cast once
        # turned an F32 bias declared I32 into integers and a decoder scoring 0.05).
        module = probe if covered else create(name, **args)
    except RelstitchError as exc:
        raise RelstitchError(str(exc), path=path) from None
    except (
        TypeError,
        ValueError,
        RuntimeError,
        OverflowError,
    ) as exc:  # arguments the architecture cannot take
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise RelstitchError(
            f"architecture {name!r} cannot be built from the file's arguments ({reason})", path=path
        ) from None
    result = module.load_state_dict(tensors, strict=False, assign=covered)
    if result.missing_keys or result.unexpected_keys:
        raise RelstitchError(
            f"weights do not fit architecture {name!r}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}",
            path=path,
        )
    # Computed once here and cached on the Encoder/Decoder (its ``hash``): reports and matrices need it
    # anyway.
    digest = content_hash(module.state_dict(), extra=architecture)
    if recorded is not None and recorded != digest:
        raise RelstitchError(
            f"weights do not match the file's recorded hash ({short(str(recorded))} recorded, "
            f"{short(digest)} computed): the file was tampered with or is corrupt",
            path=path,
            hint="use an intact copy, or " + RESAVE,
        )
    return module.eval(), digest


def load_encoder(path: str | os.PathLike[str], *, trust_code: bool = False) -> Encoder:
    """Load an encoder checkpoint (refusing any other kind of file). ``trust_code``: allow importing the
    Python factory a checkpoint of a user's own module records (refused in one line without it)."""
    art = load_artifact(path, "encoder")
    arch = _require(art.meta, "architecture", dict, art.path)
    spec = check_input_spec(_require(art.meta, "input", dict, art.path), path=art.path)  # before any work
    try:
        module, digest = _build("encoder", arch, art.tensors, art.path, art.meta.get("hash"), trust_code)
    except RuntimeError as exc:  # shape mismatch inside load_state_dict
        raise RelstitchError(
            f"weights do not fit the architecture: {str(exc).splitlines()[-1].strip()}", path=art.path
        ) from None
    encoder = Encoder(
        module=module,
        architecture=arch,
        input_spec=spec,
        latent_dim=_require(art.meta, "latent_dim", int, art.path),
        name=name_of(art.meta, art.path),
        meta=art.meta,
        path=art.path,
    )
    encoder.__dict__["hash"] = digest  # the cached_property, filled: verified at load, never hashed twice
    return encoder


def load_decoder(path: str | os.PathLike[str], *, trust_code: bool = False) -> Decoder:
    """Load a decoder checkpoint (refusing any other kind of file); ``trust_code`` as for
    :func:`load_encoder`."""
    art = load_artifact(path, "decoder")
    arch = _require(art.meta, "architecture", dict, art.path)
    space = _require(art.meta, "space", str, art.path)
    if space not in SPACES:
        raise RelstitchError(f"corrupt metadata: unknown space {space!r}", path=art.path)
    try:
        module, digest = _build("decoder", arch, art.tensors, art.path, art.meta.get("hash"), trust_code)
    except RuntimeError as exc:
        raise RelstitchError(
            f"weights do not fit the architecture: {str(exc).splitlines()[-1].strip()}", path=art.path
        ) from None
    projection = None
    if space == "relative":
        try:
            projection = ProjectionConfig.from_dict(_require(art.meta, "projection", dict, art.path))
        except RelstitchError as exc:
            raise RelstitchError(str(exc), path=art.path) from None
        _require(art.meta, "anchor_hash", str, art.path)
    task = _require(art.meta, "task", dict, art.path)
    if task.get("type") not in ("classification", "reconstruction"):
        raise RelstitchError(f"corrupt metadata: unknown task {task.get('type')!r}", path=art.path)
    decoder = Decoder(
        module=module,
        architecture=arch,
        space=space,
        input_dim=_require(art.meta, "input_dim", int, art.path),
        task=task,
        name=name_of(art.meta, art.path),
        projection=projection,
        anchor_hash=art.meta.get("anchor_hash"),
        encoder_hash=art.meta.get("encoder_hash"),
        meta=art.meta,
        path=art.path,
    )
    decoder.__dict__["hash"] = digest  # as for encoders: verified at load, cached
    return decoder
