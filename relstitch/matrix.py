"""The encoder × decoder matrix: every pairing scored, each encoder run exactly once.

Encoders are loaded and encoded one at a time (data and anchors once each), then every decoder reads
the cached space; the encoder is dropped before the next one loads, so memory holds one encoder at a
time. A pair that cannot run (wrong anchors, unequal latent sizes, a broken file) is recorded with its
reason and the run goes on, unless ``fail_fast``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from .anchors import Anchors
from .checkpoints import Decoder, load_encoder
from .data import Dataset
from .encoding import DEFAULT_BATCH, encode
from .errors import RelstitchError
from .metrics import DIRECTIONS, MAIN_METRIC
from .progress import ProgressFn, silent
from .stitching import PairResult, encoder_space_of, evaluate_pair


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

    def cell(self, encoder: str, decoder: str) -> PairResult | None:
        return next((p for p in self.pairs if p.encoder == encoder and p.decoder == decoder), None)

    def summary(self) -> list[dict[str, Any]]:
        """Mean main metric per (space, stitched) over pairs whose encoder was trained in that space.

        Pairs that cross spaces (a relative decoder on an encoder trained with an absolute bottleneck,
        or the reverse) are summarised apart as ``cross-space``: they are neither the method nor its
        control.
        """
        groups: dict[tuple[str, str], list[float]] = {}
        for pair in self.pairs:
            if pair.error or self.main_metric not in pair.scores:
                continue
            crossing = pair.encoder_space is not None and pair.encoder_space != pair.space
            space = f"{pair.space} (cross-space)" if crossing else pair.space
            setting = "stitched" if pair.stitched else "not stitched"
            groups.setdefault((space, setting), []).append(pair.scores[self.main_metric])
        return [
            {"space": space, "setting": setting, "pairs": len(values), "metric": self.main_metric,
             "mean": mean(values), "min": min(values), "max": max(values)}
            for (space, setting), values in sorted(groups.items())
        ]


def eval_matrix(
    encoder_paths: list[str | os.PathLike],
    decoders: list[Decoder],
    anchors: Anchors,
    dataset: Dataset,
    *,
    batch_size: int = DEFAULT_BATCH,
    fail_fast: bool = False,
    progress: ProgressFn = silent,
) -> MatrixResult:
    """Score every encoder with every decoder on ``dataset`` through ``anchors``."""
    if not encoder_paths or not decoders:
        raise RelstitchError("an eval-matrix needs at least one encoder and one decoder")
    tasks = {d.task["type"] for d in decoders}
    if len(tasks) > 1:
        raise RelstitchError(f"decoders mix tasks {sorted(tasks)}: run one matrix per task")
    task = tasks.pop()
    started = time.perf_counter()
    encoders_info: list[dict[str, Any]] = []
    pairs: list[PairResult] = []
    encode_seconds = 0.0
    for path in encoder_paths:
        t0 = time.perf_counter()
        try:
            encoder = load_encoder(path)
            space = encode(encoder, anchors, dataset, batch_size=batch_size, progress=progress)
        except RelstitchError as exc:
            if fail_fast:
                raise
            name = Path(path).name
            encoders_info.append({"name": name, "path": str(path), "error": str(exc)})
            pairs.extend(PairResult(name, d.name, d.space, True, error=str(exc)) for d in decoders)
            continue
        encode_seconds += time.perf_counter() - t0
        encoder_space = encoder_space_of(encoder)
        encoders_info.append({"name": encoder.name, "path": str(path), "hash": encoder.hash,
                              "latent_dim": encoder.latent_dim, "trained_space": encoder_space,
                              "architecture": encoder.architecture["name"], "encode_seconds": time.perf_counter() - t0})
        for decoder in decoders:
            try:
                pairs.append(evaluate_pair(space, decoder, dataset, encoder_space))
            except RelstitchError as exc:
                if fail_fast:
                    raise
                pairs.append(PairResult(encoder.name, decoder.name, decoder.space,
                                        decoder.encoder_hash != encoder.hash, error=str(exc),
                                        encoder_hash=encoder.hash, decoder_hash=decoder.hash,
                                        encoder_space=encoder_space))
        del encoder, space  # one encoder in memory at a time
    decoders_info = [
        {"name": d.name, "path": str(d.path) if d.path else None, "hash": d.hash, "space": d.space,
         "input_dim": d.input_dim, "encoder_hash": d.encoder_hash, "anchor_hash": d.anchor_hash,
         "projection": d.projection.to_dict() if d.projection else None}
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


def metric_direction(metric: str) -> str:
    return DIRECTIONS.get(metric, "higher")
