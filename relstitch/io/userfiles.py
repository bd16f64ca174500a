"""Opening the user's files: regular files only, never blocking, and text read within stated limits.

Every file relstitch reads on a user's behalf goes through here (or through :func:`check_regular` where a
library opens the path itself). A FIFO blocks ``open()`` until a writer appears, and a device such as
``/dev/zero`` never ends, so anything that is not a regular file is refused *before* it is read, in one
line naming the path and what it is. Text is read within named limits, so a hostile or mistaken file
costs at most the limit, never all memory; each refusal says the limit and the file.

Torch-free on purpose: ``relstitch --help`` and ``inspect`` import this.
"""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import RelstitchError, os_error

MAX_TEXT_BYTES = 1024**3
"""Text data (``jsonl:``, ``csv:``): 1 GiB in all, far above any labelled text set relstitch is used with."""
MAX_LINE_BYTES = 16 * 1024**2
"""One line of text data: 16 MiB (a line is a record; a longer one is a file without line breaks)."""
MAX_REPORT_BYTES = 256 * 1024**2
"""A JSON report: 256 MiB (a matrix of thousands of pairs is a few MiB)."""
MAX_IDS_BYTES = 64 * 1024**2
"""An anchor ids file: 64 MiB (millions of ids)."""
MAX_CONFIG_BYTES = 64 * 1024**2
"""A model folder's JSON configuration (``config.json``, ``tokenizer_config.json``): 64 MiB."""
MAX_IMAGE_BYTES = 256 * 1024**2
"""One image file of image data (``imagefolder:``, an ``image=`` column): 256 MiB (a photo is a few MiB)."""

_NOT_REGULAR_HINT = "give a regular file (pipes and devices can block or never end)"
# O_NONBLOCK: open() on a FIFO returns at once instead of waiting for a writer; O_NOCTTY: a terminal named
# by mistake never becomes the controlling one. Both are absent on Windows, where neither applies.
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
)


def kind_of(mode: int) -> str | None:
    """What a non-regular file is, in words (``"a FIFO (named pipe)"``); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: str | os.PathLike[str], mode: int) -> None:
    kind = kind_of(mode)
    if kind is not None:
        raise RelstitchError(f"is {kind}, not a regular file", path=path, hint=_NOT_REGULAR_HINT)


def check_regular(path: str | os.PathLike[str], expected: str | None = None) -> Path:
    """Refuse a path that is not a regular file, for a library (safetensors, torch, PIL) that opens it itself.

    ``os.stat`` never blocks, even on a FIFO. Raises :class:`RelstitchError` (missing, unreadable, a symlink
    loop, a name too long, or not a regular file; a folder is ``"is a folder, expected {expected}"`` when
    ``expected`` says what belongs there); returns the path.
    """
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise RelstitchError("no such file", path=p, hint="check the path") from None
    except OSError as exc:
        raise os_error(exc, p, "cannot read") from None
    if expected and stat.S_ISDIR(mode):
        raise RelstitchError(f"is a folder, expected {expected}", path=p)
    _refuse(p, mode)
    return p


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a regular file for binary reading, race-free and without ever blocking.

    The path is stat'ed first (a device is not even opened), then opened non-blocking and checked again on
    the descriptor itself (it may have been replaced in between); only then is blocking I/O restored.
    Raises :class:`RelstitchError` for anything but a regular file; ``OSError`` (missing, permission) is
    left to the caller, which words it for what it was reading.
    """
    _refuse(path, os.stat(path).st_mode)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        _refuse(path, os.fstat(fd).st_mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # a regular file: reads behave as a plain open()'s
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def size_text(n: int) -> str:
    """``1073741824`` → ``"1 GiB"``; sizes that are not a whole KiB/MiB/GiB in bytes (``"1,000 bytes"``)."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n:,} bytes"


def _too_large(path: str | os.PathLike[str], limit: int, what: str) -> RelstitchError:
    return RelstitchError(
        f"larger than {size_text(limit)}, the limit for {what}",
        path=path,
        hint="check that this is the file you meant, or split it",
    )


def read_bytes(path: str | os.PathLike[str], *, limit: int, what: str) -> bytes:
    """The whole of a regular file, refused (unread) past ``limit`` bytes; ``what`` names it in the
    message."""
    with open_regular(path) as handle:
        if os.fstat(handle.fileno()).st_size > limit:
            raise _too_large(path, limit, what)
        data = handle.read(limit + 1)  # the file may have grown since fstat: never read past the limit
    if len(data) > limit:
        raise _too_large(path, limit, what)
    return data


def read_text(path: str | os.PathLike[str], *, limit: int, what: str) -> str:
    """A regular file's UTF-8 text (a byte-order mark dropped), refused past ``limit`` bytes."""
    data = read_bytes(path, limit=limit, what=what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RelstitchError(
            f"not UTF-8 text (invalid byte at offset {exc.start})", path=path, hint=f"save {what} as UTF-8"
        ) from None


def read_head(path: str | os.PathLike[str], size: int) -> bytes:
    """The first ``size`` bytes (fewer if the file is shorter) of a regular file: for telling what a file
    is."""
    with open_regular(path) as handle:
        return handle.read(size)


@contextmanager
def text_lines(
    path: str | os.PathLike[str],
    *,
    what: str,
    max_line: int | None = None,
    max_total: int | None = None,
    encoding: str = "utf-8",
    hint: str | None = None,
) -> Iterator[Iterator[str]]:
    """``with text_lines(path, what=...) as lines:`` the lines of a text file, line ends kept.

    The text is UTF-8 (a byte-order mark dropped) unless ``encoding`` names another, which must encode the
    line end as ASCII does (``latin-1``, ``cp1252``; the caller checks). A line longer than ``max_line``
    bytes (default :data:`MAX_LINE_BYTES`) or a file past ``max_total`` (default :data:`MAX_TEXT_BYTES`) is
    refused with the limit and the line number, as is a line the encoding cannot read (``hint``, if given,
    says what to do). Lines end at ``\\n`` (``\\r\\n`` is kept whole), as CSV and JSON lines do.
    """
    max_line = MAX_LINE_BYTES if max_line is None else max_line
    max_total = MAX_TEXT_BYTES if max_total is None else max_total
    with open_regular(path) as handle:
        if os.fstat(handle.fileno()).st_size > max_total:
            raise _too_large(path, max_total, what)
        yield _lines(handle, path, what, max_line, max_total, encoding, hint or f"save {what} as UTF-8")


def _lines(
    handle: BinaryIO,
    path: str | os.PathLike[str],
    what: str,
    max_line: int,
    max_total: int,
    encoding: str,
    hint: str,
) -> Iterator[str]:
    utf8 = codecs.lookup(encoding).name == "utf-8"
    # utf-8-sig drops a BOM at the start, only there
    decode = codecs.getincrementaldecoder("utf-8-sig" if utf8 else encoding)().decode
    total = 0
    number = 0
    while True:
        raw = handle.readline(max_line + 3)  # room for the line end: only the line's own bytes count
        if not raw:
            return
        number += 1
        total += len(raw)
        if total > max_total:
            raise _too_large(path, max_total, what)
        if len(raw.rstrip(b"\r\n")) > max_line:
            raise RelstitchError(
                f"line {number} is longer than {size_text(max_line)}, the limit per line of {what}",
                path=path,
                hint="check that this is the file you meant (one record per line)",
            )
        try:
            # No character of UTF-8 (or of an encoding the caller allowed) contains a newline byte, so each
            # line decodes on its own.
            yield decode(raw, final=True)
        except UnicodeDecodeError as exc:
            raise RelstitchError(
                f"line {number} is not {'UTF-8' if utf8 else encoding} text "
                f"(invalid byte at column {exc.start + 1})",
                path=path,
                hint=hint,
            ) from None


def check_folder_files(folder: str | os.PathLike[str]) -> None:
    """Refuse a FIFO, device or socket directly inside ``folder``, for a library that opens the folder's
    files by path itself (transformers on an ``hf:`` model folder). Subfolders, and entries that cannot be
    stat'ed (a broken link), are left to that library, which says what it needs."""
    for entry in sorted(Path(folder).iterdir()):
        try:
            mode = entry.stat().st_mode
        except OSError:
            continue
        if not stat.S_ISDIR(mode):
            _refuse(entry, mode)
