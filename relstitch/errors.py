"""The one error type relstitch raises for a user's mistake.

The CLI turns a :class:`RelstitchError` into a one-line message and exit code 1 (or 2 for
:class:`UsageError`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class RelstitchError(Exception):
    """A problem with the user's input: a file, an argument, a combination. Exit code 1."""

    exit_code = 1

    def __init__(self, message: str, *, path: object | None = None, hint: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.hint = hint
        parts = [f"{shorten_path(self.path)}: {message}" if self.path else message]
        if hint:
            parts.append(hint)
        # One line, always: the CLI prints exactly this.
        super().__init__(" — ".join(p.replace("\n", " ") for p in parts))


def printable(text: str) -> str:
    """``text`` with every control character (an ANSI escape, a line break, a bell) written as ``\\x1b``,
    ``\\n``...: a name read from a file is shown, never obeyed by a terminal or allowed to break a line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def shorten_path(path: str, limit: int = 160) -> str:
    """A path as a message shows it: whole, unless it is so long (a 300-byte name) it would drown the
    message."""
    return path if len(path) <= limit else f"{path[: limit // 2]}…{path[-(limit // 3) :]}"


class UsageError(RelstitchError):
    """Bad command-line usage (a wrong option value or combination). Exit code 2."""

    exit_code = 2


def unknown_choice(
    what: str, value: object, choices: Iterable[str], *, path: object | None = None
) -> UsageError:
    """The error for a value that is not one of its ``choices``: bad usage (exit 2), the closest as a hint.

    One message for every option value (``--dtype``, ``--method``, ``--strategy``, ``--arch``...). Where the
    value came from a file's metadata, the loader re-raises it as a plain :class:`RelstitchError` (exit 1).
    """
    import difflib  # noqa: PLC0415

    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), names, n=1)
    hint = f"did you mean {close[0]!r}?" if close else None
    return UsageError(f"unknown {what} {value!r}; choose one of {', '.join(names)}", path=path, hint=hint)


def first_line(exc: BaseException) -> str:
    """``TypeName: the first line of its message``: what a third party's exception says, in one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


_OS_HINTS = {
    "ENAMETOOLONG": "shorten the name (at most 255 bytes per file or folder name)",
    "ELOOP": "the path is a loop of symbolic links: point it at a real file",
    "EACCES": "check the permissions or choose another path",
    "EPERM": "check the permissions or choose another path",
    "ENOTDIR": "a part of the path is a file, not a folder",
    "EISDIR": "name a file, not a folder",
    "ENOSPC": "free some disk space or write elsewhere",
    "EROFS": "the file system is read-only: write elsewhere",
    "ENOENT": "check the path",
}


def os_error(exc: OSError, path: object | None = None, doing: str | None = None) -> RelstitchError:
    """An operating-system error on a user's path as one line: the path, the cause, the fix.

    Every verb reads and writes paths the user chose; a name over the length limit or a symlink loop
    is their mistake to fix, not a bug to show as a traceback. ``doing`` says what failed ("cannot read
    report"); the hint follows the cause.
    """
    import errno  # noqa: PLC0415

    where = path if path is not None else exc.filename
    cause = exc.strerror or str(exc) or type(exc).__name__  # strerror: the cause without the (long) file name
    if doing:
        cause = f"{doing}: {cause}"
    if exc.filename2 is not None:
        cause += f" (and {shorten_path(str(exc.filename2))})"
    name = errno.errorcode.get(exc.errno or 0, "")
    return RelstitchError(cause, path=where, hint=_OS_HINTS.get(name))


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process gets SIGTERM, so it unwinds exactly like Ctrl-C.

    A KeyboardInterrupt subclass on purpose: every ``except BaseException`` cleanup (temporary files,
    stream writers) and every place that handles Ctrl-C treats a polite kill the same way.
    """

    def __init__(self, signal_number: int) -> None:
        self.signal_number = signal_number
        super().__init__(f"terminated by signal {signal_number}")


class RelstitchWarning(UserWarning):
    """Something the user should know that does not stop the run (duplicate anchors, a single-class
    evaluation, zero-norm latents). The library only warns (``warnings.warn``); the CLI prints each
    distinct warning once, as one ``warning: ...`` line on stderr."""
