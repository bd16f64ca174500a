"""Writes that appear whole or not at all.

Every output goes to a temporary file in the target folder, is flushed and fsync'ed, and is then
renamed into place (``os.replace`` is atomic on one filesystem). An interruption at any point leaves
either the old file or nothing, never half a file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import RelstitchError, os_error


def check_output(path: str | os.PathLike[str], *, force: bool) -> Path:
    """Refuse an output that exists (unless ``force``) or whose folder is missing/unwritable.

    Commands call this *before* doing any work, so a mistake costs nothing.
    """
    out = Path(path)
    found = _stat(out)
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise RelstitchError("is a folder, expected a file path", path=out, hint="name a file inside it")
    if found is not None and not stat.S_ISREG(
        found.st_mode
    ):  # a FIFO or a device: replacing it is never meant
        raise RelstitchError("exists and is not a regular file", path=out, hint="write the output to a file")
    if found is not None and not force:
        raise RelstitchError("already exists", path=out, hint="pass --force to overwrite it")
    folder = out.parent if str(out.parent) else Path(".")
    where = _stat(folder)
    if where is None or not stat.S_ISDIR(where.st_mode):
        raise RelstitchError("output folder does not exist", path=folder, hint="create it first")
    if not os.access(folder, os.W_OK):
        raise RelstitchError("output folder is not writable", path=folder, hint="choose another folder")
    # os.access says yes to root on a read-only mount or /proc: only creating a file there is proof.
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RelstitchError(
            f"output folder is not writable ({exc.strerror})", path=folder, hint="choose another folder"
        ) from None
    return out


def _stat(path: Path) -> os.stat_result | None:
    """``os.stat``, None when nothing is there; any other OS error (a name too long, a symlink loop) is
    one line."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise os_error(exc, path) from None


def check_outputs(
    paths: Sequence[str | os.PathLike[str]], *, force: bool, inputs: Sequence[str | os.PathLike[str]] = ()
) -> list[Path]:
    """:func:`check_output` for each path, and refuse one file named twice or an output that is an input.

    Without this, ``--json r --markdown r`` would run the whole job and then fail (or, with ``--force``,
    keep only the last), and ``fit e.safetensors -o e.safetensors --force`` would replace its own input.
    """
    seen: set[str] = set()
    for path in paths:
        resolved = os.path.realpath(path)  # not Path.resolve: it raises RuntimeError on a symlink loop
        if resolved in seen:
            raise RelstitchError(
                "is named twice as an output", path=path, hint="give each output its own file"
            )
        seen.add(resolved)
    for path in inputs:
        if os.path.realpath(path) in seen:
            raise RelstitchError(
                "is both an input and an output", path=path, hint="write the output to another file"
            )
    return [check_output(path, force=force) for path in paths]


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, force: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename)."""
    out = check_output(path, force=force)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent or ".")
    except OSError as exc:
        raise RelstitchError(f"cannot write ({exc.strerror})", path=out) from None
    try:
        # mkstemp creates the file 0600; give the output the permissions a plain open() would.
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, out)
    except BaseException as exc:
        # KeyboardInterrupt and SystemExit included: the temporary file must not survive.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):  # a full disk, a vanished folder: the user's problem, said in one line
            raise RelstitchError(f"cannot write ({exc.strerror or exc})", path=out) from None
        raise
    return out


def _current_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it and restore it
    os.umask(mask)
    return mask
