"""Controls: runs whose score collapses toward or below chance, so a good stitched score means something.

The **null baseline** breaks the anchor correspondence on the encoder side: the encoder's anchor
latents are permuted (a seeded derangement: no anchor keeps its place) before anything uses them, so
similarity i is measured against some other anchor than the one the decoder learned as anchor i, and a
translation is fitted on mismatched pairs. If stitching works *because* of the anchors, these scores
fall to chance; if they do not, the stitched scores did not come from the anchors.
"""

from __future__ import annotations

import dataclasses

import torch

from .encoding import EncodedSpace

SHUFFLED_ANCHORS = "shuffled-anchors"


def derangement(n: int, seed: int = 0) -> torch.Tensor:
    """A seeded permutation of ``range(n)`` with no fixed point (identity only when n == 1)."""
    if n < 2:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed)
    # A random cyclic shift of a random order moves every element: position order[i] gets order[i+1].
    order = torch.randperm(n, generator=generator)
    perm = torch.empty(n, dtype=torch.int64)
    perm[order] = order.roll(-1)
    return perm


def shuffled_anchor_space(space: EncodedSpace, seed: int = 0) -> EncodedSpace:
    """A copy of ``space`` whose anchor latents are deranged (the null baseline's encoder side)."""
    perm = derangement(len(space.anchor_absolute), seed)
    # _relative_cache must be a new dict: replace() would otherwise share the original's cache.
    return dataclasses.replace(
        space,
        anchor_absolute=space.anchor_absolute[perm],
        _relative_cache={},
        meta=dict(space.meta, control=SHUFFLED_ANCHORS),
    )
