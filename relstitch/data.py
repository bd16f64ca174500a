"""Datasets: the built-in Fashion-MNIST subset and folders of IDX files.

A dataset reference names where the data is:

- ``builtin`` or ``builtin:train`` / ``builtin:test`` — the stratified Fashion-MNIST subset shipped
  inside the package (6,000 train / 1,000 test images, 28x28 uint8, MIT licence);
- ``idx:DIR[:train|test]`` or simply ``DIR`` — a folder of (optionally gzipped) IDX files such as
  Debian's ``/usr/share/datasets/fashion-mnist`` or the MNIST originals.

Any labelled image reference takes ``#captions=TEMPLATE`` (``builtin:test#captions=a photo of a {}``):
a parallel text view ``caption`` made from each sample's class name, so text encoders can read the
same samples as image encoders. Such captions are *weak supervision*: a caption is its label in words.

Images stay uint8 until an encoder needs them (:func:`prepare_images` applies the encoder's declared
preprocessing), so a dataset costs one byte per pixel in memory.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from .artifacts import content_hash
from .errors import RelstitchError, UsageError, os_error
from .hygiene import check_labels
from .sources.text import TextViews
from .userfiles import check_regular, open_regular

BUILTIN_FILE = Path(__file__).parent / "assets" / "fashion_mnist_small.safetensors"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
SPLITS = ("train", "test")
MAX_IDX_BYTES = 16 * 1024**3  # 16 GiB: far above any IDX data set, far below what a bomb could announce
IDX_CHUNK = 16 * 1024**2  # an IDX body is read this much at a time: memory follows the data, not the header


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
    ids: torch.Tensor = field(default=None)  # position of each sample in its source split
    modality: str = "image"
    views: TextViews | None = None  # captions parallel to image ``x``; None for text data (``x`` is the text)

    def __post_init__(self) -> None:
        if self.ids is None:
            self.ids = torch.arange(len(self.y), dtype=torch.int64)
        if len(self.x) == 0:
            raise RelstitchError("dataset is empty", path=self.name)
        if self.views is not None and (isinstance(self.x, TextViews) or len(self.views) != len(self.x)):
            raise RelstitchError(f"parallel text views need images of the same count ({len(self.views)} texts, "
                                 f"{len(self.x)} inputs)", path=self.name)
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
        return Dataset(name or self.name, self.x[indices], self.y[indices], self.classes, self.ids[indices], self.modality,
                       None if self.views is None else self.views[indices])

    def describe(self) -> dict[str, Any]:
        info = {"name": self.name, "size": len(self), "shape": list(self.x.shape[1:]), "hash": self.hash}
        if self.modality != "image":
            info["modality"] = self.modality
        if self.texts is not None:
            info["views"] = self.texts.names
        return info


# ----------------------------------------------------------------------------------------- sources
def _load_builtin(locator: str) -> Dataset:
    split = locator or "train"
    if split not in SPLITS:
        raise RelstitchError(f"unknown split {split!r} of the built-in data; use builtin:train or builtin:test")
    from safetensors.torch import load_file

    if not BUILTIN_FILE.exists():
        raise RelstitchError("built-in data missing", path=BUILTIN_FILE, hint="run scripts/make_builtin_data.py")
    tensors = load_file(str(check_regular(BUILTIN_FILE)))
    return Dataset(
        f"builtin:{split}", tensors[f"{split}_x"], tensors[f"{split}_y"].long(), FASHION_MNIST_CLASSES,
        tensors[f"{split}_ids"].long(),
    )


def _read_idx(path: Path) -> torch.Tensor:
    """Read one IDX file (gzipped or not) into a uint8 tensor of its declared shape.

    The header is read first and the body in chunks only up to its declared size (plus one byte to detect
    extra data), so a small gzip file that inflates to gigabytes cannot make relstitch hold more than the
    tensor its header announces, and a header announcing gigabytes over a short body costs only the body.
    """
    try:
        with open_regular(path) as raw, (gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else nullcontext(raw)) as handle:
            head = handle.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise RelstitchError("not an unsigned-byte IDX file (bad magic number)", path=path)
            ndim = head[3]
            raw_dims = handle.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise RelstitchError(f"IDX file truncated: its header declares {ndim} dimensions", path=path)
            dims = struct.unpack(f">{ndim}I", raw_dims)
            count = 1
            for d in dims:
                count *= d
            if count > MAX_IDX_BYTES:
                raise RelstitchError(f"IDX header declares {count:,} bytes, more than relstitch reads ({MAX_IDX_BYTES:,})",
                                     path=path)
            # In chunks, never read(count): that allocates the whole declared size up front, so a header
            # announcing gigabytes (fuzzing found one) would take them before the short body is noticed.
            body = bytearray()
            while len(body) <= count:
                chunk = handle.read(min(IDX_CHUNK, count + 1 - len(body)))
                if not chunk:
                    break
                body += chunk
    except OSError as exc:
        raise os_error(exc, path, "cannot read IDX file") from None
    except (EOFError, zlib.error) as exc:  # zlib.error: a corrupt gzip stream is neither of the others
        raise RelstitchError(f"cannot read IDX file: {exc}", path=path) from None
    if len(body) < count:
        raise RelstitchError(f"IDX file truncated: header says {count} bytes, found {len(body)}", path=path)
    if len(body) > count:
        raise RelstitchError(f"IDX file holds more than its header's {count} bytes (corrupt, or not what it claims)",
                             path=path)
    if not count:  # frombuffer refuses an empty buffer; the empty dataset is refused later, with its name
        return torch.zeros(dims, dtype=torch.uint8)
    return torch.frombuffer(body, dtype=torch.uint8).reshape(dims)


def _find_idx(folder: Path, prefix: str, kind: str) -> Path:
    for name in (f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte", f"{prefix}-{kind}.idx"):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.exists():
                return candidate
    raise RelstitchError(
        f"no {prefix}-{kind}-idx*-ubyte[.gz] file in this folder", path=folder,
        hint="name a folder holding the MNIST/Fashion-MNIST IDX files",
    )


def _load_idx(locator: str) -> Dataset:
    folder_text, _, split = locator.rpartition(":")
    if split not in SPLITS:  # no split given: the whole locator is the folder
        folder_text, split = locator, "train"
    folder = Path(folder_text)
    if not folder.is_dir():
        raise RelstitchError("no such data folder", path=folder, hint="name a folder of IDX files")
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(_find_idx(folder, prefix, "images"))
    labels = _read_idx(_find_idx(folder, prefix, "labels")).long()
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise RelstitchError(f"IDX images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match", path=folder)
    classes = FASHION_MNIST_CLASSES if "fashion" in str(folder).lower() else [str(i) for i in range(10)]
    return Dataset(f"idx:{folder}:{split}", images.unsqueeze(1).contiguous(), labels, classes)


def _from_sources(loader: str) -> Callable[[str], Dataset]:
    """A loader living in :mod:`relstitch.sources.datasets`, imported on first use (it imports this module)."""

    def load(locator: str) -> Dataset:
        from .sources import datasets

        return getattr(datasets, loader)(locator)

    return load


DATA_SOURCES: dict[str, Callable[[str], Dataset]] = {
    "builtin": _load_builtin,
    "idx": _load_idx,
    "imagefolder": _from_sources("load_imagefolder"),
    "tensors": _from_sources("load_tensors"),
    "jsonl": _from_sources("load_jsonl"),
    "csv": _from_sources("load_csv"),
}
"""Dataset reference kind -> loader taking the locator (the text after ``kind:``)."""


CAPTION_VIEW = "caption"
"""The view name of captions made from class names (``#captions=TEMPLATE``)."""


def _pop_captions(reference: str) -> tuple[str, str | None]:
    """``REF#captions=T[,k=v]`` → (``REF[#k=v]``, ``T``): the option every image source takes, read here once."""
    import re  # noqa: PLC0415

    from .sources.refs import split_fragment, split_options  # noqa: PLC0415

    head, fragment = split_fragment(reference)
    # Taken raw, up to the next ",KEY=": a template is prose (commas and spaces are kept as written).
    found = re.search(r"(?:^|,)\s*captions=(.*?)(?=,\s*[A-Za-z_][\w-]*=|$)", fragment)
    if found is None:
        return reference, None
    rest = (fragment[: found.start()] + fragment[found.end():]).strip(",")
    split_options(rest)  # the other options are still KEY=VALUE: refuse a malformed one here, as before
    return (f"{head}#{rest}" if rest else head), found.group(1)


def with_class_captions(dataset: Dataset, template: str) -> Dataset:
    """``dataset`` with a text view ``caption``: ``template`` with ``{}`` replaced by each sample's class name.

    Weak supervision, said wherever it is used: such a caption names the label, so a text encoder reading
    it sees the class. It tests whether two modalities' spaces line up, not whether captions describe images.
    """
    if isinstance(dataset.x, TextViews):
        raise UsageError(f"captions=: {dataset.name} is text already; captions are text views for images")
    if dataset.views is not None:  # replacing them would drop the file's own captions without a word
        raise UsageError(f"captions=: {dataset.name} has captions already (views: {', '.join(dataset.views.names)})",
                         hint="drop captions=, or name the view to read with --view")
    if "{}" not in template:
        raise UsageError(f"captions={template!r} has no {{}} for the class name (every caption would be the same)",
                         hint="write e.g. captions=a photo of a {}")
    if not dataset.classes:
        raise RelstitchError("captions= needs class names, and this data has none", path=dataset.name)
    names = [dataset.classes[int(c)] if int(c) < len(dataset.classes) else str(int(c)) for c in dataset.y.tolist()]
    captions = TextViews({CAPTION_VIEW: [template.replace("{}", name) for name in names]})
    return Dataset(f"{dataset.name}#captions={template}", dataset.x, dataset.y, dataset.classes, dataset.ids,
                   dataset.modality, captions)


def load_dataset(reference: str, *, limit: int | None = None) -> Dataset:
    """Load a dataset from a reference (``builtin:test``, ``idx:DIR:train``, a folder, ...).

    ``#captions=TEMPLATE`` on any reference adds class-name captions (:func:`with_class_captions`).
    """
    reference, captions = _pop_captions(reference)
    kind, sep, locator = reference.partition(":")
    if kind in DATA_SOURCES:
        dataset = DATA_SOURCES[kind](locator if sep else "")
    elif Path(reference).is_dir():
        dataset = _load_idx(reference)
    else:
        import difflib

        close = difflib.get_close_matches(kind, list(DATA_SOURCES), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(k + ':' for k in DATA_SOURCES)} or a folder"
        raise RelstitchError(f"unknown dataset reference {reference!r}", hint=hint)
    if captions is not None:
        dataset = with_class_captions(dataset, captions)
    if limit is not None and limit < len(dataset):
        dataset = dataset.subset(torch.arange(limit), name=f"{dataset.name}[:{limit}]")
    from .hygiene import check_finite  # noqa: PLC0415

    if isinstance(dataset.x, torch.Tensor):  # float inputs (tensor files) can carry NaN/Inf; uint8 cannot
        check_finite(dataset.x, f"inputs of {dataset.name}")
    return dataset  # labels were checked against the class names when the Dataset was made


# ------------------------------------------------------------------------------- preprocessing
def default_image_spec(shape: tuple[int, ...] | list[int], mean: float = 0.2860, std: float = 0.3530) -> dict[str, Any]:
    """Input spec of relstitch's own image encoders (Fashion-MNIST statistics by default)."""
    return {"modality": "image", "shape": list(shape), "scale": 255.0, "mean": mean, "std": std}


def prepare_images(x: torch.Tensor, spec: dict[str, Any]) -> torch.Tensor:
    """Images → the float tensor the encoder expects, following its declared input spec.

    Spec keys: ``shape`` (required per-sample shape, if given), ``scale`` (integer inputs are divided
    by it), ``channels`` (1 → 3 repeats grey, 3 → 1 takes luminance), ``resize`` ([H, W], bilinear),
    ``mean``/``std`` (a number or one per channel). So a 28x28 grey dataset can feed a 224x224 RGB net.
    """
    if not isinstance(x, torch.Tensor):
        raise RelstitchError("an image encoder was given text data", hint="use a text encoder (hf:DIR) for text data")
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
        out = torch.nn.functional.interpolate(out, size=tuple(spec["resize"]), mode="bilinear", align_corners=False,
                                              antialias=True)
    mean, std = spec.get("mean", 0.0), spec.get("std", 1.0)
    if isinstance(mean, list | tuple) or isinstance(std, list | tuple):
        shape = (1, -1) + (1,) * (out.ndim - 2)  # one value per channel
        mean, std = torch.tensor(mean).view(shape), torch.tensor(std).view(shape)
    return (out - mean) / std
