"""A relstitch encoder checkpoint: the default kind, for a plain path or ``relstitch:PATH``.

A plain path to an embeddings file is read as ``embeddings:FILE`` (:mod:`.precomputed`).
"""

from __future__ import annotations

from ..checkpoints import load_encoder
from ..components import Encoder
from ..encoding import EncodedSpace
from ..io.artifacts import read_header
from .base import MODEL_SOURCES, SourceOptions, register_model_source


@register_model_source("relstitch", (), "a relstitch encoder checkpoint (the default for a plain path)")
def _load_relstitch(locator: str, opts: SourceOptions) -> Encoder | EncodedSpace:
    if read_header(locator).kind == "embeddings":  # a plain path to vectors: treat as embeddings:FILE
        return MODEL_SOURCES["embeddings"].load(locator, opts)
    encoder = load_encoder(locator, trust_code=opts.trust_code)
    if opts.name:
        encoder.name = opts.name
    return encoder
