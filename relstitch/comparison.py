"""Label-free similarity of latent spaces: ``relstitch compare``.

Two (or more) encoders' views of the *same samples* and the *same anchors* are compared in absolute
space and in relative space, with the paper's word-embedding metrics (Moschella et al. 2023 and
follow-ups) and linear CKA:

- **Jaccard@k** (source → target): for sample i, the overlap (intersection over union) between
  i's k nearest neighbours in the target space and the k target vectors nearest to i's *source*
  vector used as a query in the target space;
- **MRR@k**: the reciprocal rank of i itself in that returned list (0 when it is not among the k);
- **cosine**: the mean cosine between a sample's two vectors;
- **CKA**: linear centered kernel alignment (Kornblith et al. 2019), symmetric, in [0, 1].

Neighbours are by cosine similarity, and include the sample itself, so a space against itself scores
1 everywhere. Jaccard, MRR and cosine compare coordinates, so in absolute space they need equal
dimensions (a note says why when they differ); in relative space every encoder has one coordinate per
anchor, which is the point of the method. CKA compares Gram structure and takes any two dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations
from typing import Any

import torch

from .encoding import EncodedSpace
from .errors import RelstitchError, UsageError
from .projection import EPS, ProjectionConfig

SPACES = ("absolute", "relative")
METRICS = ("jaccard", "mrr", "cosine", "cka")
QUERY_CHUNK = 1024  # queries scored at once: memory is QUERY_CHUNK x N similarities


def _unit(x: torch.Tensor) -> torch.Tensor:
    norms: torch.Tensor = x.norm(dim=1, keepdim=True)  # Tensor.norm is untyped in torch
    return x / norms.clamp_min(EPS)


def retrieval_scores(source: torch.Tensor, target: torch.Tensor, k: int) -> tuple[float, float]:
    """(Jaccard@k, MRR@k) of using ``source[i]`` as a query among ``target`` rows, averaged over i."""
    if source.shape != target.shape:
        raise RelstitchError(
            f"retrieval needs equal shapes, got {tuple(source.shape)} and {tuple(target.shape)}"
        )
    n = len(target)
    k = min(k, n)
    target_hat, source_hat = _unit(target.double()), _unit(source.double())
    jaccard_sum, mrr_sum = 0.0, 0.0
    ranks = torch.arange(1, k + 1, dtype=torch.float64)
    for start in range(0, n, QUERY_CHUNK):
        rows = torch.arange(start, min(start + QUERY_CHUNK, n))
        own = (target_hat[rows] @ target_hat.T).topk(k, dim=1).indices  # i's neighbours in the target space
        found = (
            (source_hat[rows] @ target_hat.T).topk(k, dim=1).indices
        )  # what i's source vector retrieves there
        overlap = (own.unsqueeze(2) == found.unsqueeze(1)).any(dim=2).sum(dim=1).double()
        jaccard_sum += float((overlap / (2 * k - overlap)).sum())
        hit = found == rows.unsqueeze(1)
        mrr_sum += float((hit.double() / ranks).sum())  # at most one hit per row
    return jaccard_sum / n, mrr_sum / n


def mean_cosine(source: torch.Tensor, target: torch.Tensor) -> float:
    """Mean cosine between each sample's two vectors (equal dimensions)."""
    if source.shape != target.shape:
        raise RelstitchError(
            f"cosine needs equal shapes, got {tuple(source.shape)} and {tuple(target.shape)}"
        )
    return float((_unit(source.double()) * _unit(target.double())).sum(dim=1).mean())


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same N samples (any dimensions).

    ``|Yc^T Xc|_F^2 / (|Xc^T Xc|_F |Yc^T Yc|_F)`` with column-centered Xc, Yc, computed on the
    ``D x D`` cross-covariances (never an N x N Gram matrix) in float64.
    """
    if len(x) != len(y):
        raise RelstitchError(f"CKA needs the same samples, got {len(x)} and {len(y)}")
    xc, yc = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    cross = (yc.T @ xc).square().sum()
    norm = (xc.T @ xc).square().sum().sqrt() * (yc.T @ yc).square().sum().sqrt()
    return float(cross / norm) if float(norm) > 0 else float("nan")


@dataclass
class CompareResult:
    """Every ordered pair of spaces scored in absolute and relative space."""

    names: list[str]
    k: int
    projection: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)  # source, target, space, metric values, note

    def value(self, source: str, target: str, space: str, metric: str) -> float | None:
        row = next(
            (r for r in self.rows if (r["source"], r["target"], r["space"]) == (source, target, space)), None
        )
        return None if row is None else row[metric]

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "k": self.k,
            "projection": self.projection,
            "metrics": list(METRICS),
            "directions": dict.fromkeys(METRICS, "higher"),
            "pairs": self.rows,
        }


def _check_aligned(spaces: list[EncodedSpace]) -> None:
    first = spaces[0]
    for other in spaces[1:]:
        if len(other.ids) != len(first.ids) or not torch.equal(other.ids, first.ids):
            raise RelstitchError(
                f"{other.encoder_name!r} and {first.encoder_name!r} embed different samples",
                path=other.path,
                hint="encode the same --data (and --limit) with every encoder",
            )
        if other.anchor_hash != first.anchor_hash:
            raise RelstitchError(
                f"{other.encoder_name!r} and {first.encoder_name!r} used different anchors "
                f"({other.anchor_hash[:12]} vs {first.anchor_hash[:12]}): "
                "their relative spaces do not correspond",
                path=other.path,
                hint="encode with one anchor file",
            )


def compare_spaces(
    spaces: list[EncodedSpace],
    *,
    k: int = 10,
    projection: ProjectionConfig | None = None,
    names: list[str] | None = None,
) -> CompareResult:
    """Score every ordered pair of ``spaces`` (same samples, same anchors) in absolute and relative space."""
    if len(spaces) < 2:
        raise RelstitchError("compare needs at least two spaces")
    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}")
    _check_aligned(spaces)
    if k >= len(
        spaces[0].ids
    ):  # every sample a neighbour of every other: Jaccard@k would be 1.000 whatever the spaces
        raise UsageError(
            f"-k {k} neighbours need more than {k} samples, and these spaces have {len(spaces[0].ids)}",
            hint="use a smaller -k, or more samples (--limit)",
        )
    projection = projection or ProjectionConfig()
    names = names or [s.encoder_name for s in spaces]
    if len(set(names)) != len(names):  # two seeds saved under one name: keep them apart
        names = [f"{n}#{i + 1}" for i, n in enumerate(names)]
    vectors = {
        "absolute": [s.latents() for s in spaces],
        "relative": [s.relative(projection) for s in spaces],
    }
    result = CompareResult(names=names, k=k, projection=projection.to_dict())
    cka_cache: dict[tuple[str, int, int], float] = {}
    for space in SPACES:
        for i, j in permutations(range(len(spaces)), 2):
            x, y = vectors[space][i], vectors[space][j]
            key = (space, min(i, j), max(i, j))
            if key not in cka_cache:  # CKA is symmetric: once per unordered pair
                cka_cache[key] = linear_cka(x, y)
            row: dict[str, Any] = {
                "source": names[i],
                "target": names[j],
                "space": space,
                "cka": cka_cache[key],
            }
            if x.shape[1] == y.shape[1]:
                row["jaccard"], row["mrr"] = retrieval_scores(x, y, k)
                row["cosine"] = mean_cosine(x, y)
                row["note"] = None
            else:
                row.update(
                    jaccard=None,
                    mrr=None,
                    cosine=None,
                    note=f"{x.shape[1]}-d vs {y.shape[1]}-d: coordinates cannot be compared, only CKA",
                )
            result.rows.append(row)
    return result
