"""Stitching: feed one encoder's space to one decoder and score the result.

The decoder decides how it is fed: a relative decoder gets the encoder's latents projected onto the
*encoder's own* anchor latents with the *decoder's* projection config; an absolute decoder gets the
raw latents. Compatibility is checked first, so a wrong pair fails with a reason, not a shape error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .anchor_set import Anchors
from .components import Decoder, Encoder
from .data import Dataset
from .encoding import DEFAULT_BATCH, BatchSize, EncodedSpace, encode
from .errors import RelstitchError
from .hygiene import check_labels, warn_class_names, warn_single_class
from .io.artifacts import short
from .metrics import ClassificationCounts, reconstruction_scores
from .progress import ProgressFn, silent
from .projection import Rows, row_scale_free_applies
from .results import PairResult, Predictions


def check_pair(space: EncodedSpace, decoder: Decoder) -> None:
    """Raise a one-line :class:`RelstitchError` if ``decoder`` cannot read ``space``."""
    if decoder.space == "relative":
        if decoder.anchor_hash != space.anchor_hash:
            raise RelstitchError(
                f"decoder {decoder.name!r} was trained with anchors {short(decoder.anchor_hash)} "
                f"but these anchors are {short(space.anchor_hash)}",
                path=decoder.path,
                hint="use the anchor file the decoder was trained with",
            )
        k = space.anchor_absolute.shape[0]
        projection = decoder.projection
        expected = projection.output_dim(k) if projection else k
        if decoder.input_dim != expected:
            raise RelstitchError(
                f"decoder {decoder.name!r} reads {decoder.input_dim} similarities but there are {k} anchors"
                + (
                    f" ({expected} values with its {projection.similarity} projection)"
                    if projection and expected != k
                    else ""
                ),
                path=decoder.path,
            )
    else:
        d = space.absolute.shape[1]
        if decoder.input_dim != d:
            raise RelstitchError(
                f"absolute decoder {decoder.name!r} reads {decoder.input_dim}-d latents, encoder "
                f"{space.encoder_name!r} gives {d}-d",
                path=decoder.path,
                hint="absolute stitching needs equal latent sizes; use a relative decoder",
            )


def reads_row_scale_free(decoder: Decoder) -> bool:
    """Whether ``decoder`` may be fed the unnormalised cosine: a relative decoder whose architecture
    declares ``row_scale_free`` (a leading LayerNorm over its input) under a projection that has the fast
    path (:func:`~relstitch.projection.row_scale_free_applies`). A declaration, never a guess from its
    layers: a module without the attribute reads the exact relative vectors."""
    declared = getattr(type(decoder.module), "row_scale_free", False) is True
    return decoder.space == "relative" and declared and row_scale_free_applies(decoder.projection)


def decoder_inputs(space: EncodedSpace, decoder: Decoder, *, row_scale_free: bool = False) -> Rows:
    """What ``decoder`` reads from ``space``: relative vectors under its own projection, or latents.

    Relative vectors too large to hold (N x k past :data:`~relstitch.projection.MAX_HELD_RELATIVE_BYTES`)
    come as :class:`~relstitch.projection.ProjectedRows`, computed batch by batch as the decoder reads them.
    ``row_scale_free`` (opt-in): where :func:`reads_row_scale_free`, the cosine without its division by
    each sample's norm, computed for this call (not cached in ``space``, whose vectors stay exact). The
    decoder's outputs then move within its LayerNorm's eps (relstitch.projection's docstring).
    """
    check_pair(space, decoder)
    if decoder.space != "relative":
        return space.absolute
    fast = row_scale_free and reads_row_scale_free(decoder)
    return space.relative_rows(decoder.projection, row_scale_free=fast)


@dataclass
class DecoderOutputs:
    """What :func:`decode_and_score` kept of its pass: the raw outputs and, for a reconstruction,
    per-sample MSE."""

    outputs: torch.Tensor  # logits [N, classes] or reconstructions [N, C, H, W]
    errors: torch.Tensor | None = None


def score(
    decoder: Decoder,
    inputs: Rows,
    labels: torch.Tensor,
    dataset: Dataset | None = None,
    *,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Run ``decoder`` over ``inputs`` in batches and compute its task metrics."""
    return decode_and_score(decoder, inputs, labels, dataset, batch_size=batch_size)[0]


@torch.inference_mode()
def decode_and_score(
    decoder: Decoder,
    inputs: Rows,
    labels: torch.Tensor,
    dataset: Dataset | None = None,
    *,
    batch_size: int = 1024,
    keep: bool = False,
) -> tuple[dict[str, float], DecoderOutputs | None]:
    """:func:`score`, and with ``keep`` the outputs the scores were computed from (one decoder pass either
    way).

    Without ``keep`` nothing of size N is held: a classifier's hits are counted batch by batch
    (:class:`~relstitch.metrics.ClassificationCounts`), a reconstruction's squared errors summed.
    """
    decoder.module.eval()
    task = decoder.task
    if task["type"] == "classification":
        classes = task["classes"]
        check_labels(labels, classes, f"the data for decoder {decoder.name!r}", path=decoder.path)
        warn_single_class(labels, classes, "the evaluation data")
        counts, kept_logits = ClassificationCounts(len(classes)), []
        for s in range(0, len(inputs), batch_size):
            logits = decoder.module(inputs[s : s + batch_size])
            counts.add(logits.argmax(dim=1), labels[s : s + batch_size])
            if keep:
                kept_logits.append(logits)
        return counts.scores(), DecoderOutputs(torch.cat(kept_logits)) if keep else None
    if dataset is None:
        raise RelstitchError("a reconstruction decoder needs the original images to score against")
    images = dataset.x
    if not isinstance(images, torch.Tensor) or list(images.shape[1:]) != list(
        task["shape"]
    ):  # text: shape (n,)
        raise RelstitchError(
            f"decoder {decoder.name!r} reconstructs {task['shape']}, data is {list(dataset.x.shape[1:])}"
        )
    squared, count = 0.0, 0
    outputs, errors = [], []
    for s in range(0, len(inputs), batch_size):
        out = decoder.module(inputs[s : s + batch_size])
        target = images[s : s + batch_size].float() / 255.0
        error = (out - target) ** 2
        squared += float(error.sum())  # the same sum with or without keep: the scores do not depend on it
        count += target.numel()
        if keep:
            outputs.append(out)
            errors.append(error.flatten(1).mean(1))
    kept = DecoderOutputs(torch.cat(outputs), torch.cat(errors)) if keep else None
    return reconstruction_scores(squared / count), kept


def evaluate_pair(
    space: EncodedSpace,
    decoder: Decoder,
    dataset: Dataset | None = None,
    encoder_space: str | None = None,
    *,
    keep_predictions: bool = False,
    row_scale_free: bool = False,
) -> PairResult:
    """Score one decoder on an already encoded space. Errors raise; the matrix records them.

    With ``keep_predictions`` the result carries the per-sample :class:`~relstitch.predictions.Predictions`;
    ``row_scale_free``: as :func:`decoder_inputs`'.
    """
    started = time.perf_counter()
    inputs = decoder_inputs(space, decoder, row_scale_free=row_scale_free)
    scores, kept = decode_and_score(decoder, inputs, space.labels, dataset, keep=keep_predictions)
    if decoder.task["type"] == "classification":  # after scoring: a refused pair needs no warning on top
        warn_class_names(decoder.task["classes"], space.dataset.get("classes"), decoder.name)
    return scored_pair(space, decoder, scores, started, encoder_space, kept=kept)


def scored_pair(
    space: EncodedSpace,
    decoder: Decoder,
    scores: dict[str, float],
    started: float,
    encoder_space: str | None,
    *,
    space_name: str | None = None,
    method: str | None = None,
    kept: DecoderOutputs | None = None,
) -> PairResult:
    """The :class:`PairResult` of ``decoder`` scored on ``space`` (timed from ``started``), with the
    per-sample predictions when the decoder's outputs were ``kept``."""
    return PairResult(
        encoder=space.encoder_name,
        decoder=decoder.name,
        space=space_name or decoder.space,
        stitched=decoder.encoder_hash != space.encoder_hash,
        scores=scores,
        seconds=time.perf_counter() - started,
        encoder_hash=space.encoder_hash,
        decoder_hash=decoder.hash,
        encoder_space=encoder_space,
        method=method,
        predictions=None if kept is None else pair_predictions(space, decoder, kept),
    )


def pair_predictions(space: EncodedSpace, decoder: Decoder, kept: DecoderOutputs) -> Predictions:
    """The :class:`~relstitch.predictions.Predictions` of ``decoder``'s ``kept`` outputs on ``space``."""
    data_classes = list(space.dataset.get("classes") or [])
    classes = decoder.task.get("classes") or data_classes
    return Predictions(
        task=decoder.task["type"],
        ids=space.ids,
        labels=space.labels,
        outputs=kept.outputs.float(),
        errors=kept.errors,
        classes=list(classes),
        label_names=data_classes or list(classes),
        provenance={
            "encoder": {"name": space.encoder_name, "hash": space.encoder_hash},
            "decoder": {"name": decoder.name, "hash": decoder.hash, "space": decoder.space},
            "anchor_hash": space.anchor_hash or None,
            "data": space.dataset,
            "task": decoder.task,
        },
    )


def encoder_space_of(encoder: Encoder) -> str | None:
    """The bottleneck (relative/absolute) an encoder was trained end to end with, if recorded."""
    training = encoder.meta.get("training")
    return training.get("space") if isinstance(training, dict) else None


def stitch(
    encoder: Encoder,
    decoder: Decoder,
    anchors: Anchors,
    dataset: Dataset,
    *,
    batch_size: BatchSize = DEFAULT_BATCH,
    keep_predictions: bool = False,
    progress: ProgressFn = silent,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    row_scale_free: bool = False,
) -> PairResult:
    """Wire ``encoder`` into ``decoder`` through ``anchors`` and score on ``dataset`` (per-sample predictions
    kept in the result with ``keep_predictions``; the encoding reported to ``progress``; ``device``/``dtype``
    as :func:`~relstitch.encoding.encode`'s; ``row_scale_free`` as :func:`decoder_inputs`')."""
    if decoder.space == "relative" and decoder.anchor_hash != anchors.hash:
        # Check before encoding: a wrong anchor file should cost nothing.
        raise RelstitchError(
            f"decoder {decoder.name!r} was trained with anchors {short(decoder.anchor_hash)} "
            f"but {anchors.path or 'these anchors'} are {short(anchors.hash)}",
            path=decoder.path,
            hint="use the anchor file the decoder was trained with",
        )
    started = time.perf_counter()
    space = encode(
        encoder, anchors, dataset, batch_size=batch_size, progress=progress, device=device, dtype=dtype
    )
    result = evaluate_pair(
        space,
        decoder,
        dataset,
        encoder_space_of(encoder),
        keep_predictions=keep_predictions,
        row_scale_free=row_scale_free,
    )
    result.seconds = time.perf_counter() - started
    return result
