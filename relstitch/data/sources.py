"""Where data comes from: one registry of data source kinds, each named ``kind:locator[#option=value,...]``.

============================================  ================================================================
``builtin:train`` / ``builtin:test``          the stratified Fashion-MNIST subset inside the package (6,000 /
                                              1,000 images, 28x28 uint8, MIT licence)
``idx:DIR[:train|test]`` or ``DIR``           a folder of (optionally gzipped) MNIST-style IDX files, such as
                                              Debian's ``/usr/share/datasets/fashion-mnist``
``imagefolder:DIR[#size=H,W]``                torchvision ``ImageFolder`` layout: ``DIR/<class>/<image>``
``tensors:FILE[#x=NAME,y=NAME]``              a safetensors file with images/features ``x`` and labels ``y``
``jsonl:FILE[#text=COL[,COL...],label=COL]``  one JSON object per line; each text column is a parallel view
``csv:FILE[#text=COL[,COL...],label=COL]``    a CSV file with a header row; same options, ``delimiter=``
``tsv:FILE[#...]``                            a tab-separated file (``csv:`` with ``delimiter=tab``)
``jsonl:FILE#image=COL,text=COL[,size=H,W]``  images (paths relative to FILE) with parallel captions (csv too)
``parquet:FILE[#text=,label=,image=,size=]``  Parquet (extra ``datasets``): text views or an image column
``hfds:DIR[:SPLIT][#...]``                    a dataset saved by ``save_to_disk``; as ``parquet:``
``npz:FILE[#images=K,labels=K,classes=K]``    NumPy arrays (images or float features, labels), never unpickled
``npy:SAMPLES.npy#labels=LABELS.npy|none``    the same as two ``.npy`` files
============================================  ================================================================

Text files read ``encoding=`` (``latin-1``...; UTF-8 by default, a byte-order mark dropped).

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

import codecs
import csv
import gzip
import io
import json
import math
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from ..errors import RelstitchError, UsageError, os_error
from ..hygiene import check_finite
from ..io.userfiles import (
    MAX_CONFIG_BYTES,
    MAX_IMAGE_BYTES,
    check_folder_files,
    check_regular,
    open_regular,
    read_bytes,
    read_head,
    read_text,
    text_lines,
)
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
"""The options of every table source (``jsonl:``, ``csv:``, ``tsv:``, ``parquet:``, ``hfds:``) and their
defaults (no image column: text data)."""
TEXT_FILE_OPTIONS = {**TABLE_OPTIONS, "encoding": "utf-8"}
"""``jsonl:`` reads ``encoding=`` too."""
CSV_OPTIONS = {**TEXT_FILE_OPTIONS, "delimiter": "comma"}
TSV_OPTIONS = {**TEXT_FILE_OPTIONS, "delimiter": "tab"}
DELIMITERS = {"comma": ",", "tab": "\t", "\\t": "\t", "semicolon": ";", "pipe": "|", "space": " "}
"""``delimiter=`` by name (a comma, a tab or a space cannot be written as an option value itself)."""
_ASCII_PROBE = "\n\r\t ,;|\"'{}[]:#=\\abcXYZ0189"


@dataclass(frozen=True)
class _Columns:
    """The columns a table reference reads: parallel text views, its labels (None: unlabelled), its images."""

    text: list[str]
    label: str | None
    image: str | None

    @property
    def needed(self) -> list[str]:
        named = self.text + ([self.label] if self.label else []) + ([self.image] if self.image else [])
        return list(dict.fromkeys(named))  # a column may be a text view and the label


def _columns(
    opts: dict[str, str], kind: str, path: Path, available: list[str], hint: str | None = None
) -> _Columns:
    """The columns the options name, refused (with what the file has) when the file lacks one; ``hint``
    replaces the default fix (a CSV header read with the wrong delimiter says so)."""
    text = [c for c in opts["text"].split(",") if c]
    label = opts["label"] if opts["label"].lower() != "none" else None
    image = opts["image"] or None
    if opts["size"] and not image:
        raise UsageError(
            f"{kind}: size= resizes images, and no image= column is named",
            hint=f"{kind}:{path}#image=COLUMN,size=H,W",
        )
    if image is None and not text:
        raise UsageError(f"{kind}: text= names no column", hint=f"{kind}:{path}#text=COLUMN")
    if image in text:
        raise UsageError(f"{kind}: column {image!r} is named both image= and text=")
    if not available:
        raise RelstitchError(f"{kind} file is empty (no columns, no rows)", path=path)
    columns = _Columns(text, label, image)
    missing = [c for c in columns.needed if c not in available]
    if missing:
        raise RelstitchError(
            f"{kind} file has no column(s) {', '.join(map(repr, missing))} "
            f"(it has {', '.join(map(repr, available))})",
            path=path,
            hint=hint or f"name the columns: {kind}:{path}#text=COLUMN,label=COLUMN",
        )
    return columns


def _labels(
    values: list[Any], path: Path, where: Callable[[int], str], class_names: list[str] | None
) -> tuple[torch.Tensor, list[str]]:
    """A label column → class indices and names: the names of a ``ClassLabel`` feature when there is one,
    else the values' own (sorted, numerically when all are numbers)."""
    for i, value in enumerate(values):
        if not isinstance(value, str | int | float) or (
            class_names is not None and not isinstance(value, int)
        ):
            wanted = "a class index" if class_names is not None else "a number or text"
            raise RelstitchError(f"{where(i)}: label {value!r} is not {wanted}", path=path)
    if class_names is None:
        return _classes_of(values, path)
    y = torch.tensor(values, dtype=torch.int64)
    if len(y) and int(y.min()) < 0:
        first = int((y < 0).nonzero()[0][0])
        raise RelstitchError(
            f"{where(first)}: label {int(y[first])} (a ClassLabel's 'no label': an unlabelled split)",
            path=path,
            hint="read it without labels: label=none",
        )
    return y, list(class_names)


def _table_dataset(
    columns: _Columns,
    values: dict[str, list[Any]],
    path: Path,
    kind: str,
    where: Callable[[int], str],
    images: Callable[[list[Any]], torch.Tensor],
    class_names: list[str] | None = None,
) -> Dataset:
    """One Dataset from the columns of any table source: text views (``x``, or the captions of images),
    labels, and images that ``images`` reads from the image column's values (paths, or bytes)."""
    count = len(values[columns.needed[0]])
    if not count:
        raise RelstitchError(f"{kind} file holds no rows", path=path)
    for column in columns.needed:
        for i, value in enumerate(values[column]):
            if value is None or (column in columns.text and not isinstance(value, str)):
                raise RelstitchError(
                    f"{where(i)}: column {column!r} is {'missing' if value is None else 'not text'}",
                    path=path,
                )
    if columns.label:
        y, classes = _labels(values[columns.label], path, where, class_names)
    else:
        y, classes = torch.zeros(count, dtype=torch.int64), []
    views = TextViews({c: values[c] for c in columns.text}) if columns.text else None
    if columns.image is None:
        assert views is not None  # _columns refuses text data without a text column
        return Dataset(f"{kind}:{path}", views, y, classes, modality="text")
    return Dataset(f"{kind}:{path}", images(values[columns.image]), y, classes, views=views)


def _image_files(
    values: list[Any], path: Path, column: str, where: Callable[[int], str], size: list[int] | None, kind: str
) -> torch.Tensor:
    """A text file's image column: paths relative to the file, so a folder of images and its caption file
    move together."""
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise RelstitchError(f"{where(i)}: column {column!r} is not text", path=path)
    return read_images([path.parent / value for value in values], size, f"{kind}:{path}")


def _text_encoding(name: str, kind: str) -> str:
    """``encoding=NAME`` → Python's name for it, refused (exit 2) when unknown or when it does not write
    ASCII as ASCII: lines and fields are split on ASCII bytes (UTF-16 is refused: convert it)."""
    try:
        found = codecs.lookup(name).name
    except LookupError:
        raise UsageError(
            f"{kind}: unknown encoding {name!r}", hint="e.g. encoding=latin-1 or encoding=cp1252"
        ) from None
    if found in ("utf-8", "utf-8-sig"):
        return "utf-8"
    try:
        ascii_compatible = _ASCII_PROBE.encode(found) == _ASCII_PROBE.encode("ascii")
    except (LookupError, UnicodeError):  # not a text encoding at all (base64), or one without these
        ascii_compatible = False
    if not ascii_compatible:
        raise UsageError(
            f"{kind}: encoding={name} is not read: relstitch splits lines and fields on ASCII bytes",
            hint=f"convert the file to UTF-8 (iconv -f {name} -t UTF-8 FILE > NEW) and drop encoding=",
        )
    return found


def _check_byte_order_mark(path: Path, encoding: str) -> None:
    """Refuse what a byte-order mark says is not the text relstitch would read: UTF-16/32, or UTF-8 read as
    another encoding (a UTF-8 BOM itself is dropped when reading UTF-8)."""
    head = read_head(path, 4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # UTF-32's marks start alike
        raise RelstitchError(
            "is UTF-16 or UTF-32 text (its byte-order mark says so)",
            path=path,
            hint="convert it to UTF-8: iconv -f UTF-16 -t UTF-8 FILE > NEW",
        )
    if encoding != "utf-8" and head.startswith(codecs.BOM_UTF8):
        raise RelstitchError(
            f"starts with a UTF-8 byte-order mark, yet encoding={encoding} was given",
            path=path,
            hint="drop encoding=: the file says it is UTF-8",
        )


def _encoding_hint(kind: str, path: Path, encoding: str) -> str:
    """What to do about text that does not decode: name its encoding (or check the one named)."""
    if encoding == "utf-8":
        return f"name its encoding: {kind}:{path}#encoding=latin-1 (or cp1252, ...), or save it as UTF-8"
    return f"check that {encoding} is the file's encoding, or save it as UTF-8"


@DATA_SOURCES.register("jsonl")
def load_jsonl(locator: str) -> Dataset:
    """Text (one or more parallel columns) and labels from a JSON-lines file; with ``image=COL``, images
    (paths relative to the file) whose text columns are their parallel captions."""
    path, opts = _options(locator, "jsonl", TEXT_FILE_OPTIONS)
    encoding = _text_encoding(opts["encoding"], "jsonl")
    rows: list[dict[str, Any]] = []
    try:
        _check_byte_order_mark(path, encoding)
        # bounded; a BOM is dropped; a FIFO is refused, unopened
        with text_lines(
            path, what="text data", encoding=encoding, hint=_encoding_hint("jsonl", path, encoding)
        ) as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RelstitchError(f"line {number} is not JSON ({exc.msg})", path=path) from None
                except (ValueError, RecursionError):  # a number too long to convert, nesting too deep
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
    columns = _columns(opts, "jsonl", path, sorted({key for row in rows for key in row}))
    return _read_rows(rows, columns, path, "jsonl", opts, lambda i: f"record {i + 1}")


def _read_rows(
    rows: list[dict[str, Any]],
    columns: _Columns,
    path: Path,
    kind: str,
    opts: dict[str, str],
    where: Callable[[int], str],
) -> Dataset:
    """The Dataset of a text file's rows (``jsonl:``, ``csv:``, ``tsv:``); image paths relative to it."""
    values = {c: [row.get(c) for row in rows] for c in columns.needed}
    size = _parse_size(opts["size"], kind)
    image = columns.image or ""
    return _table_dataset(
        columns, values, path, kind, where, lambda found: _image_files(found, path, image, where, size, kind)
    )


def _delimiter(text: str, kind: str) -> str:
    """``delimiter=`` as one character: a name (``tab``, ``semicolon``...), ``\\t``, or the character."""
    found = DELIMITERS.get(text.lower(), text)
    if len(found) != 1 or found.isalnum() or found in "\"'\r\n":
        raise UsageError(
            f"{kind}: bad delimiter {text!r}",
            hint="write delimiter=tab, comma, semicolon, pipe, space, \\t or one other character",
        )
    return found


def _glued_header_hint(available: list[str], path: Path, delimiter: str) -> str | None:
    """The fix when a header read as one column holds another delimiter: the file is not of its kind."""
    if len(available) != 1:
        return None
    for char, fix in (
        ("\t", f"tsv:{path} (or csv:{path}#delimiter=tab)"),
        (";", f"csv:{path}#delimiter=semicolon"),
        ("|", f"csv:{path}#delimiter=pipe"),
        (",", f"csv:{path}"),
    ):
        if char != delimiter and char in available[0]:
            name = {"\t": "tabs", ";": "semicolons", "|": "pipes", ",": "commas"}[char]
            return f"its header is one column holding {name}: read it as {fix}"
    return None


def _load_delimited(locator: str, kind: str, allowed: dict[str, str]) -> Dataset:
    """``csv:`` and ``tsv:``: one reader, two default delimiters."""
    path, opts = _options(locator, kind, allowed)
    delimiter = _delimiter(opts["delimiter"], kind)
    encoding = _text_encoding(opts["encoding"], kind)
    try:
        _check_byte_order_mark(path, encoding)
        # as jsonl: bounded, BOM dropped, regular files only
        with text_lines(
            path, what="text data", encoding=encoding, hint=_encoding_hint(kind, path, encoding)
        ) as lines:
            reader = csv.DictReader(lines, delimiter=delimiter)
            rows = list(reader)
            available = list(reader.fieldnames or [])
    except FileNotFoundError:
        raise RelstitchError("no such file", path=path) from None
    except OSError as exc:
        raise os_error(exc, path, f"cannot read {kind.upper()}") from None
    except csv.Error as exc:
        raise RelstitchError(f"cannot read {kind.upper()}: {exc}", path=path) from None
    columns = _columns(opts, kind, path, available, _glued_header_hint(available, path, delimiter))
    return _read_rows(rows, columns, path, kind, opts, lambda i: f"row {i + 2}")


@DATA_SOURCES.register("csv")
def load_csv(locator: str) -> Dataset:
    """Text (one or more parallel columns) and labels from a CSV file with a header row; ``image=COL`` as
    jsonl; ``delimiter=`` and ``encoding=`` for files that are not comma-separated UTF-8."""
    return _load_delimited(locator, "csv", CSV_OPTIONS)


@DATA_SOURCES.register("tsv")
def load_tsv(locator: str) -> Dataset:
    """A tab-separated file: ``csv:FILE#delimiter=tab`` under its own name."""
    return _load_delimited(locator, "tsv", TSV_OPTIONS)


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


# ------------------------------------------------------- tables: Parquet and saved Hugging Face datasets
MAX_TABLE_BYTES = 16 * 1024**3
"""A Parquet file or saved dataset is read into memory: at most 16 GiB of it, uncompressed."""
DATASETS_EXTRA = "pip install 'relstitch[datasets]' (in a checkout: pip install -e '.[datasets]')"
ARROW_OPTIONS = {**TABLE_OPTIONS, "text": ""}
"""``parquet:``/``hfds:``: with neither ``text=`` nor ``image=``, an image column is found by itself (the
one ``Image`` feature, or a column named ``image``), else the text is read from ``text``."""
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_][\w.-]*")


def _import_pyarrow(kind: str) -> tuple[Any, Any]:
    """``pyarrow`` and ``pyarrow.parquet``, or one line naming the extra that brings them."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise RelstitchError(
            f"{kind}: data needs the optional pyarrow package, which is not installed", hint=DATASETS_EXTRA
        ) from None
    return pyarrow, pyarrow.parquet


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise RelstitchError(
            "hfds: data needs the optional datasets package, which is not installed", hint=DATASETS_EXTRA
        ) from None
    return datasets


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _hf_features(raw: Any) -> dict[str, dict[str, Any]]:
    """The features a Hugging Face dataset records (one dict per column). Read as data, never obeyed: a
    shape relstitch does not know is ignored, and only ``ClassLabel`` names and ``Image`` columns are used."""
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, dict)}


def _parquet_features(metadata: dict[bytes, bytes] | None) -> dict[str, dict[str, Any]]:
    """The features ``datasets`` writes into a Parquet file's schema metadata (key ``huggingface``)."""
    try:
        info = json.loads((metadata or {}).get(b"huggingface", b"{}"))
        return _hf_features(info.get("info", {}).get("features"))
    except (ValueError, RecursionError, AttributeError):  # not JSON, or not the shape datasets writes
        return {}


def _class_names(features: dict[str, dict[str, Any]], label: str | None) -> list[str] | None:
    """The names of a ``ClassLabel`` label column, or None (labels are then named by their values)."""
    feature = features.get(label or "", {})
    names = feature.get("names") if feature.get("_type") == "ClassLabel" else None
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return names
    return None


def _table_columns(
    opts: dict[str, str], kind: str, path: Path, schema: Any, features: dict[str, dict[str, Any]]
) -> tuple[dict[str, str], _Columns]:
    """The columns a Parquet file or saved dataset is read by; the image column found by itself when
    neither ``text=`` nor ``image=`` is given."""
    names = list(schema.names)
    if not opts["text"] and not opts["image"]:
        images = [n for n in names if features.get(n, {}).get("_type") == "Image"]
        if len(images) != 1:
            images = [n for n in names if n == "image"]
        opts = {**opts, "image": images[0]} if images else {**opts, "text": "text"}
    hint = f"name the columns: {kind}:{path}#text=COLUMN,label=COLUMN (or image=COLUMN)"
    return opts, _columns(opts, kind, path, names, hint)


def _table_images(
    values: list[Any],
    file: Path,
    root: Path,
    column: str,
    where: Callable[[int], str],
    size: list[int] | None,
    reference: str,
) -> torch.Tensor:
    """An image column of a table: encoded bytes (a ``datasets`` ``Image`` feature stores ``{bytes, path}``)
    or paths, read only under ``root`` (the table's folder)."""
    sources: list[Path | EmbeddedImage] = []
    for i, value in enumerate(values):
        if isinstance(value, dict):  # the Image feature: its bytes when stored, else its path
            value = value.get("bytes") if value.get("bytes") is not None else value.get("path")
        if isinstance(value, bytes):
            sources.append(EmbeddedImage(value, file, where(i)))
        elif isinstance(value, str):
            sources.append(_path_under(root, value, file, where(i)))
        else:
            raise RelstitchError(
                f"{where(i)}: column {column!r} holds neither image bytes nor an image path", path=file
            )
    return read_images(sources, size, reference)


def _path_under(root: Path, text: str, file: Path, where: str) -> Path:
    """An image path a table holds, relative to ``root`` and never leading out of it (links resolved): the
    table is data, and data does not choose which of the user's files relstitch reads."""
    try:
        resolved = (root / text).resolve()
        inside = resolved.is_relative_to(root.resolve())
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte
        inside = False
    if not inside:
        raise RelstitchError(
            f"{where}: image path {text!r} leads outside {root}, the folder of the data",
            path=file,
            hint="keep the images under that folder, or store their bytes in the data itself",
        )
    return resolved


def _read_table(
    table: Any,
    columns: _Columns,
    features: dict[str, dict[str, Any]],
    path: Path,
    root: Path,
    kind: str,
    opts: dict[str, str],
) -> Dataset:
    """The Dataset of an Arrow table (a Parquet file's, a saved dataset's)."""
    values = {c: table.column(c).to_pylist() for c in columns.needed}
    size = _parse_size(opts["size"], kind)
    image = columns.image or ""

    def where(i: int) -> str:
        return f"row {i + 1}"

    return _table_dataset(
        columns,
        values,
        path,
        kind,
        where,
        lambda found: _table_images(found, path, root, image, where, size, f"{kind}:{path}"),
        _class_names(features, columns.label),
    )


@DATA_SOURCES.register("parquet")
def load_parquet(locator: str) -> Dataset:
    """A Parquet file (read with pyarrow): text columns as views, or an image column (bytes, a ``datasets``
    ``Image`` feature, or paths under the file's folder); class names from a ``ClassLabel`` feature."""
    path, opts = _options(locator, "parquet", ARROW_OPTIONS)
    arrow, parquet = _import_pyarrow("parquet")
    try:
        with open_regular(path) as handle:
            try:
                found = parquet.ParquetFile(handle)
            except (arrow.ArrowException, ValueError) as exc:  # ArrowInvalid is both
                raise RelstitchError(f"not a Parquet file ({_first_line(exc)})", path=path) from None
            meta = found.metadata
            declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            if declared > MAX_TABLE_BYTES:
                raise RelstitchError(
                    f"holds {declared:,} bytes uncompressed, more than relstitch reads ({MAX_TABLE_BYTES:,})",
                    path=path,
                )
            features = _parquet_features(found.schema_arrow.metadata)
            opts, columns = _table_columns(opts, "parquet", path, found.schema_arrow, features)
            table = found.read(columns=columns.needed)
    except FileNotFoundError:
        raise RelstitchError("no such file", path=path) from None
    except (arrow.ArrowException, ValueError) as exc:
        raise RelstitchError(f"cannot read Parquet file: {_first_line(exc)}", path=path) from None
    except OSError as exc:
        raise os_error(exc, path, "cannot read Parquet file") from None
    return _read_table(table, columns, features, path, path.parent, "parquet", opts)


def _hfds_location(text: str) -> tuple[Path, str | None]:
    """``DIR`` or ``DIR:SPLIT`` → (folder, split); an existing folder is taken whole (its name may hold a
    colon)."""
    head, sep, split = text.rpartition(":")
    if Path(text).is_dir() or not (sep and head and _SPLIT_NAME.fullmatch(split)):
        return Path(text), None
    return Path(head), split


def _hfds_splits(folder: Path) -> list[str]:
    """The splits a ``DatasetDict`` folder's ``dataset_dict.json`` names."""
    try:
        found = json.loads(
            read_text(folder / "dataset_dict.json", limit=MAX_CONFIG_BYTES, what="a split list")
        )
    except OSError as exc:
        raise os_error(exc, folder / "dataset_dict.json", "cannot read") from None
    except (ValueError, RecursionError):
        found = None
    splits = found.get("splits") if isinstance(found, dict) else None
    if not (
        isinstance(splits, list)
        and splits
        and all(isinstance(s, str) and _SPLIT_NAME.fullmatch(s) for s in splits)
    ):
        raise RelstitchError(
            "dataset_dict.json does not list the splits as DatasetDict.save_to_disk writes them", path=folder
        )
    return splits


def _hfds_folder(folder: Path, split: str | None) -> Path:
    """The folder of the one saved dataset ``hfds:DIR[:SPLIT]`` names."""
    saved = "a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk"
    if not folder.is_dir():
        raise RelstitchError("no such dataset folder", path=folder, hint=f"name {saved}")
    if (folder / "dataset_dict.json").exists():
        splits = _hfds_splits(folder)
        if split is None:
            raise UsageError(
                f"hfds: {folder} holds the splits {', '.join(splits)}: name one",
                hint=f"hfds:{folder}:{splits[0]}",
            )
        if split not in splits:
            raise RelstitchError(
                f"no split {split!r} in this dataset (it has {', '.join(splits)})",
                path=folder,
                hint=f"hfds:{folder}:{splits[0]}",
            )
        folder = folder / split
    elif split is not None:
        raise RelstitchError(
            f"not a DatasetDict folder, so no split {split!r}: it holds one dataset",
            path=folder,
            hint=f"hfds:{folder}",
        )
    if not (folder / "state.json").is_file():
        raise RelstitchError("not a saved dataset (no state.json)", path=folder, hint=f"name {saved}")
    check_folder_files(folder)  # datasets opens the files by path: a FIFO there would block it
    return folder


@DATA_SOURCES.register("hfds")
def load_hfds(locator: str) -> Dataset:
    """A dataset saved with ``save_to_disk`` (``hfds:DIR``; a ``DatasetDict``: ``hfds:DIR:SPLIT``), read as
    ``parquet:`` reads a table; images by path only under ``DIR``."""
    where, opts = _options(locator, "hfds", ARROW_OPTIONS)
    root, split = _hfds_location(str(where))
    datasets = _import_datasets()
    arrow, _ = _import_pyarrow("hfds")
    folder = _hfds_folder(root, split)
    try:
        saved = datasets.Dataset.load_from_disk(str(folder))
    except FileNotFoundError as exc:
        raise RelstitchError(f"cannot read the saved dataset: {_first_line(exc)}", path=folder) from None
    except (arrow.ArrowException, ValueError, KeyError, TypeError) as exc:
        raise RelstitchError(f"cannot read the saved dataset: {_first_line(exc)}", path=folder) from None
    except OSError as exc:
        raise os_error(exc, folder, "cannot read the saved dataset") from None
    features = _hf_features(saved.features.to_dict())
    declared = saved.data.nbytes
    if declared > MAX_TABLE_BYTES:
        raise RelstitchError(
            f"holds {declared:,} bytes, more than relstitch reads ({MAX_TABLE_BYTES:,})", path=folder
        )
    name = Path(f"{root}:{split}") if split else root
    opts, columns = _table_columns(opts, "hfds", name, saved.data.schema, features)
    table = saved.select_columns(columns.needed).with_format("arrow")[:]
    return _read_table(table, columns, features, name, root, "hfds", opts)


# ------------------------------------------------------------------------------------ NumPy arrays
MAX_ARRAY_BYTES = 16 * 1024**3
"""One NumPy array: 16 GiB at most, as its header declares it (checked before any of it is read)."""
NPZ_KEYS = {
    "images": ("images", "x", "data", "features"),
    "labels": ("labels", "y", "targets"),
    "classes": ("classes", "class_names"),
    "ids": ("ids",),
}
"""``npz:`` array names tried, in order, for each role an option can name."""
_PICKLE_HINT = "save plain numbers or text (np.save(FILE, array.astype('uint8')), 'float32', 'int64', str)"


def _npy_array(handle: IO[bytes], path: Path, what: str, size: int) -> Any:
    """One ``.npy`` stream of ``size`` bytes → its array, never unpickling (``allow_pickle=False``). The
    header is checked first: an object array, or more data than the limit or the stream holds, is refused
    unread."""
    import numpy as np

    if not size:
        raise RelstitchError(f"{what} is empty", path=path)
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise RelstitchError(f"{what}: NumPy format {version[0]}.{version[1]} is not read", path=path)
    except (ValueError, EOFError) as exc:
        raise RelstitchError(f"{what} is not a NumPy array file ({_first_line(exc)})", path=path) from None
    if dtype.hasobject:
        raise RelstitchError(
            f"{what} holds Python objects (a pickled object array); relstitch never unpickles data",
            path=path,
            hint=_PICKLE_HINT,
        )
    declared = math.prod(shape) * dtype.itemsize
    if declared > MAX_ARRAY_BYTES:
        raise RelstitchError(
            f"{what} declares {declared:,} bytes, more than relstitch reads ({MAX_ARRAY_BYTES:,})", path=path
        )
    if declared > size - handle.tell():
        raise RelstitchError(
            f"{what} is truncated: its header declares {declared:,} bytes, {size - handle.tell():,} follow",
            path=path,
        )
    handle.seek(0)
    try:
        return np.lib.format.read_array(handle, allow_pickle=False)
    except (ValueError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise RelstitchError(f"{what}: cannot read the array ({_first_line(exc)})", path=path) from None


def _npy_file(path: Path, what: str) -> Any:
    """A ``.npy`` file's array (regular files only)."""
    try:
        with open_regular(path) as handle:
            return _npy_array(handle, path, what, os.fstat(handle.fileno()).st_size)
    except FileNotFoundError:
        raise RelstitchError("no such file", path=path) from None
    except OSError as exc:
        raise os_error(exc, path, "cannot read") from None


def _to_tensor(array: Any, dtype: Any) -> torch.Tensor:
    """A NumPy array as a C-ordered, native-byte-order, writable tensor of ``dtype``."""
    import numpy as np

    out = np.ascontiguousarray(array, dtype=dtype)
    return torch.from_numpy(out if out.flags.writeable else out.copy())


def _array_inputs(array: Any, path: Path, what: str) -> tuple[torch.Tensor, str]:
    """Samples as NumPy holds them → (``x``, modality): uint8 images ``[N, H, W]``/``[N, H, W, C]`` (or
    channels first, ``[N, C, H, W]``; other integer types when every value fits 0-255), float images in
    ``[0, 1]`` in the same layouts, or float features ``[N, D]``."""
    import numpy as np

    shape = tuple(array.shape)
    integer, floating = array.dtype.kind in "iu", array.dtype.kind == "f"
    if not (integer or floating):
        raise RelstitchError(
            f"{what} has dtype {array.dtype}: expected uint8 images, float images in [0, 1] or "
            "float features",
            path=path,
        )
    if floating and array.ndim == 2:
        return _to_tensor(array, np.float32), "tensor"
    if array.ndim not in (3, 4) or 0 in shape[1:]:
        raise RelstitchError(
            f"{what} has shape {shape}: expected images [N, H, W] or [N, H, W, C], or features [N, D]",
            path=path,
            hint="features are floating-point: array.astype('float32')"
            if integer and array.ndim == 2
            else None,
        )
    if array.ndim == 4:
        if shape[3] in (1, 3):  # NumPy's (and PIL's) convention: channels last
            array = array.transpose(0, 3, 1, 2)
        elif shape[1] not in (1, 3):
            raise RelstitchError(
                f"{what} has shape {shape}: images need 1 or 3 channels, on the last axis or the second",
                path=path,
                hint="drop an alpha channel: array[..., :3]",
            )
    if integer and array.size and (int(array.min()) < 0 or int(array.max()) > 255):
        raise RelstitchError(
            f"{what} ({array.dtype}) holds values outside 0-255: not 8-bit images", path=path
        )
    if floating and array.size and (float(array.min()) < 0 or float(array.max()) > 1):
        raise RelstitchError(
            f"{what} ({array.dtype}) holds values outside [0, 1]: float images are read as 0-1",
            path=path,
            hint="divide 0-255 images by 255, or store them as uint8",
        )
    x = _to_tensor(array, np.uint8 if integer else np.float32)
    return (x.unsqueeze(1) if x.ndim == 3 else x), "image"


def _array_labels(
    array: Any, count: int, path: Path, what: str, classes: Any
) -> tuple[torch.Tensor, list[str]]:
    """Labels (integers, or text that names the classes) → class indices and names; integer labels are named
    by ``classes`` when given, else numbered."""
    import numpy as np

    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or len(array) != count:
        raise RelstitchError(
            f"{what} has shape {tuple(array.shape)}: need {count} labels, one per sample", path=path
        )
    if array.dtype.kind in "US":
        if classes is not None:
            raise RelstitchError(f"{what} are class names already: drop the classes array", path=path)
        return _classes_of(_texts(array, path, what), path)
    if array.dtype.kind not in "iu":
        raise RelstitchError(
            f"{what} has dtype {array.dtype}: labels are integers or text",
            path=path,
            hint="whole-number float labels: array.astype('int64')" if array.dtype.kind == "f" else None,
        )
    y = _to_tensor(array, np.int64)
    if len(y) and int(y.min()) < 0:
        raise RelstitchError(f"{what} must be 0 or more (found {int(y.min())})", path=path)
    if classes is not None:
        if classes.ndim != 1 or classes.dtype.kind not in "US" or not len(classes):
            raise RelstitchError(
                f"the classes array ({classes.dtype}, shape {tuple(classes.shape)}) is not a list of names",
                path=path,
            )
        return y, _texts(classes, path, "the classes array")
    return y, [str(i) for i in range(int(y.max()) + 1 if len(y) else 0)]


def _texts(array: Any, path: Path, what: str) -> list[str]:
    """A NumPy text array (``str``, or UTF-8 ``bytes``) as Python strings."""
    try:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.tolist()]
    except UnicodeDecodeError:
        raise RelstitchError(f"{what} is not UTF-8 text", path=path) from None


def _array_dataset(
    name: str, path: Path, x: Any, y: Any | None, classes: Any = None, ids: Any = None
) -> Dataset:
    """The Dataset of NumPy arrays: samples, labels (None: unlabelled), class names and ids."""
    import numpy as np

    inputs, modality = _array_inputs(x, path, "the samples")
    if y is None:
        labels, names = torch.zeros(len(inputs), dtype=torch.int64), list[str]()
    else:
        labels, names = _array_labels(y, len(inputs), path, "the labels", classes)
    if ids is not None and (ids.dtype.kind not in "iu" or tuple(ids.shape) != (len(inputs),)):
        raise RelstitchError(
            f"the ids array ({ids.dtype}, shape {tuple(ids.shape)}) is not one integer per sample", path=path
        )
    numbered = torch.arange(len(inputs), dtype=torch.int64) if ids is None else _to_tensor(ids, np.int64)
    return Dataset(name, inputs, labels, names, numbered, modality)


def _unlabelled(text: str) -> bool:
    return text.lower() == "none"


@DATA_SOURCES.register("npy")
def load_npy(locator: str) -> Dataset:
    """``npy:SAMPLES.npy#labels=LABELS.npy`` (or ``labels=none``): images or features and their labels as
    two NumPy files, loaded with ``allow_pickle=False``."""
    path, opts = _options(locator, "npy", {"labels": ""})
    if not opts["labels"]:
        raise UsageError(
            "npy: name the labels file", hint=f"npy:{path}#labels=LABELS.npy (or labels=none: unlabelled)"
        )
    x = _npy_file(path, "the samples array")
    y = None if _unlabelled(opts["labels"]) else _npy_file(Path(opts["labels"]), "the labels array")
    return _array_dataset(f"npy:{path}", path, x, y)


@DATA_SOURCES.register("npz")
def load_npz(locator: str) -> Dataset:
    """``npz:FILE[#images=KEY,labels=KEY,classes=KEY,ids=KEY]``: arrays of one ``.npz`` file (``np.savez``,
    compressed or not) by name, common names tried when not given (:data:`NPZ_KEYS`); never unpickled."""
    path, opts = _options(locator, "npz", {role: "" for role in NPZ_KEYS})
    try:
        with open_regular(path) as handle:
            if not os.fstat(handle.fileno()).st_size:
                raise RelstitchError("is empty", path=path)
            try:
                archive = zipfile.ZipFile(handle)
            except (zipfile.BadZipFile, ValueError, EOFError) as exc:
                raise RelstitchError(f"not an .npz file ({_first_line(exc)})", path=path) from None
            with archive:
                members = {i.filename[:-4]: i for i in archive.infolist() if i.filename.endswith(".npy")}
                arrays: dict[str, Any] = {}
                for role, candidates in NPZ_KEYS.items():
                    key = _npz_key(role, opts[role], candidates, members, path)
                    if key is not None:
                        with archive.open(members[key]) as member:
                            arrays[role] = _npy_array(member, path, f"array {key!r}", members[key].file_size)
    except FileNotFoundError:
        raise RelstitchError("no such file", path=path) from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise RelstitchError(f"corrupt .npz file ({_first_line(exc)})", path=path) from None
    except OSError as exc:
        raise os_error(exc, path, "cannot read") from None
    return _array_dataset(
        f"npz:{path}", path, arrays["images"], arrays.get("labels"), arrays.get("classes"), arrays.get("ids")
    )


def _npz_key(
    role: str, given: str, candidates: tuple[str, ...], members: dict[str, Any], path: Path
) -> str | None:
    """The array an ``npz:`` role reads: the one named, else the first common name present; None where the
    role is optional (classes, ids) or the labels are ``none``."""
    if role == "labels" and _unlabelled(given):
        return None
    if given:
        if given in members:
            return given
        raise RelstitchError(
            f"no array {given!r} (it holds {', '.join(map(repr, sorted(members))) or 'none'})",
            path=path,
            hint=f"name them: npz:{path}#images=KEY,labels=KEY",
        )
    found = next((c for c in candidates if c in members), None)
    if found is None and role in ("images", "labels"):
        raise RelstitchError(
            f"no {role} array: none of {', '.join(map(repr, candidates))} "
            f"(it holds {', '.join(map(repr, sorted(members))) or 'none'})",
            path=path,
            hint=f"name them: npz:{path}#images=KEY,labels=KEY"
            + (" (or labels=none)" if role == "labels" else ""),
        )
    return found


def _parse_size(text: str, kind: str) -> list[int] | None:
    """``H,W`` / ``HxW`` / ``N`` (square) → ``[H, W]``; empty → None (images must then share one size)."""
    if not text:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"{kind}: bad size {text!r} ({exc}); write size=H,W or size=N") from None


@dataclass(frozen=True)
class EmbeddedImage:
    """An image's encoded bytes (PNG, JPEG...) stored inside a data file: a Parquet cell, a saved dataset's
    ``Image`` feature. ``file`` and ``where`` (``"row 3"``) name it in errors."""

    data: bytes
    file: Path
    where: str


def read_images(
    files: Sequence[Path | EmbeddedImage], size: list[int] | None, reference: str
) -> torch.Tensor:
    """Image files (or image bytes held in a data file) → uint8 ``[N, C, H, W]``: grey if every image is grey,
    RGB otherwise; all resized to ``size`` (bilinear) when given, else they must share one size
    (``reference`` names the fix). A file is read whole, within :data:`MAX_IMAGE_BYTES`."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.functional import pil_to_tensor

    images = []
    for source in files:
        if isinstance(source, EmbeddedImage):
            data, path, where = source.data, source.file, f"{source.where}: "
        else:
            path, where = source, ""
            try:
                # Read here, not opened by PIL from the path: a FIFO named like an image would block PIL's
                # open forever, and a file is bounded before any of it is decoded.
                data = read_bytes(source, limit=MAX_IMAGE_BYTES, what="an image")
            except OSError as exc:  # missing, unreadable: the file system's error, its cause
                raise os_error(exc, source, "cannot read image") from None
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                images.append(image.copy())
        except UnidentifiedImageError:
            raise RelstitchError(f"{where}cannot read image: not an image PIL knows", path=path) from None
        except (OSError, Image.DecompressionBombError, ValueError) as exc:  # truncated, or a pixel bomb
            raise RelstitchError(f"{where}cannot read image: {exc}", path=path) from None
    mode = "L" if all(im.mode == "L" for im in images) else "RGB"
    tensors = []
    for source, image in zip(files, images, strict=True):
        image = image.convert(mode)
        if size is not None:
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        elif image.size != images[0].size:
            named = source if isinstance(source, Path) else source.file
            where = "" if isinstance(source, Path) else f"{source.where}: "
            raise RelstitchError(
                f"{where}images differ in size ({images[0].size[0]}x{images[0].size[1]} and "
                f"{image.size[0]}x{image.size[1]})",
                path=named,
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


# ---------------------------------------------------------------------------------- test splits
def test_split_reference(ref: str) -> str | None:
    """The test split of the source that ``ref`` reads, or None when it has none.

    ``builtin:train`` → ``builtin:test``; ``idx:DIR[:train]`` (or a bare folder ``DIR``) → ``idx:DIR:test``
    when ``DIR`` holds the ``t10k-*`` images and labels; ``hfds:DIR[:SPLIT]`` → ``hfds:DIR:test`` when
    ``DIR`` is a ``DatasetDict`` folder with a ``test`` split. A test split itself, and every other kind, has
    none. Options after ``#`` (``#captions=...``) carry over. Only file names are looked at, nothing is read.
    """
    head, fragment = split_fragment(ref)
    options = f"#{fragment}" if fragment else ""
    kind, sep, locator = head.partition(":")
    if kind == "builtin":
        return f"builtin:test{options}" if (locator if sep else "train") in ("", "train") else None
    if kind == "hfds" and sep:
        folder, split = _hfds_location(locator)
        saved_dict = (folder / "dataset_dict.json").is_file() and (folder / "test" / "state.json").is_file()
        return f"hfds:{folder}:test{options}" if saved_dict and split != "test" else None
    if kind == "idx" and sep:
        folder_text, _, split = locator.rpartition(":")
        if split not in SPLITS:  # as _load_idx reads it: no split given, the whole locator is the folder
            folder_text, split = locator, "train"
    elif kind not in DATA_SOURCES and Path(head).is_dir():
        folder_text, split = head, "train"
    else:
        return None
    if split != "train" or not Path(folder_text).is_dir():
        return None
    try:
        for kind_of_file in ("images", "labels"):
            _find_idx(Path(folder_text), "t10k", kind_of_file)
    except RelstitchError:
        return None
    return f"idx:{folder_text}:test{options}"
