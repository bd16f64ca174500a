"""The verbs as functions: one obvious signature each, references or loaded objects in, results out.

What ``import relstitch`` exposes (lazily: importing the package imports no torch; the first use of a name
imports what it needs). Each verb takes what the command line takes — a model or data *reference* (a ``str``
parsed as typed, ``hf:DIR#pooling=mean``; a :class:`~pathlib.Path` always a file, never parsed) — or the
object already loaded (an :class:`~relstitch.components.Encoder`, :class:`~relstitch.anchor_set.Anchors`, a
:class:`~relstitch.data.Dataset`...), and returns the library's own result types. The CLI's commands call
these same functions; the steps inside them are the library modules (docs/API.md).

The anchors verb is :func:`select_anchors`, not ``anchors``: ``relstitch.anchors`` is the module of anchor
strategies, and a package attribute cannot be both (Python sets the submodule on the package when it is
imported). The export verb is :func:`export_stitched` for the same reason (``relstitch.export``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .progress import ProgressFn, silent

if TYPE_CHECKING:  # the heavy modules load on first use, not with the package
    from .anchor_set import Anchors
    from .comparison import CompareResult
    from .components import Decoder, Encoder
    from .data import Dataset
    from .encoding import EncodedSpace
    from .evaluation import Evaluation
    from .export import StitchedModel
    from .projection import ProjectionConfig
    from .results import PairResult

Reference = str | os.PathLike[str]
"""A model, data or file reference: a ``str`` is read as typed (``kind:locator#options``), a ``Path`` is a
file."""
BatchSize = int | str
"""Samples per encoder pass, or ``"auto"``."""


# ------------------------------------------------------------------------------------------ loading
def load_encoder(ref: Reference, *, trust_remote_code: bool = False, **options: Any) -> Encoder:
    """The encoder a reference names: a relstitch checkpoint, ``hf:``, ``torchvision:``, ``timm:``,
    ``python:``... (``options`` as ``-O KEY=VALUE``; the reference's own ``#key=value`` override them)."""
    from .adapters import load_encoder_ref  # noqa: PLC0415

    encoder: Encoder = load_encoder_ref(
        ref, trust_remote_code=trust_remote_code, allow_embeddings=False, **options
    )
    return encoder


def _model(ref: Reference | Encoder | EncodedSpace) -> Encoder | EncodedSpace:
    """A loaded encoder or embeddings as given, else the reference loaded (``embeddings:FILE`` allowed)."""
    from .components import Encoder  # noqa: PLC0415
    from .encoding import EncodedSpace  # noqa: PLC0415

    if isinstance(ref, (Encoder, EncodedSpace)):
        return ref
    from .adapters import load_encoder_ref  # noqa: PLC0415

    return load_encoder_ref(ref)


def _encoder(ref: Reference | Encoder) -> Encoder:
    from .components import Encoder  # noqa: PLC0415

    return ref if isinstance(ref, Encoder) else load_encoder(ref)


def _anchors(ref: Reference | Anchors) -> Anchors:
    from .anchor_set import Anchors, load_anchors  # noqa: PLC0415

    return ref if isinstance(ref, Anchors) else load_anchors(ref)


def _dataset(ref: str | Dataset, limit: int | None = None) -> Dataset:
    from .data import Dataset, load_dataset  # noqa: PLC0415
    from .errors import UsageError  # noqa: PLC0415

    if isinstance(ref, Dataset):
        if limit is not None:  # silently ignoring it would mislead
            raise UsageError("limit applies to a data reference; take a subset of a loaded Dataset instead")
        return ref
    return load_dataset(ref, limit=limit)


def _batch(size: BatchSize) -> int | Any:
    from .errors import UsageError  # noqa: PLC0415

    if size == "auto" or (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
        return size
    raise UsageError(f"batch_size must be a positive integer or 'auto', not {size!r}")


# ------------------------------------------------------------------------------------------- verbs
def select_anchors(
    data: str | Dataset,
    count: int | None = None,
    strategy: str = "uniform",
    seed: int = 0,
    *,
    ids: Sequence[int] | None = None,
    space_encoder: Reference | Encoder | None = None,
    progress: ProgressFn = silent,
) -> Anchors:
    """Pick anchors from ``data`` (``relstitch anchors``): ``uniform``, ``stratified``, ``farthest-point``,
    ``kmeans`` (distances in pixels, or in ``space_encoder``'s latents) or ``ids``. Save them with
    :func:`relstitch.anchors.save_anchors`."""
    from .anchors import select_anchors as select  # noqa: PLC0415

    return select(
        _dataset(data),
        count,
        strategy,
        seed,
        ids=list(ids) if ids is not None else None,
        space_encoder=_encoder(space_encoder) if space_encoder is not None else None,
        progress=progress,
    )


def encode(
    encoder: Reference | Encoder,
    anchors: Reference | Anchors | None,
    data: str | Dataset,
    *,
    limit: int | None = None,
    batch_size: BatchSize = 256,
    device: str = "auto",
    dtype: str = "float32",
    progress: ProgressFn = silent,
) -> EncodedSpace:
    """Embed the anchors and the data with an encoder (``relstitch encode``, in memory): an
    :class:`~relstitch.encoding.EncodedSpace` of absolute latents, relative vectors on demand
    (``.relative(config)``). Save it with :func:`relstitch.encoding.save_embeddings`; for data larger than
    memory, :func:`relstitch.streaming.encode_to_file` (what the command runs)."""
    from .encoding import encode as encode_space  # noqa: PLC0415
    from .encoding import resolve_device  # noqa: PLC0415

    where, precision = resolve_device(device, dtype)
    return encode_space(
        _encoder(encoder),
        _anchors(anchors) if anchors is not None else None,
        _dataset(data, limit),
        batch_size=_batch(batch_size),
        progress=progress,
        device=where,
        dtype=precision,
    )


def fit(
    embeddings: Reference | EncodedSpace,
    *,
    space: str = "relative",
    head: str | None = None,
    hidden: int = 128,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    val: float = 0.1,
    projection: ProjectionConfig | None = None,
    name: str = "head",
    progress: ProgressFn = silent,
) -> Decoder:
    """Train a task head on a frozen encoder's embeddings (``relstitch fit``) → a
    :class:`~relstitch.components.Decoder` (save it with :func:`relstitch.checkpoints.save_decoder`).

    ``head`` None: ``text-head`` when the encoder read text, else ``vision-head``. A relative head reads
    ``projection``, by default the one the embeddings file was written with.
    """
    from .encoding import EncodedSpace, load_embeddings  # noqa: PLC0415
    from .projection import ProjectionConfig  # noqa: PLC0415
    from .training import FitConfig  # noqa: PLC0415
    from .training import fit as fit_head  # noqa: PLC0415

    if isinstance(embeddings, EncodedSpace):
        loaded = embeddings
    else:
        loaded = load_embeddings(os.fspath(embeddings).removeprefix("embeddings:"))
    read = loaded.dataset.get("read") or {}  # a text encoder on images' captions read text: a text head
    modality = read.get("modality", loaded.dataset.get("modality"))
    head = head or ("text-head" if modality == "text" else "vision-head")
    config = FitConfig(
        space=space, head=head, hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, val=val
    )
    if space == "relative" and projection is None:
        projection = ProjectionConfig.from_dict(loaded.meta.get("projection"))
    return fit_head(loaded, config, projection=projection, name=name, progress=progress)


def stitch(
    encoder: Reference | Encoder | EncodedSpace,
    decoder: Reference | Decoder,
    anchors: Reference | Anchors | None,
    data: str | Dataset | None,
    *,
    method: str | None = None,
    target_encoder: Reference | Encoder | EncodedSpace | None = None,
    scaling: str | None = None,
    limit: int | None = None,
    batch_size: BatchSize = 256,
    device: str = "auto",
    dtype: str = "float32",
    keep_predictions: bool = False,
    progress: ProgressFn = silent,
) -> PairResult:
    """Wire one encoder into one decoder and score it (``relstitch stitch``): natively (a relative decoder
    reads the encoder's relative vectors under its own projection), or through a translation ``method``
    into ``target_encoder``'s space. Precomputed embeddings carry their anchors and data (None: theirs).
    Loaded :class:`Anchors`/:class:`Dataset` objects are taken for a native pair of an encoder."""
    from .anchor_set import Anchors  # noqa: PLC0415
    from .checkpoints import load_decoder  # noqa: PLC0415
    from .components import Encoder  # noqa: PLC0415
    from .data import Dataset  # noqa: PLC0415
    from .errors import UsageError  # noqa: PLC0415
    from .evaluation import stitch_loaded  # noqa: PLC0415

    head = load_decoder(decoder) if isinstance(decoder, (str, os.PathLike)) else decoder
    source = _model(encoder)
    target = _model(target_encoder) if target_encoder is not None else None
    if isinstance(anchors, Anchors) or isinstance(data, Dataset):
        if (
            not isinstance(source, Encoder)
            or anchors is None
            or data is None
            or method not in (None, head.space)
        ):
            raise UsageError(
                "loaded anchors or data are taken for an encoder's native pair; pass references otherwise"
            )
        from .encoding import resolve_device  # noqa: PLC0415
        from .stitching import stitch as stitch_pair  # noqa: PLC0415

        where, precision = resolve_device(device, dtype)
        return stitch_pair(
            source,
            head,
            _anchors(anchors),
            _dataset(data, limit),
            batch_size=_batch(batch_size),
            keep_predictions=keep_predictions,
            progress=progress,
            device=where,
            dtype=precision,
        )
    return stitch_loaded(
        source,
        head,
        anchors,
        data,
        method=method,
        target_encoder=target,
        scaling=scaling,
        limit=limit,
        batch_size=_batch(batch_size),
        device=device,
        dtype=dtype,
        keep_predictions=keep_predictions,
        progress=progress,
    )


def eval_matrix(
    encoders: Sequence[Reference],
    decoders: Sequence[Reference | Decoder],
    anchors: Reference | None,
    data: str | None = "builtin:test",
    **options: Any,
) -> Evaluation:
    """Score every encoder with every decoder and build the report (``relstitch eval-matrix``): an
    :class:`~relstitch.evaluation.Evaluation` (``.result``, the matrix; ``.report``, the JSON document).
    ``options`` are :func:`relstitch.evaluation.evaluate`'s (``limit``, ``methods``, ``null_baseline``,
    ``cache``, ``device``...)."""
    from .evaluation import evaluate  # noqa: PLC0415

    return evaluate(encoders, decoders, anchors, data, **options)


def compare(
    spaces: Sequence[Reference | Encoder | EncodedSpace],
    *,
    anchors: Reference | Anchors | None = None,
    data: str | Dataset | None = None,
    limit: int | None = None,
    k: int = 10,
    projection: ProjectionConfig | None = None,
    progress: ProgressFn = silent,
) -> CompareResult:
    """Label-free similarity of latent spaces (``relstitch compare``): Jaccard@k, MRR@k, mean cosine and
    linear CKA, absolute and relative. Encoders are run on ``data`` with ``anchors``; embeddings files
    (or loaded spaces) bring their own."""
    from .comparison import compare_spaces  # noqa: PLC0415
    from .encoding import EncodedSpace  # noqa: PLC0415
    from .encoding import encode as encode_space  # noqa: PLC0415
    from .errors import UsageError  # noqa: PLC0415

    loaded = [_model(ref) for ref in spaces]
    vectors = []
    for item in loaded:
        if not isinstance(item, EncodedSpace):  # an encoder: embed the anchors and the data with it
            if anchors is None or data is None:
                raise UsageError("encoders to compare are run on data with anchors: pass anchors= and data=")
            anchors, data = _anchors(anchors), _dataset(data, limit)  # loaded once, for every encoder
            limit = None
            item = encode_space(item, anchors, data, progress=progress)
        vectors.append(item)
    return compare_spaces(vectors, k=k, projection=projection)


def export_stitched(
    encoder: Reference | Encoder,
    decoder: Reference | Decoder,
    anchors: Reference | Anchors,
    output: Reference,
    *,
    format: str = "safetensors",
    force: bool = False,
) -> StitchedModel:
    """Ship ``encoder`` stitched into ``decoder`` as one file (``relstitch export``): the encoder, the decoder
    and the encoder's own anchor latents, computed once here; read it back with :func:`load_stitched`.
    ``format="onnx"`` writes an ONNX graph of the same module (the ``onnx`` extra)."""
    from .errors import RelstitchError, unknown_choice  # noqa: PLC0415
    from .export import FORMATS  # noqa: PLC0415
    from .export import export_stitched as export  # noqa: PLC0415

    if format not in FORMATS:  # bad usage (exit 2) before any file is looked at
        raise unknown_choice("format", format, FORMATS)
    if isinstance(encoder, (str, os.PathLike)):
        from .adapters.base import _source_of  # noqa: PLC0415  (the one reading of a reference's kind)

        kind = _source_of(encoder)[0]
        if kind != "relstitch":  # refused before loading: a Hub model or its weights cost nothing
            raise RelstitchError(
                f"export ships relstitch's own encoder checkpoints; {kind}: encoders need their own code or "
                "tokenizer files at run time and are not supported yet",
                path=os.fspath(encoder),
                hint="export an encoder trained with `relstitch train`",
            )
    from .checkpoints import load_decoder  # noqa: PLC0415
    from .io.atomic import check_outputs  # noqa: PLC0415
    from .refs import reference_files  # noqa: PLC0415

    given = [r for r in (encoder, decoder, anchors) if isinstance(r, (str, os.PathLike))]
    check_outputs([output], force=force, inputs=reference_files(*given))  # before anything is loaded
    return export(
        _encoder(encoder),
        load_decoder(decoder) if isinstance(decoder, (str, os.PathLike)) else decoder,
        _anchors(anchors),
        output,
        format=format,
        force=force,
    )


def load_stitched(path: Reference) -> StitchedModel:
    """A ``stitched`` file (from :func:`export_stitched`) as an ``nn.Module``: raw inputs → predictions."""
    from .export import load_stitched as load  # noqa: PLC0415

    return load(path)


__all__ = [
    "compare",
    "encode",
    "eval_matrix",
    "export_stitched",
    "fit",
    "load_encoder",
    "load_stitched",
    "select_anchors",
    "stitch",
]
