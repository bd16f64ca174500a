"""Streaming: data → encoder → projection → file, batch by batch, in bounded memory.

:class:`StreamWriter` writes a safetensors file whose tensor shapes are known before any data is:
the header goes first (the same bytes :func:`~relstitch.io.artifacts.serialize` would write), then each
batch's rows are written at their offsets in a temporary file beside the output, which is fsync'ed
and renamed into place at the end. Nothing but the current batch is held in memory, and an
interrupted run leaves no half file.

:func:`encode_to_file` is ``relstitch encode`` on top of it. It also runs data-parallel under
``torchrun`` (:mod:`relstitch.distributed`): every rank writes its shard of whole batches straight
into the one temporary file, so the result is the file a single process would have written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import RelstitchError
from .io.artifacts import _DTYPE_SIZES, _TORCH_DTYPES, artifact_metadata, data_order, safetensors_header
from .io.atomic import _current_umask, check_output

if TYPE_CHECKING:
    import torch

    from .anchor_set import Anchors
    from .components import Encoder
    from .data import Dataset
    from .distributed import Group
    from .encoding import BatchSize
    from .progress import ProgressFn
    from .projection import ProjectionConfig

Shapes = dict[str, tuple[str, tuple[int, ...]]]
"""Tensor name → (safetensors dtype such as ``F32``, shape)."""


def safetensors_dtype(dtype: torch.dtype) -> str:
    """``torch.float32`` → ``F32``."""
    return _TORCH_DTYPES[str(dtype).removeprefix("torch.")]


class StreamWriter:
    """A safetensors file written row block by row block into a temporary file, then renamed into place.

    Use as a context manager (``commit`` on success, the temporary file removed on any error), or
    :meth:`attach` from another process to fill other rows of the same temporary file. Every write
    happens in the call, on the caller's thread; the file is fsync'ed once, at ``commit``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        shapes: Shapes,
        metadata: dict[str, str],
        *,
        force: bool = False,
        _tmp: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.force = force
        header = safetensors_header(shapes, metadata)
        self._offsets: dict[str, tuple[int, int, tuple[int, ...]]] = {}  # name -> (start, row bytes, shape)
        offset = len(header)
        for name in data_order(shapes):  # the order safetensors_header lays the data out in
            dtype, shape = shapes[name]
            row = _DTYPE_SIZES[dtype]
            for d in shape[1:]:
                row *= d
            self._offsets[name] = (offset, row, tuple(shape))
            offset += row * (shape[0] if shape else 1)
        self.size = offset
        self._dtypes = {name: dtype for name, (dtype, _) in shapes.items()}
        if _tmp is not None:  # attached: the owner created the file and will rename it
            self.tmp, self.owner = _tmp, False
            self._fd = os.open(_tmp, os.O_WRONLY)
            return
        out = check_output(self.path, force=force)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        self.owner, self._fd = True, fd
        try:
            os.chmod(self.tmp, 0o666 & ~_current_umask())  # as a plain open() would
            os.pwrite(fd, header, 0)
            os.ftruncate(fd, self.size)  # sparse until filled; every byte is written before commit
        except BaseException:
            self.abort()
            raise

    @classmethod
    def attach(
        cls, tmp: str, path: str | os.PathLike[str], shapes: Shapes, metadata: dict[str, str]
    ) -> StreamWriter:
        """Open another process's temporary file to write rows into it (the owner commits)."""
        return cls(path, shapes, metadata, _tmp=tmp)

    def write(self, name: str, tensor: torch.Tensor, row: int = 0) -> None:
        """Write ``tensor`` as rows ``row ... row + len(tensor)`` of tensor ``name``."""
        if name not in self._offsets:
            raise ValueError(f"no tensor {name!r} in this file")
        start, row_bytes, shape = self._offsets[name]
        if safetensors_dtype(tensor.dtype) != self._dtypes[name] or tuple(tensor.shape[1:]) != shape[1:]:
            raise ValueError(
                f"{name}: got {tensor.dtype} {tuple(tensor.shape)}, declared {self._dtypes[name]} {shape}"
            )
        if row < 0 or row + len(tensor) > (shape[0] if shape else 1):
            raise ValueError(f"{name}: rows {row}..{row + len(tensor)} outside {shape}")
        self._pwrite(tensor, start + row * row_bytes)

    def _pwrite(self, tensor: torch.Tensor, offset: int) -> None:
        """Write the tensor's raw bytes at ``offset``: no copy on the CPU, and all of them (pwrite may write
        fewer)."""
        import torch  # noqa: PLC0415

        tensor = tensor.detach().contiguous().cpu()
        if not tensor.numel():
            return
        # Little-endian raw bytes, the safetensors layout (x86 and ARM hosts are little-endian).
        data = (
            tensor.reshape(-1).view(torch.uint8).numpy().data
        )  # the array's buffer, as memoryview(array) gives
        while data:
            written = os.pwrite(self._fd, data, offset)
            data, offset = data[written:], offset + written

    def close(self) -> None:
        """Close the file (no fsync, no rename: :meth:`commit` does both)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def commit(self) -> Path:
        """fsync and rename the temporary file into place (owner only)."""
        if not self.owner:
            raise RuntimeError("only the process that created the file commits it")
        try:
            os.fsync(self._fd)
            self.close()
            check_output(self.path, force=self.force)  # the output may have appeared meanwhile
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (owner) or just close it (attached)."""
        self.close()
        if self.owner:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None and self.owner:
            self.commit()
        elif kind is None:
            self.close()
        else:
            self.abort()


def batch_shard(n: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``rank``: a contiguous run of *whole* batches.

    Whole batches, so every sample goes through the same batch it would in one process: batched
    kernels can round differently for different batch compositions, and the merged file must equal a
    single-process run bit for bit.
    """
    batches = -(-n // batch_size)
    first, last = batches * rank // world, batches * (rank + 1) // world
    return min(n, first * batch_size), min(n, last * batch_size)


def _agreed_batch_size(group: Group, resolve: Callable[[], int]) -> int:
    """Rank 0's batch size on every rank (shards are whole batches, so all must use one size; an ``auto``
    size is probed on rank 0 only). A refusal on rank 0 is raised on every rank, so none waits forever."""
    if not group.distributed:
        return resolve()
    outcome: tuple[str, Any] = ("", None)
    if group.rank == 0:
        try:
            outcome = ("size", resolve())
        except RelstitchError as exc:
            outcome = ("error", str(exc))
    kind, value = group.broadcast(outcome)
    if kind == "error":
        raise RelstitchError(value)
    return int(value)


def _cannot_write(exc: OSError, path: str | os.PathLike[str]) -> str:
    """The one line for an output that cannot be written (a full disk, a file-size limit)."""
    return str(RelstitchError(f"cannot write ({exc.strerror or exc})", path=path))


def encode_to_file(
    encoder: Encoder,
    anchors: Anchors,
    dataset: Dataset,
    path: str | os.PathLike[str],
    *,
    projection: ProjectionConfig | None = None,
    batch_size: BatchSize = 256,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    group: Group | None = None,
    relative: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    """Embed anchors and data with ``encoder`` and stream the embeddings file to ``path``.

    The same file as ``save_embeddings(encode(...))``, written batch by batch: resident memory holds the
    anchors' latents and one batch, never N rows. With a ``group`` (torchrun), each rank encodes its
    shard of whole batches into the shared temporary file; rank 0 writes the rest and commits.
    ``relative=False``: without the relative vectors (``save_embeddings``'s, for the cache's entries).
    ``quiet``: no warning of zero-norm latents (eval-matrix counts and warns them for its report).
    Returns a summary (samples, latent size, anchors) for the caller to print.
    """
    import torch  # noqa: PLC0415

    from .distributed import single  # noqa: PLC0415
    from .encoding import (  # noqa: PLC0415
        check_inputs,
        describe_read,
        embed,
        embeddings_meta,
        inputs_for,
        iter_embed,
        resolve_batch_size,
    )
    from .hygiene import warn_zero_norm, zero_norm_count  # noqa: PLC0415
    from .progress import silent  # noqa: PLC0415
    from .projection import ProjectionConfig, relative_projector  # noqa: PLC0415

    projection = projection or ProjectionConfig()
    projection.validate()
    group = group or single()
    progress = progress or silent
    check_inputs(encoder, anchors, dataset)
    x = inputs_for(encoder, dataset)  # images, or the text views a text encoder reads
    check_output(path, force=force)  # before any work, on every rank (so all stop, none waits for the others)
    batch_size = _agreed_batch_size(
        group, lambda: resolve_batch_size(batch_size, encoder, x, device=device, dtype=dtype)
    )
    # Each rank embeds the k anchors itself (k is small): the same bits everywhere, no broadcast needed.
    anchor_absolute = embed(
        encoder,
        inputs_for(encoder, anchors),
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        progress=progress,
        description=f"{encoder.name}: anchors",
    )
    n, d, k = len(dataset), anchor_absolute.shape[1], len(anchors)
    shapes: Shapes = {
        "absolute": ("F32", (n, d)),
        **({"relative": ("F32", (n, projection.output_dim(k)))} if relative else {}),
        "anchor_absolute": ("F32", (k, d)),
        "labels": (safetensors_dtype(dataset.y.dtype), (n,)),
        "ids": (safetensors_dtype(dataset.ids.dtype), (n,)),
    }
    description = describe_read(encoder, dataset)
    metadata = artifact_metadata(
        "embeddings",
        embeddings_meta(
            encoder.name, encoder.hash, anchors.hash, description, projection, provenance=encoder.provenance()
        ),
    )
    writer = None
    zero_norm = 0  # sample latents with no direction, summed over this rank's batches
    start, stop = batch_shard(n, batch_size, group.rank, group.world)
    try:
        failed: str | None = None  # this rank's reason to stop; every rank hears of it before any commits
        if group.rank == 0:
            try:
                writer = StreamWriter(path, shapes, metadata, force=force)
            except OSError as exc:
                failed = _cannot_write(exc, path)
        created, tmp = group.broadcast((True, writer.tmp) if writer else (False, failed))
        if not created:  # rank 0 could not create the file: every rank stops with its reason
            raise RelstitchError(tmp)
        try:
            if writer is None:
                writer = StreamWriter.attach(tmp, path, shapes, metadata)
            on = anchor_absolute.to(device) if device is not None else anchor_absolute
            if not quiet:
                anchor_zero = zero_norm_count(anchor_absolute, anchor_absolute, projection)
                warn_zero_norm(anchor_zero, k, f"anchor latents of {encoder.name!r}")
            project = relative_projector(on, projection)  # the anchors are prepared once, not per batch
            for offset, z in iter_embed(
                encoder,
                x[start:stop],
                batch_size=batch_size,
                device=device,
                dtype=dtype,
                progress=progress,
                description=f"{encoder.name}: data",
                first_row=start,
            ):
                with torch.inference_mode():  # iter_embed's mode covers its own frame only, not this loop
                    if relative:
                        writer.write("relative", project(z), start + offset)
                    zero_norm += zero_norm_count(z, on, projection)
                writer.write("absolute", z, start + offset)
            if group.rank == 0:
                writer.write("anchor_absolute", anchor_absolute)
                writer.write("labels", dataset.y)
                writer.write("ids", dataset.ids)
        except RelstitchError as exc:
            failed = str(exc)
        except OSError as exc:  # a full disk or a file-size limit: the user's problem, said in one line
            failed = _cannot_write(exc, path)
        # Instead of a barrier: every shard is in the file, or every rank stops with the first reason.
        reason = group.first_error(failed)
        if reason is not None:
            raise RelstitchError(reason)
        assert writer is not None  # created or attached, or the reason above stopped this rank
        if group.rank == 0:
            writer.commit()
        else:
            writer.close()
    except OSError as exc:  # committing: the rename or the fsync
        if writer is not None:
            writer.abort()
        raise RelstitchError(_cannot_write(exc, path)) from None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if not quiet:
        warn_zero_norm(zero_norm, stop - start, f"sample latents of {encoder.name!r}")
    return {
        "path": str(path),
        "samples": n,
        "latent_dim": d,
        "anchors": k,
        "relative_dim": projection.output_dim(k),
        "ranks": group.world,
        "zero_norm_latents": zero_norm,
        "batch_size": batch_size,
    }
