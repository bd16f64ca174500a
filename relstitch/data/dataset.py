"""The :class:`Dataset` type: labelled samples (uint8 images, float features or parallel text views),
their class names and ids, and what an image encoder's input spec does to them (:func:`prepare_images`).

Images stay uint8 until an encoder needs them (:func:`prepare_images` applies the encoder's declared
preprocessing), so a dataset costs one byte per pixel in memory. Where data comes from is
:mod:`relstitch.data.sources`.
"""

from __future__ import annotations

import math
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


MAX_IMAGE_SIDE = 4096
"""The largest side ``resize``, ``crop`` or ``resize_shorter`` may ask for: far above any model's input
(ImageNet models read 224 to 518 pixels a side), and the only bound between a typo (``resize=224000``) and
a ``[B, C, 224000, 224000]`` tensor allocated before anything else could fail."""
IMAGE_CHANNELS = (1, 3)
"""The channel counts an input spec may ask for: image data is grey or RGB (the data sources refuse
anything else), and :func:`prepare_images` converts between exactly these."""
MAX_SAMPLE_VALUES = max(IMAGE_CHANNELS) * MAX_IMAGE_SIDE**2
"""The most values a spec's per-sample ``shape`` may hold (the largest image the bounds above allow): a
header declaring ``[3, 10**6, 10**6]`` would otherwise allocate that for a probe or an ONNX example."""
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
"""How an image encoder's resize may interpolate (torchvision's and timm's names)."""
_OPTIONS = ("resize", "crop", "channels", "mean", "std")
"""The keys a user sets through the image sources' options (``-O resize=...``)."""
_FILE_FIX = "the header was edited or damaged: use an intact copy, or re-save the file with relstitch"


def _shown(value: object) -> str:
    """A value read from a file, as a message shows it: its ``repr`` (control characters escaped), cut short
    (a header may hold a 400-digit number or a megabyte of text)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def check_input_spec(spec: object, *, path: object | None = None, option: bool = False) -> dict[str, Any]:
    """``spec`` as a dict once it is an input spec every consumer can rely on, or one line naming the bad
    key.

    The one check of an input spec, wherever one enters: a checkpoint's or a stitched file's header
    (``path``: a :class:`RelstitchError` naming ``relstitch.input.KEY`` and the file), the image sources'
    ``resize=``/``crop=``/``channels=``/``mean=``/``std=`` options (``option``: a
    :class:`UsageError` naming the option to fix; exit 1 for the source's own ``interpolation``) and a spec
    given from Python (a :class:`UsageError`, exit 2). Rules: ``mean`` finite and ``std``
    finite and > 0, each one number or one per channel; ``channels`` one of :data:`IMAGE_CHANNELS`;
    ``resize``/``crop`` ``[H, W]`` and ``resize_shorter`` integers from 1 to :data:`MAX_IMAGE_SIDE`;
    ``shape`` positive integers (at most :data:`MAX_SAMPLE_VALUES` values); ``scale`` finite and > 0;
    ``interpolation`` a known name, ``modality`` a name. A null value is an absent key; keys it does not
    know (a text encoder's ``view``, provenance) are left as they are.
    """

    def refuse(key: str, problem: str) -> RelstitchError:
        if path is not None:
            return RelstitchError(
                f"corrupt metadata: relstitch.input{'.' + key if key else ''} {problem}",
                path=path,
                hint=_FILE_FIX,
            )
        name, message = key.partition("[")[0], f"input spec{': ' + key if key else ''} {problem}"
        if option and name in _OPTIONS:
            return UsageError(
                message, hint=f"give another {name}= (-O {name}=... or #{name}=... on the reference)"
            )
        # a model source's own preprocessing (its interpolation) is not the user's usage: exit 1
        return (RelstitchError if option else UsageError)(message)

    if not isinstance(spec, dict):
        raise refuse("", f"is {type(spec).__name__}, expected an object of preprocessing keys")
    given = {key: value for key, value in spec.items() if value is not None}

    def integer(key: str, value: object, high: int) -> int:
        # bool is an int to Python, and 224.0 is not a size: both refused
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise refuse(key, f"is {_shown(value)}, expected an integer from 1 to {high}")
        return value

    def sizes(key: str, count: int | None, high: int) -> list[int]:
        value = given[key]
        if not isinstance(value, list | tuple) or not value or (count is not None and len(value) != count):
            raise refuse(
                key, f"is {_shown(value)}, expected " + ("[height, width]" if count else "a list of sizes")
            )
        return [integer(f"{key}[{i}]", n, high) for i, n in enumerate(value)]

    def numbers(key: str, positive: bool) -> int:
        """How many values ``key`` holds (one number, or a list of them), each finite (and > 0)."""
        value = given[key]
        values = list(value) if isinstance(value, list | tuple) else [value]
        wanted = "a finite number" + (" > 0" if positive else "")
        if not values:
            raise refuse(key, f"is empty, expected {wanted} or one per channel")
        for i, v in enumerate(values):
            try:
                ok = not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
            except (TypeError, OverflowError):  # a string, a list, an object; an int too large for a float
                ok = False
            if not ok:
                where = f"{key}[{i}]" if isinstance(value, list | tuple) else key
                raise refuse(where, f"is {_shown(v)}, expected {wanted}")
        return len(values)

    if "modality" in given and not isinstance(given["modality"], str):  # "text", else images are read
        raise refuse("modality", f"is {_shown(given['modality'])}, expected a name (image, text)")
    if "interpolation" in given and given["interpolation"] not in INTERPOLATIONS:
        raise refuse(
            "interpolation",
            f"is {_shown(given['interpolation'])}, expected one of {', '.join(INTERPOLATIONS)}",
        )
    shape = sizes("shape", None, MAX_SAMPLE_VALUES) if "shape" in given else []
    if math.prod(shape) > MAX_SAMPLE_VALUES:
        raise refuse("shape", f"is {shape}: more than {MAX_SAMPLE_VALUES:,} values per sample")
    for key in ("resize", "crop"):
        if key in given:
            sizes(key, 2, MAX_IMAGE_SIDE)
    if "resize_shorter" in given:
        integer("resize_shorter", given["resize_shorter"], MAX_IMAGE_SIDE)
    if "scale" in given and (
        isinstance(given["scale"], list | tuple) or numbers("scale", positive=True) != 1
    ):
        raise refuse("scale", f"is {_shown(given['scale'])}, expected one finite number > 0")
    channels = given.get("channels")
    if channels is not None and (
        isinstance(channels, bool) or not isinstance(channels, int) or channels not in IMAGE_CHANNELS
    ):
        raise refuse(
            "channels", f"is {_shown(channels)}, expected one of {', '.join(map(str, IMAGE_CHANNELS))}"
        )
    # the channels the normalisation meets: those channels= converts to, else the declared [C, H, W]'s
    channels = channels or (shape[0] if len(shape) == 3 else None)
    lengths = {key: numbers(key, positive=key == "std") for key in ("mean", "std") if key in given}
    for key, length in lengths.items():
        if length > 1 and channels is not None and length != channels:
            raise refuse(
                key, f"has {length} values for {channels}-channel images (expected one, or one per channel)"
            )
    if len(set(lengths.values()) - {1}) > 1:
        raise refuse(
            "std",
            f"has {lengths['std']} values and mean {lengths['mean']} (expected one per channel in both)",
        )
    return dict(spec)


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
