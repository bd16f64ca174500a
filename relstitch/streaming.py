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
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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

WRITES_IN_FLIGHT = 4
"""Background jobs queued at most: memory stays a few batches, not N rows."""
SYNC_EVERY_BYTES = 8 * 1024**2
"""A background writer flushes to disk (fdatasync) every this many bytes, so the final fsync is short."""


def safetensors_dtype(dtype: torch.dtype) -> str:
    """``torch.float32`` → ``F32``."""
    return _TORCH_DTYPES[str(dtype).removeprefix("torch.")]


class StreamWriter:
    """A safetensors file written row block by row block into a temporary file, then renamed into place.

    Use as a context manager (``commit`` on success, the temporary file removed on any error), or
    :meth:`attach` from another process to fill other rows of the same temporary file.

    ``background=True`` hands each write (and a periodic ``fdatasync``) to one thread, so the disk
    works while the caller computes the next batch; at most :data:`WRITES_IN_FLIGHT` writes wait, and
    the first error is raised by a later ``write``, ``wait`` or ``commit``. The caller must not modify a
    tensor after passing it to ``write``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        shapes: Shapes,
        metadata: dict[str, str],
        *,
        force: bool = False,
        background: bool = False,
        _tmp: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.force = force
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="relstitch-write") if background else None
        self._pending: deque[Future[None]] = deque()
        self._worker: int | None = None  # the writer thread's id, once it has run a job
        self._unsynced = 0
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
        cls,
        tmp: str,
        path: str | os.PathLike[str],
        shapes: Shapes,
        metadata: dict[str, str],
        *,
        background: bool = False,
    ) -> StreamWriter:
        """Open another process's temporary file to write rows into it (the owner commits)."""
        return cls(path, shapes, metadata, background=background, _tmp=tmp)

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
        if (
            self._pool is None or threading.get_ident() == self._worker
        ):  # called by a job already on the writer thread
            self._pwrite(tensor, start + row * row_bytes)
            return
        self.submit(self._pwrite, tensor, start + row * row_bytes)

    def submit(self, work: Callable[..., None], *args: Any) -> None:
        """Run ``work(*args)`` on the writer thread, after the writes queued before it (inline without one).

        For the work that may as well overlap the caller's next batch (a streamed encode projects each
        batch there); ``write`` calls made by ``work`` run at once, on that thread. At most
        :data:`WRITES_IN_FLIGHT` jobs wait; the first error is raised by a later ``submit``, ``wait`` or
        ``commit``.
        """
        if self._pool is None:
            work(*args)
            return
        while len(self._pending) >= WRITES_IN_FLIGHT:
            self._pending.popleft().result()  # re-raises the writer thread's error here
        self._pending.append(self._pool.submit(self._run, work, args))

    def _run(self, work: Callable[..., None], args: tuple[Any, ...]) -> None:
        self._worker = threading.get_ident()  # so writes from inside ``work`` are not queued behind it
        work(*args)

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
        if self._pool is not None:  # on the writer thread: start the flush now rather than all at commit
            self._unsynced += tensor.numel() * tensor.element_size()
            if self._unsynced >= SYNC_EVERY_BYTES:
                getattr(os, "fdatasync", os.fsync)(self._fd)  # macOS has no fdatasync
                self._unsynced = 0

    def wait(self) -> None:
        """Finish every queued write, raising the first error."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._stop_thread()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _stop_thread(self) -> None:
        """Let queued writes end (they must not touch a closed, maybe reused, descriptor), then drop the
        thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()

    def commit(self) -> Path:
        """fsync and rename the temporary file into place (owner only)."""
        if not self.owner:
            raise RuntimeError("only the process that created the file commits it")
        try:
            self.wait()
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
        self._stop_thread()  # queued writes end first; their errors do not matter any more
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
) -> dict[str, Any]:
    """Embed anchors and data with ``encoder`` and stream the embeddings file to ``path``.

    The same file as ``save_embeddings(encode(...))``, written batch by batch: resident memory holds the
    anchors' latents and one batch, never N rows. With a ``group`` (torchrun), each rank encodes its
    shard of whole batches into the shared temporary file; rank 0 writes the rest and commits.
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
        "relative": ("F32", (n, projection.output_dim(k))),
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
    try:
        # Writes go to a background thread: the disk works while the encoder computes the next batch.
        if group.rank == 0:
            writer = StreamWriter(path, shapes, metadata, force=force, background=True)
        tmp = group.broadcast(writer.tmp if writer else None)
        if writer is None:
            writer = StreamWriter.attach(tmp, path, shapes, metadata, background=True)
        start, stop = batch_shard(n, batch_size, group.rank, group.world)
        on = anchor_absolute.to(device) if device is not None else anchor_absolute
        zero_norm = zero_norm_count(
            anchor_absolute, anchor_absolute, projection
        )  # counted for the report (hygiene)
        warn_zero_norm(zero_norm, k, f"anchor latents of {encoder.name!r}")
        project = relative_projector(on, projection)  # the anchors are prepared once, not per batch
        zero_norms: list[int] = []  # appended by the writer thread only, read after writer.wait()

        def finish_batch(row: int, z: torch.Tensor) -> None:
            # On the writer thread: projection, count and writes overlap the encoder's next batch.
            with torch.inference_mode():  # thread-local, like autocast: entered here, not inherited
                writer.write("relative", project(z), row)
                zero_norms.append(zero_norm_count(z, on, projection))
            writer.write("absolute", z, row)

        for offset, z in iter_embed(
            encoder,
            x[start:stop],
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            progress=progress,
            description=f"{encoder.name}: data",
        ):
            writer.submit(finish_batch, start + offset, z)
        if group.rank == 0:
            writer.write("anchor_absolute", anchor_absolute)
            writer.write("labels", dataset.y)
            writer.write("ids", dataset.ids)
        writer.wait()  # this rank's queued background work is done before it says it is done
        zero_norm = sum(zero_norms)
        group.barrier()  # every shard is in the file before rank 0 renames it
        if group.rank == 0:
            writer.commit()
        else:
            writer.close()
    except OSError as exc:  # a full disk or a file-size limit: the user's problem, said in one line
        if writer is not None:
            writer.abort()
        raise RelstitchError(f"cannot write ({exc.strerror or exc})", path=path) from None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    warn_zero_norm(zero_norm, stop - start, f"sample latents of {encoder.name!r}")
    return {
        "path": str(path),
        "samples": n,
        "latent_dim": d,
        "anchors": k,
        "relative_dim": shapes["relative"][1][1],
        "ranks": group.world,
        "zero_norm_latents": zero_norm,
        "batch_size": batch_size,
    }
