"""Anchors: the fixed inputs every encoder embeds, and the file that carries them.

An anchor file holds the anchor inputs themselves (not latents: each encoder embeds them itself),
their ids in the source dataset, their labels, and how they were chosen. Its identity is a content
hash over ids + inputs, so two files with the same anchors are interchangeable and a decoder can
refuse anchors other than the ones it was trained with.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import userfiles
from .artifacts import content_hash, load_artifact, save_artifact, short
from .data import Dataset
from .errors import RelstitchError, os_error, unknown_choice
from .hygiene import check_finite, warn_duplicate_anchors

if TYPE_CHECKING:
    from .checkpoints import Encoder
from .sources.text import TextViews


@dataclass
class Anchors:
    """k anchor inputs (same layout as the dataset: uint8 images or parallel text views), ids, labels.

    Anchors picked from images with captions keep both: the images in ``inputs``, the captions in
    ``views`` (so an image encoder and a text encoder embed the same anchors, each in its modality).
    """

    inputs: torch.Tensor | TextViews
    ids: torch.Tensor
    labels: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    views: TextViews | None = None

    @property
    def texts(self) -> TextViews | None:
        """The anchors' text views: ``inputs`` for text anchors, the captions of image anchors, or None."""
        return self.inputs if isinstance(self.inputs, TextViews) else self.views

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def hash(self) -> str:
        return content_hash({"ids": self.ids, **self.input_tensors()})

    def input_tensors(self) -> dict[str, torch.Tensor]:
        """The inputs as stored: ``inputs`` and/or per text view ``inputs.{view}.bytes`` / ``.offsets``."""
        if isinstance(self.inputs, TextViews):
            return self.inputs.to_tensors("inputs.")
        # captions are stored under the same names as text anchors' views: one reader for both
        return {"inputs": self.inputs, **(self.views.to_tensors("inputs.") if self.views is not None else {})}


# ------------------------------------------------------------------------------------ strategies
FeatureFn = Callable[[], torch.Tensor]
"""Returns ``[N, F]`` float features of the dataset: the space farthest-point and k-means work in."""

KMEANS_ITERATIONS = 20
"""Lloyd iterations at most (it stops earlier once no sample changes cluster)."""


def _uniform(dataset: Dataset, count: int, generator: torch.Generator, features: FeatureFn) -> torch.Tensor:
    """Uniform random sample without replacement (the paper's default)."""
    return torch.randperm(len(dataset), generator=generator)[:count]


def _stratified(dataset: Dataset, count: int, generator: torch.Generator, features: FeatureFn) -> torch.Tensor:
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


def _squared_distances(x: torch.Tensor, centres: torch.Tensor, norms: torch.Tensor | None = None) -> torch.Tensor:
    """``[N, m]`` squared Euclidean distances through one matmul (clamped at 0 against rounding).

    ``norms`` are the precomputed ``|x|²``: loops pass them so each step costs one matmul only.
    """
    norms = (x * x).sum(1) if norms is None else norms
    return (norms.unsqueeze(1) - 2 * (x @ centres.T) + (centres * centres).sum(1)).clamp_min(0)


def _farthest_point(dataset: Dataset, count: int, generator: torch.Generator, features: FeatureFn) -> torch.Tensor:
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
        centres = torch.where(sizes > 0, sums / sizes.clamp_min(1), centres)  # an empty cluster keeps its centre
    distances = _squared_distances(x, centres, norms)
    picked: list[int] = []
    for c in range(count):
        column = distances[:, c].clone()
        column[picked] = float("inf")
        picked.append(int(column.argmin()))
    return torch.tensor(picked, dtype=torch.int64)


STRATEGIES: dict[str, Callable[[Dataset, int, torch.Generator, FeatureFn], torch.Tensor]] = {
    "uniform": _uniform,
    "stratified": _stratified,
    "farthest-point": _farthest_point,
    "kmeans": _kmeans,
}
"""Anchor strategy name -> function(dataset, count, generator, features) returning dataset positions.

User-given ids (strategy ``ids``) are not here: they take a list, not a count (see :func:`select_anchors`).
"""
SPACE_STRATEGIES = ("farthest-point", "kmeans")
"""Strategies that measure distances, in input space or in an encoder's latent space."""


def parse_ids(spec: str) -> list[int]:
    """Anchor ids from a file (one per line, or separated by commas/spaces) or an inline comma list."""
    text = spec
    path = Path(spec)
    # Any existing non-folder is a file to read, so a FIFO or a device is refused by name (not taken as an inline list).
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
            raise RelstitchError(f"anchor id {token!r} is not an integer", path=path if from_file else None,
                                 hint="give integer sample ids, comma-separated or one per line") from None
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
        raise RelstitchError(f"{len(missing)} anchor id(s) not in {dataset.name}, e.g. {missing[:5]}",
                             hint=f"ids are sample ids of the dataset (0 … {int(dataset.ids.max())} here)")
    return torch.tensor([where[i] for i in ids], dtype=torch.int64)


def select_anchors(dataset: Dataset, count: int | None = None, strategy: str = "uniform", seed: int = 0, *,
                   space_encoder: Encoder | None = None, ids: list[int] | None = None) -> Anchors:
    """Pick ``count`` anchors from ``dataset``; deterministic for a given strategy and seed.

    ``farthest-point`` and ``kmeans`` measure distances in the input (pixels scaled to [0, 1], flattened)
    unless ``space_encoder`` is given: then in that encoder's latent space. ``ids`` (strategy ``ids``)
    names the anchors directly by their sample ids. Strategy and parameters go into the file's metadata.
    """
    parameters: dict[str, Any] = {}
    if strategy == "ids":
        if ids is None:
            raise RelstitchError("strategy 'ids' needs the anchor ids", hint="pass --ids FILE or --ids 3,17,42")
        if count is not None and count != len(ids):
            raise RelstitchError(f"--count {count} disagrees with the {len(ids)} ids given", hint="drop --count")
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
            raise RelstitchError(f"{strategy} measures distances, and {dataset.modality} data has no input space to "
                                 "measure them in", hint="pass --space-encoder with an encoder of this data")
        if space_encoder is not None and strategy not in SPACE_STRATEGIES:
            raise RelstitchError(f"strategy {strategy!r} uses no distances, so --space-encoder means nothing to it",
                                 hint=f"use it with {' or '.join(SPACE_STRATEGIES)}")

        def features() -> torch.Tensor:
            if space_encoder is None:
                return dataset.x.reshape(len(dataset), -1).float() / 255.0
            from .encoding import embed, inputs_for  # noqa: PLC0415  (encoding imports this module)

            return embed(space_encoder, inputs_for(space_encoder, dataset))

        if strategy in SPACE_STRATEGIES:
            parameters["space"] = ("input" if space_encoder is None else
                                   {"encoder": space_encoder.name, "encoder_hash": space_encoder.hash})
        if strategy == "kmeans":
            parameters.update(init="k-means++", max_iterations=KMEANS_ITERATIONS, anchor="nearest sample to each centroid")
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
    chosen = Anchors(dataset.x[positions].contiguous(), dataset.ids[positions].clone(), dataset.y[positions].clone(), meta,
                     views=None if dataset.views is None else dataset.views[positions])
    warn_duplicate_anchors(chosen.inputs, chosen.ids, f"anchors from {dataset.name}")
    return chosen


def save_anchors(anchors: Anchors, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write an anchor file (atomically); its content hash goes into the metadata."""
    meta = dict(anchors.meta, hash=anchors.hash)
    if anchors.texts is not None:  # text anchors, or the captions of image anchors (then ``inputs`` holds the images)
        meta.update(text_views=anchors.texts.names, default_view=anchors.texts.default)
    tensors = {**anchors.input_tensors(), "ids": anchors.ids, "labels": anchors.labels}
    return save_artifact(path, "anchors", tensors, meta, force=force)


def load_anchors(path: str | os.PathLike) -> Anchors:
    """Read an anchor file and check that its content still matches its recorded hash."""
    art = load_artifact(path, "anchors")
    views = art.meta.get("text_views")
    # text anchors store only views; image anchors an ``inputs`` tensor, with their captions' views if any
    # (no views: images whatever the modality says, so a file missing both is refused below, not read as no inputs)
    images = "inputs" in art.tensors or not views or art.meta.get("modality", "text") != "text"
    missing = {"ids", "labels", *(("inputs",) if images else ())} - set(art.tensors)
    if missing:
        raise RelstitchError(f"corrupt anchor file: missing tensor(s) {sorted(missing)}", path=art.path)
    texts = None
    if views:
        if not isinstance(views, list) or not all(isinstance(v, str) for v in views):
            raise RelstitchError("corrupt anchor file: relstitch.text_views is not a list of names", path=art.path)
        try:
            texts = TextViews.from_tensors(art.tensors, "inputs.", views, art.meta.get("default_view"))
        except RelstitchError as exc:
            raise RelstitchError(f"corrupt anchor file: {exc}", path=art.path) from None
    if images:
        anchors = Anchors(art.tensors["inputs"], art.tensors["ids"], art.tensors["labels"], art.meta, art.path, views=texts)
    else:
        anchors = Anchors(texts, art.tensors["ids"], art.tensors["labels"], art.meta, art.path)
    if (len(anchors.ids) != len(anchors.inputs) or len(anchors.labels) != len(anchors.ids)
            or (anchors.views is not None and len(anchors.views) != len(anchors.ids))):
        raise RelstitchError("corrupt anchor file: inputs, ids and labels differ in length", path=art.path)
    recorded = art.meta.get("hash")
    if recorded != anchors.hash:
        raise RelstitchError(
            f"anchor content does not match its recorded hash ({short(recorded)} recorded, "
            f"{short(anchors.hash)} computed): the file was modified",
            path=art.path,
            hint="recreate it with `relstitch anchors`",
        )
    if isinstance(anchors.inputs, torch.Tensor):
        check_finite(anchors.inputs, "anchor inputs", path=art.path)
    warn_duplicate_anchors(anchors.inputs, anchors.ids, str(art.path))
    return anchors
