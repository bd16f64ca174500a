"""Encoding: run an encoder over data and anchors, keep the absolute latents, project to relative.

An :class:`EncodedSpace` is one encoder's view of one dataset and one anchor set. It holds the
absolute latents of the samples *and* of the anchors, so relative vectors can be produced for any
projection config later (each decoder brings its own) without running the encoder again. An
embeddings file is an EncodedSpace on disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .anchors import Anchors
from .artifacts import load_artifact, save_artifact
from .checkpoints import Encoder
from .data import Dataset
from .errors import RelstitchError
from .progress import ProgressFn, silent
from .projection import ProjectionConfig, relative_projection

DEFAULT_BATCH = 256


@torch.inference_mode()
def embed(encoder: Encoder, x: torch.Tensor, *, batch_size: int = DEFAULT_BATCH, progress: ProgressFn = silent,
          description: str = "encoding") -> torch.Tensor:
    """Absolute latents ``[N, latent_dim]`` of uint8 inputs ``x``, computed batch by batch."""
    encoder.module.eval()
    out = torch.empty((len(x), encoder.latent_dim), dtype=torch.float32)
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        z = encoder.embed_batch(batch)
        if z.ndim != 2 or z.shape[1] != encoder.latent_dim:
            raise RelstitchError(
                f"encoder {encoder.name!r} returned shape {tuple(z.shape)}, expected [batch, {encoder.latent_dim}]",
                path=encoder.path,
            )
        out[start : start + len(batch)] = z.float()
        progress(description, len(batch), len(x))
    return out


@dataclass
class EncodedSpace:
    """One encoder's absolute latents for a dataset and an anchor set, plus provenance."""

    encoder_name: str
    encoder_hash: str
    absolute: torch.Tensor  # [N, D]
    anchor_absolute: torch.Tensor  # [k, D]
    labels: torch.Tensor  # [N]
    ids: torch.Tensor  # [N]
    anchor_hash: str
    dataset: dict[str, Any]  # name, size, hash, classes
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    _relative_cache: dict[ProjectionConfig, torch.Tensor] = field(default_factory=dict, repr=False)

    def relative(self, config: ProjectionConfig | None = None) -> torch.Tensor:
        """Relative vectors ``[N, k]`` under ``config``; computed once per config."""
        config = config or ProjectionConfig()
        if config not in self._relative_cache:
            self._relative_cache[config] = relative_projection(self.absolute, self.anchor_absolute, config)
        return self._relative_cache[config]


def encode(encoder: Encoder, anchors: Anchors | None, dataset: Dataset, *, batch_size: int = DEFAULT_BATCH,
           progress: ProgressFn = silent) -> EncodedSpace:
    """Embed the anchors and the dataset with ``encoder`` (each exactly once).

    ``anchors=None`` gives a space with absolute latents only (for absolute decoders).
    """
    if anchors is None:
        absolute = embed(encoder, dataset.x, batch_size=batch_size, progress=progress, description=f"{encoder.name}: data")
        return EncodedSpace(encoder.name, encoder.hash, absolute, absolute.new_empty((0, absolute.shape[1])), dataset.y,
                            dataset.ids, anchor_hash="", dataset=dict(dataset.describe(), classes=dataset.classes))
    if anchors.inputs.shape[1:] != dataset.x.shape[1:]:
        raise RelstitchError(
            f"anchors have shape {tuple(anchors.inputs.shape[1:])} per sample but data {dataset.name} has "
            f"{tuple(dataset.x.shape[1:])}",
            path=anchors.path,
            hint="use anchors picked from the same kind of data",
        )
    anchor_absolute = embed(encoder, anchors.inputs, batch_size=batch_size, progress=progress,
                            description=f"{encoder.name}: anchors")
    absolute = embed(encoder, dataset.x, batch_size=batch_size, progress=progress, description=f"{encoder.name}: data")
    return EncodedSpace(
        encoder_name=encoder.name,
        encoder_hash=encoder.hash,
        absolute=absolute,
        anchor_absolute=anchor_absolute,
        labels=dataset.y,
        ids=dataset.ids,
        anchor_hash=anchors.hash,
        dataset=dict(dataset.describe(), classes=dataset.classes),
        meta={"encoder_training": encoder.meta.get("training")},
    )


def save_embeddings(space: EncodedSpace, path: str | os.PathLike, *, projection: ProjectionConfig | None = None,
                    force: bool = False) -> Path:
    """Write an embeddings file: absolute and relative vectors, labels, ids, anchor latents, hashes."""
    projection = projection or ProjectionConfig()
    tensors = {
        "absolute": space.absolute,
        "relative": space.relative(projection),
        "anchor_absolute": space.anchor_absolute,
        "labels": space.labels,
        "ids": space.ids,
    }
    meta = {
        "encoder": {"name": space.encoder_name, "hash": space.encoder_hash},
        "anchor_hash": space.anchor_hash,
        "dataset": space.dataset,
        "projection": projection.to_dict(),
    }
    return save_artifact(path, "embeddings", tensors, meta, force=force)


def load_embeddings(path: str | os.PathLike) -> EncodedSpace:
    """Read an embeddings file back into an :class:`EncodedSpace`."""
    art = load_artifact(path, "embeddings")
    needed = {"absolute", "anchor_absolute", "labels", "ids"}
    if needed - set(art.tensors):
        raise RelstitchError(f"corrupt embeddings file: missing {sorted(needed - set(art.tensors))}", path=art.path)
    encoder = art.meta.get("encoder") or {}
    dataset = art.meta.get("dataset")
    if not isinstance(encoder, dict) or not isinstance(dataset, dict) or not isinstance(art.meta.get("anchor_hash"), str):
        raise RelstitchError("corrupt embeddings file: encoder, dataset or anchor_hash metadata missing", path=art.path)
    absolute, anchor_absolute = art.tensors["absolute"].float(), art.tensors["anchor_absolute"].float()
    if absolute.ndim != 2 or anchor_absolute.ndim != 2 or absolute.shape[1] != anchor_absolute.shape[1]:
        raise RelstitchError("corrupt embeddings file: absolute and anchor latents disagree in shape", path=art.path)
    if len(art.tensors["labels"]) != len(absolute):
        raise RelstitchError("corrupt embeddings file: labels and vectors differ in length", path=art.path)
    space = EncodedSpace(
        encoder_name=str(encoder.get("name", "?")),
        encoder_hash=str(encoder.get("hash", "")),
        absolute=absolute,
        anchor_absolute=anchor_absolute,
        labels=art.tensors["labels"].long(),
        ids=art.tensors["ids"].long(),
        anchor_hash=art.meta["anchor_hash"],
        dataset=dataset,
        meta=art.meta,
        path=art.path,
    )
    if "relative" in art.tensors:  # keep the stored projection: it is exactly what was written
        space._relative_cache[ProjectionConfig.from_dict(art.meta.get("projection"))] = art.tensors["relative"].float()
    return space
