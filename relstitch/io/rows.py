"""Row slices of a 2-D tensor in a safetensors file, read only when asked: :class:`StoredRows`.

An embeddings file of a million samples holds latents no matrix needs whole: each decoder reads them a
batch at a time (:class:`~relstitch.projection.ProjectedRows` projects each slice as it is read). So past
the held budget (:func:`relstitch.runtime.held_budget`) :func:`relstitch.encoding.load_embeddings`
leaves the latents in their file and reads each slice from it with ``pread``: memory holds one batch,
whatever N. No memory map: a mapped file that shrinks under it kills the process (SIGBUS), where a read
comes back short and is refused in one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch

from ..errors import RelstitchError
from ..hygiene import CHECK_ROWS
from .artifacts import Header
from .userfiles import open_regular

_FLOATS = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


class StoredRows:
    """A ``[N, D]`` floating tensor of a safetensors file, read as float32 by row slices: ``len``,
    ``shape``, ``rows[a:b]`` (what a decoder and :class:`~relstitch.projection.ProjectedRows` read) and
    :meth:`read` (all of it, for what needs the whole).

    The file stays open while the object lives, and is checked to be the one ``header`` was read from:
    a file replaced under the same name is never mixed in, one that shrank is refused in one line.
    """

    def __init__(self, header: Header, name: str) -> None:
        info = header.tensors[name]
        if len(info.shape) != 2 or info.dtype not in _FLOATS:
            raise RelstitchError(
                f"corrupt file: {name} is {info.dtype} {list(info.shape)}, expected a 2-D float tensor",
                path=header.path,
            )
        self.path, self.name = header.path, name
        self.shape = torch.Size(info.shape)
        self._dtype = _FLOATS[info.dtype]
        self._row_bytes = info.shape[1] * self._dtype.itemsize
        self._start = info.start
        try:
            self._file = open_regular(header.path)
        except OSError as exc:
            raise RelstitchError(f"cannot read {name}: {exc.strerror}", path=header.path) from None
        stat = os.fstat(self._file.fileno())
        if (stat.st_dev, stat.st_ino) != header.identity or stat.st_size != header.file_size:
            self._file.close()
            raise self.changed()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> torch.Tensor:
        if not isinstance(rows, slice):
            raise TypeError("StoredRows reads slices of rows (rows[a:b]) only")
        start, stop, step = rows.indices(len(self))
        if step != 1:
            raise TypeError("StoredRows reads contiguous slices of rows only")
        n = max(0, stop - start)
        if n == 0:
            return torch.empty((0, self.shape[1]))
        buffer = bytearray(n * self._row_bytes)
        view, done = memoryview(buffer), 0
        offset = self._start + start * self._row_bytes
        while done < len(view):  # a regular file reads whole, but the kernel caps one read at ~2 GB
            got = os.preadv(self._file.fileno(), [view[done:]], offset + done)
            if got <= 0:
                raise self.changed()
            done += got
        # safetensors is little-endian, as every platform torch runs on
        return torch.frombuffer(buffer, dtype=self._dtype).reshape(n, self.shape[1]).float()

    def blocks(self, rows: int = CHECK_ROWS) -> Iterator[tuple[int, torch.Tensor]]:
        """``(first row, rows)`` block by block, in order: the whole tensor, never all of it at once."""
        for start in range(0, len(self), rows):
            yield start, self[start : start + rows]

    def read(self) -> torch.Tensor:
        """All rows, as one float32 tensor (for what needs the whole: a translation, a comparison)."""
        return self[:]

    def close(self) -> None:
        self._file.close()

    def changed(self) -> RelstitchError:
        """The error of a file that is no longer the one this was opened on."""
        return RelstitchError(
            f"the file changed while relstitch read its {self.name}",
            path=self.path,
            hint="do not write over an embeddings file (or a cache entry) while relstitch reads it; rerun",
        )
