"""The two parts relstitch stitches: an :class:`Encoder` (inputs → latents) and a :class:`Decoder`
(a task head).

Both are plain records around an ``nn.Module``: the metadata needed to feed the encoder correctly and the
contract the decoder was trained under (its space, anchors, projection, task). Identity is by content:
:attr:`Encoder.hash` covers the weights and the architecture, never a file name. Saving and loading them
is :mod:`relstitch.checkpoints`; other model kinds (``hf:``, ``torchvision:``...) are
:mod:`relstitch.adapters`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import prepare_images
from .io.artifacts import content_hash
from .projection import ProjectionConfig


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
        training = found if isinstance(found := self.meta.get("training"), dict) else {}
        return {
            "architecture": self.architecture.get("name"),
            "training": {"space": training.get("space"), "seed": training.get("seed")},
        }

    def prepare(self, raw_batch: Any) -> torch.Tensor | Mapping[str, torch.Tensor]:
        """Raw inputs (uint8 images here) → what the module takes, per the declared input spec (a subclass may
        give keyword inputs: a text encoder's tokens)."""
        return prepare_images(raw_batch, self.input_spec)

    def embed_batch(self, raw_batch: Any) -> torch.Tensor:
        """Absolute latents ``[B, latent_dim]`` of one batch of raw inputs (no grad handling here)."""
        z: torch.Tensor = self.module(self.prepare(raw_batch))
        return z


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


__all__ = ["Decoder", "Encoder"]
