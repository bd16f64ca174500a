"""The relative projection: the core idea of relstitch in one file.

A sample x is represented by its similarity to k anchors, each embedded by the *same* encoder E:

    r(x) = [ sim(E(x), E(a_1)), ..., sim(E(x), E(a_k)) ]

With the default cosine similarity, r ignores any orthogonal map Q and positive rescaling s of the
latent space, ``cos(sQu, sQv) = cos(u, v)``, which is (roughly) what separates two trainings of one
network. So a decoder trained on r from encoder A reads r from encoder B with no training: zero-shot
stitching.

A :class:`ProjectionConfig` chooses, in this order:

1. **centering** of samples and anchors with the anchors' statistics: ``none`` (the paper),
   ``center`` (subtract the anchors' mean latent: a translation of the space then cancels) or
   ``standard`` (also divide each dimension by the anchors' standard deviation);
2. one or more **similarities** (see :data:`SIMILARITIES`): ``cosine``, ``angular``, ``euclidean``,
   ``l1``, ``linf``. Several, comma-separated, give the *product of invariances* (Cannistraci et al.
   2024): one block of k values per similarity, each normalised on its own, concatenated → ``[N, m*k]``;
3. a per-sample **normalisation** of each block over its k values: ``none``, ``l2`` or ``standard``
   (subtract the row mean, divide by the row standard deviation: a LayerNorm without weights);
4. **top-k** sparsification of each block: keep the k largest values of each row, zero the rest.

Why distances are *negative distances*, not kernels: ``-d(x, a)`` is larger for closer anchors (so
"largest similarity" means "nearest anchor" for every option), needs no bandwidth, and is exactly the
formula one would check by hand. A kernel ``exp(-d/σ)`` needs a σ; a fixed σ breaks the rescaling
invariance and a σ taken from the data adds a hidden statistic. Negative distances are invariant to
rotations and translations but *not* to rescaling; a per-sample ``l2`` or ``standard`` normalisation
restores scale invariance (``-s·d / |s·d| = -d / |d|``), which is why the product of invariances
requires one. With top-k on negative distances use ``standard`` normalisation, so that a zeroed entry
means "average" rather than "nearer than every kept anchor".

Which invariances each similarity has (tested in tests/test_projection.py):

==========  ========  ============  ===========  ==================================
similarity  rotation  rescaling     translation  note
==========  ========  ============  ===========  ==================================
cosine      yes       yes           center       the paper's choice
angular     yes       yes           center       1 - angle/π, in [0, 1]
euclidean   yes       normalise     yes          -|x - a|₂
l1          no        normalise     yes          -|x - a|₁ (axis-aligned: rotations change it)
linf        no        normalise     yes          -max|x - a| (axis-aligned)
==========  ========  ============  ===========  ==================================

The LayerNorm the authors apply *after* the projection lives in the decoder (its first layer), so
the projection stays a pure function.

**Row-scale-free cosine** (``relative_projection(..., row_scale_free=True)``): the plain cosine
without the division of each row by the sample's norm, ``r'(x) = max(|x|, EPS) · r(x)`` (the normal
path divides by that clamped norm): the bare matrix product. A reader that only needs r up to a positive
per-row factor (a LayerNorm first) may ask for it. Only the plain cosine with ``normalization="none"``
has it (centering and top-k keep it; every other similarity is not a multiple of its rows' scale); for
any other config the flag changes nothing. Caution: a LayerNorm is scale-free only up to its ``eps``:
``LN(s·r) = (r - μ) / sqrt(σ² + eps/s²)``, so decoder outputs move by about ``eps·|1 - 1/|x|²| / 2σ²``
for a row of variance σ²: little when σ² ≫ eps, a lot for latents of norm ≪ 1 or rows of cosines
closer than eps (the shipped CNNs' rows have σ² ≈ 1e-6: logits move by up to 1.4). Hence an opt-in.

Implementation notes (why it looks like this):
- Anchors are prepared once (k x D, small). Samples are *not* copied into a normalised tensor: for
  cosine we compute ``x @ a_hat.T`` and divide each row by ``|x|`` afterwards, which is the same
  number and needs no N x D temporary; Euclidean distances use ``|x|² - 2 x·a + |a|²``.
- Samples are processed in blocks of rows (and of anchors when k is large) sized so the block's
  temporaries fit ``max_chunk_bytes`` (256 MB by default), whatever N and k are; only the output
  grows with N (centering makes a block-sized copy, never an N-sized one).
- A zero-norm vector has no direction; its norm is clamped to ``EPS`` so its cosines are 0 (not
  NaN). :func:`count_degenerate` lets callers report how many there were. Square roots and arccos are
  guarded so that a sample equal to an anchor (common while training end to end: anchors come from
  the training set) has finite gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import torch

from .errors import RelstitchError, unknown_choice
from .registry import Registry

EPS = 1e-8
"""Norms below this are treated as zero: the vector gets similarity 0 to every anchor."""

DEFAULT_CHUNK = 16384
DEFAULT_MAX_CHUNK_BYTES = 256 * 1024**2
"""Budget for one block's temporaries (a standardised copy of its rows, its similarities)."""


class Rows(Protocol):
    """What a decoder reads batch by batch: ``len`` and ``rows[a:b]``. A tensor, :class:`ProjectedRows`,
    or :class:`~relstitch.io.rows.StoredRows`."""

    def __len__(self) -> int: ...

    def __getitem__(self, rows: slice, /) -> torch.Tensor: ...


MIN_BLOCK_ROWS = 256  # fewer rows and a matrix product runs far from peak speed: split the anchors instead
CENTERINGS = ("none", "center", "standard")
NORMALIZATIONS = ("none", "l2", "standard")


@dataclass(frozen=True)
class ProjectionConfig:
    """How absolute latents become relative vectors. Travels inside every relative decoder.

    Hashable (it keys the cache of relative vectors in :class:`~relstitch.encoding.EncodedSpace`).
    ``centering`` also accepts the booleans older relstitch files stored (True = ``center``).
    """

    similarity: str = "cosine"  # one name, or several comma-separated (product of invariances)
    centering: str = "none"  # none | center | standard, with the anchors' statistics
    normalization: str = "none"  # none | l2 | standard, per sample over each block of k similarities
    top_k: int | None = None  # keep the k largest similarities of each block, zero the rest

    def __post_init__(self) -> None:
        # Canonical spelling, so equal configs are equal keys: "Cosine + L1" == "cosine,l1".
        names = [n.strip().lower() for n in str(self.similarity).replace("+", ",").split(",")]
        object.__setattr__(self, "similarity", ",".join(names))
        if isinstance(self.centering, bool):  # files written before centering had three modes
            object.__setattr__(self, "centering", "center" if self.centering else "none")
        if self.top_k is not None and not isinstance(self.top_k, bool):
            object.__setattr__(self, "top_k", int(self.top_k))

    @property
    def similarities(self) -> tuple[str, ...]:
        """The similarity names, in block order."""
        return tuple(self.similarity.split(","))

    def output_dim(self, anchors: int) -> int:
        """Length of a relative vector with this many anchors (one block of k per similarity)."""
        return anchors * len(self.similarities)

    def describe(self) -> str:
        """Short human form for tables: ``cosine``, ``cosine+euclidean, center, l2, top-10``."""
        parts = ["+".join(self.similarities)]
        parts += [x for x in (self.centering, self.normalization) if x != "none"]
        if self.top_k:
            parts.append(f"top-{self.top_k}")
        return ", ".join(parts)

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
        """Raise a one-line :class:`RelstitchError` for an impossible configuration."""
        names = self.similarities
        for name in names:
            if name not in SIMILARITIES:
                raise unknown_choice("similarity", name, SIMILARITIES)
        if len(set(names)) != len(names):
            raise RelstitchError(f"similarity listed twice in {self.similarity!r}")
        if self.centering not in CENTERINGS:
            raise unknown_choice("centering", self.centering, CENTERINGS)
        if self.normalization not in NORMALIZATIONS:
            raise RelstitchError(
                f"unknown normalization {self.normalization!r}; choose one of {', '.join(NORMALIZATIONS)}"
            )
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 1):
            raise RelstitchError(f"top-k must be a positive number of anchors, got {self.top_k!r}")
        if len(names) > 1 and self.normalization == "none":
            raise RelstitchError(
                f"a product of similarities ({'+'.join(names)}) needs each block normalised: "
                "their scales differ",
                hint="add --normalization standard (or l2)",
            )


# ---------------------------------------------------------------------------------- similarities
def _row_norms(x: torch.Tensor) -> torch.Tensor:
    """L2 norm of each row ``[n, 1]``, at least ``EPS`` (``Tensor.norm`` is untyped in torch: typed here)."""
    norms: torch.Tensor = x.norm(dim=1, keepdim=True)
    return norms.clamp_min(EPS)


# Each similarity is a pair: prepare(anchors) once, then compare(chunk, prepared) -> [chunk, k].
def _prepare_cosine(anchors: torch.Tensor) -> torch.Tensor:
    return anchors / _row_norms(anchors)


def _cosine(x: torch.Tensor, anchors_hat: torch.Tensor) -> torch.Tensor:
    """Cosine of each row of ``x`` with each (already unit-norm) anchor row."""
    return (x @ anchors_hat.T) / _row_norms(x)


def _unnormalised_cosine(x: torch.Tensor, anchors_hat: torch.Tensor) -> torch.Tensor:
    """``max(|x|, EPS) · _cosine(x, a)``: the cosine for a row-scale-free reader (module docstring)."""
    return x @ anchors_hat.T


def row_scale_free_applies(config: ProjectionConfig | None) -> bool:
    """Whether ``row_scale_free=True`` skips work for ``config``: the plain cosine, no per-sample
    normalisation (centering and top-k are fine: top-k keeps the same entries of a rescaled row)."""
    config = config or ProjectionConfig()
    return config.similarities == ("cosine",) and config.normalization == "none"


def _angular(x: torch.Tensor, anchors_hat: torch.Tensor) -> torch.Tensor:
    """``1 - angle/π`` in [0, 1]: 1 for the same direction, 0 for opposite ones."""
    cos = _cosine(x, anchors_hat)
    inside = cos.abs() < 1
    # arccos has an infinite slope at ±1: feed it a harmless 0 there and take the exact value instead.
    angle = torch.where(
        inside,
        torch.arccos(torch.where(inside, cos, torch.zeros_like(cos))),
        torch.where(cos > 0, torch.zeros_like(cos), torch.full_like(cos, math.pi)),
    )
    return 1 - angle / math.pi


def _identity(anchors: torch.Tensor) -> torch.Tensor:
    return anchors


def _euclidean(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """``-|x - a|₂`` through ``|x|² - 2x·a + |a|²`` (one matmul, no [chunk, k, D] temporary)."""
    squared = (x * x).sum(1, keepdim=True) - 2 * (x @ anchors.T) + (anchors * anchors).sum(1)
    # Clamp below at EPS² (not 0): the slope of sqrt stays finite for a sample equal to an anchor.
    return -squared.clamp_min(EPS * EPS).sqrt()


def _l1(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """``-|x - a|₁``."""
    return -torch.cdist(x, anchors, p=1)


def _linf(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """``-max_d |x_d - a_d|``."""
    return -torch.cdist(x, anchors, p=float("inf"))


Similarity = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[..., torch.Tensor]]
"""(prepare the anchors once, compare a chunk of samples with the prepared anchors → ``[n, k]``)."""

SIMILARITIES: Registry[Similarity] = Registry("similarity")
SIMILARITIES.register("cosine", (_prepare_cosine, _cosine))
SIMILARITIES.register("angular", (_prepare_cosine, _angular))
SIMILARITIES.register("euclidean", (_identity, _euclidean))
SIMILARITIES.register("l1", (_identity, _l1))
SIMILARITIES.register("linf", (_identity, _linf))


# ------------------------------------------------------------------------------ post-processing
def _normalise(r: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-sample normalisation of one block ``[n, k]`` of similarities."""
    if mode == "l2":
        return r / _row_norms(r)
    if mode == "standard":
        mean = r.mean(dim=1, keepdim=True)
        std = r.std(dim=1, keepdim=True, correction=0).clamp_min(EPS)
        return (r - mean) / std
    return r


def _top_k(r: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest values of each row, zero the rest (differentiable through the kept ones)."""
    if k >= r.shape[1]:
        return r
    values, index = r.topk(k, dim=1)
    return torch.zeros_like(r).scatter(1, index, values)


def anchor_statistics(anchors: torch.Tensor, mode: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The (mean, std) a mode subtracts/divides by, computed on the anchors only: ``none``, ``center``,
    ``standard`` (std per dimension) or ``isotropic`` (one std: keeps angles, so a rotation stays one).

    The one standardisation of relstitch: projections' ``--centering`` and translations' scaling use it.
    """
    if mode == "none":
        return None, None
    mean = anchors.mean(dim=0)
    if mode == "center":
        return mean, None
    if mode == "isotropic":  # root mean squared distance to the mean
        return mean, ((anchors - mean) ** 2).sum(1).mean().sqrt().clamp_min(EPS)
    # correction=0: one anchor is allowed (std 0 → clamped), and it is the statistic of the set itself.
    return mean, anchors.std(dim=0, correction=0).clamp_min(EPS)


def standardise(x: torch.Tensor, mean: torch.Tensor | None, std: torch.Tensor | None) -> torch.Tensor:
    """``(x - mean) / std``, each step skipped when its statistic is None (shared with translation)."""
    if mean is not None:
        x = x - mean
    if std is not None:
        x = x / std
    return x


def relative_projection(
    x: torch.Tensor,
    anchors: torch.Tensor,
    config: ProjectionConfig | None = None,
    *,
    chunk_size: int | None = DEFAULT_CHUNK,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    row_scale_free: bool = False,
) -> torch.Tensor:
    """Project absolute latents ``x [N, D]`` onto ``anchors [k, D]`` → relative vectors ``[N, m*k]``.

    ``m`` is the number of similarities in ``config`` (1 unless it is a product of invariances).
    Differentiable in ``x`` (used inside training); anchors are typically computed under no_grad.
    Without grad, rows go in blocks of at most ``chunk_size`` (``None``: the budget alone decides)
    whose temporaries fit ``max_chunk_bytes``; anchors are split too when k is too large for that.
    ``row_scale_free``: each row may come scaled by a positive factor (the sample's norm): the plain
    cosine then skips its division, the bare matrix product (see the module docstring for when a
    decoder's outputs stay equal); a no-op unless :func:`row_scale_free_applies`.
    """
    return relative_projector(
        anchors,
        config,
        dtype=x.dtype,
        chunk_size=chunk_size,
        max_chunk_bytes=max_chunk_bytes,
        row_scale_free=row_scale_free,
    )(x)


def relative_projector(
    anchors: torch.Tensor,
    config: ProjectionConfig | None = None,
    *,
    dtype: torch.dtype | None = None,
    chunk_size: int | None = DEFAULT_CHUNK,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    row_scale_free: bool = False,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """:func:`relative_projection` with the anchors prepared once: ``project(x)`` for batch after batch.

    Validating the config, the anchors' statistics and their normalised copy are computed here, not
    per call (a streamed encode projects every batch onto the same anchors). ``dtype``: the dtype of
    the latents it will be given (default: the anchors'). ``row_scale_free``: as
    :func:`relative_projection`'s.
    """
    config = config or ProjectionConfig()
    config.validate()
    if anchors.ndim != 2:
        raise RelstitchError(f"expected 2-d anchor latents, got anchors {tuple(anchors.shape)}")
    k = anchors.shape[0]
    if config.top_k is not None and config.top_k > k:
        raise RelstitchError(f"top-k {config.top_k} is more than the {k} anchors", hint="lower --top-k")
    anchors = anchors.to(dtype or anchors.dtype)
    mean, std = anchor_statistics(anchors, config.centering)
    anchors = standardise(anchors, mean, std)
    blocks = [(SIMILARITIES[name][0](anchors), SIMILARITIES[name][1]) for name in config.similarities]
    unscaled = row_scale_free and row_scale_free_applies(config)
    if unscaled:  # one block: the cosine's prepared (unit-norm) anchors, compared without |x|
        blocks = [(blocks[0][0], _unnormalised_cosine)]
    width = config.output_dim(k)
    # Per-row normalisation and top-k read a whole row of k values; otherwise anchors can be split.
    separable = config.normalization == "none" and not config.top_k
    # The paper's plain cosine writes its products straight into the output and scales them in place:
    # no [rows, k] temporaries at all (so no need to split the anchors), at the bare matrix product's speed.
    fused = config.similarities == ("cosine",) and separable

    def project(chunk: torch.Tensor) -> torch.Tensor:
        chunk = standardise(chunk, mean, std)
        parts = []
        for prepared, compare in blocks:
            r = _normalise(compare(chunk, prepared), config.normalization)
            parts.append(_top_k(r, config.top_k) if config.top_k else r)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def apply(x: torch.Tensor) -> torch.Tensor:
        _check_latents(x, anchors)
        n = x.shape[0]
        if x.requires_grad:
            return project(x)
        rows, cols = block_shape(
            n,
            x.shape[1],
            width,
            x.element_size(),
            max_chunk_bytes,
            chunk_size,
            split_anchors=separable and not fused,
            temporaries=not fused,
        )
        if rows >= n and cols >= width and not fused:
            return project(x)
        out = torch.empty((n, width), dtype=x.dtype, device=x.device)
        for start in range(0, n, rows):
            if fused:
                _cosine_into(
                    standardise(x[start : start + rows], mean, std),
                    blocks[0][0],
                    out[start : start + rows],
                    scale=not unscaled,
                )
                continue
            if cols >= width:
                out[start : start + rows] = project(x[start : start + rows])
                continue
            chunk = standardise(x[start : start + rows], mean, std)
            for b, (prepared, compare) in enumerate(blocks):
                for a0 in range(0, k, cols):
                    a1 = min(k, a0 + cols)
                    out[start : start + rows, b * k + a0 : b * k + a1] = compare(chunk, prepared[a0:a1])
        return out

    return apply


def _check_latents(x: torch.Tensor, anchors: torch.Tensor) -> None:
    if x.ndim != 2 or anchors.ndim != 2:
        raise RelstitchError(
            f"expected 2-d latents, got samples {tuple(x.shape)} and anchors {tuple(anchors.shape)}"
        )
    if x.shape[1] != anchors.shape[1]:
        raise RelstitchError(
            f"samples have {x.shape[1]} latent dimensions but anchors have {anchors.shape[1]}",
            hint="embed the anchors with the same encoder as the samples",
        )


def _cosine_into(
    x: torch.Tensor, anchors_hat: torch.Tensor, out: torch.Tensor, *, scale: bool = True
) -> None:
    """``out[:] = cos(x, anchors)``, the same numbers as :func:`_cosine`, with no temporary of out's size
    (without ``scale``: :func:`_unnormalised_cosine`'s, the matrix product alone)."""
    torch.mm(x, anchors_hat.T, out=out)
    if scale:
        out.div_(_row_norms(x))


def block_shape(
    n: int,
    d: int,
    width: int,
    itemsize: int,
    max_bytes: int,
    chunk_size: int | None = None,
    *,
    split_anchors: bool = True,
    temporaries: bool = True,
) -> tuple[int, int]:
    """(rows, anchors) of one projection block whose temporaries fit ``max_bytes``.

    A block holds a standardised copy of its rows (``rows x d``) and, unless it writes straight into
    the output (``temporaries=False``), up to three arrays of its similarities (``rows x width``: the
    product, its scaled copy, a concatenation). Rows shrink first, down to ``MIN_BLOCK_ROWS``; below
    that the anchors are split instead (when ``split_anchors``).
    """
    if max_bytes <= 0:
        raise RelstitchError(f"max_chunk_bytes must be positive, got {max_bytes}")
    cap = max(1, min(n, chunk_size or n))
    by_budget = max_bytes // (itemsize * (d + (3 * width if temporaries else 0)))
    if by_budget >= min(cap, MIN_BLOCK_ROWS) or not split_anchors:
        return max(1, min(cap, by_budget)), width
    rows = min(cap, MIN_BLOCK_ROWS)
    return rows, max(1, min(width, (max_bytes // (itemsize * rows) - d) // 3))


def count_degenerate(x: torch.Tensor, anchors: torch.Tensor, config: ProjectionConfig | None = None) -> int:
    """How many samples (and anchors) have a (centered) norm below EPS: their cosines are 0."""
    config = config or ProjectionConfig()
    mean, std = anchor_statistics(anchors, config.centering)
    return int((standardise(x, mean, std).norm(dim=1) < EPS).sum()) + int(
        (standardise(anchors, mean, std).norm(dim=1) < EPS).sum()
    )


class ProjectedRows:
    """Relative vectors of ``absolute`` computed per slice when read, never all N rows at once.

    What a decoder reads when a whole space's relative vectors would not fit in memory
    (:func:`relstitch.runtime.held_budget`): ``len`` and ``rows[a:b]``, as a tensor of them offers. Every
    projection is per sample, so a slice's vectors are the rows the whole projection would give.
    ``absolute`` may itself be read slice by slice (:class:`~relstitch.io.rows.StoredRows`).
    """

    def __init__(self, absolute: Rows, project: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.absolute, self.project = absolute, project

    def __len__(self) -> int:
        return len(self.absolute)

    def __getitem__(self, rows: slice) -> torch.Tensor:
        return self.project(self.absolute[rows])
