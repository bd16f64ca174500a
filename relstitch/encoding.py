"""Encoding: run an encoder over data and anchors, keep the absolute latents, project to relative.

An :class:`EncodedSpace` is one encoder's view of one dataset and one anchor set. It holds the
absolute latents of the samples *and* of the anchors, so relative vectors can be produced for any
projection config later (each decoder brings its own) without running the encoder again. An
embeddings file is an EncodedSpace on disk.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

import torch

from .anchor_set import Anchors
from .components import Encoder
from .data import Dataset
from .data.text import TextViews
from .errors import RelstitchError, first_line, printable, unknown_choice
from .hygiene import check_finite, check_labels
from .io.artifacts import Header, load_artifact, read_header, save_artifact
from .io.rows import StoredRows
from .progress import ProgressFn, silent
from .projection import (
    ProjectedRows,
    ProjectionConfig,
    relative_projection,
    relative_projector,
)
from .runtime import MMAP_THRESHOLD, held_budget

DEFAULT_BATCH = 256


class Placement(TypedDict):
    """Where and in which precision an encoder runs: the ``device``/``dtype`` keywords, passed on as
    ``**on``."""

    device: torch.device | None
    dtype: torch.dtype | None


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""``--dtype`` names → the dtype encoders run in (under autocast; outputs are stored as float32)."""


def resolve_device(
    device: str | torch.device = "auto", dtype: str = "float32"
) -> tuple[torch.device, torch.dtype]:
    """``auto|cpu|cuda[:i]`` and ``float32|bfloat16|float16`` → what :func:`iter_embed` takes."""
    if dtype not in DTYPES:
        raise unknown_choice("dtype", dtype, DTYPES)
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise unknown_choice("device", device, ("auto", "cpu", "cuda", "cuda:N")) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RelstitchError(
            "--device cuda but torch sees no CUDA device here", hint="use --device cpu or auto"
        )
    if resolved.type not in ("cpu", "cuda"):
        raise unknown_choice("device", device, ("auto", "cpu", "cuda", "cuda:N"))
    return resolved, DTYPES[dtype]


def _module_device(module: torch.nn.Module) -> torch.device:
    return next((p.device for p in module.parameters()), torch.device("cpu"))


BatchSize = int | Literal["auto"]
"""Samples per forward pass, or ``"auto"``: as many as fit the card, or on the CPU as many as keep each
activation under the allocator's reuse ceiling (:func:`resolve_batch_size`)."""
AUTO_MEMORY_FRACTION = 0.5
"""Share of the card's free memory an ``auto`` batch may take (the rest: the projection, other work,
headroom)."""
AUTO_MAX_BATCH = 8192
"""Largest ``auto`` batch: beyond this a batch is already far past saturating the card."""
_AUTO_PROBE = 16
CPU_AUTO_MIN_BATCH = 8
"""Smallest ``auto`` batch on the CPU, however large an encoder's activations."""
_CPU_PROBE = 4


def resolve_batch_size(
    batch_size: BatchSize,
    encoder: Encoder,
    x: Any,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> int:
    """An explicit batch size as is; ``"auto"`` → a power of two that suits the device.

    On CUDA, the largest power of two whose activations fit :data:`AUTO_MEMORY_FRACTION` of the free
    memory: the encoder runs two probe batches (16 and 32 samples of ``x``, under the same autocast) and
    the difference of their peak memory is the cost of one more sample, so fixed costs (weights,
    workspaces) are not mistaken for per-sample ones. On the CPU, :func:`_cpu_auto_batch`.
    """
    if batch_size != "auto":
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise RelstitchError(f"batch size must be a positive integer or 'auto', got {batch_size!r}")
        return batch_size
    where = device or _module_device(encoder.module)
    if where.type != "cuda":
        return _cpu_auto_batch(encoder, x, where, dtype)
    if len(x) < 2 * _AUTO_PROBE:
        return DEFAULT_BATCH
    encoder.module.to(where)
    peaks = []
    for n in (_AUTO_PROBE, 2 * _AUTO_PROBE):
        torch.cuda.synchronize(where)
        base = torch.cuda.memory_allocated(where)
        torch.cuda.reset_peak_memory_stats(where)
        for _ in iter_embed(encoder, x[:n], batch_size=n, device=where, dtype=dtype):
            pass
        torch.cuda.synchronize(where)
        peaks.append(torch.cuda.max_memory_allocated(where) - base)
    per_sample = max(
        1.0, (peaks[1] - peaks[0]) / _AUTO_PROBE, peaks[1] / (8 * 2 * _AUTO_PROBE)
    )  # floor: noise guard
    free, _total = torch.cuda.mem_get_info(where)
    fits = max(1, int(free * AUTO_MEMORY_FRACTION / per_sample))
    return min(AUTO_MAX_BATCH, 1 << (fits.bit_length() - 1))


def _cpu_auto_batch(encoder: Encoder, x: Any, where: torch.device, dtype: torch.dtype | None) -> int:
    """The largest power of two, from :data:`CPU_AUTO_MIN_BATCH` to :data:`DEFAULT_BATCH`, at which the
    largest tensor any submodule outputs stays under :data:`relstitch.runtime.MMAP_THRESHOLD`.

    glibc never keeps a freed block that large for reuse (32 MiB is its ceiling, tuned or not), so a
    batch whose activations cross it faults them back in at every batch: ResNet-50 runs 1.3-1.7x
    faster at 64 than at 256 on the CPU, a tiny CNN is fastest at 256 (docs/PERFORMANCE.md). One probe
    batch of a few samples, with forward hooks, measures the largest activation per sample.
    """
    if len(x) <= CPU_AUTO_MIN_BATCH:
        return DEFAULT_BATCH  # one batch whatever the size
    largest = 0

    def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        nonlocal largest
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                largest = max(largest, t.numel() * t.element_size())

    handles = [m.register_forward_hook(hook) for m in encoder.module.modules()]
    try:
        for _ in iter_embed(encoder, x[:_CPU_PROBE], batch_size=_CPU_PROBE, device=where, dtype=dtype):
            pass
    finally:
        for handle in handles:
            handle.remove()
    per_sample = max(1, largest // _CPU_PROBE)
    fits = max(1, (MMAP_THRESHOLD - 1) // per_sample)  # strictly under: a block of exactly 32 MiB is mmapped
    return max(CPU_AUTO_MIN_BATCH, min(DEFAULT_BATCH, 1 << (fits.bit_length() - 1)))


@torch.inference_mode()
def iter_embed(
    encoder: Encoder,
    x: Any,
    *,
    batch_size: BatchSize = DEFAULT_BATCH,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: ProgressFn = silent,
    description: str = "encoding",
    first_row: int = 0,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, latents [B, latent_dim] float32)`` batch by batch, on ``device``.

    ``first_row``: the row of the whole data ``x`` starts at (a torchrun rank's shard), so an error names
    the same row a single process would.

    ``device`` moves the module there (default: where it already is); uint8 batches are copied from
    pinned memory without blocking on CUDA. A ``dtype`` other than float32 runs the encoder under
    autocast. ``batch_size="auto"``: see :func:`resolve_batch_size`. The loop is over batches only:
    per-sample work happens inside the module.
    """
    encoder.module.eval()
    if device is not None:
        encoder.module.to(device)
    where = device or _module_device(encoder.module)
    batch_size = resolve_batch_size(batch_size, encoder, x, device=where, dtype=dtype)
    cast = dtype is not None and dtype != torch.float32
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        if where.type == "cuda" and isinstance(batch, torch.Tensor):
            batch = batch.pin_memory().to(where, non_blocking=True)
        try:
            with torch.autocast(where.type, dtype=dtype, enabled=cast):
                z = encoder.embed_batch(batch)
        except RelstitchError:
            raise
        except Exception as exc:  # the model (any code a source wraps) refused its inputs: one line, so
            # eval-matrix records this encoder's row as failed and goes on with the others
            raise RelstitchError(
                f"encoder {encoder.name!r} failed on its inputs ({description}): {first_line(exc)}",
                path=encoder.path,
                hint="check what the model expects (channels=, resize=, crop=, mean=, std=, layer=) "
                "and --batch-size",
            ) from None
        if (
            not encoder.latent_dim and z.ndim == 2
        ):  # adapters (relstitch.sources) learn their size on first use
            encoder.latent_dim = z.shape[1]
        if z.ndim != 2 or z.shape[1] != encoder.latent_dim:
            raise RelstitchError(
                f"encoder {encoder.name!r} returned shape {tuple(z.shape)}, "
                f"expected [batch, {encoder.latent_dim}]",
                path=encoder.path,
            )
        check_finite(
            z,
            f"latents of encoder {encoder.name!r} ({description})",
            path=encoder.path,
            offset=first_row + start,
        )
        yield start, z.float()
        progress(description, len(batch), len(x))


def embed(
    encoder: Encoder,
    x: Any,
    *,
    batch_size: BatchSize = DEFAULT_BATCH,
    progress: ProgressFn = silent,
    description: str = "encoding",
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Absolute latents ``[N, latent_dim]`` (float32, on the CPU) of inputs ``x``, computed batch by batch."""
    out = torch.empty((len(x), encoder.latent_dim), dtype=torch.float32)
    for start, z in iter_embed(
        encoder,
        x,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        progress=progress,
        description=description,
    ):
        if out.shape[1] != z.shape[1]:  # the latent size was learned on the first batch
            out = torch.empty((len(x), z.shape[1]), dtype=torch.float32)
        out[start : start + len(z)] = z
    return out


@dataclass
class EncodedSpace:
    """One encoder's absolute latents for a dataset and an anchor set, plus provenance.

    ``absolute`` is a tensor, except for a space read from an embeddings file whose latents are past the
    held budget (:func:`~relstitch.runtime.held_budget`): then :class:`~relstitch.io.rows.StoredRows`,
    read from the file slice by slice. :meth:`latents` is the whole tensor either way.
    """

    encoder_name: str
    encoder_hash: str
    absolute: torch.Tensor | StoredRows  # [N, D]
    anchor_absolute: torch.Tensor  # [k, D]
    labels: torch.Tensor  # [N]
    ids: torch.Tensor  # [N]
    anchor_hash: str
    dataset: dict[str, Any]  # name, size, hash, classes
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    _relative_cache: dict[ProjectionConfig, torch.Tensor] = field(default_factory=dict, repr=False)

    def latents(self) -> torch.Tensor:
        """The absolute latents ``[N, D]`` as one tensor (read whole when they are stored: each call)."""
        return self.absolute.read() if isinstance(self.absolute, StoredRows) else self.absolute

    def relative(self, config: ProjectionConfig | None = None) -> torch.Tensor:
        """Relative vectors ``[N, k]`` under ``config``; computed once per config."""
        config = config or ProjectionConfig()
        if config not in self._relative_cache:
            self._relative_cache[config] = relative_projection(self.latents(), self.anchor_absolute, config)
        return self._relative_cache[config]

    def relative_rows(
        self, config: ProjectionConfig | None = None, *, row_scale_free: bool = False
    ) -> torch.Tensor | ProjectedRows:
        """What a decoder under ``config`` reads, batch by batch: :meth:`relative` (held, shared by every
        decoder of ``config``) when the N x k vectors fit the held budget and the latents are held, else
        :class:`~relstitch.projection.ProjectedRows`, computed slice by slice as they are read.
        ``row_scale_free``: the unnormalised cosine (:func:`relative_projection`'s), never held."""
        config = config or ProjectionConfig()
        held = self._relative_cache.get(config)
        if held is not None and not row_scale_free:
            return held
        size = len(self.absolute) * config.output_dim(len(self.anchor_absolute)) * 4
        if size <= held_budget() and isinstance(self.absolute, torch.Tensor):
            if not row_scale_free:
                return self.relative(config)
            return relative_projection(self.absolute, self.anchor_absolute, config, row_scale_free=True)
        project = relative_projector(self.anchor_absolute, config, row_scale_free=row_scale_free)
        return ProjectedRows(self.absolute, project)


def _reads_text(encoder: Encoder) -> bool:
    modality: object = encoder.input_spec.get("modality", "image")
    return modality == "text"


def inputs_for(encoder: Encoder, source: Dataset | Anchors) -> torch.Tensor | TextViews:
    """What ``encoder`` reads of a dataset or an anchor set: a text encoder its text views (captions of
    images included; the encoder picks its view), any other encoder the images/tensors.

    The one place that decides it, so data and anchors are always read alike (cross-modal stitching:
    an image encoder embeds the anchor images, a text encoder the same anchors' captions).
    """
    primary = source.x if isinstance(source, Dataset) else source.inputs
    reads = encoder.input_spec.get("modality", "image")
    what = f"data {source.name} is" if isinstance(source, Dataset) else "the anchors are"
    where = source.path if isinstance(source, Anchors) else encoder.path
    if _reads_text(encoder):
        if source.texts is None:
            held = source.modality if isinstance(source, Dataset) else "image"
            raise RelstitchError(
                f"encoder {encoder.name!r} reads text but {what} {held} with no text views",
                path=where,
                hint="give it text data, or images with captions "
                "(jsonl:FILE#image=COL,text=COL, or DATA#captions=TEMPLATE)",
            )
        return source.texts
    if isinstance(primary, TextViews):
        raise RelstitchError(
            f"encoder {encoder.name!r} reads {reads} but {what} text",
            path=where,
            hint=f"give it {reads} data",
        )
    return primary


def read_view(encoder: Encoder, dataset: Dataset) -> dict[str, Any]:
    """What ``encoder`` reads of ``dataset``, for files and reports: ``{"modality": ..., "view": ...}``."""
    if not _reads_text(encoder):
        return {"modality": dataset.modality}
    texts = inputs_for(encoder, dataset)
    assert isinstance(texts, TextViews)  # inputs_for gives a text encoder text, or refuses
    return {"modality": "text", "view": encoder.input_spec.get("view") or texts.default}


def describe_read(encoder: Encoder, dataset: Dataset) -> dict[str, Any]:
    """The dataset as an embeddings file records it: its description, classes, and (for data that has text)
    which modality and view this encoder read (``read``)."""
    info = dict(dataset.describe(), classes=dataset.classes)
    if dataset.texts is not None:
        info["read"] = read_view(encoder, dataset)
    return info


def check_inputs(encoder: Encoder, anchors: Anchors | None, dataset: Dataset) -> None:
    """Refuse data (or anchors) of another modality, view or shape than the encoder reads, before any work."""
    x = inputs_for(encoder, dataset)
    if anchors is None:
        return
    anchor_x = inputs_for(encoder, anchors)
    if anchor_x.shape[1:] != x.shape[1:]:  # inputs_for gives both the same kind: images, or text views
        raise RelstitchError(
            f"anchors have shape {tuple(anchor_x.shape[1:])} per sample but data {dataset.name} has "
            f"{tuple(x.shape[1:])}",
            path=anchors.path,
            hint="use anchors picked from the same kind of data",
        )
    if isinstance(x, TextViews):
        assert isinstance(
            anchor_x, TextViews
        )  # inputs_for gives both the same kind (checked by shape above too)
        asked = encoder.input_spec.get("view")
        for texts, where in ((x, f"data {dataset.name}"), (anchor_x, "the anchors")):
            if asked and asked not in texts.names:
                raise RelstitchError(
                    f"encoder {encoder.name!r} reads text view {asked!r}, which {where} lack "
                    f"(views: {', '.join(texts.names)})",
                    path=encoder.path,
                    hint="pick a view they have with --view or #view=",
                )
        if (
            not asked and x.default != anchor_x.default
        ):  # else the data and the anchors would be read in two views
            raise RelstitchError(
                f"data {dataset.name} reads view {x.default!r} by default, the anchors {anchor_x.default!r}",
                path=anchors.path,
                hint="name the view with --view",
            )


def encode(
    encoder: Encoder,
    anchors: Anchors | None,
    dataset: Dataset,
    *,
    batch_size: BatchSize = DEFAULT_BATCH,
    progress: ProgressFn = silent,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> EncodedSpace:
    """Embed the anchors and the dataset with ``encoder`` (each exactly once).

    ``anchors=None`` gives a space with absolute latents only (for absolute decoders). ``device`` and
    ``dtype`` are :func:`iter_embed`'s (see :func:`resolve_device`); the latents come back float32 on the CPU.
    """
    check_inputs(encoder, anchors, dataset)
    on: Placement = {"device": device, "dtype": dtype}
    x = inputs_for(encoder, dataset)
    batch_size = resolve_batch_size(batch_size, encoder, x, **on)  # once, for the anchors and the data
    if anchors is None:
        absolute = embed(
            encoder, x, batch_size=batch_size, progress=progress, description=f"{encoder.name}: data", **on
        )
        return EncodedSpace(
            encoder.name,
            encoder.hash,
            absolute,
            absolute.new_empty((0, absolute.shape[1])),
            dataset.y,
            dataset.ids,
            anchor_hash="",
            dataset=describe_read(encoder, dataset),
        )
    anchor_absolute = embed(
        encoder,
        inputs_for(encoder, anchors),
        batch_size=batch_size,
        progress=progress,
        description=f"{encoder.name}: anchors",
        **on,
    )
    absolute = embed(
        encoder, x, batch_size=batch_size, progress=progress, description=f"{encoder.name}: data", **on
    )
    return EncodedSpace(
        encoder_name=encoder.name,
        encoder_hash=encoder.hash,
        absolute=absolute,
        anchor_absolute=anchor_absolute,
        labels=dataset.y,
        ids=dataset.ids,
        anchor_hash=anchors.hash,
        dataset=describe_read(encoder, dataset),
        meta={"encoder_training": encoder.meta.get("training"), "encoder": encoder.provenance()},
    )


def save_embeddings(
    space: EncodedSpace,
    path: str | os.PathLike[str],
    *,
    projection: ProjectionConfig | None = None,
    force: bool = False,
    relative: bool = True,
) -> Path:
    """Write an embeddings file: absolute and relative vectors, labels, ids, anchor latents, hashes.

    ``relative=False`` leaves the relative vectors out (they follow from the absolute and anchor latents):
    the cache's entries, which would otherwise hold N x k numbers nobody reads back.
    """
    projection = projection or ProjectionConfig()
    tensors = {
        "absolute": space.latents(),
        **({"relative": space.relative(projection)} if relative else {}),
        "anchor_absolute": space.anchor_absolute,
        "labels": space.labels,
        "ids": space.ids,
    }
    meta = embeddings_meta(
        space.encoder_name,
        space.encoder_hash,
        space.anchor_hash,
        space.dataset,
        projection,
        provenance=space.meta.get("encoder"),
    )
    return save_artifact(path, "embeddings", tensors, meta, force=force)


def embeddings_meta(
    encoder_name: str,
    encoder_hash: str,
    anchor_hash: str,
    dataset: dict[str, Any],
    projection: ProjectionConfig,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata of an embeddings file (shared by the in-memory and the streaming writers).

    ``provenance`` (:meth:`Encoder.provenance`) keeps the encoder's architecture and training facts, so
    a report or a head fitted on the file can still say which kind of encoder made it.
    """
    return {
        "encoder": {**(provenance or {}), "name": encoder_name, "hash": encoder_hash},
        "anchor_hash": anchor_hash,
        "dataset": dataset,
        "projection": projection.to_dict(),
    }


def _too_large_to_hold(header: Header) -> list[str]:
    """The tensors of an embeddings file past the held budget (:func:`~relstitch.runtime.held_budget`):
    stored relative vectors are never read then, the latents are read slice by slice (:class:`StoredRows`).
    Sizes as float32, what they would take once read."""
    budget = held_budget()
    return [
        name
        for name in ("absolute", "relative")
        if (info := header.tensors.get(name)) is not None and math.prod(info.shape) * 4 > budget
    ]


def load_embeddings(path: str | os.PathLike[str]) -> EncodedSpace:
    """Read an embeddings file back into an :class:`EncodedSpace`.

    Past the held budget (:func:`~relstitch.runtime.held_budget`, 512 MiB by default; a million samples
    on ten thousand anchors are 40 GB of relative vectors) stored relative vectors are not read (they follow
    from the latents, slice by slice: :meth:`EncodedSpace.relative_rows`) and the latents stay in the file,
    read slice by slice (:class:`~relstitch.io.rows.StoredRows`), checked block by block here.
    """
    header = read_header(path)
    left_out = _too_large_to_hold(header)
    # Opened (and held open) first, on the file this header describes; the rest is read by name after, so
    # the file must still be that one when it has been read (one replaced meanwhile is refused).
    rows = StoredRows(header, "absolute") if "absolute" in left_out else None
    art = load_artifact(header.path, "embeddings", skip=lambda _: left_out, header=header)
    if rows is not None and read_header(art.path).identity != header.identity:
        raise rows.changed()
    stored = rows is not None
    needed = {"absolute", "anchor_absolute", "labels", "ids"} - ({"absolute"} if stored else set())
    if needed - set(art.tensors):
        raise RelstitchError(
            f"corrupt embeddings file: missing {sorted(needed - set(art.tensors))}", path=art.path
        )
    encoder = art.meta.get("encoder") or {}
    dataset = art.meta.get("dataset")
    if (
        not isinstance(encoder, dict)
        or not isinstance(dataset, dict)
        or not isinstance(art.meta.get("anchor_hash"), str)
    ):
        raise RelstitchError(
            "corrupt embeddings file: encoder, dataset or anchor_hash metadata missing", path=art.path
        )
    absolute = rows if rows is not None else art.tensors["absolute"].float()
    anchor_absolute = art.tensors["anchor_absolute"].float()
    if len(absolute.shape) != 2 or anchor_absolute.ndim != 2 or absolute.shape[1] != anchor_absolute.shape[1]:
        raise RelstitchError(
            "corrupt embeddings file: absolute and anchor latents disagree in shape", path=art.path
        )
    if len(art.tensors["labels"]) != len(absolute):
        raise RelstitchError("corrupt embeddings file: labels and vectors differ in length", path=art.path)
    classes = dataset.get(
        "classes"
    )  # as a Dataset refuses labels past its class names, so does a file of its vectors
    check_labels(
        art.tensors["labels"], classes if isinstance(classes, list) else [], f"embeddings {art.path}"
    )
    if isinstance(absolute, StoredRows):  # checked as it would be whole, a block at a time
        for first, block in absolute.blocks():
            check_finite(block, "absolute vectors", path=art.path, offset=first)
    for name in ("absolute", "anchor_absolute", "relative"):
        if name in art.tensors:
            check_finite(art.tensors[name], f"{name} vectors", path=art.path)
    space = EncodedSpace(
        encoder_name=printable(str(encoder.get("name", "?"))),  # read from the file: shown, never obeyed
        encoder_hash=str(encoder.get("hash", "")),
        absolute=absolute,
        anchor_absolute=anchor_absolute,
        labels=art.tensors["labels"].long(),
        ids=art.tensors["ids"].long(),
        anchor_hash=art.meta["anchor_hash"],
        dataset=dataset,
        meta=art.meta,
        path=art.path,
    )
    if "relative" in art.tensors:  # keep the stored projection: it is exactly what was written
        space._relative_cache[ProjectionConfig.from_dict(art.meta.get("projection"))] = art.tensors[
            "relative"
        ].float()
    return space
