"""The one error type relstitch raises for a user's mistake.

The CLI turns a :class:`RelstitchError` into a one-line message and exit code 1 (or 2 for
:class:`UsageError`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RelstitchError(Exception):
    """A problem with the user's input: a file, an argument, a combination. Exit code 1."""

    exit_code = 1

    def __init__(self, message: str, *, path: object | None = None, hint: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.hint = hint
        parts = [f"{self.path}: {message}" if self.path else message]
        if hint:
            parts.append(hint)
        # One line, always: the CLI prints exactly this.
        super().__init__(" — ".join(p.replace("\n", " ") for p in parts))


class UsageError(RelstitchError):
    """Bad command-line usage (a wrong option value or combination). Exit code 2."""

    exit_code = 2
