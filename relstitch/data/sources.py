"""Where data comes from: one registry of data source kinds, each named ``kind:locator[#option=value,...]``.

============================================  ================================================================
``builtin:train`` / ``builtin:test``          the stratified Fashion-MNIST subset inside the package (6,000 /
                                              1,000 images, 28x28 uint8, MIT licence)
``idx:DIR[:train|test]`` or ``DIR``           a folder of (optionally gzipped) MNIST-style IDX files, such as
                                              Debian's ``/usr/share/datasets/fashion-mnist``
``imagefolder:DIR[#size=H,W]``                torchvision ``ImageFolder`` layout: ``DIR/<class>/<image>``
``tensors:FILE[#x=NAME,y=NAME]``              a safetensors file with images/features ``x`` and labels ``y``
``jsonl:FILE[#text=COL[,COL...],label=COL]``  one JSON object per line; each text column is a parallel view
``csv:FILE[#text=COL[,COL...],label=COL]``    a CSV file with a header row; same options
``jsonl:FILE#image=COL,text=COL[,size=H,W]``  images (paths relative to FILE) with parallel captions (csv too)
============================================  ================================================================

Text columns become named views (``text=en,fr`` gives views ``en`` and ``fr``, ``en`` the default) so
anchors picked from them are parallel. ``label=none`` reads unlabelled text (anchors only). With an
``image=`` column the rows are images (grey if all are, else RGB; ``size=`` resizes them all, as for
``imagefolder:``) and the text columns their captions: image encoders read the images, text encoders
a caption view, so both embed the same anchors (cross-modal stitching).
Labels are mapped to class indices in sorted order (numeric order when every label is a number).

Any labelled image reference takes ``#captions=TEMPLATE`` (``builtin:test#captions=a photo of a {}``):
a parallel text view ``caption`` made from each sample's class name, so text encoders can read the
same samples as image encoders. Such captions are *weak supervision*: a caption is its label in words.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import struct
import zlib
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from ..errors import RelstitchError, UsageError, os_error
from ..hygiene import check_finite
from ..io.userfiles import check_regular, open_regular, text_lines
from ..refs import parse_size, split_fragment, split_options
from ..registry import Registry
from .dataset import Dataset, with_class_captions
from .text import TextViews

BUILTIN_FILE = Path(__file__).resolve().parent.parent / "assets" / "fashion_mnist_small.safetensors"
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
SPLITS = ("train", "test")
MAX_IDX_BYTES = 16 * 1024**3  # 16 GiB: far above any IDX data set, far below what a bomb could announce
IDX_CHUNK = 16 * 1024**2  # an IDX body is read this much at a time: memory follows the data, not the header


DATA_SOURCES: Registry[Callable[[str], Dataset]] = Registry("data source kind")
"""Dataset reference kind -> loader taking the locator (the text after ``kind:``)."""


# ------------------------------------------------------------------------------ built-in and IDX
@DATA_SOURCES.register("builtin")
def _load_builtin(locator: str) -> Dataset:
    split = locator or "train"
    if split not in SPLITS:
        raise RelstitchError(
            f"unknown split {split!r} of the built-in data; use builtin:train or builtin:test"
        )
    from safetensors.torch import load_file

    if not BUILTIN_FILE.exists():
        raise RelstitchError(
            "built-in data missing", path=BUILTIN_FILE, hint="run scripts/make_builtin_data.py"
        )
    tensors = load_file(str(check_regular(BUILTIN_FILE)))
    return Dataset(
        f"builtin:{split}",
        tensors[f"{split}_x"],
        tensors[f"{split}_y"].long(),
        FASHION_MNIST_CLASSES,
        tensors[f"{split}_ids"].long(),
    )


def _read_idx(path: Path) -> torch.Tensor:
    """Read one IDX file (gzipped or not) into a uint8 tensor of its declared shape.

    The header is read first and the body in chunks only up to its declared size (plus one byte to detect
    extra data), so a small gzip file that inflates to gigabytes cannot make relstitch hold more than the
    tensor its header announces, and a header announcing gigabytes over a short body costs only the body.
    """
    try:
        with (
            open_regular(path) as raw,
            gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else nullcontext(raw) as handle,
        ):
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
                raise RelstitchError(
                    f"IDX header declares {count:,} bytes, more than relstitch reads ({MAX_IDX_BYTES:,})",
                    path=path,
                )
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
        raise RelstitchError(
            f"IDX file holds more than its header's {count} bytes (corrupt, or not what it claims)", path=path
        )
    if not count:  # frombuffer refuses an empty buffer; the empty dataset is refused later, with its name
        return torch.zeros(dims, dtype=torch.uint8)
    return torch.frombuffer(body, dtype=torch.uint8).reshape(dims)


def _find_idx(folder: Path, prefix: str, kind: str) -> Path:
    for name in (f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte", f"{prefix}-{kind}.idx"):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.exists():
                return candidate
    raise RelstitchError(
        f"no {prefix}-{kind}-idx*-ubyte[.gz] file in this folder",
        path=folder,
        hint="name a folder holding the MNIST/Fashion-MNIST IDX files",
    )


@DATA_SOURCES.register("idx")
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
        raise RelstitchError(
            f"IDX images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match", path=folder
        )
    classes = FASHION_MNIST_CLASSES if "fashion" in str(folder).lower() else [str(i) for i in range(10)]
    return Dataset(f"idx:{folder}:{split}", images.unsqueeze(1).contiguous(), labels, classes)


# ----------------------------------------------------------------------- files and folders
def _options(locator: str, kind: str, allowed: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """Split ``FILE#k=v`` and refuse options the kind does not read; ``allowed`` holds the defaults."""
    path_text, fragment = split_fragment(locator)
    if not path_text:
        raise UsageError(f"{kind}: reference without a path", hint=f"write {kind}:PATH")
    given = split_options(fragment)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise UsageError(
            f"{kind}: unknown option(s) {', '.join(unknown)}", hint=f"{kind}: reads {', '.join(allowed)}"
        )
    return Path(path_text), {**allowed, **given}


def _classes_of(values: list[Any], path: Path) -> tuple[torch.Tensor, list[str]]:
    """Labels (strings or numbers) → indices into sorted class names (numeric order if all are numbers)."""
    names = [str(v) for v in values]
    unique = set(names)
    try:
        classes = sorted(unique, key=float)
    except ValueError:
        classes = sorted(unique)
    index = {name: i for i, name in enumerate(classes)}
    return torch.tensor([index[n] for n in names], dtype=torch.int64), classes


# ----------------------------------------------------------------------------------------- text
TABLE_OPTIONS = {"text": "text", "label": "label", "image": "", "size": ""}
"""jsonl:/csv: options and their defaults (no image column: text data)."""


def _text_dataset(
    rows: list[dict[str, Any]], columns: list[str], path: Path, kind: str, opts: dict[str, str], where: Any
) -> Dataset:
    text_columns = [c for c in opts["text"].split(",") if c]
    label = opts["label"] if opts["label"].lower() != "none" else None
    image = opts["image"] or None
    if opts["size"] and not image:
        raise UsageError(
            f"{kind}: size= resizes images, and no image= column is named",
            hint=f"{kind}:{path}#image=COLUMN,size=H,W",
        )
    if image in text_columns:
        raise UsageError(f"{kind}: column {image!r} is named both image= and text=")
    needed = text_columns + ([label] if label else []) + ([image] if image else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise RelstitchError(
            f"{kind} file has no column(s) {', '.join(map(repr, missing))} "
            f"(it has {', '.join(map(repr, columns))})",
            path=path,
            hint=f"name the columns: {kind}:{path}#text=COLUMN,label=COLUMN",
        )
    if not rows:
        raise RelstitchError(f"{kind} file holds no rows", path=path)
    views: dict[str, list[str]] = {c: [] for c in text_columns}
    labels: list[Any] = []
    for i, row in enumerate(rows):
        for column in needed:
            value = row.get(column)
            if value is None or ((column in views or column == image) and not isinstance(value, str)):
                raise RelstitchError(
                    f"{where(i)}: column {column!r} is {'missing' if value is None else 'not text'}",
                    path=path,
                )
        for column in text_columns:
            views[column].append(row[column])
        if label:
            labels.append(row[label])
    y, classes = _classes_of(labels, path) if label else (torch.zeros(len(rows), dtype=torch.int64), [])
    if image is None:
        return Dataset(f"{kind}:{path}", TextViews(views), y, classes, modality="text")
    # image paths are relative to the file, so a folder of images and its caption file move together
    files = [path.parent / row[image] for row in rows]
    x = read_images(files, _parse_size(opts["size"], kind), f"{kind}:{path}")
    return Dataset(f"{kind}:{path}", x, y, classes, views=TextViews(views))


@DATA_SOURCES.register("jsonl")
def load_jsonl(locator: str) -> Dataset:
    """Text (one or more parallel columns) and labels from a JSON-lines file; with ``image=COL``, images
    (paths relative to the file) whose text columns are their parallel captions."""
    path, opts = _options(locator, "jsonl", TABLE_OPTIONS)
    rows: list[dict[str, Any]] = []
    try:
        with text_lines(
            path, what="text data"
        ) as lines:  # bounded; a BOM is dropped; a FIFO is refused, unopened
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RelstitchError(f"line {number} is not JSON ({exc.msg})", path=path) from None
                except (
                    ValueError,
                    RecursionError,
                ):  # a number too long to convert, nesting past the parser's depth
                    raise RelstitchError(
                        f"line {number} is not usable JSON (a number too long or nesting too deep)", path=path
                    ) from None
                if not isinstance(row, dict):
                    raise RelstitchError(f"line {number} is not a JSON object", path=path)
                rows.append(row)
    except FileNotFoundError:
        raise RelstitchError("no such file", path=path) from None
    except OSError as exc:
        raise os_error(exc, path, "cannot read") from None
    columns = sorted({key for row in rows for key in row})
    return _text_dataset(rows, columns, path, "jsonl", opts, lambda i: f"record {i + 1}")


@DATA_SOURCES.register("csv")
def load_csv(locator: str) -> Dataset:
    """Text (one or more parallel columns) and labels from a CSV file with a header row; ``image=COL`` as
    jsonl."""
    path, opts = _options(locator, "csv", TABLE_OPTIONS)
    try:
        with text_lines(
            path, what="text data"
        ) as lines:  # as jsonl: bounded, BOM dropped, regular files only
            reader = csv.DictReader(lines)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except FileNotFoundError:
        raise RelstitchError("no such file", path=path) from None
    except OSError as exc:
        raise os_error(exc, path, "cannot read CSV") from None
    except csv.Error as exc:
        raise RelstitchError(f"cannot read CSV: {exc}", path=path) from None
    return _text_dataset(rows, columns, path, "csv", opts, lambda i: f"row {i + 2}")


# --------------------------------------------------------------------------------------- images
@DATA_SOURCES.register("tensors")
def load_tensors(locator: str) -> Dataset:
    """Samples ``x`` (uint8 images ``[N, H, W]``/``[N, C, H, W]`` or float features) and int labels ``y``.

    Optional: an ``ids`` tensor, and class names as a JSON list in the file's ``classes`` metadata.
    """
    path, opts = _options(locator, "tensors", {"x": "x", "y": "y"})
    from ..io.artifacts import read_header

    header = read_header(path)  # validates the header before safetensors reads anything
    from safetensors.torch import load_file

    tensors = load_file(str(check_regular(path)))  # read_header read a descriptor; load_file reopens the path
    for role in ("x", "y"):
        if opts[role] not in tensors:
            raise RelstitchError(
                f"no tensor {opts[role]!r} (it holds {', '.join(sorted(tensors)) or 'none'})",
                path=path,
                hint=f"name them: tensors:{path}#x=NAME,y=NAME",
            )
    x, y = tensors[opts["x"]], tensors[opts["y"]]
    if x.dtype == torch.uint8 and x.ndim == 3:
        x = x.unsqueeze(1)  # grey images: add the channel axis
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise RelstitchError(
            f"x has dtype {x.dtype}: expected uint8 images or floating-point features", path=path
        )
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or y.is_floating_point():
        raise RelstitchError(
            f"x {tuple(x.shape)} and y {tuple(y.shape)} {y.dtype} do not fit: "
            "need N samples and N integer labels",
            path=path,
        )
    y = y.long()
    if len(y) and int(y.min()) < 0:
        raise RelstitchError("labels must be 0 or more", path=path)
    try:
        classes = json.loads(header.raw_metadata.get("classes", "null"))
    except json.JSONDecodeError:
        classes = None
    if not (isinstance(classes, list) and classes):  # no names: number the classes the labels use
        classes = [str(i) for i in range(int(y.max()) + 1 if len(y) else 0)]
    # Names given but fewer than the labels need are kept: the Dataset refuses the labels past them.
    ids = tensors.get("ids")
    modality = "image" if x.ndim == 4 else "tensor"
    return Dataset(
        f"tensors:{path}",
        x.contiguous(),
        y,
        [str(c) for c in classes],
        ids.long() if ids is not None and len(ids) == len(y) else torch.arange(len(y), dtype=torch.int64),
        modality,
    )


@DATA_SOURCES.register("imagefolder")
def load_imagefolder(locator: str) -> Dataset:
    """``DIR/<class>/<image>`` as uint8 images; grey if every image is grey, RGB otherwise.

    Images must share one size unless ``#size=H,W`` (or ``size=N``) resizes them all.
    """
    folder, opts = _options(locator, "imagefolder", {"size": ""})
    if not folder.is_dir():
        raise RelstitchError("no such image folder", path=folder, hint="name a folder of class subfolders")
    from PIL import Image
    from torchvision.datasets import ImageFolder

    size = _parse_size(opts["size"], "imagefolder")
    try:
        found = ImageFolder(str(folder), loader=Image.open)
    except (FileNotFoundError, OSError) as exc:
        raise RelstitchError(
            f"not an image folder: {str(exc).splitlines()[0]}",
            path=folder,
            hint="lay it out as DIR/<class>/<image>",
        ) from None
    images = read_images([Path(file) for file, _ in found.samples], size, f"imagefolder:{folder}")
    labels = torch.tensor([label for _, label in found.samples], dtype=torch.int64)
    return Dataset(f"imagefolder:{folder}", images, labels, list(found.classes))


def _parse_size(text: str, kind: str) -> list[int] | None:
    """``H,W`` / ``HxW`` / ``N`` (square) → ``[H, W]``; empty → None (images must then share one size)."""
    if not text:
        return None
    try:
        return parse_size(text)
    except ValueError:
        raise UsageError(f"{kind}: bad size {text!r}; write size=H,W or size=N") from None


def read_images(files: list[Path], size: list[int] | None, reference: str) -> torch.Tensor:
    """Image files → uint8 ``[N, C, H, W]``: grey if every image is grey, RGB otherwise; all resized to
    ``size`` (bilinear) when given, else they must share one size (``reference`` names the fix)."""
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    images = []
    for file in files:
        try:
            # Opened here, not by PIL from the path: a FIFO named like an image would block PIL's open
            # forever.
            with open_regular(file) as handle, Image.open(handle) as image:
                image.load()
                images.append(image.copy())
        except (
            OSError,
            Image.DecompressionBombError,
        ) as exc:  # missing, unreadable, not an image, or a pixel bomb
            if (
                isinstance(exc, OSError) and exc.errno is not None
            ):  # the file system's error: its cause, not its name
                raise os_error(exc, file, "cannot read image") from None
            raise RelstitchError(f"cannot read image: {exc}", path=file) from None
    mode = "L" if all(im.mode == "L" for im in images) else "RGB"
    tensors = []
    for file, image in zip(files, images, strict=True):
        image = image.convert(mode)
        if size is not None:
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        elif image.size != images[0].size:
            raise RelstitchError(
                f"images differ in size ({images[0].size[0]}x{images[0].size[1]} and "
                f"{image.size[0]}x{image.size[1]})",
                path=file,
                hint=f"resize them: {reference}#size=H,W",
            )
        tensors.append(pil_to_tensor(image))
    return torch.stack(tensors)


def _pop_captions(reference: str) -> tuple[str, str | None]:
    """``REF#captions=T[,k=v]`` → (``REF[#k=v]``, ``T``): the option every image source takes, read here
    once."""
    head, fragment = split_fragment(reference)
    # Taken raw, up to the next ",KEY=": a template is prose (commas and spaces are kept as written).
    found = re.search(r"(?:^|,)\s*captions=(.*?)(?=,\s*[A-Za-z_][\w-]*=|$)", fragment)
    if found is None:
        return reference, None
    rest = (fragment[: found.start()] + fragment[found.end() :]).strip(",")
    split_options(rest)  # the other options are still KEY=VALUE: refuse a malformed one here, as before
    return (f"{head}#{rest}" if rest else head), found.group(1)


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
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"use one of: {', '.join(k + ':' for k in DATA_SOURCES)} or a folder"
        )
        raise RelstitchError(f"unknown dataset reference {reference!r}", hint=hint)
    if captions is not None:
        dataset = with_class_captions(dataset, captions)
    if limit is not None and limit < len(dataset):
        dataset = dataset.subset(torch.arange(limit), name=f"{dataset.name}[:{limit}]")
    if isinstance(dataset.x, torch.Tensor):  # float inputs (tensor files) can carry NaN/Inf; uint8 cannot
        check_finite(dataset.x, f"inputs of {dataset.name}")
    return dataset  # labels were checked against the class names when the Dataset was made
