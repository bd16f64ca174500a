"""Reading source references: ``kind:locator#key=value,key=value`` (shared by model and data sources).

Two types, on purpose: a ``str`` is a reference **the user typed** and is parsed (its kind, its ``#options``);
a :class:`~pathlib.Path` is **a file** and is never parsed. Everything that comes from disk rather than from
the user (a glob's match, a default location, a path recorded in metadata or a report) is handed on as a
``Path``, so a file named ``python:os:system(...)#name=x.encoder.safetensors`` stays a file name and can never
become a reference, an import or a call.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from .errors import RelstitchError, UsageError
from .io.artifacts import read_header
from .io.userfiles import read_head


def split_fragment(ref: str) -> tuple[str, str]:
    """``hf:DIR#view=fr`` → (``hf:DIR``, ``view=fr``); a ``#`` not followed by KEY=VALUE belongs to the
    path."""
    head, sep, fragment = ref.rpartition("#")
    if sep and "=" in fragment:
        return head, fragment
    return ref, ""


def split_options(text: str) -> dict[str, str]:
    """``"text=en,fr,label=topic"`` → ``{"text": "en,fr", "label": "topic"}``.

    A comma-separated piece without ``=`` continues the previous value, so lists need no quoting.
    Keys are normalised to snake case (``max-length`` → ``max_length``).
    """
    raw: dict[str, str] = {}
    key = None
    for piece in text.split(","):
        if "=" in piece:
            key, _, value = piece.partition("=")
            key = key.strip().replace("-", "_")
            raw[key] = value.strip()
        elif key is not None:
            raw[key] += "," + piece.strip()
        elif piece.strip():
            raise UsageError(f"option {piece.strip()!r} is not KEY=VALUE")
    return raw


def parse_size(text: str) -> list[int]:
    """``H,W`` / ``HxW`` / ``N`` (square) → ``[H, W]`` of integers from 1 to ``MAX_IMAGE_SIDE``; anything
    else is a ValueError.

    One reading for every source option that takes an image size (``resize=`` of model sources,
    ``size=`` of image data).
    """
    from .data.dataset import MAX_IMAGE_SIDE  # noqa: PLC0415  (relstitch.data imports this module)

    try:
        values = [int(p) for p in text.replace("x", ",").split(",") if p.strip()]
    except ValueError:  # int()'s own words name Python, not the option
        raise ValueError(f"expected H,W or one size, got {text!r}") from None
    if len(values) == 1:
        values *= 2  # 224 means 224x224
    if len(values) != 2 or min(values) < 1:
        raise ValueError(f"expected H,W or one size, got {text!r}")
    if max(values) > MAX_IMAGE_SIDE:  # a typo (224000) would ask for a tensor no machine holds
        raise ValueError(f"sides go from 1 to {MAX_IMAGE_SIDE} pixels, got {text!r}")
    return values


_NO_FILE_KINDS = ("builtin", "torchvision", "timm", "python")
"""Reference kinds whose locator is a name, not a path (``builtin:test``, ``torchvision:resnet18``,
``timm:resnet18``, ``python:pkg:fn``)."""

_SUBFOLDER_KINDS = ("imagefolder",)
"""Reference kinds that read a folder's class subfolders, never the folder's own files."""


_NEVER_READ_BY_FOLDERS = (".csv", ".md", ".html")
"""Report forms relstitch writes that no folder source (``hf:``, ``idx:``) reads."""


def _earlier_output(path: Path) -> bool:
    """Whether ``path`` is something relstitch writes (an artifact, a report) that no folder source reads:
    in a model or data folder, it was written by an earlier run, so a rerun with ``--force`` may replace
    it."""
    if path.suffix.lower() in _NEVER_READ_BY_FOLDERS:
        return True
    if path.suffix == ".json":  # hf: folders read JSON (config, tokenizer), but never a relstitch report
        try:
            return b'"relstitch-report"' in read_head(path, 256)
        except (OSError, RelstitchError):  # unreadable, or not a regular file: not an earlier run's report
            return False
    if path.suffix != ".safetensors":
        return False
    try:
        return read_header(path).kind is not None
    except (
        RelstitchError
    ):  # not a relstitch file (or not safetensors at all): the folder's source may read it
        return False


Reference = str | os.PathLike[str]
"""A model or data reference: a typed ``kind:locator#options`` string, or a file (``Path``), never parsed."""


def expand_references(patterns: list[str], what: str) -> list[Reference]:
    """Expand the globs among typed references (for shells that did not), keeping order, dropping repeats.

    A pattern without glob characters is returned as typed (a ``str``, parsed later). Each glob match is a
    :class:`Path`: a file found on disk, never read as a reference. A glob that matches nothing is refused.
    """
    found: list[Reference] = []
    seen: set[str] = set()
    for pattern in patterns:
        matches: list[Reference] = (
            [Path(m) for m in sorted(glob.glob(pattern))] if glob.has_magic(pattern) else [pattern]
        )
        if not matches:
            raise RelstitchError(f"no {what} matches {pattern!r}", hint="check the path or glob")
        for match in matches:
            key = os.fspath(match)
            if key not in seen:
                seen.add(key)
                found.append(match)
    return found


def reference_files(*refs: object) -> tuple[str, ...]:
    """The existing files that model or data references read, for a command to refuse writing over them.

    A plain path, the locator of ``kind:LOCATOR`` (``tensors:x.safetensors``, ``idx:DIR:train``), a
    folder's own files (``hf:DIR``, ``idx:DIR``; not relstitch artifacts, which earlier runs wrote there,
    nor an ``imagefolder:`` root's files, which it never reads) and ``weights=FILE``/``labels=FILE`` options
    all count; ``None`` and names (``builtin:``, ``torchvision:``, ``timm:``, ``python:``, a Hub id found in
    the Hugging Face cache) are skipped.
    """
    import re  # noqa: PLC0415

    found: list[str] = []

    def add(candidate: str, folder_files: bool = True) -> None:
        path = Path(candidate)
        try:
            if path.is_file():
                found.append(str(path))
            elif path.is_dir() and folder_files:
                found.extend(str(p) for p in sorted(path.iterdir()) if p.is_file() and not _earlier_output(p))
        except (
            OSError
        ):  # a name too long, a loop: not a file an output could replace; its loader says what is wrong
            return

    for ref in refs:
        if ref is None:
            continue
        if isinstance(ref, os.PathLike):  # a file, never parsed as a reference
            add(os.fspath(ref))
            continue
        head, fragment = split_fragment(str(ref))
        options = split_options(fragment) if fragment else {}
        for named in ("weights", "labels"):  # files an option names (npy:X#labels=Y.npy) are read too
            if options.get(named):
                add(options[named])
        kind = re.match(r"([a-z][a-z0-9_-]+):(?!//)", head)  # two letters at least: a Windows drive is a path
        if kind and kind.group(1) in _NO_FILE_KINDS:
            continue
        locator = head[kind.end() :] if kind else head
        folder_files = not (kind and kind.group(1) in _SUBFOLDER_KINDS)
        add(locator, folder_files)
        if ":" in locator and not Path(locator).exists():  # idx:DIR:train
            add(locator.rsplit(":", 1)[0], folder_files)
    return tuple(found)
