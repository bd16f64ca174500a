"""The :class:`Dataset` type: labelled samples (uint8 images, float features or parallel text views),
their class names and ids, and what an image encoder's input spec does to them (:func:`prepare_images`).

Images stay uint8 until an encoder needs them (:func:`prepare_images` applies the encoder's declared
preprocessing), so a dataset costs one byte per pixel in memory. Where data comes from is
:mod:`relstitch.data.sources`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from ..errors import RelstitchError, UsageError
from ..hygiene import check_labels
from ..io.artifacts import content_hash
from .text import TextViews


@dataclass
class Dataset:
    """Labelled samples with int64 labels ``y [N]`` and source ids.

    ``x`` is uint8 images ``[N, C, H, W]`` (or a float tensor), or :class:`TextViews` for text
    (``modality == "text"``): parallel named views that index like a tensor. Images may carry parallel
    text ``views`` (captions, same length and order): an image encoder reads ``x``, a text encoder a
    view (see :func:`relstitch.encoding.inputs_for`).
    """

    name: str
    x: torch.Tensor | TextViews
    y: torch.Tensor
    classes: list[str]
    # Position of each sample in its source split. Left out (None), __post_init__ numbers the samples
    # 0..N-1, so the attribute is always a tensor: typed as one, and the default is the only None it ever
    # holds.
    ids: torch.Tensor = field(default=None)  # type: ignore[assignment]  # filled in by __post_init__
    modality: str = "image"
    views: TextViews | None = None  # captions parallel to image ``x``; None for text data (``x`` is the text)

    def __post_init__(self) -> None:
        if self.ids is None:
            self.ids = torch.arange(len(self.y), dtype=torch.int64)
        if len(self.x) == 0:
            raise RelstitchError("dataset is empty", path=self.name)
        if self.views is not None and (isinstance(self.x, TextViews) or len(self.views) != len(self.x)):
            raise RelstitchError(
                f"parallel text views need images of the same count ({len(self.views)} texts, "
                f"{len(self.x)} inputs)",
                path=self.name,
            )
        # Here, where every source's data passes: a label past the class names would otherwise be anchored,
        # encoded and fitted on, and only refused (if at all) when a decoder finally scores it.
        check_labels(self.y, self.classes, f"data {self.name}")

    @property
    def texts(self) -> TextViews | None:
        """The text views of the samples: ``x`` for text data, the captions of images, or None."""
        return self.x if isinstance(self.x, TextViews) else self.views

    def __len__(self) -> int:
        return len(self.y)

    @cached_property
    def hash(self) -> str:
        """Content hash of inputs (captions included), labels and ids: the dataset's identity in reports."""
        inputs = self.x.to_tensors("x.") if isinstance(self.x, TextViews) else {"x": self.x}
        if self.views is not None:  # only then: the hash of data without captions stays what it was
            inputs.update(self.views.to_tensors("views."))
        return content_hash({**inputs, "y": self.y, "ids": self.ids})

    def subset(self, indices: torch.Tensor, name: str | None = None) -> Dataset:
        return Dataset(
            name or self.name,
            self.x[indices],
            self.y[indices],
            self.classes,
            self.ids[indices],
            self.modality,
            None if self.views is None else self.views[indices],
        )

    def describe(self) -> dict[str, Any]:
        info = {"name": self.name, "size": len(self), "shape": list(self.x.shape[1:]), "hash": self.hash}
        if self.modality != "image":
            info["modality"] = self.modality
        if self.texts is not None:
            info["views"] = self.texts.names
        return info


CAPTION_VIEW = "caption"
"""The view name of captions made from class names (``#captions=TEMPLATE``)."""


def with_class_captions(dataset: Dataset, template: str) -> Dataset:
    """``dataset`` with a text view ``caption``: ``template`` with ``{}`` replaced by each sample's class
    name.

    Weak supervision, said wherever it is used: such a caption names the label, so a text encoder reading
    it sees the class. It tests whether two modalities' spaces line up, not whether captions describe images.
    """
    if isinstance(dataset.x, TextViews):
        raise UsageError(f"captions=: {dataset.name} is text already; captions are text views for images")
    if dataset.views is not None:  # replacing them would drop the file's own captions without a word
        raise UsageError(
            f"captions=: {dataset.name} has captions already (views: {', '.join(dataset.views.names)})",
            hint="drop captions=, or name the view to read with --view",
        )
    if "{}" not in template:
        raise UsageError(
            f"captions={template!r} has no {{}} for the class name (every caption would be the same)",
            hint="write e.g. captions=a photo of a {}",
        )
    if not dataset.classes:
        raise RelstitchError("captions= needs class names, and this data has none", path=dataset.name)
    names = [
        dataset.classes[int(c)] if int(c) < len(dataset.classes) else str(int(c)) for c in dataset.y.tolist()
    ]
    captions = TextViews({CAPTION_VIEW: [template.replace("{}", name) for name in names]})
    return Dataset(
        f"{dataset.name}#captions={template}",
        dataset.x,
        dataset.y,
        dataset.classes,
        dataset.ids,
        dataset.modality,
        captions,
    )


# ------------------------------------------------------------------------------- preprocessing
def default_image_spec(
    shape: tuple[int, ...] | list[int], mean: float = 0.2860, std: float = 0.3530
) -> dict[str, Any]:
    """Input spec of relstitch's own image encoders (Fashion-MNIST statistics by default)."""
    return {"modality": "image", "shape": list(shape), "scale": 255.0, "mean": mean, "std": std}


def prepare_images(x: torch.Tensor | TextViews, spec: dict[str, Any]) -> torch.Tensor:
    """Images → the float tensor the encoder expects, following its declared input spec.

    Spec keys: ``shape`` (required per-sample shape, if given), ``scale`` (integer inputs are divided
    by it), ``channels`` (1 → 3 repeats grey, 3 → 1 takes luminance), ``resize`` ([H, W], bilinear),
    ``mean``/``std`` (a number or one per channel). So a 28x28 grey dataset can feed a 224x224 RGB net.
    """
    if not isinstance(x, torch.Tensor):
        raise RelstitchError(
            "an image encoder was given text data", hint="use a text encoder (hf:DIR) for text data"
        )
    if "shape" in spec and tuple(x.shape[1:]) != tuple(spec["shape"]):
        raise RelstitchError(
            f"data has shape {tuple(x.shape[1:])} per sample but the encoder expects {tuple(spec['shape'])}",
            hint="use data of the encoder's input shape",
        )
    out = x.float() if x.is_floating_point() else x.float() / spec.get("scale", 255.0)
    channels = spec.get("channels")
    if channels and out.ndim == 4 and out.shape[1] != channels:
        if out.shape[1] == 1:
            out = out.expand(-1, channels, -1, -1)
        elif out.shape[1] == 3 and channels == 1:
            out = (out * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        else:
            raise RelstitchError(f"cannot turn {out.shape[1]}-channel images into {channels} channels")
    if spec.get("resize") and out.ndim == 4 and list(out.shape[2:]) != list(spec["resize"]):
        out = torch.nn.functional.interpolate(
            out, size=tuple(spec["resize"]), mode="bilinear", align_corners=False, antialias=True
        )
    mean, std = spec.get("mean", 0.0), spec.get("std", 1.0)
    if isinstance(mean, list | tuple) or isinstance(std, list | tuple):
        for key, values in (("mean", mean), ("std", std)):
            if isinstance(values, list | tuple) and len(values) not in (1, out.shape[1]):
                raise RelstitchError(
                    f"{key} gives {len(values)} values but the images have {out.shape[1]} channel(s)",
                    hint=f"give one {key} value, or one per channel (or channels= to convert the images)",
                )
        shape = (1, -1) + (1,) * (out.ndim - 2)  # one value per channel
        mean, std = torch.tensor(mean).view(shape), torch.tensor(std).view(shape)
    normalised: torch.Tensor = (out - mean) / std  # mean and std come from the spec (Any): typed here
    return normalised
