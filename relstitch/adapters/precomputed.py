"""``embeddings:FILE``: vectors computed elsewhere, scored without an encoder to run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..encoding import EncodedSpace, load_embeddings
from ..errors import RelstitchError
from .base import SourceEncoder, SourceOptions, register_model_source

if TYPE_CHECKING:
    from ..components import Decoder
    from ..data import Dataset
    from ..results import PairResult


@register_model_source("embeddings", (), "vectors computed elsewhere: a relstitch embeddings file")
def load_embeddings_source(locator: str, opts: SourceOptions) -> EncodedSpace:
    space = load_embeddings(locator)
    if opts.name:
        space.encoder_name = opts.name
    return space


@dataclass
class PrecomputedEncoder(SourceEncoder):
    """Stands for the encoder that produced precomputed vectors: its name, hash and what it had resolved to
    (as its embeddings file records them), nothing to run."""

    encoder_hash: str = ""

    @property
    def hash(self) -> str:  # recorded, not recomputed: there are no weights here
        return self.encoder_hash

    def embed_batch(self, raw_batch: Any) -> torch.Tensor:
        raise RelstitchError(
            f"{self.name!r} is precomputed embeddings: it cannot embed new inputs", path=self.path
        )


def as_encoder(space: EncodedSpace) -> PrecomputedEncoder:
    """The encoder record of precomputed vectors (for reports: name, hash, latent size)."""
    made_by = found if isinstance(found := space.meta.get("encoder"), dict) else {}
    training = found if isinstance(found := made_by.get("training"), dict) else {}
    return PrecomputedEncoder(
        module=nn.Identity(),
        architecture={"name": made_by.get("architecture") or "embeddings"},
        input_spec={},
        latent_dim=int(space.absolute.shape[1]),
        name=space.encoder_name,
        meta={"source": f"embeddings:{space.path}", "training": training},
        path=space.path,
        resolved=found if isinstance(found := made_by.get("resolved"), dict) else {},
        encoder_hash=space.encoder_hash,
    )


def check_precomputed(space: EncodedSpace, dataset_hash: str | None) -> EncodedSpace:
    """Refuse precomputed vectors of other data than the run's (their labels would not be the run's)."""
    recorded = space.dataset.get("hash")
    if dataset_hash is not None and recorded != dataset_hash:
        raise RelstitchError(
            f"embeddings were computed on data {space.dataset.get('name')!r} ({str(recorded)[:12]}), "
            f"not on the data of this run ({dataset_hash[:12]})",
            path=space.path,
            hint="use the same --data and --limit as `relstitch encode` did",
        )
    return space


def stitch_precomputed(
    space: EncodedSpace, decoder: Decoder, dataset: Dataset | None = None, *, keep_predictions: bool = False
) -> PairResult:
    """Score ``decoder`` on precomputed vectors (``stitch embeddings:FILE DECODER``).

    ``dataset``, when given, must be the data the vectors were computed on; reconstruction decoders
    need it (they score against the images). ``keep_predictions`` as in
    :func:`relstitch.stitching.evaluate_pair`.
    """
    from ..stitching import evaluate_pair

    check_precomputed(space, dataset.hash if dataset is not None else None)
    return evaluate_pair(space, decoder, dataset, keep_predictions=keep_predictions)
