"""An embeddings cache for ``eval-matrix --cache DIR``: encode once per (encoder, anchors, data), ever.

Files are ordinary embeddings files named by a hash of the three content hashes, so a cache entry is
reused whatever the encoder file is called, and any change to the weights, the anchor set or the data
gives a new key. An entry whose recorded hashes do not match (or that cannot be read) is re-encoded
and replaced; entries are written atomically, so concurrent runs can share a folder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RelstitchError

if TYPE_CHECKING:
    import torch

    from ..anchor_set import Anchors
    from ..components import Encoder
    from ..data import Dataset
    from ..encoding import BatchSize, EncodedSpace
    from ..progress import ProgressFn


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
    precision = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
    return (
        Path(folder)
        / f"{cache_key(encoder.hash, anchors.hash, dataset.hash, precision)}.embeddings.safetensors"
    )


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
) -> tuple[EncodedSpace, bool]:
    """``encode(encoder, anchors, dataset)``, read from / written to the cache ``folder`` when given.

    Returns the space and whether it came from the cache.
    """
    from ..encoding import encode, load_embeddings, save_embeddings  # noqa: PLC0415

    def run() -> EncodedSpace:
        return encode(
            encoder, anchors, dataset, batch_size=batch_size, progress=progress, device=device, dtype=dtype
        )

    if folder is None:
        return run(), False
    path = cache_path(prepare_cache(folder), encoder, anchors, dataset, dtype)
    if path.exists():
        try:
            space = load_embeddings(path)
        except RelstitchError:
            space = None  # unreadable entry: encode again and replace it
        if (
            space is not None
            and space.encoder_hash == encoder.hash
            and space.anchor_hash == anchors.hash
            and space.dataset.get("hash") == dataset.hash
        ):
            space.encoder_name = encoder.name  # the entry may have been written under another file name
            return space, True
    space = run()
    save_embeddings(space, path, force=True)
    return space, False
