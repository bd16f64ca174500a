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
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .artifacts import content_hash, load_artifact, save_artifact
from .data import prepare_images
from .errors import RelstitchError
from .models import create_decoder, create_encoder
from .projection import ProjectionConfig

SPACES = ("relative", "absolute")
ENCODER_SUFFIX = ".encoder.safetensors"
DECODER_SUFFIX = ".decoder.safetensors"


def default_name(path: str | os.PathLike) -> str:
    """``zoo/cnn-rel-s0.encoder.safetensors`` → ``cnn-rel-s0``."""
    name = Path(path).name
    for suffix in (ENCODER_SUFFIX, DECODER_SUFFIX, ".safetensors"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass
class Encoder:
    """A loaded (or freshly trained) encoder: module + the metadata needed to feed it."""

    module: nn.Module
    architecture: dict[str, Any]
    input_spec: dict[str, Any]
    latent_dim: int
    name: str
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @cached_property
    def hash(self) -> str:
        return content_hash(self.module.state_dict(), extra=self.architecture)

    def provenance(self) -> dict[str, Any]:
        """Architecture and training facts that travel into embeddings files (for reports and ``fit``)."""
        training = self.meta.get("training") if isinstance(self.meta.get("training"), dict) else {}
        return {"architecture": self.architecture.get("name"),
                "training": {"space": training.get("space"), "seed": training.get("seed")}}

    def prepare(self, raw_batch: Any) -> torch.Tensor:
        """Raw inputs (uint8 images here) → what the module takes, per the declared input spec."""
        return prepare_images(raw_batch, self.input_spec)

    def embed_batch(self, raw_batch: Any) -> torch.Tensor:
        """Absolute latents ``[B, latent_dim]`` of one batch of raw inputs (no grad handling here)."""
        return self.module(self.prepare(raw_batch))


@dataclass
class Decoder:
    """A loaded (or freshly trained) task head and the contract it was trained under."""

    module: nn.Module
    architecture: dict[str, Any]
    space: str
    input_dim: int
    task: dict[str, Any]
    name: str
    projection: ProjectionConfig | None = None
    anchor_hash: str | None = None
    encoder_hash: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @cached_property
    def hash(self) -> str:
        return content_hash(self.module.state_dict(), extra=self.architecture)


def save_encoder(encoder: Encoder, path: str | os.PathLike, *, force: bool = False) -> Path:
    meta = dict(
        encoder.meta,
        name=encoder.name,
        architecture=encoder.architecture,
        input=encoder.input_spec,
        latent_dim=encoder.latent_dim,
        hash=encoder.hash,
    )
    return save_artifact(path, "encoder", encoder.module.state_dict(), meta, force=force)


def save_decoder(decoder: Decoder, path: str | os.PathLike, *, force: bool = False) -> Path:
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
        hash=decoder.hash,
    )
    return save_artifact(path, "decoder", decoder.module.state_dict(), meta, force=force)


def _require(meta: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = meta.get(key)
    if not isinstance(value, kind):
        raise RelstitchError(f"corrupt metadata: relstitch.{key} missing or of the wrong type", path=path)
    return value


def _check_shapes(name: str, module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse weights whose names or shapes differ from what the architecture declares (the caller adds the path)."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected.keys() != found.keys():
        missing, unexpected = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
        raise RelstitchError(f"weights do not fit architecture {name!r}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    wrong = [k for k in expected if expected[k] != found[k]]
    if wrong:
        raise RelstitchError(
            f"weights do not fit architecture {name!r}: {wrong[0]} has shape {list(found[wrong[0]])}, "
            f"the architecture needs {list(expected[wrong[0]])}"
        )


def _build(kind: str, architecture: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path) -> nn.Module:
    name = _require(architecture, "name", str, path)
    args = architecture.get("args") or {}
    if not isinstance(args, dict):
        raise RelstitchError(f"corrupt metadata: arguments of architecture {name!r} are not an object", path=path)
    create = create_encoder if kind == "encoder" else create_decoder
    try:
        # Built first on the meta device (no memory): a file declaring absurd sizes ("hidden": 10**9)
        # is refused by comparing shapes before a single real parameter is allocated.
        with torch.device("meta"):
            probe = create(name, **args)
        _check_shapes(name, probe, tensors)
        # The shapes fit: the loaded weights become the probe's tensors (load_state_dict(assign=True)),
        # rather than building again, drawing a random init and copying every weight over it. Only when
        # the file covers every buffer (a non-persistent one would stay on meta), no parameter is shared
        # (assigning would untie it) and no plain tensor attribute was built on meta.
        covered = ({n for n, _ in probe.named_buffers()} <= tensors.keys()
                   and len(list(probe.parameters())) == len(list(probe.named_parameters(remove_duplicate=False)))
                   and not any(isinstance(v, torch.Tensor) for m in probe.modules() for v in vars(m).values()))
        if covered:  # each weight in the dtype the architecture declares, as a copying load would give it
            declared = probe.state_dict()
            tensors = {k: v.to(declared[k].dtype) for k, v in tensors.items()}
        module = probe if covered else create(name, **args)
    except RelstitchError as exc:
        raise RelstitchError(str(exc), path=path) from None
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:  # arguments the architecture cannot take
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise RelstitchError(f"architecture {name!r} cannot be built from the file's arguments ({reason})", path=path) from None
    result = module.load_state_dict(tensors, strict=False, assign=covered)
    if result.missing_keys or result.unexpected_keys:
        raise RelstitchError(
            f"weights do not fit architecture {name!r}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}",
            path=path,
        )
    return module.eval()


def load_encoder(path: str | os.PathLike) -> Encoder:
    """Load an encoder checkpoint (refusing any other kind of file)."""
    art = load_artifact(path, "encoder")
    arch = _require(art.meta, "architecture", dict, art.path)
    try:
        module = _build("encoder", arch, art.tensors, art.path)
    except RuntimeError as exc:  # shape mismatch inside load_state_dict
        raise RelstitchError(f"weights do not fit the architecture: {str(exc).splitlines()[-1].strip()}", path=art.path) from None
    return Encoder(
        module=module,
        architecture=arch,
        input_spec=_require(art.meta, "input", dict, art.path),
        latent_dim=_require(art.meta, "latent_dim", int, art.path),
        name=art.meta.get("name") or default_name(art.path),
        meta=art.meta,
        path=art.path,
    )


def load_decoder(path: str | os.PathLike) -> Decoder:
    """Load a decoder checkpoint (refusing any other kind of file)."""
    art = load_artifact(path, "decoder")
    arch = _require(art.meta, "architecture", dict, art.path)
    space = _require(art.meta, "space", str, art.path)
    if space not in SPACES:
        raise RelstitchError(f"corrupt metadata: unknown space {space!r}", path=art.path)
    try:
        module = _build("decoder", arch, art.tensors, art.path)
    except RuntimeError as exc:
        raise RelstitchError(f"weights do not fit the architecture: {str(exc).splitlines()[-1].strip()}", path=art.path) from None
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
    return Decoder(
        module=module,
        architecture=arch,
        space=space,
        input_dim=_require(art.meta, "input_dim", int, art.path),
        task=task,
        name=art.meta.get("name") or default_name(art.path),
        projection=projection,
        anchor_hash=art.meta.get("anchor_hash"),
        encoder_hash=art.meta.get("encoder_hash"),
        meta=art.meta,
        path=art.path,
    )
