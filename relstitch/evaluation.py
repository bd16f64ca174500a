"""The main job as one call: ``evaluate`` scores every encoder with every decoder and builds the report.

What ``relstitch eval-matrix`` does between parsing its options and printing, for a Python caller too:
outputs checked before any work, decoders loaded (a broken one a failed column), the metric and the
``--group`` patterns checked against them, anchors and data loaded, the matrix run, the report built.
``stitch_loaded`` is one pair wired as the matrix wires it, so a pair the matrix scores, ``stitch`` scores
alike.

Precomputed embeddings (``embeddings:FILE``) know their data and anchors from their files
(:func:`precomputed_record`, from the header alone): with no live encoder, ``anchors``/``data`` None take
them from there. Files that disagree with each other, or with the anchors and data given, are refused in
one line before any work.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from .anchor_set import Anchors
from .checkpoints import default_name
from .components import Decoder, Encoder
from .data import Dataset
from .distributed import Group
from .encoding import DEFAULT_BATCH, BatchSize, EncodedSpace, resolve_device
from .errors import RelstitchError, UsageError
from .io.artifacts import short
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


# ----------------------------------------------------------------- what precomputed embeddings record
@dataclass(frozen=True)
class Precomputed:
    """What an embeddings file records of the data and anchors it was computed on (from its header)."""

    path: Path
    dataset: dict[str, Any]  # name, size, hash, classes... as `relstitch encode` wrote them
    anchor_hash: str
    anchor_count: int

    @property
    def data(self) -> str:
        """The data, as a message names it: ``'jsonl:s.jsonl' (a400779d1732)``."""
        return f"{self.dataset.get('name')!r} ({short(self.dataset.get('hash'))})"


def precomputed_record(ref: Reference) -> Precomputed | None:
    """The record of an ``embeddings:FILE`` reference (or a plain path to an embeddings file), read from the
    header alone; None for any other reference, and for a file that cannot be read (its loader says why)."""
    from .adapters.base import _source_of  # noqa: PLC0415  (the one reading of a reference's kind)
    from .io.artifacts import read_header  # noqa: PLC0415

    try:
        kind, _, locator, _ = _source_of(ref)
        if kind not in ("embeddings", "relstitch"):
            return None
        header = read_header(locator)
    except (RelstitchError, OSError):
        return None
    dataset, anchor_hash = header.metadata.get("dataset"), header.metadata.get("anchor_hash")
    latents = header.tensors.get("anchor_absolute")
    if header.kind != "embeddings" or not isinstance(dataset, dict) or not isinstance(anchor_hash, str):
        return None
    return Precomputed(header.path, dataset, anchor_hash, latents.shape[0] if latents else 0)


def agreed_record(records: Sequence[Precomputed]) -> Precomputed | None:
    """The data and anchors every one of ``records`` was computed on (None without any); two files computed
    on other data or with other anchors are refused in one line naming both."""
    if not records:
        return None
    first = records[0]
    for other in records[1:]:
        if other.dataset.get("hash") != first.dataset.get("hash"):
            raise RelstitchError(
                f"embeddings {first.path} and {other.path} were computed on different data "
                f"({first.data} and {other.data})",
                hint="encode every encoder on the same --data (and --limit)",
            )
        if other.anchor_hash != first.anchor_hash:
            raise RelstitchError(
                f"embeddings {first.path} and {other.path} were computed with different anchors "
                f"({short(first.anchor_hash)} and {short(other.anchor_hash)})",
                hint="encode every encoder with one anchor file",
            )
    return first


def check_records(records: Sequence[Precomputed], dataset: Dataset | None, anchors: Anchors | None) -> None:
    """Refuse, before any work, precomputed embeddings of other data or anchors than the run's (None: not
    named, nothing to check)."""
    for record in records:
        if dataset is not None and record.dataset.get("hash") != dataset.hash:
            raise RelstitchError(
                f"embeddings were computed on data {record.data}, not on {dataset.name} "
                f"({short(dataset.hash)})",
                path=record.path,
                hint="pass the data they were computed on with --data (and the same --limit)",
            )
        if anchors is not None and record.anchor_hash != anchors.hash:
            raise RelstitchError(
                f"embeddings were computed with anchors {short(record.anchor_hash)}, not with "
                f"{anchors.path or 'these anchors'} ({short(anchors.hash)})",
                path=record.path,
                hint="pass the anchor file they were computed with (--anchors)",
            )


class RecordedData(Dataset):
    """The data precomputed embeddings were computed on, as their file records it: labels, ids and class
    names, and no inputs (nothing is encoded from it, and a reconstruction, which is scored against the
    images, needs the real data). ``hash`` and ``describe()`` are the recorded ones."""

    record: dict[str, Any]

    @cached_property
    def hash(self) -> str:
        return str(self.record.get("hash"))

    def describe(self) -> dict[str, Any]:
        keys = ("name", "size", "shape", "hash", "modality", "views")
        return {key: self.record[key] for key in keys if key in self.record}


class RecordedAnchors(Anchors):
    """The anchors precomputed embeddings were computed with, known by their hash and count: their latents
    are in the files, so there are no inputs to embed (ids and labels unknown: -1)."""

    recorded_hash: str

    @cached_property
    def hash(self) -> str:
        return self.recorded_hash


def recorded_inputs(record: Precomputed) -> tuple[RecordedData, RecordedAnchors]:
    """The data and anchors ``record`` names, for a run of precomputed embeddings only (the samples' labels
    and ids read from its file)."""
    import torch  # noqa: PLC0415

    from .encoding import load_embeddings  # noqa: PLC0415

    space = load_embeddings(record.path)
    classes = record.dataset.get("classes")
    empty = torch.empty((len(space.labels), 0), dtype=torch.uint8)  # no inputs: nothing is encoded
    data = RecordedData(
        str(record.dataset.get("name", "?")),
        empty,
        space.labels,
        list(classes) if isinstance(classes, list) else [],
        space.ids,
        str(record.dataset.get("modality", "image")),
    )
    data.record = record.dataset
    unknown = torch.full((record.anchor_count,), -1, dtype=torch.int64)
    anchors = RecordedAnchors(torch.empty((record.anchor_count, 0), dtype=torch.uint8), unknown, unknown)
    anchors.recorded_hash = record.anchor_hash
    return data, anchors


# ------------------------------------------------------------------------------------ the main job
def evaluate(
    encoders: Sequence[Reference],
    decoders: Sequence[Decoder | BrokenDecoder | Reference],
    anchors: Reference | None,
    data: str | None = "builtin:test",
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
    trust_code: bool = False,
    group: Group | None = None,
) -> Evaluation:
    """Score every encoder with every decoder on ``data`` through the ``anchors`` file, and build the report.

    ``encoders``: references (a ``str`` as typed, a ``Path`` a file never parsed); ``decoders``: decoder files
    or loaded decoders. Everything that can be refused is refused before any encoder runs: ``outputs`` (files
    the caller will write: they must not exist unless ``force``, nor be one of the inputs), the device and
    dtype, the ``metric`` and ``groups`` (``(glob, group)`` overrides) against the decoders, precomputed
    embeddings of other data or anchors than the run's (or than each other's). ``anchors``/``data`` None:
    those the precomputed embeddings were computed on, when every encoder is one. ``load`` turns each
    encoder reference into an encoder or precomputed embeddings (default: every model source, default
    options). ``trust_code``: checkpoints of users' own modules may import the factories they record.
    ``group``: under torchrun, every rank checks the inputs and encodes its share of the encoders into
    ``cache``; rank 0 gets the evaluation (its report's ``run.world_size`` the number of ranks), the others
    an empty report. The other arguments are :func:`relstitch.matrix.eval_matrix`'s.
    """
    from .anchor_set import load_anchors  # noqa: PLC0415
    from .data import load_dataset  # noqa: PLC0415
    from .io.atomic import check_outputs  # noqa: PLC0415
    from .metrics import TASK_METRICS  # noqa: PLC0415
    from .refs import reference_files  # noqa: PLC0415
    from .reports import build_report  # noqa: PLC0415
    from .reports.document import check_groups  # noqa: PLC0415

    where, precision = resolve_device(device, dtype)  # a bad --device/--dtype costs nothing
    if group is not None and group.distributed and where.type == "cuda":  # one GPU per rank
        where = resolve_device(f"cuda:{group.local_rank}", dtype)[0]
    records = [r for r in map(precomputed_record, encoders) if r is not None]
    recorded = agreed_record(records)  # headers only: two files that disagree cost nothing either
    _check_recorded_use(recorded if len(records) == len(encoders) else None, anchors, data, limit)
    file_refs = [d for d in decoders if not isinstance(d, (Decoder, BrokenDecoder))]
    inputs = reference_files(*encoders, *file_refs, data, None if anchors is None else Path(anchors))
    check_outputs(outputs, force=force, inputs=inputs)
    # one that cannot load is a failed column
    heads = load_decoders(decoders, fail_fast=fail_fast, trust_code=trust_code)
    known = sorted({m for h in heads if isinstance(h, Decoder) for m in TASK_METRICS[h.task["type"]]})
    if metric is not None and known and metric not in known:  # checked before the run, not after it
        raise UsageError(f"unknown metric {metric!r} for these decoders; choose one of {', '.join(known)}")
    check_groups(list(groups), [default_name(e) for e in encoders] + [h.name for h in heads])
    if data is None and any(isinstance(h, Decoder) and h.task["type"] != "classification" for h in heads):
        raise UsageError(
            "a reconstruction is scored against the images, which embeddings files do not hold",
            hint="pass the data they were computed on with --data",
        )
    chosen: Anchors | None = None if anchors is None else load_anchors(anchors)
    dataset: Dataset | None = None if data is None else load_dataset(data, limit=limit)
    if recorded is not None and (chosen is None or dataset is None):
        from_files = recorded_inputs(recorded)
        chosen, dataset = chosen or from_files[1], dataset or from_files[0]
    assert chosen is not None and dataset is not None  # given, or recorded (checked above)
    check_records(records, dataset, chosen)
    result = eval_matrix(
        encoders,
        heads,
        chosen,
        dataset,
        batch_size=batch_size,
        fail_fast=fail_fast,
        trust_code=trust_code,
        cache=cache,
        progress=progress,
        methods=methods,
        null_baseline=null_baseline,
        load=load,
        device=where,
        dtype=precision,
        translation_scaling=translation_scaling,
        group=group,
    )
    if group is not None and group.rank != 0:  # its rows went to rank 0 through the cache
        return Evaluation(result, {})
    config = {
        "data": data if data is not None else dataset.name,
        "limit": limit,
        "batch_size": batch_size,
        "device": str(where),
        "dtype": dtype,
        "anchors": str(chosen.path) if chosen.path else None,
        "encoders": [str(e) for e in encoders],
        "decoders": [_as_given(d) for d in decoders],
        "requested_methods": list(methods),
        "null_baseline": null_baseline,
        "translation_scaling": translation_scaling,
    }
    report = build_report(result, config=config, groups=list(groups), dataset=dataset)
    report["run"]["world_size"] = group.world if group is not None else 1
    if result.ranks:  # under torchrun: which ranks encoded each encoder (more than one: its data split)
        report["run"]["encoder_ranks"] = result.ranks
    return Evaluation(result, report)


def _check_recorded_use(
    recorded: Precomputed | None, anchors: Reference | None, data: str | None, limit: int | None
) -> None:
    """Anchors and data left out (None) must be recorded: every encoder precomputed embeddings; and their
    samples are the files' own, so ``limit`` needs the data named."""
    if recorded is None:
        missing = [name for name, value in (("--anchors", anchors), ("--data", data)) if value is None]
        if missing:
            raise UsageError(
                f"{' and '.join(missing)} missing: only precomputed embeddings know their own anchors "
                "and data",
                hint=f"pass {' and '.join(missing)}",
            )
    elif data is None and limit is not None:
        raise UsageError(
            "precomputed embeddings carry their own samples: --limit needs the data named with --data"
        )


def stitch_loaded(
    source: Encoder | EncodedSpace,
    decoder: Decoder,
    anchors: Reference | None,
    data: str | None,
    *,
    method: str | None = None,
    target_encoder: Encoder | EncodedSpace | None = None,
    scaling: str | None = None,
    limit: int | None = None,
    batch_size: BatchSize = DEFAULT_BATCH,
    device: str = "auto",
    dtype: str = "float32",
    keep_predictions: bool = False,
    progress: ProgressFn = silent,
) -> PairResult:
    """One pair, the way ``relstitch stitch`` wires it and :func:`evaluate` would score it: ``decoder`` fed
    ``source``'s space natively (its own projection for a relative decoder), or through a translation
    ``method`` into the space of ``target_encoder``, the decoder's own encoder (checked by hash).

    ``source`` and ``target_encoder`` are loaded encoders or precomputed embeddings (which carry their
    anchors and samples: ``anchors``/``data`` given must be theirs, and ``limit`` is refused rather than
    ignored). ``anchors``/``data`` None mean the embeddings' own; an encoder to run needs them named.
    """
    from .adapters.precomputed import as_encoder  # noqa: PLC0415
    from .anchor_set import load_anchors  # noqa: PLC0415
    from .data import load_dataset  # noqa: PLC0415
    from .stitching import encoder_space_of, evaluate_pair, stitch  # noqa: PLC0415
    from .translation import check_scaling, stitch_translated  # noqa: PLC0415

    placement = _placement(device, dtype)  # a bad --device/--dtype costs nothing
    if method in ("relative", "absolute") and method != decoder.space:
        raise UsageError(
            f"decoder {decoder.name!r} reads {decoder.space} vectors, so --method {method} cannot feed it",
            hint=f"use --method {decoder.space} (the default) or a translation into an absolute decoder",
        )
    translating = method not in (None, decoder.space)
    if not translating and target_encoder is not None:
        raise UsageError("--target-encoder only means something with a translation --method")
    if translating and target_encoder is None:
        raise UsageError("a translation needs the decoder's own encoder: pass --target-encoder REF")
    scaled = check_scaling(scaling, [method])
    live = [m for m in (source, target_encoder) if isinstance(m, Encoder)]
    if live and anchors is None:
        raise UsageError(
            f"encoder {live[0].name!r} embeds the anchors: pass the anchor file with --anchors",
            hint="the embeddings' own" if isinstance(source, EncodedSpace) else "the one the decoder reads",
        )
    if isinstance(source, Encoder) and data is None:
        raise UsageError(f"encoder {source.name!r} needs the data to score on: pass --data")
    if isinstance(source, EncodedSpace) and limit is not None:  # silently ignoring it would mislead
        raise UsageError("precomputed embeddings carry their own samples: drop --limit")
    chosen = load_anchors(anchors) if anchors is not None else None
    dataset = load_dataset(data, limit=limit) if data is not None else None
    trained_space = None
    if isinstance(source, EncodedSpace):  # vectors computed elsewhere: they must be of this data and anchors
        where = source.path or Path(source.encoder_name)
        check_records([Precomputed(where, source.dataset, source.anchor_hash, 0)], dataset, chosen)
        trained_space = encoder_space_of(as_encoder(source))
    if translating:
        assert method is not None and target_encoder is not None  # translating: both checked above
        return stitch_translated(
            source,
            decoder,
            chosen,
            dataset,
            method,
            target_encoder=target_encoder,
            scaling=scaled,
            batch_size=batch_size,
            keep_predictions=keep_predictions,
            progress=progress,
            encoder_space=trained_space,
            **placement,
        )
    if isinstance(source, EncodedSpace):
        return evaluate_pair(source, decoder, dataset, trained_space, keep_predictions=keep_predictions)
    assert chosen is not None and dataset is not None  # an encoder to run: both checked above
    return stitch(
        source,
        decoder,
        chosen,
        dataset,
        batch_size=batch_size,
        keep_predictions=keep_predictions,
        progress=progress,
        **placement,
    )


def _placement(device: str, dtype: str) -> dict[str, Any]:
    where, precision = resolve_device(device, dtype)
    return {"device": where, "dtype": precision}


def _as_given(decoder: Decoder | BrokenDecoder | Reference) -> str:
    """A decoder as the report's config records it: its path (a loaded decoder's file, if it has one)."""
    if isinstance(decoder, (Decoder, BrokenDecoder)):
        return str(decoder.path) if decoder.path else decoder.name
    return os.fspath(decoder)


__all__ = [
    "Evaluation",
    "Precomputed",
    "RecordedAnchors",
    "RecordedData",
    "agreed_record",
    "check_records",
    "evaluate",
    "precomputed_record",
    "recorded_inputs",
    "stitch_loaded",
]
