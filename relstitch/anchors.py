"""Anchors: the fixed inputs every encoder embeds, and the file that carries them.

An anchor file holds the anchor inputs themselves (not latents: each encoder embeds them itself),
their ids in the source dataset, their labels, and how they were chosen. Its identity is a content
hash over ids + inputs, so two files with the same anchors are interchangeable and a decoder can
refuse anchors other than the ones it was trained with.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from .artifacts import content_hash, load_artifact, save_artifact, short
from .data import Dataset
from .errors import RelstitchError


@dataclass
class Anchors:
    """k anchor inputs (uint8, same layout as the dataset), their source ids and labels."""

    inputs: torch.Tensor
    ids: torch.Tensor
    labels: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def hash(self) -> str:
        return content_hash({"ids": self.ids, "inputs": self.inputs})


# ------------------------------------------------------------------------------------ strategies
def _uniform(dataset: Dataset, count: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform random sample without replacement (the paper's default)."""
    return torch.randperm(len(dataset), generator=generator)[:count]


def _stratified(dataset: Dataset, count: int, generator: torch.Generator) -> torch.Tensor:
    """One anchor per class in turn, each class's samples in a seeded random order."""
    order = torch.randperm(len(dataset), generator=generator)
    per_class = [order[dataset.y[order] == c] for c in torch.unique(dataset.y).tolist()]
    picked: list[int] = []
    depth = 0
    while len(picked) < count:
        for members in per_class:
            if depth < len(members) and len(picked) < count:
                picked.append(int(members[depth]))
        depth += 1
    return torch.tensor(picked, dtype=torch.int64)


STRATEGIES: dict[str, Callable[[Dataset, int, torch.Generator], torch.Tensor]] = {
    "uniform": _uniform,
    "stratified": _stratified,
}
"""Anchor strategy name -> function(dataset, count, generator) returning dataset positions."""


def select_anchors(dataset: Dataset, count: int, strategy: str = "uniform", seed: int = 0) -> Anchors:
    """Pick ``count`` anchors from ``dataset``; deterministic for a given strategy and seed."""
    if strategy not in STRATEGIES:
        raise RelstitchError(f"unknown anchor strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if not 1 <= count <= len(dataset):
        raise RelstitchError(f"cannot pick {count} anchors from {len(dataset)} samples of {dataset.name}")
    positions = STRATEGIES[strategy](dataset, count, torch.Generator().manual_seed(seed))
    meta = {
        "dataset": dataset.describe(),
        "strategy": strategy,
        "seed": seed,
        "count": count,
        "classes": dataset.classes,
        "modality": dataset.modality,
    }
    return Anchors(dataset.x[positions].contiguous(), dataset.ids[positions].clone(), dataset.y[positions].clone(), meta)


def save_anchors(anchors: Anchors, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write an anchor file (atomically); its content hash goes into the metadata."""
    meta = dict(anchors.meta, hash=anchors.hash)
    tensors = {"inputs": anchors.inputs, "ids": anchors.ids, "labels": anchors.labels}
    return save_artifact(path, "anchors", tensors, meta, force=force)


def load_anchors(path: str | os.PathLike) -> Anchors:
    """Read an anchor file and check that its content still matches its recorded hash."""
    art = load_artifact(path, "anchors")
    missing = {"inputs", "ids", "labels"} - set(art.tensors)
    if missing:
        raise RelstitchError(f"corrupt anchor file: missing tensor(s) {sorted(missing)}", path=art.path)
    anchors = Anchors(art.tensors["inputs"], art.tensors["ids"], art.tensors["labels"], art.meta, art.path)
    if len(anchors.ids) != len(anchors.inputs) or len(anchors.labels) != len(anchors.ids):
        raise RelstitchError("corrupt anchor file: inputs, ids and labels differ in length", path=art.path)
    recorded = art.meta.get("hash")
    if recorded != anchors.hash:
        raise RelstitchError(
            f"anchor content does not match its recorded hash ({short(recorded)} recorded, "
            f"{short(anchors.hash)} computed): the file was modified",
            path=art.path,
            hint="recreate it with `relstitch anchors`",
        )
    return anchors
