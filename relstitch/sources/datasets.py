"""Data sources beyond the built-in set, registered in :data:`relstitch.data.DATA_SOURCES`.

============================================  ==================================================================
``imagefolder:DIR[#size=H,W]``                torchvision ``ImageFolder`` layout: ``DIR/<class>/<image>``
``tensors:FILE[#x=NAME,y=NAME]``              a safetensors file with images/features ``x`` and labels ``y``
``jsonl:FILE[#text=COL[,COL...],label=COL]``  one JSON object per line; each text column is a parallel view
``csv:FILE[#text=COL[,COL...],label=COL]``    a CSV file with a header row; same options
``jsonl:FILE#image=COL,text=COL[,size=H,W]``  images (paths relative to FILE) with parallel captions (csv too)
============================================  ==================================================================

Text columns become named views (``text=en,fr`` gives views ``en`` and ``fr``, ``en`` the default) so
anchors picked from them are parallel. ``label=none`` reads unlabelled text (anchors only). With an
``image=`` column the rows are images (grey if all are, else RGB; ``size=`` resizes them all, as for
``imagefolder:``) and the text columns their captions: image encoders read the images, text encoders
a caption view, so both embed the same anchors (cross-modal stitching).
Labels are mapped to class indices in sorted order (numeric order when every label is a number).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch

from ..data import Dataset
from ..errors import RelstitchError, UsageError, os_error
from ..userfiles import check_regular, open_regular, text_lines
from .refs import split_fragment, split_options
from .text import TextViews


def _options(locator: str, kind: str, allowed: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """Split ``FILE#k=v`` and refuse options the kind does not read; ``allowed`` holds the defaults."""
    path_text, fragment = split_fragment(locator)
    if not path_text:
        raise UsageError(f"{kind}: reference without a path", hint=f"write {kind}:PATH")
    given = split_options(fragment)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise UsageError(f"{kind}: unknown option(s) {', '.join(unknown)}", hint=f"{kind}: reads {', '.join(allowed)}")
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


def _text_dataset(rows: list[dict[str, Any]], columns: list[str], path: Path, kind: str, opts: dict[str, str],
                  where: Any) -> Dataset:
    text_columns = [c for c in opts["text"].split(",") if c]
    label = opts["label"] if opts["label"].lower() != "none" else None
    image = opts["image"] or None
    if opts["size"] and not image:
        raise UsageError(f"{kind}: size= resizes images, and no image= column is named", hint=f"{kind}:{path}#image=COLUMN,size=H,W")
    if image in text_columns:
        raise UsageError(f"{kind}: column {image!r} is named both image= and text=")
    needed = text_columns + ([label] if label else []) + ([image] if image else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise RelstitchError(f"{kind} file has no column(s) {', '.join(map(repr, missing))} (it has {', '.join(map(repr, columns))})",
                             path=path, hint=f"name the columns: {kind}:{path}#text=COLUMN,label=COLUMN")
    if not rows:
        raise RelstitchError(f"{kind} file holds no rows", path=path)
    views: dict[str, list[str]] = {c: [] for c in text_columns}
    labels: list[Any] = []
    for i, row in enumerate(rows):
        for column in needed:
            value = row.get(column)
            if value is None or ((column in views or column == image) and not isinstance(value, str)):
                raise RelstitchError(f"{where(i)}: column {column!r} is {'missing' if value is None else 'not text'}", path=path)
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


def load_jsonl(locator: str) -> Dataset:
    """Text (one or more parallel columns) and labels from a JSON-lines file; with ``image=COL``, images
    (paths relative to the file) whose text columns are their parallel captions."""
    path, opts = _options(locator, "jsonl", TABLE_OPTIONS)
    rows: list[dict[str, Any]] = []
    try:
        with text_lines(path, what="text data") as lines:  # bounded; a BOM is dropped; a FIFO is refused, unopened
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RelstitchError(f"line {number} is not JSON ({exc.msg})", path=path) from None
                except (ValueError, RecursionError):  # a number too long to convert, nesting past the parser's depth
                    raise RelstitchError(f"line {number} is not usable JSON (a number too long or nesting too deep)",
                                         path=path) from None
                if not isinstance(row, dict):
                    raise RelstitchError(f"line {number} is not a JSON object", path=path)
                rows.append(row)
    except FileNotFoundError:
        raise RelstitchError("no such file", path=path) from None
    except OSError as exc:
        raise os_error(exc, path, "cannot read") from None
    columns = sorted({key for row in rows for key in row})
    return _text_dataset(rows, columns, path, "jsonl", opts, lambda i: f"record {i + 1}")


def load_csv(locator: str) -> Dataset:
    """Text (one or more parallel columns) and labels from a CSV file with a header row; ``image=COL`` as jsonl."""
    path, opts = _options(locator, "csv", TABLE_OPTIONS)
    try:
        with text_lines(path, what="text data") as lines:  # as jsonl: bounded, BOM dropped, regular files only
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
def load_tensors(locator: str) -> Dataset:
    """Samples ``x`` (uint8 images ``[N, H, W]``/``[N, C, H, W]`` or float features) and int labels ``y``.

    Optional: an ``ids`` tensor, and class names as a JSON list in the file's ``classes`` metadata.
    """
    path, opts = _options(locator, "tensors", {"x": "x", "y": "y"})
    from ..artifacts import read_header

    header = read_header(path)  # validates the header before safetensors reads anything
    from safetensors.torch import load_file

    tensors = load_file(str(check_regular(path)))  # read_header read a descriptor; load_file reopens the path
    for role in ("x", "y"):
        if opts[role] not in tensors:
            raise RelstitchError(f"no tensor {opts[role]!r} (it holds {', '.join(sorted(tensors)) or 'none'})", path=path,
                                 hint=f"name them: tensors:{path}#x=NAME,y=NAME")
    x, y = tensors[opts["x"]], tensors[opts["y"]]
    if x.dtype == torch.uint8 and x.ndim == 3:
        x = x.unsqueeze(1)  # grey images: add the channel axis
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise RelstitchError(f"x has dtype {x.dtype}: expected uint8 images or floating-point features", path=path)
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or y.is_floating_point():
        raise RelstitchError(f"x {tuple(x.shape)} and y {tuple(y.shape)} {y.dtype} do not fit: need N samples and N integer labels",
                             path=path)
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
    return Dataset(f"tensors:{path}", x.contiguous(), y, [str(c) for c in classes],
                   ids.long() if ids is not None and len(ids) == len(y) else None, modality)


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
        raise RelstitchError(f"not an image folder: {str(exc).splitlines()[0]}", path=folder,
                             hint="lay it out as DIR/<class>/<image>") from None
    images = read_images([Path(file) for file, _ in found.samples], size, f"imagefolder:{folder}")
    labels = torch.tensor([label for _, label in found.samples], dtype=torch.int64)
    return Dataset(f"imagefolder:{folder}", images, labels, list(found.classes))


def _parse_size(text: str, kind: str) -> list[int] | None:
    """``H,W`` / ``HxW`` / ``N`` (square) → ``[H, W]``; empty → None (images must then share one size)."""
    if not text:
        return None
    try:
        parts = [int(p) for p in text.replace("x", ",").split(",") if p]
        size = (parts * 2)[:2] if len(parts) == 1 else parts
        assert len(size) == 2 and min(size) > 0
    except (ValueError, AssertionError):
        raise UsageError(f"{kind}: bad size {text!r}; write size=H,W or size=N") from None
    return size


def read_images(files: list[Path], size: list[int] | None, reference: str) -> torch.Tensor:
    """Image files → uint8 ``[N, C, H, W]``: grey if every image is grey, RGB otherwise; all resized to
    ``size`` (bilinear) when given, else they must share one size (``reference`` names the fix)."""
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    images = []
    for file in files:
        try:
            # Opened here, not by PIL from the path: a FIFO named like an image would block PIL's open forever.
            with open_regular(file) as handle, Image.open(handle) as image:
                image.load()
                images.append(image.copy())
        except (OSError, Image.DecompressionBombError) as exc:  # missing, unreadable, not an image, or a pixel bomb
            if isinstance(exc, OSError) and exc.errno is not None:  # the file system's error: its cause, not its name
                raise os_error(exc, file, "cannot read image") from None
            raise RelstitchError(f"cannot read image: {exc}", path=file) from None
    mode = "L" if all(im.mode == "L" for im in images) else "RGB"
    tensors = []
    for file, image in zip(files, images, strict=True):
        image = image.convert(mode)
        if size is not None:
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        elif image.size != images[0].size:
            raise RelstitchError(f"images differ in size ({images[0].size[0]}x{images[0].size[1]} and "
                                 f"{image.size[0]}x{image.size[1]})", path=file, hint=f"resize them: {reference}#size=H,W")
        tensors.append(pil_to_tensor(image))
    return torch.stack(tensors)
