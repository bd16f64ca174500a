"""The encoder × decoder matrix: every pairing scored, each encoder run exactly once.

Encoders are loaded and encoded one at a time (data and anchors once each), then every decoder reads
the cached space; the encoder is dropped before the next one loads, so memory holds one encoder at a
time. A pair that cannot run (wrong anchors, unequal latent sizes, a broken file) is recorded with its
reason and the run goes on, unless ``fail_fast``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .anchors import Anchors
from .artifacts import short
from .cache import cached_encode, prepare_cache
from .checkpoints import Decoder, Encoder, default_name
from .controls import SHUFFLED_ANCHORS, shuffled_anchor_space
from .data import Dataset
from .encoding import DEFAULT_BATCH, EncodedSpace, embed
from .errors import RelstitchError
from .hygiene import warn_zero_norm, zero_norm_count
from .metrics import DIRECTIONS, MAIN_METRIC
from .progress import ProgressFn, silent
from .stitching import PairResult, encoder_space_of, evaluate_pair
from .translation import METHODS as TRANSLATIONS
from .translation import evaluate_translation

if TYPE_CHECKING:
    import torch

NATIVE_METHODS = ("relative", "absolute")
"""Methods that feed a decoder what it was trained on: its own space, no translation."""


@dataclass
class MatrixResult:
    """All pairs of a matrix run, plus what is needed to render and reproduce it."""

    encoders: list[dict[str, Any]]
    decoders: list[dict[str, Any]]
    pairs: list[PairResult]
    task: str
    main_metric: str
    anchors: dict[str, Any]
    dataset: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    def cell(self, encoder: str, decoder: str, method: str | None = None) -> PairResult | None:
        """The pair of ``encoder`` and ``decoder`` under ``method`` (default: the decoder's own space)."""
        return next((p for p in self.pairs if p.encoder == encoder and p.decoder == decoder
                     and (p.method == method if method else p.method == p.space)), None)


def eval_matrix(
    encoder_paths: list[str | os.PathLike],
    decoders: list[Decoder],
    anchors: Anchors,
    dataset: Dataset,
    *,
    batch_size: int = DEFAULT_BATCH,
    fail_fast: bool = False,
    progress: ProgressFn = silent,
    cache: str | os.PathLike | None = None,
    load: Callable[[str], Encoder | EncodedSpace] | None = None,
    methods: Sequence[str] = NATIVE_METHODS,
    null_baseline: bool = False,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> MatrixResult:
    """Score every encoder with every decoder on ``dataset`` through ``anchors``.

    ``cache``: a folder of embeddings files keyed by encoder, anchors and data (:mod:`relstitch.cache`);
    an encoder found there is not run at all.
    ``load``: turns each reference into an encoder or precomputed embeddings (default: any model source
    of :mod:`relstitch.sources.models` with default options).
    ``methods``: ``relative`` scores every relative decoder, ``absolute`` every absolute decoder as is,
    and each translation method (:data:`relstitch.translation.METHODS`) every absolute decoder through a
    map from the row's encoder into the space of the decoder's own encoder, which must be among
    ``encoder_paths`` (found by its hash; the cell says why when it is not). ``null_baseline`` adds,
    for every relative and translation pair, the control with the encoder's anchors shuffled
    (method ``<method>-null``, ``control="shuffled-anchors"``).
    ``device``/``dtype``: where and in which precision the encoders run (as ``encode``'s, from
    :func:`~relstitch.encoding.resolve_device`; default: where each encoder is, float32). The heads run
    on the CPU, on the float32 vectors.
    """
    from .sources.models import as_encoder, check_precomputed, load_encoder_ref

    load = load or load_encoder_ref
    if not encoder_paths or not decoders:
        raise RelstitchError("an eval-matrix needs at least one encoder and one decoder")
    plan = _plan(decoders, methods, null_baseline)
    needs_targets = any(m in TRANSLATIONS for _, m, _ in plan)
    on = {"device": device, "dtype": dtype}
    targets = _own_encoder_anchors(encoder_paths, anchors, load, batch_size, **on) if needs_targets else {}
    tasks = {d.task["type"] for d in decoders}
    if len(tasks) > 1:
        raise RelstitchError(f"decoders mix tasks {sorted(tasks)}: run one matrix per task")
    task = tasks.pop()
    if cache is not None:
        prepare_cache(cache)  # a bad --cache is the user's mistake: refuse it before any work
    started = time.perf_counter()
    encoders_info: list[dict[str, Any]] = []
    pairs: list[PairResult] = []
    encode_seconds = 0.0
    for path in encoder_paths:
        t0 = time.perf_counter()
        try:
            encoder = load(str(path))
            if isinstance(encoder, EncodedSpace):  # precomputed vectors: nothing to run, they must be of this data
                space, from_cache = check_precomputed(encoder, dataset.hash), False
                encoder = as_encoder(space)
            else:
                space, from_cache = cached_encode(encoder, anchors, dataset, cache, batch_size=batch_size, progress=progress,
                                                  **on)
                encoder.latent_dim = encoder.latent_dim or space.absolute.shape[1]  # adapters learn it when they run
        except RelstitchError as exc:
            if fail_fast:
                raise
            name = default_name(path)
            encoders_info.append({"name": name, "path": str(path), "error": str(exc)})
            pairs.extend(PairResult(name, d.name, d.space, True, error=str(exc), method=_label(m, c), control=c)
                         for d, m, c in plan)
            continue
        encode_seconds += time.perf_counter() - t0
        encoder_space = encoder_space_of(encoder)
        # Zero-norm latents have no direction (cosine 0 by projection.EPS): counted per encoder for the report.
        zero_norm = zero_norm_count(space.absolute, space.anchor_absolute)
        warn_zero_norm(zero_norm, len(space.absolute), f"sample latents of {encoder.name!r}")
        encoders_info.append({"name": encoder.name, "path": str(path), "hash": encoder.hash, "zero_norm_latents": zero_norm,
                              "latent_dim": encoder.latent_dim, "trained_space": encoder_space,
                              "architecture": encoder.architecture["name"], "seed": _training(encoder.meta).get("seed"),
                              "encode_seconds": time.perf_counter() - t0, "from_cache": from_cache})
        shuffled = shuffled_anchor_space(space) if null_baseline else None
        for decoder, method, control in plan:
            try:
                pairs.append(_run_pair(shuffled if control else space, decoder, method, control, targets, dataset,
                                       encoder_space))
            except RelstitchError as exc:
                if fail_fast:
                    raise
                pairs.append(PairResult(encoder.name, decoder.name, decoder.space,
                                        decoder.encoder_hash != encoder.hash, error=str(exc),
                                        encoder_hash=encoder.hash, decoder_hash=decoder.hash,
                                        encoder_space=encoder_space, method=_label(method, control), control=control))
        del encoder, space, shuffled  # one encoder in memory at a time
    decoders_info = [
        {"name": d.name, "path": str(d.path) if d.path else None, "hash": d.hash, "space": d.space,
         "input_dim": d.input_dim, "encoder_hash": d.encoder_hash, "anchor_hash": d.anchor_hash,
         "projection": d.projection.to_dict() if d.projection else None, "architecture": d.architecture.get("name"),
         "seed": _training(d.meta).get("seed"), "encoder_architecture": (_training(d.meta).get("config") or {}).get("arch")}
        for d in decoders
    ]
    return MatrixResult(
        encoders=encoders_info,
        decoders=decoders_info,
        pairs=pairs,
        task=task,
        main_metric=MAIN_METRIC[task],
        anchors={"path": str(anchors.path) if anchors.path else None, "hash": anchors.hash, "count": len(anchors),
                 "strategy": anchors.meta.get("strategy"), "seed": anchors.meta.get("seed")},
        dataset=dataset.describe(),
        timings={"total_seconds": time.perf_counter() - started, "encode_seconds": encode_seconds},
    )


def _plan(decoders: list[Decoder], methods: Sequence[str], null_baseline: bool) -> list[tuple[Decoder, str, str | None]]:
    """Which (decoder, method, control) cells a row gets, in column order: decoders, then methods."""
    unknown = [m for m in methods if m not in (*NATIVE_METHODS, *TRANSLATIONS)]
    if unknown or not methods:
        raise RelstitchError(f"unknown method(s) {unknown}; choose among {', '.join((*NATIVE_METHODS, *TRANSLATIONS))}")
    plan: list[tuple[Decoder, str, str | None]] = []
    for decoder in decoders:
        for method in dict.fromkeys(methods):  # keep order, drop repeats
            if method == decoder.space or (method in TRANSLATIONS and decoder.space == "absolute"):
                plan.append((decoder, method, None))
                if null_baseline and method != "absolute":  # raw absolute pairs use no anchors: nothing to shuffle
                    plan.append((decoder, method, SHUFFLED_ANCHORS))
    if not plan:
        raise RelstitchError(f"no decoder fits method(s) {', '.join(methods)}",
                             hint="relative needs relative decoders; absolute and translations need absolute ones")
    return plan


def _label(method: str, control: str | None) -> str:
    """The method name a pair is reported under: a control gets its own matrix (``relative-null``)."""
    return f"{method}-null" if control else method


def _own_encoder_anchors(encoder_paths: Sequence[str | os.PathLike], anchors: Anchors,
                         load: Callable[[str], Encoder | EncodedSpace] | None, batch_size: int,
                         device: torch.device | None = None, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Anchor latents of every loadable encoder, by encoder hash: the targets translations map into.

    A cheap first pass (k anchors per encoder), so any row can map into any decoder's own encoder
    whatever the order of the encoders; what fails to load is skipped here and reported by the main loop.
    """
    from .sources.models import load_encoder_ref

    targets: dict[str, Any] = {}
    for path in encoder_paths:
        try:
            loaded = (load or load_encoder_ref)(str(path))
            if isinstance(loaded, EncodedSpace):  # precomputed: its anchor latents are in the file
                if loaded.anchor_hash == anchors.hash:
                    targets[loaded.encoder_hash] = loaded.anchor_absolute
                continue
            targets[loaded.hash] = embed(loaded, anchors.inputs, batch_size=batch_size, device=device, dtype=dtype)
        except RelstitchError:
            continue
    return targets


def _run_pair(space: EncodedSpace, decoder: Decoder, method: str, control: str | None, targets: dict[str, Any],
              dataset: Dataset, encoder_space: str | None) -> PairResult:
    if method in TRANSLATIONS:
        target = targets.get(decoder.encoder_hash or "")
        if target is None:
            raise RelstitchError(
                f"{method} maps into the space of decoder {decoder.name!r}'s own encoder ({short(decoder.encoder_hash)}), "
                "which is not among the encoders given",
                hint="add that encoder with --encoders",
            )
        result = evaluate_translation(space, target, decoder, method, dataset, encoder_space=encoder_space)
    else:
        result = evaluate_pair(space, decoder, dataset, encoder_space)
    result.method, result.control = _label(method, control), control
    return result


def _training(meta: dict[str, Any]) -> dict[str, Any]:
    """The ``training`` metadata of a checkpoint (seed, config), or {} for one relstitch did not train."""
    training = meta.get("training")
    return training if isinstance(training, dict) else {}


def metric_direction(metric: str) -> str:
    return DIRECTIONS.get(metric, "higher")
