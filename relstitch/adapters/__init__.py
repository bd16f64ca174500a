"""Where models come from: one registry of model source kinds, each reference written ``kind:locator``.

=================================  ==========================================================================
``PATH`` or ``relstitch:PATH``     a relstitch encoder checkpoint (or an embeddings file, read as precomputed)
``hf:DIR``                         a Hugging Face ``transformers`` model saved in a local folder (text)
``torchvision:NAME``               a torchvision architecture with a local weights file (images)
``python:pkg.mod:function``        any ``torch.nn.Module`` a Python function builds, ``function(k=v)``
                                   for kwargs
``embeddings:FILE``                vectors computed elsewhere: a relstitch embeddings file, no encoder to run
=================================  ==========================================================================

Every loader returns an :class:`~relstitch.components.Encoder` (the seam the rest of relstitch uses:
``embed_batch(raw_batch)``), or an :class:`~relstitch.encoding.EncodedSpace` for precomputed vectors.
An encoder's hash stays content based (weights + the config that changes its output: pooling, maximum
length, tokenizer files, latent layer, preprocessing), never its path, so a decoder fitted on one
still recognises it as its own encoder (the matrix diagonal) wherever the files are moved.

:mod:`.base` holds the registry and :func:`load_encoder_ref`; each kind is one module that registers
itself, imported here so that every kind is known once this package is. Add a kind: write a module with
a loader decorated by :func:`register_model_source` and import it below.
"""

# Imported in the order `--help` lists the kinds; each module registers its kind on import.
from . import checkpoint, precomputed, hf, vision, timm, python  # noqa: F401, I001
from .base import (
    MODEL_SOURCES,
    SourceOptions,
    check_options_apply,
    list_model_sources,
    load_encoder_ref,
    parse_options,
    register_model_source,
)

__all__ = [
    "MODEL_SOURCES",
    "SourceOptions",
    "check_options_apply",
    "list_model_sources",
    "load_encoder_ref",
    "parse_options",
    "register_model_source",
]
