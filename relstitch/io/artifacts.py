"""relstitch files: safetensors with JSON metadata under ``relstitch.*`` keys.

Six kinds of file: ``anchors``, ``encoder``, ``decoder``, ``embeddings``, ``predictions``
(``stitch --predictions``) and ``stitched`` (``export``: encoder, decoder and anchor latents in one file).
Each carries ``relstitch.kind`` and ``relstitch.version`` plus the metadata needed to refuse a wrong
combination. Headers are read and validated in pure Python (no torch import), so ``relstitch inspect`` is
instant and a hostile header is rejected before any tensor is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RelstitchError, os_error
from .atomic import atomic_write
from .metadata_schema import FORMAT_VERSION, KINDS, check_metadata
from .userfiles import check_regular, open_regular, read_head

if TYPE_CHECKING:  # torch is imported lazily: `relstitch --help` and `inspect` must not pay for it.
    import torch

# The format version and the kinds of file live in metadata_schema.py, their schemas in metadata.schema.json.
PREFIX = "relstitch."
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit; larger headers are refused unread
MAX_NDIM = 32  # far above any real tensor; a hostile header cannot make shape arithmetic run long

_DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in a safetensors header."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    start: int = 0  # where its bytes begin in the file (after the 8-byte length and the header)


@dataclass(frozen=True)
class Header:
    """A validated safetensors header: tensor entries and decoded relstitch metadata."""

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, Any]  # relstitch.* keys, prefix stripped, values JSON-decoded
    raw_metadata: dict[str, str]
    file_size: int
    identity: tuple[int, int] = (0, 0)  # (device, inode) of the file read: a later open checks it is this one

    @property
    def kind(self) -> str | None:
        return self.metadata.get("kind")


@dataclass
class Artifact:
    """A loaded relstitch file: its kind, tensors and metadata."""

    path: Path
    kind: str
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)


def read_header(path: str | os.PathLike[str]) -> Header:
    """Read and validate a safetensors header without reading tensor data or importing torch."""
    p = check_regular(path, expected="a .safetensors file")  # missing, a loop, a FIFO: one line each
    try:
        with open_regular(p) as handle:  # a FIFO or a device is refused here, unopened or unread
            stat = os.fstat(handle.fileno())
            size = stat.st_size
            head = handle.read(8)
            if len(head) < 8:
                raise not_safetensors(p, "shorter than 8 bytes")
            (n,) = struct.unpack("<Q", head)
            if n == 0 or n > MAX_HEADER_BYTES or n > size - 8:
                raise not_safetensors(p, f"header length {n} does not fit a file of {size} bytes")
            raw = handle.read(n)
    except OSError as exc:
        raise os_error(exc, p, "cannot read") from None
    if len(raw) < n:  # the file shrank between stat() and read()
        raise RelstitchError(f"truncated safetensors file (header of {n} bytes, {len(raw)} read)", path=p)
    try:
        header = _parse_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise not_safetensors(p, "header is not JSON") from None
    if not isinstance(header, dict):
        raise RelstitchError("not a safetensors file (header is not a JSON object)", path=p)
    raw_meta = header.pop("__metadata__", None) or {}
    if not isinstance(raw_meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw_meta.items()
    ):
        raise RelstitchError("corrupt safetensors metadata (must map strings to strings)", path=p)
    data_size = size - 8 - n
    tensors: dict[str, TensorInfo] = {}
    spans = []
    for name, entry in header.items():
        info = _validate_entry(p, name, entry, data_size, 8 + n)
        tensors[name] = info
        spans.append(tuple(entry["data_offsets"]))
    _check_coverage(p, sorted(spans), data_size)
    meta: dict[str, Any] = {}
    for key, value in raw_meta.items():
        if key.startswith(PREFIX):
            try:
                meta[key[len(PREFIX) :]] = _parse_json(value)
            except ValueError:
                raise RelstitchError(f"corrupt metadata: {key} is not JSON", path=p) from None
    return Header(
        path=p,
        tensors=tensors,
        metadata=meta,
        raw_metadata=raw_meta,
        file_size=size,
        identity=(stat.st_dev, stat.st_ino),
    )


GIVE_ARTIFACT = "give a relstitch .safetensors file"
_TORCH_HINT = (
    "load its weights through a model source (torchvision:NAME#weights=FILE or python:MOD:FN#weights=FILE), "
    "or convert it with safetensors.torch.save_file"
)


def not_safetensors(path: Path, detail: str) -> RelstitchError:
    """The error for a file that is not safetensors at all, saying what it looks like when that is cheap
    to tell.

    Every reader of relstitch files goes through :func:`read_header`, so ``inspect``, ``stitch``,
    ``encode``... all say the same thing. ``detail`` (the raw header length, say) is shown only when the
    file is not recognised: for a PyTorch checkpoint or a JSON report it would only confuse.
    """
    what, hint = _sniff(path)
    if what is None:
        return RelstitchError(f"not a safetensors file ({detail})", path=path, hint=GIVE_ARTIFACT)
    return RelstitchError(f"not a safetensors file: it looks like {what}", path=path, hint=hint)


def _sniff(path: Path) -> tuple[str | None, str]:
    """What a non-safetensors file looks like, from its first bytes (and a zip's table of contents), and
    the fix."""
    try:
        start = read_head(path, 4096)
    except (OSError, RelstitchError):
        return None, GIVE_ARTIFACT
    if not start:
        return "an empty file (an interrupted copy or download?)", GIVE_ARTIFACT
    if start.startswith(b"PK\x03\x04"):
        try:
            with (
                open_regular(path) as handle,
                zipfile.ZipFile(handle) as archive,
            ):  # reads only the central directory
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, RelstitchError):
            names = []
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "a PyTorch checkpoint (torch.save's zip format)", _TORCH_HINT
        if names and all(n.endswith(".npy") for n in names):
            return "a NumPy .npz archive", "convert it with safetensors.numpy.save_file, or " + GIVE_ARTIFACT
        return "a zip archive", "unzip it first, or " + GIVE_ARTIFACT
    if start[:1] == b"\x80" and start[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (an old-style PyTorch checkpoint?)", _TORCH_HINT
    if start.startswith(b"\x1f\x8b"):
        return (
            "gzip-compressed data",
            "decompress it first (gunzip) if it holds a safetensors file, or " + GIVE_ARTIFACT,
        )
    if start.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array", "convert it with safetensors.numpy.save_file, or " + GIVE_ARTIFACT
    if start.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file (Keras .h5?)", GIVE_ARTIFACT
    text: str | None
    try:
        text = start.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the 4 KiB boundary is still text
        text = start[: exc.start].decode("utf-8") if exc.start > len(start) - 4 else None
    if text is None or "\0" in text or sum(c.isprintable() or c.isspace() for c in text) < 0.95 * len(text):
        return None, GIVE_ARTIFACT
    if text.lstrip()[:1] in ("{", "["):
        return (
            "JSON text",
            "a relstitch JSON report is read by `relstitch report FILE`; otherwise " + GIVE_ARTIFACT,
        )
    return "a text file", GIVE_ARTIFACT


def _parse_json(text: str) -> Any:
    """``json.loads`` that refuses what a hostile file could use against the parser itself.

    Duplicate keys (two entries for one tensor name: which one wins is up to the reader), NaN/Infinity
    (not JSON), nesting deep enough to exhaust the parser's recursion, and an integer too long to
    convert all raise ValueError.
    """

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate key")
        return dict(pairs)

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(text, object_pairs_hook=unique, parse_constant=no_constants)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a size


def _validate_entry(p: Path, name: str, entry: Any, data_size: int, data_start: int) -> TensorInfo:
    bad = f"corrupt safetensors header (tensor {name[:60]!r}"
    if not isinstance(entry, dict):
        raise RelstitchError(f"{bad} is not an object)", path=p)
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _DTYPE_SIZES:
        raise RelstitchError(f"{bad} has unknown dtype {str(dtype)[:20]!r})", path=p)
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise RelstitchError(f"{bad} has an invalid shape)", path=p)
    if len(shape) > MAX_NDIM:
        raise RelstitchError(f"{bad} has {len(shape)} dimensions, more than {MAX_NDIM})", path=p)
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_size
    ):
        raise RelstitchError(f"{bad} points outside the file's {data_size} data bytes)", path=p)
    count = 0 if 0 in shape else 1
    for d in shape if count else ():
        count *= d
        if count > data_size:  # stop multiplying absurd shapes early: no such tensor fits anyway
            break
    nbytes = count * _DTYPE_SIZES[dtype]
    if nbytes != offsets[1] - offsets[0]:
        shown = str(shape) if len(str(shape)) <= 60 else str(shape)[:57] + "..."
        raise RelstitchError(
            f"{bad}: shape {shown} of {dtype} does not match its {offsets[1] - offsets[0]} bytes)", path=p
        )
    return TensorInfo(dtype=dtype, shape=tuple(shape), nbytes=nbytes, start=data_start + offsets[0])


def _check_coverage(p: Path, spans: list[tuple[int, int]], data_size: int) -> None:
    """Tensor data must tile the data area exactly, as the safetensors format requires: no gap, no
    overlap, nothing after the last tensor (a file cut short or padded with other bytes is refused)."""
    end = 0
    for begin, stop in spans:
        if begin < end:
            raise RelstitchError("corrupt safetensors file (tensor data overlaps)", path=p)
        if begin > end:
            raise RelstitchError(
                f"corrupt safetensors file (a gap of {begin - end} bytes between tensors)", path=p
            )
        end = stop
    if end != data_size:
        raise RelstitchError(
            f"corrupt safetensors file (tensors cover {end} of its {data_size} data bytes: "
            "truncated or padded)",
            path=p,
        )


def check_kind(header: Header, expected: str | tuple[str, ...]) -> str:
    """Refuse a file that is not a relstitch file of the expected kind, is from a newer relstitch, or whose
    metadata does not follow its kind's schema (:func:`relstitch.io.metadata_schema.check_metadata`);
    return the kind."""
    return check_metadata(header.metadata, expected, header.path)


def load_artifact(
    path: str | os.PathLike[str],
    kind: str | tuple[str, ...],
    *,
    skip: Callable[[Header], Collection[str]] | None = None,
    header: Header | None = None,
) -> Artifact:
    """Load a relstitch file of the given kind(s): header validated first, then tensors.

    ``skip``: given the validated header, the tensors not to read at all (an embeddings file's relative
    vectors when they are too large to hold: :func:`relstitch.encoding.load_embeddings`). ``header``: the
    file's header when the caller has already read it with :func:`read_header` (so it is read once).
    """
    header = header or read_header(path)
    found = check_kind(header, kind)
    from safetensors import safe_open  # noqa: PLC0415  (lazy: keeps torch out of start-up)

    check_regular(
        header.path
    )  # safetensors opens the path itself: refuse a FIFO swapped in since read_header
    left_out = set(skip(header)) if skip else set()
    try:
        with safe_open(str(header.path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys() if name not in left_out}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own types; the header check already passed
        raise RelstitchError(f"cannot read tensors: {exc}", path=header.path) from None
    return Artifact(path=header.path, kind=found, tensors=tensors, meta=header.metadata)


def save_artifact(
    path: str | os.PathLike[str],
    kind: str,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    *,
    force: bool = False,
) -> Path:
    """Write a relstitch file atomically; ``meta`` values are stored as JSON strings."""
    payload = serialize(tensors, artifact_metadata(kind, meta))
    return atomic_write(path, payload, force=force)


def artifact_metadata(kind: str, meta: dict[str, Any]) -> dict[str, str]:
    """The safetensors ``__metadata__`` of a relstitch file: kind, version and ``meta`` as JSON strings."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    metadata = {
        "format": "pt",
        PREFIX + "kind": json.dumps(kind),
        PREFIX + "version": json.dumps(FORMAT_VERSION),
    }
    for key, value in meta.items():
        metadata[PREFIX + key] = json.dumps(value, sort_keys=True)
    return metadata


_TORCH_DTYPES = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "int16": "I16",
    "uint16": "U16",
    "float16": "F16",
    "bfloat16": "BF16",
    "int32": "I32",
    "uint32": "U32",
    "float32": "F32",
    "int64": "I64",
    "uint64": "U64",
    "float64": "F64",
}


def data_order(shapes: dict[str, tuple[str, tuple[int, ...]]]) -> list[str]:
    """The order tensors are laid out in the data section: safetensors' own (widest dtype first, then by
    name), so every tensor starts at a multiple of its element size, as the format's own writer ensures
    (an I64 after a U8 of odd length would otherwise start at an odd offset)."""
    return sorted(shapes, key=lambda name: (-_DTYPE_SIZES[shapes[name][0]], name))


def safetensors_header(shapes: dict[str, tuple[str, tuple[int, ...]]], metadata: dict[str, str]) -> bytes:
    """The length-prefixed, 8-byte-aligned header for tensors given as name → (dtype, shape).

    Metadata keys are sorted and tensors laid out in :func:`data_order`, so equal inputs give byte-identical
    files (the safetensors bindings order metadata by a hash map, which differs from run to run).
    """
    entries: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    for name in data_order(shapes):
        dtype, shape = shapes[name]
        count = 1
        for d in shape:
            count *= d
        nbytes = count * _DTYPE_SIZES[dtype]
        entries[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 8)  # the format asks for 8-byte alignment of the data section
    return struct.pack("<Q", len(header)) + header


def serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file as bytes, deterministic (see :func:`safetensors_header`)."""
    cpu = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    shapes = {
        name: (_TORCH_DTYPES[str(t.dtype).removeprefix("torch.")], tuple(t.shape)) for name, t in cpu.items()
    }
    parts = [safetensors_header(shapes, metadata)]
    for name in data_order(shapes):
        parts.append(_tensor_bytes(cpu[name]))
    return b"".join(parts)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    import torch  # noqa: PLC0415

    if t.numel() == 0:
        return b""
    # Little-endian raw bytes, the safetensors layout (x86 and ARM hosts are little-endian).
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def content_hash(tensors: dict[str, torch.Tensor], extra: Any = None) -> str:
    """sha256 over tensor names, dtypes, shapes and bytes (sorted by name), plus optional JSON ``extra``.

    Used as the identity of anchors, encoders and datasets: equal content, equal hash, whatever the
    file name or the time it was written.
    """
    import torch  # noqa: PLC0415

    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    if extra is not None:
        digest.update(json.dumps(extra, sort_keys=True).encode())
    return digest.hexdigest()


def short(h: str | None) -> str:
    """The first 12 hex digits of a hash, for messages and tables."""
    return (h or "?")[:12]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a regular file's bytes, read in chunks (memory stays ``chunk`` whatever the size)."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a file is: kind, version, tensors, metadata and sha256. Never imports torch."""
    header = read_header(path)
    return {
        "path": str(header.path),
        "kind": header.kind or "safetensors (not a relstitch file)",
        "version": header.metadata.get("version"),
        "size_bytes": header.file_size,
        "sha256": file_sha256(header.path),
        "tensors": {n: {"dtype": t.dtype, "shape": list(t.shape)} for n, t in header.tensors.items()},
        "metadata": {k: v for k, v in header.metadata.items() if k not in ("kind", "version")},
    }
