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
