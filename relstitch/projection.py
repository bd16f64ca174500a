"""The relative projection: the core idea of relstitch in one file.

A sample x is represented by its similarity to k anchors, each embedded by the *same* encoder E:

    r(x) = [ cos(E(x), E(a_1)), ..., cos(E(x), E(a_k)) ]

Cosine similarity ignores any orthogonal map Q and positive rescaling s of the latent space,
``cos(sQu, sQv) = cos(u, v)``, which is (roughly) what separates two trainings of one network.
So a decoder trained on r from encoder A reads r from encoder B with no training: zero-shot stitching.

Optional centering subtracts the anchors' mean latent from both sides first (a translation then
cancels too); the original paper does not center. The LayerNorm the authors apply *after* the
projection lives in the decoder (its first layer), so the projection stays a pure function.

Implementation notes (why it looks like this):
- Anchors are normalised once (k x D, small). Samples are *not* copied into a normalised tensor:
  we compute ``x @ a_hat.T`` and divide each row by ``|x|`` afterwards, which is the same number and
  needs no N x D temporary.
- Samples are processed in chunks so peak extra memory is bounded by ``chunk_size x (D + k)``,
  whatever N is.
- A zero-norm vector has no direction; its norm is clamped to ``EPS`` so its similarities are 0
  (not NaN). :func:`count_degenerate` lets callers report how many there were.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from .errors import RelstitchError

EPS = 1e-8
"""Norms below this are treated as zero: the vector gets similarity 0 to every anchor."""

DEFAULT_CHUNK = 16384


@dataclass(frozen=True)
class ProjectionConfig:
    """How absolute latents become relative vectors. Travels inside every relative decoder."""

    similarity: str = "cosine"
    centering: bool = False  # subtract the anchors' mean latent before comparing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ProjectionConfig:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RelstitchError(
                f"unknown projection setting(s) {unknown}; this relstitch knows {sorted(known)}",
                hint="upgrade relstitch",
            )
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise RelstitchError(
                f"unknown similarity {self.similarity!r}; choose one of {', '.join(sorted(SIMILARITIES))}"
            )


def _cosine(x: torch.Tensor, anchors_hat: torch.Tensor) -> torch.Tensor:
    """Cosine of each row of ``x`` with each (already unit-norm) anchor row."""
    return (x @ anchors_hat.T) / x.norm(dim=1, keepdim=True).clamp_min(EPS)


def _prepare_cosine(anchors: torch.Tensor) -> torch.Tensor:
    return anchors / anchors.norm(dim=1, keepdim=True).clamp_min(EPS)


# similarity name -> (prepare the anchors once, compare a chunk of samples with the prepared anchors)
SIMILARITIES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[..., torch.Tensor]]] = {
    "cosine": (_prepare_cosine, _cosine),
}


def relative_projection(
    x: torch.Tensor,
    anchors: torch.Tensor,
    config: ProjectionConfig | None = None,
    *,
    chunk_size: int | None = DEFAULT_CHUNK,
) -> torch.Tensor:
    """Project absolute latents ``x [N, D]`` onto ``anchors [k, D]`` → relative vectors ``[N, k]``.

    Differentiable in ``x`` (used inside training); anchors are typically computed under no_grad.
    """
    config = config or ProjectionConfig()
    if x.ndim != 2 or anchors.ndim != 2:
        raise RelstitchError(f"expected 2-d latents, got samples {tuple(x.shape)} and anchors {tuple(anchors.shape)}")
    if x.shape[1] != anchors.shape[1]:
        raise RelstitchError(
            f"samples have {x.shape[1]} latent dimensions but anchors have {anchors.shape[1]}",
            hint="embed the anchors with the same encoder as the samples",
        )
    prepare, compare = SIMILARITIES[config.similarity]
    anchors = anchors.to(x.dtype)
    center = anchors.mean(dim=0) if config.centering else None
    prepared = prepare(anchors - center if center is not None else anchors)

    def project(chunk: torch.Tensor) -> torch.Tensor:
        return compare(chunk - center if center is not None else chunk, prepared)

    n = x.shape[0]
    if chunk_size is None or n <= chunk_size or x.requires_grad:
        return project(x)
    out = torch.empty((n, anchors.shape[0]), dtype=x.dtype, device=x.device)
    for start in range(0, n, chunk_size):
        out[start : start + chunk_size] = project(x[start : start + chunk_size])
    return out


def count_degenerate(x: torch.Tensor, anchors: torch.Tensor, config: ProjectionConfig | None = None) -> int:
    """How many samples (and anchors) have a (centered) norm below EPS: their similarities are 0."""
    config = config or ProjectionConfig()
    center = anchors.mean(dim=0) if config.centering else 0.0
    return int(((x - center).norm(dim=1) < EPS).sum()) + int(((anchors - center).norm(dim=1) < EPS).sum())
