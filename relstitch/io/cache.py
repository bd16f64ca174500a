"""An embeddings cache for ``eval-matrix``: encode once per (encoder, anchors, data), ever.

Files are ordinary embeddings files named by a hash of the three content hashes, so a cache entry is
reused whatever the encoder file is called, and any change to the weights, the anchor set or the data
gives a new key. An entry whose recorded hashes do not match (or that cannot be read) is re-encoded
and replaced; entries are written atomically, so concurrent runs can share a folder.

The folder is ``--cache DIR``, or without it a per-run folder under the user cache directory
(:func:`run_folder`: ``$XDG_CACHE_HOME/relstitch/runs/<key of the command's inputs>``) that the command
removes once its report is written: a run killed half-way keeps every encoder it finished, and the same
command run again finds them. Under torchrun the ranks hand their rows to rank 0 through the same folder
(:func:`records_folder`). :func:`cache_folders` and :func:`clear_folder` are ``relstitch cache ls|clear``:
they touch only the files named as relstitch names them, and never follow a symbolic link.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RelstitchError, first_line, os_error, printable
from .userfiles import read_text

if TYPE_CHECKING:
    import torch

    from ..anchor_set import Anchors
    from ..components import Encoder
    from ..data import Dataset
    from ..distributed import Group
    from ..encoding import BatchSize, EncodedSpace
    from ..progress import ProgressFn


ENTRY_SUFFIX = ".embeddings.safetensors"
_ENTRY = re.compile(r"[0-9a-f]{32}\.embeddings\.safetensors")
_TEMP = re.compile(r"\.[0-9a-f]{32}\.embeddings\.safetensors\..+\.tmp")  # an atomic write cut short
_RECORDS = re.compile(r"\.ranks-[0-9a-f]{32}")
_RECORD = re.compile(r"(\d+\.row\.json|\.\d+\.row\.json\..+\.tmp)")
_RUN = re.compile(r"[0-9a-f]{16}")
RUN_MARKER = "run.json"
"""In each per-run folder: the command that made it (``cache ls`` shows it)."""
_MARKER = re.compile(r"(run\.json|\.run\.json\..+\.tmp)")


def cache_key(encoder_hash: str, anchor_hash: str, data_hash: str, precision: str = "float32") -> str:
    """The file stem of a cache entry: sha256 over the three identities (and a reduced ``precision``).

    Vectors computed in bfloat16 or float16 are other numbers, so they get their own entries; float32
    keeps the key it always had, on any device (CPU and CUDA agree within float32 rounding).
    """
    identity = f"{encoder_hash}|{anchor_hash}|{data_hash}" + (
        f"|{precision}" if precision != "float32" else ""
    )
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def cache_path(
    folder: str | os.PathLike[str],
    encoder: Encoder,
    anchors: Anchors,
    dataset: Dataset,
    dtype: torch.dtype | None = None,
) -> Path:
    """Where the embeddings of ``encoder`` on ``anchors`` and ``dataset`` (encoded in ``dtype``) live in
    ``folder``."""
    return entry_path(folder, encoder.hash, anchors.hash, dataset.hash, dtype)


def entry_path(
    folder: str | os.PathLike[str],
    encoder_hash: str,
    anchor_hash: str,
    data_hash: str,
    dtype: torch.dtype | None = None,
) -> Path:
    """:func:`cache_path` from the three hashes alone (what a rank's record tells rank 0)."""
    precision = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
    return Path(folder) / f"{cache_key(encoder_hash, anchor_hash, data_hash, precision)}{ENTRY_SUFFIX}"


def prepare_cache(folder: str | os.PathLike[str]) -> Path:
    """Create the cache folder if needed; refuse a path that is a file (before any encoding)."""
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise RelstitchError(
            "the cache is a file, expected a folder", path=root, hint="name a folder for --cache"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RelstitchError(f"cannot create the cache folder: {exc.strerror}", path=root) from None
    return root


def cached_encode(
    encoder: Encoder,
    anchors: Anchors,
    dataset: Dataset,
    folder: str | os.PathLike[str] | None,
    *,
    batch_size: BatchSize,
    progress: ProgressFn,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    group: Group | None = None,
) -> tuple[EncodedSpace, bool] | None:
    """``encode(encoder, anchors, dataset)``, read from / written to the cache ``folder`` when given.

    Into the cache, the latents are streamed to the entry batch by batch
    (:func:`relstitch.streaming.encode_to_file`) and read back from it
    (:func:`relstitch.encoding.load_embeddings`), so past the held budget they stay there, read slice by
    slice: memory flat in N. Returns the space and whether it came from the cache.

    ``group`` (under torchrun, eval-matrix's spare ranks): the ranks that encode this encoder together, each
    a shard of whole batches written into the one entry, as ``encode`` does under torchrun; a failure on any
    rank stops them all with its reason. The space comes back on the group's first rank, None on the others.
    """
    from ..encoding import encode, load_embeddings  # noqa: PLC0415
    from ..streaming import encode_to_file  # noqa: PLC0415

    if folder is None:
        if group is not None:
            raise ValueError("ranks encode together into a cache entry: give a cache folder")
        space = encode(
            encoder, anchors, dataset, batch_size=batch_size, progress=progress, device=device, dtype=dtype
        )
        return space, False
    path = cache_path(prepare_cache(folder), encoder, anchors, dataset, dtype)
    first = group is None or group.rank == 0
    found = cached_space(path, encoder, anchors, dataset) if first else None
    if group.broadcast(found is not None) if group is not None else found is not None:
        return (found, True) if found is not None else None
    encode_to_file(
        encoder,
        anchors,
        dataset,
        path,
        batch_size=batch_size,
        progress=progress,
        device=device,
        dtype=dtype,
        force=True,  # an entry that failed its check is replaced
        group=group,
        # Without relative vectors: scoring computes them under each decoder's own projection anyway, and
        # at N x k (a million samples, ten thousand anchors: 40 GB) they would dwarf the latents.
        relative=False,
        quiet=True,  # the caller counts zero-norm latents for its report, and warns once
    )
    if not first:
        return None
    space = load_embeddings(path)
    space.encoder_name = encoder.name  # the file keeps it printable-escaped: the name as loaded wins
    return space, False


def cached_space(path: Path, encoder: Encoder, anchors: Anchors, dataset: Dataset) -> EncodedSpace | None:
    """The space in cache entry ``path`` when it is there, readable, and of this encoder, anchors and data;
    None when it must be encoded (again: a bad entry is replaced)."""
    from ..encoding import load_embeddings  # noqa: PLC0415

    if not path.exists():
        return None
    try:
        space = load_embeddings(path)
    except RelstitchError:
        return None  # unreadable entry: encode again and replace it
    if (
        space.encoder_hash != encoder.hash
        or space.anchor_hash != anchors.hash
        or space.dataset.get("hash") != dataset.hash
    ):
        return None
    space.encoder_name = encoder.name  # the entry may have been written under another file name
    return space


# ------------------------------------------------------------------ the per-run folder (no --cache)
def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/relstitch`` (``~/.cache/relstitch`` when unset; a relative value is ignored, as the
    XDG specification says)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "relstitch"


def runs_root() -> Path:
    """Where the per-run folders live."""
    return user_cache_root() / "runs"


def run_key(identity: Sequence[str]) -> str:
    """The per-run folder's name: sha256 of the command's inputs, so the same command finds it again."""
    return hashlib.sha256("\0".join(identity).encode()).hexdigest()[:16]


def run_folder(identity: Sequence[str], command: Sequence[str] = ()) -> Path | None:
    """The per-run folder of the command whose inputs are ``identity``, created with its marker; None when
    the user cache directory cannot be written (the run then keeps nothing, as before)."""
    from .atomic import atomic_write  # noqa: PLC0415

    folder = runs_root() / run_key(identity)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if folder.is_symlink() or not folder.is_dir():
            return None
        if not (folder / RUN_MARKER).exists():
            marker = {"relstitch": "eval-matrix run", "command": list(command), "created": time.time()}
            atomic_write(folder / RUN_MARKER, json.dumps(marker) + "\n")
    except (OSError, RelstitchError):
        return None
    return folder


def remove_run(folder: str | os.PathLike[str]) -> None:
    """Remove a per-run folder once its report is written: the files relstitch wrote, then the folder if
    that left it empty (anything else in it stays, and so does the folder)."""
    clear_folder(folder, remove_folder=True)


# ------------------------------------------------------------------ ranks handing rows to rank 0
def records_folder(cache: str | os.PathLike[str]) -> Path:
    """A fresh folder in ``cache`` for one torchrun run's records (rank 0 names it, every rank uses it)."""
    return Path(cache) / f".ranks-{uuid.uuid4().hex}"


def write_record(folder: Path, index: int, record: dict[str, Any]) -> None:
    """Encoder ``index``'s record (its row, or why it failed), written whole or not at all."""
    from .atomic import atomic_write  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{index}.row.json", json.dumps(record), force=True)


MAX_RECORD_BYTES = 1024**2
"""A rank's record (an encoder's row: names, hashes, timings, provenance) is a few KiB; 1 MiB is refused."""
MAX_MARKER_BYTES = 256 * 1024
"""A per-run folder's ``run.json`` (the command that made it) is a few hundred bytes; 256 KiB is refused."""
_RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "info": dict,
    "name": str,
    "hash": str,
    "space": (str, type(None)),
    "seconds": (int, float),
}
"""What rank 0 reads of a finished row's record (``relstitch.matrix`` writes them), and their types."""


def _read_object(path: Path, *, limit: int, what: str) -> dict[str, Any]:
    """The JSON object in ``path``, read as every user file is (a regular file, at most ``limit`` bytes).

    A missing file raises ``FileNotFoundError``; anything else wrong with it (not a regular file, too large,
    not UTF-8, not JSON, not an object) one :class:`RelstitchError` naming it.
    """
    try:
        found = json.loads(read_text(path, limit=limit, what=what))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise os_error(exc, path, f"cannot read {what}") from None
    except (ValueError, RecursionError) as exc:  # not JSON, or arrays nested past Python's recursion limit
        raise RelstitchError(f"{what} is not JSON ({first_line(exc)})", path=path) from None
    if not isinstance(found, dict):
        raise RelstitchError(f"{what} is {type(found).__name__}, expected a JSON object", path=path)
    return found


def read_record(folder: Path, index: int) -> dict[str, Any] | None:
    """Encoder ``index``'s record, None while its rank has not finished it.

    Records are written whole (:func:`write_record`), so one that cannot be read, is too large, is not a
    JSON object or lacks what rank 0 reads of a row was damaged or planted: it comes back as a failed
    row's record, ``{"error": why}``, so that encoder's row says why instead of rank 0 stopping with a
    traceback (and waiting would never end: its rank does not write it again).
    """
    path = folder / f"{index}.row.json"
    try:
        record = _read_object(path, limit=MAX_RECORD_BYTES, what="a rank's record")
        # a failed row, or precomputed vectors rank 0 reads itself, carry nothing more that is read
        if record.get("error") is None and not record.get("precomputed"):
            wrong = [
                key
                for key, kind in _RECORD_FIELDS.items()
                if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool)
            ]
            if not wrong and not isinstance(record["info"].get("name"), str):
                wrong = ["info.name"]
            if wrong:
                raise RelstitchError(f"{', '.join(wrong)} missing or of the wrong type", path=path)
    except FileNotFoundError:
        return None
    except RelstitchError as exc:
        return {"error": f"its rank's record cannot be used: {exc}"}
    return record


def remove_records(folder: Path) -> None:
    """Remove one run's records folder (its record files only, then the folder if empty)."""
    _remove_matching(folder, _RECORD)
    _rmdir_quietly(folder)


# ------------------------------------------------------------------ relstitch cache ls | clear
@dataclass(frozen=True)
class CacheFolder:
    """A folder of cached embeddings as ``relstitch cache ls`` lists it."""

    path: Path
    entries: int
    size: int  # bytes, of the files relstitch wrote there
    newest: float | None  # mtime of the newest of them (None: empty)
    command: list[str] | None  # a per-run folder's command; None for a --cache folder


def _matching(folder: Path, *patterns: re.Pattern[str]) -> list[os.DirEntry[str]]:
    """The regular files (never a link) directly in ``folder`` whose names match one of ``patterns``."""
    try:
        with os.scandir(folder) as it:
            return [
                e
                for e in it
                if e.is_file(follow_symlinks=False) and any(p.fullmatch(e.name) for p in patterns)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _subfolders(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Real folders (never a link) directly in ``folder`` whose names match ``pattern``."""
    try:
        with os.scandir(folder) as it:
            return [Path(e.path) for e in it if e.is_dir(follow_symlinks=False) and pattern.fullmatch(e.name)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def describe_folder(folder: str | os.PathLike[str]) -> CacheFolder:
    """What relstitch keeps in ``folder``: entries, their size and age (records of torchrun runs counted
    in the size)."""
    root = Path(folder)
    files = (
        _matching(root, _ENTRY, _TEMP, _MARKER)
        if root.parent == runs_root()
        else _matching(root, _ENTRY, _TEMP)
    )
    files += [e for sub in _subfolders(root, _RECORDS) for e in _matching(sub, _RECORD)]
    stats = [e.stat(follow_symlinks=False) for e in files]
    command = None
    if (root.parent == runs_root()) and (root / RUN_MARKER).is_file():
        try:
            found = _read_object(root / RUN_MARKER, limit=MAX_MARKER_BYTES, what="a run's marker").get(
                "command"
            )
        except (OSError, RelstitchError):  # damaged or replaced: the folder is listed, its command unknown
            found = None
        # shown on a terminal: a control character in it is written out, never obeyed
        command = [printable(str(c)) for c in found] if isinstance(found, list) else []
    return CacheFolder(
        root,
        sum(1 for e in files if _ENTRY.fullmatch(e.name)),
        sum(s.st_size for s in stats),
        max((s.st_mtime for s in stats), default=None),
        command,
    )


def run_folders() -> list[Path]:
    """The per-run folders under :func:`runs_root` (real folders named as relstitch names them)."""
    return sorted(_subfolders(runs_root(), _RUN))


def check_cache_folder(folder: str | os.PathLike[str]) -> Path:
    """A folder given to ``cache ls|clear``: it must exist and be a real folder, not a link to one."""
    root = Path(folder)
    try:
        mode = os.lstat(root).st_mode
    except FileNotFoundError:
        raise RelstitchError("no such folder", path=root) from None
    except OSError as exc:
        from ..errors import os_error  # noqa: PLC0415

        raise os_error(exc, root) from None
    if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
        raise RelstitchError(
            "not a folder (a link is not followed)", path=root, hint="name the cache folder itself"
        )
    return root


def clear_folder(folder: str | os.PathLike[str], *, remove_folder: bool = False) -> tuple[int, int]:
    """Delete what relstitch wrote in ``folder``: cache entries, cut-short temporary files, torchrun records
    and a per-run marker, matched by name, regular files only (a link is never followed nor removed).
    ``remove_folder``: then remove the folder itself if nothing else is left. Returns (files, bytes)."""
    root = Path(folder)
    if root.is_symlink():
        return 0, 0
    # the marker is ours only in a per-run folder: a run.json in a --cache folder is the user's
    owned = (_ENTRY, _TEMP, _MARKER) if root.parent == runs_root() else (_ENTRY, _TEMP)
    count, size = _remove_matching(root, *owned)
    for sub in _subfolders(root, _RECORDS):
        n, b = _remove_matching(sub, _RECORD)
        count, size = count + n, size + b
        _rmdir_quietly(sub)
    if remove_folder:
        _rmdir_quietly(root)
    return count, size


def _remove_matching(folder: Path, *patterns: re.Pattern[str]) -> tuple[int, int]:
    count = size = 0
    for entry in _matching(folder, *patterns):
        try:
            length = entry.stat(follow_symlinks=False).st_size
            os.unlink(entry.path)
        except FileNotFoundError:
            continue  # another process removed it first
        count, size = count + 1, size + length
    return count, size


def _rmdir_quietly(folder: Path) -> None:
    """Remove ``folder`` if it is empty; a folder holding anything else stays (it is not ours to empty)."""
    try:
        folder.rmdir()
    except OSError:
        pass


def size_label(n: int) -> str:
    """``12345678`` → ``"12.3 MB"``: a size to read at a glance (decimal units, as ``du -h --si``)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def age_label(seconds: float) -> str:
    """``5400`` → ``"1.5 h ago"``."""
    for unit, scale in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= scale:
            return f"{seconds / scale:.1f} {unit} ago".replace(".0 ", " ")
    return "just now"


def discard_if_empty(folder: str | os.PathLike[str]) -> None:
    """Remove a per-run folder that kept nothing (a run refused before its first encoder finished)."""
    if describe_folder(folder).entries == 0:
        remove_run(folder)
