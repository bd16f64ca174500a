"""Choosing anchors: the strategies (uniform, stratified, farthest-point, k-means, given ids) that pick
k samples of a dataset, in its pixels or in an encoder's latent space.

The anchor set itself and its file are :mod:`relstitch.anchor_set` (re-exported here: ``Anchors``,
``save_anchors``, ``load_anchors``), which sits below encoding; this module sits above it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .anchor_set import Anchors, load_anchors, save_anchors
from .data import Dataset
from .encoding import embed, inputs_for
from .errors import RelstitchError, os_error, unknown_choice
from .hygiene import warn_duplicate_anchors
from .io import userfiles
from .progress import ProgressFn, silent
from .registry import Registry

if TYPE_CHECKING:
    from .components import Encoder

__all__ = ["STRATEGIES", "Anchors", "load_anchors", "parse_ids", "save_anchors", "select_anchors"]


# ------------------------------------------------------------------------------------ strategies
FeatureFn = Callable[[], torch.Tensor]
"""Returns ``[N, F]`` float features of the dataset: the space farthest-point and k-means work in."""

Strategy = Callable[[Dataset, int, torch.Generator, FeatureFn], torch.Tensor]
"""(dataset, count, generator, features) → the positions of the chosen samples in the dataset."""

STRATEGIES: Registry[Strategy] = Registry("anchor strategy")
"""Anchor strategy name → :data:`Strategy`. User-given ids (strategy ``ids``) are not here: they take a
list, not a count (see :func:`select_anchors`)."""

KMEANS_ITERATIONS = 20
"""Lloyd iterations at most (it stops earlier once no sample changes cluster)."""


@STRATEGIES.register("uniform")
def _uniform(dataset: Dataset, count: int, generator: torch.Generator, features: FeatureFn) -> torch.Tensor:
    """Uniform random sample without replacement (the paper's default)."""
    return torch.randperm(len(dataset), generator=generator)[:count]


@STRATEGIES.register("stratified")
def _stratified(
    dataset: Dataset, count: int, generator: torch.Generator, features: FeatureFn
) -> torch.Tensor:
    """One anchor per class in turn, each class's samples in a seeded random order."""
    order = torch.randperm(len(dataset), generator=generator)
    per_class = [order[dataset.y[order] == c] for c in torch.unique(dataset.y).tolist()]
    picked: list[int] = []
    depth = 0
    while len(picked) < count:
        for members in per_class:
            if depth < len(members) and len(picked) < count:
                picked.append(int(members[depth]))
        depth += 1
    return torch.tensor(picked, dtype=torch.int64)


def _squared_distances(
    x: torch.Tensor, centres: torch.Tensor, norms: torch.Tensor | None = None
) -> torch.Tensor:
    """``[N, m]`` squared Euclidean distances through one matmul (clamped at 0 against rounding).

    ``norms`` are the precomputed ``|x|²``: loops pass them so each step costs one matmul only.
    """
    norms = (x * x).sum(1) if norms is None else norms
    return (norms.unsqueeze(1) - 2 * (x @ centres.T) + (centres * centres).sum(1)).clamp_min(0)


@STRATEGIES.register("farthest-point")
def _farthest_point(
    dataset: Dataset, count: int, generator: torch.Generator, features: FeatureFn
) -> torch.Tensor:
    """Greedy farthest-point sampling: a seeded random first anchor, then always the sample farthest
    from every anchor picked so far (spreads anchors over the space, outliers included)."""
    x = features()
    norms = (x * x).sum(1)

    def squared_distance_to(i: int) -> torch.Tensor:  # one mat-vec per step, no [N, F] temporary
        return (norms - 2 * (x @ x[i]) + norms[i]).clamp_min(0)

    picked = [int(torch.randint(len(x), (1,), generator=generator))]
    # squared distance of each sample to its nearest anchor so far; -1 marks a picked sample, and
    # torch.minimum keeps it at -1, so no sample is picked twice, even among exact duplicates
    nearest = squared_distance_to(picked[0])
    nearest[picked[0]] = -1.0
    for _ in range(count - 1):
        nxt = int(nearest.argmax())
        picked.append(nxt)
        nearest = torch.minimum(nearest, squared_distance_to(nxt))
        nearest[nxt] = -1.0
    return torch.tensor(picked, dtype=torch.int64)


@STRATEGIES.register("kmeans")
def _kmeans(dataset: Dataset, count: int, generator: torch.Generator, features: FeatureFn) -> torch.Tensor:
    """k-means (k-means++ seeding, Lloyd iterations); each anchor is the sample nearest a centroid.

    Centroids are averages, not inputs, so the anchor is the nearest *real* sample; when two
    centroids share a nearest sample, the later centroid takes its nearest sample not yet taken.
    """
    x = features()
    n = len(x)
    norms = (x * x).sum(1)
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    nearest = _squared_distances(x, x[chosen], norms).squeeze(1)
    for _ in range(count - 1):  # k-means++: next centre drawn with probability ∝ squared distance
        weights = nearest if float(nearest.sum()) > 0 else torch.ones(n)
        chosen.append(int(torch.multinomial(weights, 1, generator=generator)))
        nearest = torch.minimum(nearest, _squared_distances(x, x[chosen[-1:]], norms).squeeze(1))
    centres = x[chosen]
    assignment = None
    for _ in range(KMEANS_ITERATIONS):
        new_assignment = _squared_distances(x, centres, norms).argmin(dim=1)
        if assignment is not None and torch.equal(new_assignment, assignment):
            break
        assignment = new_assignment
        sums = torch.zeros_like(centres).index_add_(0, assignment, x)
        sizes = torch.bincount(assignment, minlength=count).to(x.dtype).unsqueeze(1)
        centres = torch.where(
            sizes > 0, sums / sizes.clamp_min(1), centres
        )  # an empty cluster keeps its centre
    distances = _squared_distances(x, centres, norms)
    picked: list[int] = []
    for c in range(count):
        column = distances[:, c].clone()
        column[picked] = float("inf")
        picked.append(int(column.argmin()))
    return torch.tensor(picked, dtype=torch.int64)


SPACE_STRATEGIES = ("farthest-point", "kmeans")
"""Strategies that measure distances, in input space or in an encoder's latent space."""


def parse_ids(spec: str) -> list[int]:
    """Anchor ids from a file (one per line, or separated by commas/spaces) or an inline comma list."""
    text = spec
    path = Path(spec)
    # Any existing non-folder is a file to read, so a FIFO or a device is refused by name (not taken as an
    # inline list).
    from_file = path.exists() and not path.is_dir()
    if from_file:
        try:
            text = userfiles.read_text(path, limit=userfiles.MAX_IDS_BYTES, what="an anchor ids file")
        except OSError as exc:
            raise os_error(exc, path, "cannot read ids") from None
    tokens = [t for t in text.replace(",", " ").split() if t]
    ids = []
    for token in tokens:
        try:
            ids.append(int(token))
        except ValueError:  # str.isdigit() is no guide: it accepts "²", which int() refuses
            raise RelstitchError(
                f"anchor id {token!r} is not an integer",
                path=path if from_file else None,
                hint="give integer sample ids, comma-separated or one per line",
            ) from None
    if not ids:
        raise RelstitchError("no anchor ids given", path=path if from_file else None)
    return ids


def _positions_of_ids(dataset: Dataset, ids: list[int]) -> torch.Tensor:
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise RelstitchError(f"anchor ids listed more than once: {duplicates[:10]}")
    where = {int(v): pos for pos, v in enumerate(dataset.ids.tolist())}
    missing = [i for i in ids if i not in where]
    if missing:
        raise RelstitchError(
            f"{len(missing)} anchor id(s) not in {dataset.name}, e.g. {missing[:5]}",
            hint=f"ids are sample ids of the dataset (0 … {int(dataset.ids.max())} here)",
        )
    return torch.tensor([where[i] for i in ids], dtype=torch.int64)


def select_anchors(
    dataset: Dataset,
    count: int | None = None,
    strategy: str = "uniform",
    seed: int = 0,
    *,
    space_encoder: Encoder | None = None,
    ids: list[int] | None = None,
    progress: ProgressFn = silent,
) -> Anchors:
    """Pick ``count`` anchors from ``dataset``; deterministic for a given strategy and seed.

    ``farthest-point`` and ``kmeans`` measure distances in the input (pixels scaled to [0, 1], flattened)
    unless ``space_encoder`` is given: then in that encoder's latent space. ``ids`` (strategy ``ids``)
    names the anchors directly by their sample ids. Strategy and parameters go into the file's metadata.
    """
    parameters: dict[str, Any] = {}
    if strategy == "ids":
        if ids is None:
            raise RelstitchError(
                "strategy 'ids' needs the anchor ids", hint="pass --ids FILE or --ids 3,17,42"
            )
        if count is not None and count != len(ids):
            raise RelstitchError(
                f"--count {count} disagrees with the {len(ids)} ids given", hint="drop --count"
            )
        positions, count = _positions_of_ids(dataset, ids), len(ids)
    else:
        if strategy not in STRATEGIES:
            raise unknown_choice("anchor strategy", strategy, [*STRATEGIES, "ids"])
        if ids is not None:
            raise RelstitchError(f"ids given with strategy {strategy!r}", hint="use --strategy ids")
        count = 300 if count is None else count
        if not 1 <= count <= len(dataset):
            raise RelstitchError(f"cannot pick {count} anchors from {len(dataset)} samples of {dataset.name}")
        if strategy in SPACE_STRATEGIES and space_encoder is None and not isinstance(dataset.x, torch.Tensor):
            raise RelstitchError(
                f"{strategy} measures distances, and {dataset.modality} data has no input space to "
                "measure them in",
                hint="pass --space-encoder with an encoder of this data",
            )
        if space_encoder is not None and strategy not in SPACE_STRATEGIES:
            raise RelstitchError(
                f"strategy {strategy!r} uses no distances, so --space-encoder means nothing to it",
                hint=f"use it with {' or '.join(SPACE_STRATEGIES)}",
            )

        def features() -> torch.Tensor:
            if space_encoder is None:
                assert isinstance(dataset.x, torch.Tensor)  # data without inputs to measure was refused above
                return dataset.x.reshape(len(dataset), -1).float() / 255.0

            return embed(
                space_encoder,
                inputs_for(space_encoder, dataset),
                progress=progress,
                description=f"{space_encoder.name}: data",
            )

        if strategy in SPACE_STRATEGIES:
            parameters["space"] = (
                "input"
                if space_encoder is None
                else {"encoder": space_encoder.name, "encoder_hash": space_encoder.hash}
            )
        if strategy == "kmeans":
            parameters.update(
                init="k-means++", max_iterations=KMEANS_ITERATIONS, anchor="nearest sample to each centroid"
            )
        positions = STRATEGIES[strategy](dataset, count, torch.Generator().manual_seed(seed), features)
    meta = {
        "dataset": dataset.describe(),
        "strategy": strategy,
        "seed": seed,
        "count": count,
        "parameters": parameters,
        "classes": dataset.classes,
        "modality": dataset.modality,
    }
    chosen = Anchors(
        dataset.x[positions].contiguous(),
        dataset.ids[positions].clone(),
        dataset.y[positions].clone(),
        meta,
        views=None if dataset.views is None else dataset.views[positions],
    )
    warn_duplicate_anchors(chosen.inputs, chosen.ids, f"anchors from {dataset.name}")
    return chosen
