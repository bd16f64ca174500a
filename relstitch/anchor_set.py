"""The anchor set: the fixed inputs every encoder embeds, and the file that carries them.

An anchor file holds the anchor inputs themselves (not latents: each encoder embeds them itself),
their ids in the source dataset, their labels, and how they were chosen. Its identity is a content
hash over ids + inputs, so two files with the same anchors are interchangeable and a decoder can
refuse anchors other than the ones it was trained with. Choosing anchors is :mod:`relstitch.anchors`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from .data.text import TextViews
from .errors import RelstitchError
from .hygiene import check_finite, warn_duplicate_anchors
from .io.artifacts import content_hash, load_artifact, save_artifact, short


@dataclass
class Anchors:
    """k anchor inputs (same layout as the dataset: uint8 images or parallel text views), ids, labels.

    Anchors picked from images with captions keep both: the images in ``inputs``, the captions in
    ``views`` (so an image encoder and a text encoder embed the same anchors, each in its modality).
    """

    inputs: torch.Tensor | TextViews
    ids: torch.Tensor
    labels: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    views: TextViews | None = None

    @property
    def texts(self) -> TextViews | None:
        """The anchors' text views: ``inputs`` for text anchors, the captions of image anchors, or None."""
        return self.inputs if isinstance(self.inputs, TextViews) else self.views

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def hash(self) -> str:
        return content_hash({"ids": self.ids, **self.input_tensors()})

    def input_tensors(self) -> dict[str, torch.Tensor]:
        """The inputs as stored: ``inputs`` and/or per text view ``inputs.{view}.bytes`` / ``.offsets``."""
        if isinstance(self.inputs, TextViews):
            return self.inputs.to_tensors("inputs.")
        # captions are stored under the same names as text anchors' views: one reader for both
        return {"inputs": self.inputs, **(self.views.to_tensors("inputs.") if self.views is not None else {})}


def save_anchors(anchors: Anchors, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write an anchor file (atomically); its content hash goes into the metadata."""
    meta = dict(anchors.meta, hash=anchors.hash)
    if (
        anchors.texts is not None
    ):  # text anchors, or the captions of image anchors (then ``inputs`` holds the images)
        meta.update(text_views=anchors.texts.names, default_view=anchors.texts.default)
    tensors = {**anchors.input_tensors(), "ids": anchors.ids, "labels": anchors.labels}
    return save_artifact(path, "anchors", tensors, meta, force=force)


def load_anchors(path: str | os.PathLike[str]) -> Anchors:
    """Read an anchor file and check that its content still matches its recorded hash."""
    art = load_artifact(path, "anchors")
    views = art.meta.get("text_views")
    # text anchors store only views; image anchors an ``inputs`` tensor, with their captions' views if any
    # (no views: images whatever the modality says, so a file missing both is refused below, not read as
    # no inputs)
    images = "inputs" in art.tensors or not views or art.meta.get("modality", "text") != "text"
    missing = {"ids", "labels", *(("inputs",) if images else ())} - set(art.tensors)
    if missing:
        raise RelstitchError(f"corrupt anchor file: missing tensor(s) {sorted(missing)}", path=art.path)
    texts = None
    if views:
        if not isinstance(views, list) or not all(isinstance(v, str) for v in views):
            raise RelstitchError(
                "corrupt anchor file: relstitch.text_views is not a list of names", path=art.path
            )
        try:
            texts = TextViews.from_tensors(art.tensors, "inputs.", views, art.meta.get("default_view"))
        except RelstitchError as exc:
            raise RelstitchError(f"corrupt anchor file: {exc}", path=art.path) from None
    if images:
        anchors = Anchors(
            art.tensors["inputs"], art.tensors["ids"], art.tensors["labels"], art.meta, art.path, views=texts
        )
    else:
        assert texts is not None  # not images: views were named, and read above
        anchors = Anchors(texts, art.tensors["ids"], art.tensors["labels"], art.meta, art.path)
    if (
        len(anchors.ids) != len(anchors.inputs)
        or len(anchors.labels) != len(anchors.ids)
        or (anchors.views is not None and len(anchors.views) != len(anchors.ids))
    ):
        raise RelstitchError("corrupt anchor file: inputs, ids and labels differ in length", path=art.path)
    recorded = art.meta.get("hash")
    if recorded != anchors.hash:
        raise RelstitchError(
            f"anchor content does not match its recorded hash ({short(recorded)} recorded, "
            f"{short(anchors.hash)} computed): the file was modified",
            path=art.path,
            hint="recreate it with `relstitch anchors`",
        )
    if isinstance(anchors.inputs, torch.Tensor):
        check_finite(anchors.inputs, "anchor inputs", path=art.path)
    warn_duplicate_anchors(anchors.inputs, anchors.ids, str(art.path))
    return anchors
