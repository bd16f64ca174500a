"""The main job as one call: ``evaluate`` scores every encoder with every decoder and builds the report.

What ``relstitch eval-matrix`` does between parsing its options and printing, for a Python caller too:
outputs checked before any work, decoders loaded (a broken one a failed column), the metric and the
``--group`` patterns checked against them, anchors and data loaded, the matrix run, the report built.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoints import default_name
from .components import Decoder, Encoder
from .encoding import DEFAULT_BATCH, BatchSize, EncodedSpace, resolve_device
from .errors import UsageError
from .matrix import NATIVE_METHODS, BrokenDecoder, MatrixResult, eval_matrix, load_decoders
from .progress import ProgressFn, silent
from .results import PairResult

Reference = str | os.PathLike[str]


@dataclass
class Evaluation:
    """A matrix run and its report (the JSON document every renderer reads)."""

    result: MatrixResult
    report: dict[str, Any]

    def failure_summary(self) -> str | None:
        """``"N of M pairs failed"`` (with the reason when all did), or None when every pair ran."""
        failed = [p for p in self.result.pairs if p.error]
        if not failed:
            return None
        summary = f"{len(failed)} of {len(self.result.pairs)} pairs failed"
        return summary + (f"; the first: {failed[0].error}" if len(failed) == len(self.result.pairs) else "")


def evaluate(
    encoders: Sequence[Reference],
    decoders: Sequence[Decoder | BrokenDecoder | Reference],
    anchors: Reference,
    data: str = "builtin:test",
    *,
    limit: int | None = None,
    methods: Sequence[str] = NATIVE_METHODS,
    null_baseline: bool = False,
    translation_scaling: str = "standard",
    groups: Sequence[tuple[str, str]] = (),
    metric: str | None = None,
    batch_size: BatchSize = DEFAULT_BATCH,
    device: str = "auto",
    dtype: str = "float32",
    cache: Reference | None = None,
    fail_fast: bool = False,
    load: Callable[[Reference], Any] | None = None,
    progress: ProgressFn = silent,
    outputs: Sequence[Reference] = (),
    force: bool = False,
) -> Evaluation:
    """Score every encoder with every decoder on ``data`` through the ``anchors`` file, and build the report.

    ``encoders``: references (a ``str`` as typed, a ``Path`` a file never parsed); ``decoders``: decoder files
    or loaded decoders. Everything that can be refused is refused before any encoder runs: ``outputs`` (files
    the caller will write: they must not exist unless ``force``, nor be one of the inputs), the device and
    dtype, the ``metric`` and ``groups`` (``(glob, group)`` overrides) against the decoders. ``load`` turns
    each encoder reference into an encoder or precomputed embeddings (default: every model source, default
    options). The other arguments are :func:`relstitch.matrix.eval_matrix`'s.
    """
    from .anchor_set import load_anchors  # noqa: PLC0415
    from .data import load_dataset  # noqa: PLC0415
    from .io.atomic import check_outputs  # noqa: PLC0415
    from .metrics import TASK_METRICS  # noqa: PLC0415
    from .refs import reference_files  # noqa: PLC0415
    from .reports import build_report  # noqa: PLC0415
    from .reports.document import check_groups  # noqa: PLC0415

    where, precision = resolve_device(device, dtype)  # a bad --device/--dtype costs nothing
    file_refs = [d for d in decoders if not isinstance(d, (Decoder, BrokenDecoder))]
    check_outputs(outputs, force=force, inputs=reference_files(*encoders, *file_refs, data, Path(anchors)))
    heads = load_decoders(decoders, fail_fast=fail_fast)  # one that cannot load is a failed column
    known = sorted({m for h in heads if isinstance(h, Decoder) for m in TASK_METRICS[h.task["type"]]})
    if metric is not None and known and metric not in known:  # checked before the run, not after it
        raise UsageError(f"unknown metric {metric!r} for these decoders; choose one of {', '.join(known)}")
    check_groups(list(groups), [default_name(e) for e in encoders] + [h.name for h in heads])
    chosen, dataset = load_anchors(anchors), load_dataset(data, limit=limit)
    result = eval_matrix(
        encoders,
        heads,
        chosen,
        dataset,
        batch_size=batch_size,
        fail_fast=fail_fast,
        cache=cache,
        progress=progress,
        methods=methods,
        null_baseline=null_baseline,
        load=load,
        device=where,
        dtype=precision,
        translation_scaling=translation_scaling,
    )
    config = {
        "data": data,
        "limit": limit,
        "batch_size": batch_size,
        "device": str(where),
        "dtype": dtype,
        "anchors": str(chosen.path),
        "encoders": [str(e) for e in encoders],
        "decoders": [_as_given(d) for d in decoders],
        "requested_methods": list(methods),
        "null_baseline": null_baseline,
        "translation_scaling": translation_scaling,
    }
    return Evaluation(result, build_report(result, config=config, groups=list(groups)))


def stitch_loaded(
    source: Encoder | EncodedSpace,
    decoder: Decoder,
    anchors: Reference | None,
    data: str | None,
    *,
    method: str | None = None,
    target_encoder: Reference | None = None,
    scaling: str | None = None,
    limit: int | None = None,
    batch_size: BatchSize = DEFAULT_BATCH,
    keep_predictions: bool = False,
    progress: ProgressFn = silent,
    default_anchors: Reference | None = None,
) -> PairResult:
    """One pair, the way ``relstitch stitch`` wires it: ``decoder`` fed ``source``'s space natively (its own
    projection for a relative decoder), or through a translation ``method`` into ``target_encoder``'s space.

    ``source`` is a loaded encoder, or precomputed embeddings (which carry their anchors and samples:
    ``anchors``, ``limit`` and a translation are then refused rather than ignored). ``anchors``/``data`` None
    mean not given: the ``default_anchors`` file and ``builtin:test`` for an encoder, the embeddings' own
    data for precomputed vectors.
    """
    from .adapters.precomputed import stitch_precomputed  # noqa: PLC0415
    from .anchor_set import load_anchors  # noqa: PLC0415
    from .checkpoints import load_encoder  # noqa: PLC0415
    from .components import Encoder
    from .data import load_dataset  # noqa: PLC0415
    from .stitching import stitch  # noqa: PLC0415
    from .translation import check_scaling, stitch_translated  # noqa: PLC0415

    if not isinstance(source, Encoder):  # vectors computed elsewhere: nothing to run, no anchor file needed
        if method not in (None, decoder.space) or target_encoder is not None or scaling is not None:
            raise UsageError(
                "precomputed embeddings take no translation --method, --target-encoder or "
                "--translation-scaling"
            )
        if anchors is not None or limit is not None:  # silently ignoring them would mislead
            raise UsageError(
                "precomputed embeddings carry their anchors and samples: drop --anchors and --limit"
            )
        return stitch_precomputed(
            source,
            decoder,
            load_dataset(data, limit=limit) if data else None,
            keep_predictions=keep_predictions,
        )
    if method in ("relative", "absolute") and method != decoder.space:
        raise UsageError(
            f"decoder {decoder.name!r} reads {decoder.space} vectors, so --method {method} cannot feed it",
            hint=f"use --method {decoder.space} (the default) or a translation into an absolute decoder",
        )
    translating = method not in (None, decoder.space)
    if not translating and target_encoder is not None:
        raise UsageError("--target-encoder only means something with a translation --method")
    if translating and target_encoder is None:
        raise UsageError("a translation needs the decoder's own encoder: pass --target-encoder FILE")
    scaled = check_scaling(scaling, [method])
    anchor_file = anchors if anchors is not None else default_anchors
    if anchor_file is None:
        raise UsageError(
            "stitching an encoder needs the anchor file its decoder was trained with: pass --anchors"
        )
    chosen, dataset = load_anchors(anchor_file), load_dataset(data or "builtin:test", limit=limit)
    if not translating:
        return stitch(
            source,
            decoder,
            chosen,
            dataset,
            batch_size=batch_size,
            keep_predictions=keep_predictions,
            progress=progress,
        )
    assert method is not None and target_encoder is not None  # translating: both checked above
    return stitch_translated(
        source,
        decoder,
        chosen,
        dataset,
        method,
        target_encoder=load_encoder(target_encoder),
        scaling=scaled,
        batch_size=batch_size,
        keep_predictions=keep_predictions,
        progress=progress,
    )


def _as_given(decoder: Decoder | BrokenDecoder | Reference) -> str:
    """A decoder as the report's config records it: its path (a loaded decoder's file, if it has one)."""
    if isinstance(decoder, (Decoder, BrokenDecoder)):
        return str(decoder.path) if decoder.path else decoder.name
    return os.fspath(decoder)


__all__ = ["Evaluation", "evaluate", "stitch_loaded"]
