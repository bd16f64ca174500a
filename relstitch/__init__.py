"""relstitch: zero-shot model stitching with relative representations.

The verbs as functions, light to import: ``import relstitch`` imports no torch; each name below loads its
module on first use (PEP 562 ``__getattr__``)::

    import relstitch

    anchors = relstitch.load_anchors("checkpoints/anchors.safetensors")
    result = relstitch.stitch("checkpoints/cnn-rel-s0.encoder.safetensors",
                              "checkpoints/cnn-rel-s1.decoder.safetensors", anchors, "builtin:test")

The verbs: :func:`select_anchors` (``relstitch anchors``; ``relstitch.anchors`` stays the module of anchor
strategies), :func:`encode`, :func:`fit`, :func:`stitch`, :func:`eval_matrix`, :func:`compare` and
:func:`export_stitched` / :func:`load_stitched` (a stitched model in one file; ``relstitch.export`` is its
module). Loading: :func:`load_encoder` (any model reference), :func:`load_decoder`, :func:`load_anchors`,
:func:`load_embeddings`. The layer: :class:`RelativeProjection`. The rest of the library lives in its modules
(docs/API.md, docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from ._version import __version__

# Not `from typing import TYPE_CHECKING`: importing typing alone costs more than the rest of this file
# (measured with -X importtime); type checkers read a TYPE_CHECKING of any origin as True.
TYPE_CHECKING = False
if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs; nothing is imported at run time
    from typing import Any

    from .anchor_set import load_anchors
    from .api import (
        compare,
        encode,
        eval_matrix,
        export_stitched,
        fit,
        load_encoder,
        load_stitched,
        select_anchors,
        stitch,
    )
    from .checkpoints import load_decoder
    from .encoding import load_embeddings
    from .export import StitchedModel
    from .nn import RelativeProjection

_LAZY = {
    "select_anchors": "api",
    "encode": "api",
    "fit": "api",
    "stitch": "api",
    "eval_matrix": "api",
    "compare": "api",
    "export_stitched": "api",
    "load_stitched": "api",
    "load_encoder": "api",
    "load_decoder": "checkpoints",
    "load_anchors": "anchor_set",
    "load_embeddings": "encoding",
    "StitchedModel": "export",
    "RelativeProjection": "nn",
}
"""Public name → the module (under ``relstitch.``) that defines it; imported on first use."""

__all__ = [  # a literal list, for linters and `from relstitch import *`; test_api checks it against _LAZY
    "RelativeProjection",
    "StitchedModel",
    "__version__",
    "compare",
    "encode",
    "eval_matrix",
    "export_stitched",
    "fit",
    "load_anchors",
    "load_decoder",
    "load_embeddings",
    "load_encoder",
    "load_stitched",
    "select_anchors",
    "stitch",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562) and keep the name for the next lookup."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'relstitch' has no attribute {name!r}")
    import importlib  # noqa: PLC0415  (only when a name is first used)

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
