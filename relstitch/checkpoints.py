"""Encoder and decoder checkpoints: weights plus everything needed to use them correctly.

- An **encoder** file carries its architecture (registry name + arguments), its input spec
  (modality, shape, preprocessing) and latent size.
- A **decoder** file carries its architecture, the **space** it reads (``relative`` or
  ``absolute``), its input size, the task (with class names), and — for relative decoders — the
  **anchor hash** and **projection config** it was trained with, plus the hash of the encoder it was
  trained with (so a matrix knows its diagonal).

Identity is by content: an encoder's hash covers its weights and architecture, not its file name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .architectures import create_decoder, create_encoder
from .components import Decoder, Encoder
from .errors import RelstitchError, printable
from .io.artifacts import content_hash, load_artifact, save_artifact, short
from .projection import ProjectionConfig

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


def save_encoder(encoder: Encoder, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    meta = dict(
        encoder.meta,
        name=encoder.name,
        architecture=encoder.architecture,
        input=encoder.input_spec,
        latent_dim=encoder.latent_dim,
        hash=_fresh_hash(encoder),
    )
    return save_artifact(path, "encoder", encoder.module.state_dict(), meta, force=force)


def save_decoder(decoder: Decoder, path: str | os.PathLike[str], *, force: bool = False) -> Path:
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
    return save_artifact(path, "decoder", decoder.module.state_dict(), meta, force=force)


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
        # one reduction per floating tensor; the counts are computed only for the refusal
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
            raise RelstitchError(
                f"weight {name!r} holds {nan} NaN and {inf} infinite value(s) of {tensor.numel()}: "
                f"{what} cannot compute anything meaningful with it",
                hint=finite_hint,
            )


def _build(
    kind: str, architecture: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path, recorded: Any
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
    create = create_encoder if kind == "encoder" else create_decoder
    try:
        # Built first on the meta device (no memory): a file declaring absurd sizes ("hidden": 10**9)
        # is refused by comparing shapes before a single real parameter is allocated.
        with torch.device("meta"):
            probe = create(name, **args)
        check_shapes(probe.state_dict(), tensors, f"architecture {name!r}")
        check_weights(
            probe.state_dict(), tensors, f"{kind} {name!r}", exact=True, hint=RESAVE, finite_hint=RETRAIN
        )
        # The shapes fit: the loaded weights become the probe's tensors (load_state_dict(assign=True)),
        # rather than building again, drawing a random init and copying every weight over it. Only when
        # the file covers every buffer (a non-persistent one would stay on meta), no parameter is shared
        # (assigning would untie it) and no plain tensor attribute was built on meta.
        covered = (
            {n for n, _ in probe.named_buffers()} <= tensors.keys()
            and len(list(probe.parameters())) == len(list(probe.named_parameters(remove_duplicate=False)))
            and not any(isinstance(v, torch.Tensor) for m in probe.modules() for v in vars(m).values())
        )
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


def load_encoder(path: str | os.PathLike[str]) -> Encoder:
    """Load an encoder checkpoint (refusing any other kind of file)."""
    art = load_artifact(path, "encoder")
    arch = _require(art.meta, "architecture", dict, art.path)
    try:
        module, digest = _build("encoder", arch, art.tensors, art.path, art.meta.get("hash"))
    except RuntimeError as exc:  # shape mismatch inside load_state_dict
        raise RelstitchError(
            f"weights do not fit the architecture: {str(exc).splitlines()[-1].strip()}", path=art.path
        ) from None
    encoder = Encoder(
        module=module,
        architecture=arch,
        input_spec=_require(art.meta, "input", dict, art.path),
        latent_dim=_require(art.meta, "latent_dim", int, art.path),
        name=name_of(art.meta, art.path),
        meta=art.meta,
        path=art.path,
    )
    encoder.__dict__["hash"] = digest  # the cached_property, filled: verified at load, never hashed twice
    return encoder


def load_decoder(path: str | os.PathLike[str]) -> Decoder:
    """Load a decoder checkpoint (refusing any other kind of file)."""
    art = load_artifact(path, "decoder")
    arch = _require(art.meta, "architecture", dict, art.path)
    space = _require(art.meta, "space", str, art.path)
    if space not in SPACES:
        raise RelstitchError(f"corrupt metadata: unknown space {space!r}", path=art.path)
    try:
        module, digest = _build("decoder", arch, art.tensors, art.path, art.meta.get("hash"))
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
