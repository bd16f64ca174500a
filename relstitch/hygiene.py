"""Numerical hygiene: refuse numbers that would silently poison a result, flag the doubtful ones.

- NaN/Inf in data, latents or embeddings are refused, with their count and the first index, because
  one NaN latent makes every similarity of that sample NaN and the decoder's output meaningless.
- Zero-norm latents have no direction: the projection clamps their norm to ``projection.EPS`` so their
  cosines are 0; they are counted so the report can say how many samples were affected.
- Duplicate anchors, a single-class evaluation: legal but doubtful, so a :class:`RelstitchWarning`.

Library code never prints: it raises or warns (``warnings.warn``), and the CLI renders.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import TYPE_CHECKING, Any

from .errors import RelstitchError, RelstitchWarning

if TYPE_CHECKING:
    import torch

    from .projection import ProjectionConfig, Rows


CHECK_ROWS = 65536
"""Rows checked for NaN/Inf at a time."""


def warn(message: str) -> None:
    """Issue a :class:`RelstitchWarning` (the CLI prints it as one ``warning:`` line)."""
    warnings.warn(RelstitchWarning(message), stacklevel=3)


def check_finite(values: torch.Tensor, what: str, *, path: object | None = None, offset: int = 0) -> None:
    """Refuse a float tensor holding NaN or ±Inf, naming how many and the first index.

    ``offset`` is added to the first (row) index, for a batch taken from the middle of a dataset.
    """
    import torch  # noqa: PLC0415

    if not values.is_floating_point():
        return
    # Fast path, one reduction: a NaN or an infinity anywhere makes the sum NaN or infinite, so a finite
    # sum proves every value finite (~6x cheaper than isfinite().all(), which allocates a mask). A
    # non-finite sum (or a finite overflow) falls through to the exact, blockwise check below.
    if bool(torch.isfinite(values.sum())):
        return
    # Row blocks keep the boolean temporaries small whatever the size of the data (bounded memory).
    blocks = (
        [values[s : s + CHECK_ROWS] for s in range(0, len(values), CHECK_ROWS)] if values.ndim else [values]
    )
    if all(bool(torch.isfinite(b).all()) for b in blocks):
        return
    nan = sum(int(torch.isnan(b).sum()) for b in blocks)
    inf = sum(int(torch.isinf(b).sum()) for b in blocks)
    number, block = next((i, b) for i, b in enumerate(blocks) if not bool(torch.isfinite(b).all()))
    first = [int(i) for i in (~torch.isfinite(block)).nonzero()[0].tolist()]
    if first:
        first[0] += offset + number * CHECK_ROWS
    where = ", ".join(map(str, first))
    raise RelstitchError(
        f"{what} hold {nan} NaN and {inf} infinite value(s), the first at index [{where}]",
        path=path,
        hint="fix the input: relstitch does not guess replacements",
    )


def zero_norm_count(x: Rows, anchors: torch.Tensor, config: ProjectionConfig | None = None) -> int:
    """Rows of ``x`` whose (centered, per ``config``) norm is below ``projection.EPS``: their cosines
    are 0. Counted a block of rows at a time (``x`` may be read from a file slice by slice)."""
    from .projection import EPS, ProjectionConfig, anchor_statistics, standardise  # noqa: PLC0415

    config = config or ProjectionConfig()
    mean, std = anchor_statistics(anchors, config.centering) if len(anchors) else (None, None)
    return sum(
        int((standardise(x[s : s + CHECK_ROWS], mean, std).norm(dim=1) < EPS).sum())
        for s in range(0, len(x), CHECK_ROWS)
    )


def warn_zero_norm(count: int, total: int, what: str) -> None:
    """Warn when some latents have no direction (their similarities are 0 by the documented EPS)."""
    if count:
        warn(
            f"{count} of {total} {what} have zero norm: "
            "no direction, so their cosine similarities are set to 0"
        )


def duplicate_groups(rows: torch.Tensor) -> list[list[int]]:
    """Positions of identical rows (each group of two or more, in order of first appearance)."""
    import torch  # noqa: PLC0415

    if len(rows) < 2:
        return []
    # Hash each row's bytes: linear in the data, where sorting rows (torch.unique(dim=0)) is not.
    flat = rows.detach().reshape(len(rows), -1).contiguous().cpu().view(torch.uint8).numpy()
    groups: dict[bytes, list[int]] = {}
    for position, row in enumerate(flat):
        groups.setdefault(hashlib.blake2b(row.tobytes(), digest_size=16).digest(), []).append(position)
    return [g for g in groups.values() if len(g) > 1]  # dicts keep insertion order: first appearance


def warn_duplicate_anchors(inputs: Any, ids: torch.Tensor, where: str) -> None:
    """Warn when two anchors are the same sample or have identical inputs: they give equal columns."""
    import torch  # noqa: PLC0415

    groups = duplicate_groups(ids.reshape(-1, 1))
    kind = "id"
    if not groups and isinstance(inputs, torch.Tensor):
        groups, kind = duplicate_groups(inputs), "input"
    if groups:
        shown = "; ".join(", ".join(str(int(ids[p])) for p in g) for g in groups[:3])
        more = f" (and {len(groups) - 3} more groups)" if len(groups) > 3 else ""
        warn(
            f"{where}: {sum(len(g) for g in groups)} anchors share an {kind} with another "
            f"(ids {shown}){more}; "
            "duplicates add identical similarity columns"
        )


def check_labels(labels: torch.Tensor, classes: list[str], what: str, *, path: object | None = None) -> None:
    """Refuse labels outside ``0 .. len(classes) - 1``, with their count and the first index."""
    if not len(labels) or not classes:
        return
    import torch  # noqa: PLC0415

    if (
        not labels.is_floating_point()
    ):  # one pass over integer labels; the mask below only when some are outside
        low, high = torch.aminmax(labels)
        if int(low) >= 0 and int(high) < len(classes):
            return
    outside = (labels < 0) | (labels >= len(classes))
    count = int(outside.sum())
    if count:
        first = int(outside.nonzero()[0][0])
        raise RelstitchError(
            f"{count} label(s) of {what} outside its {len(classes)} classes (first at index {first}: label "
            f"{int(labels[first])})",
            path=path,
        )


def warn_class_names(decoder_classes: list[str], data_classes: list[str] | None, decoder_name: str) -> None:
    """Flag a decoder scored on data whose class names differ: the labels are compared as numbers only."""
    if data_classes and list(data_classes) != list(decoder_classes):
        shown = ", ".join(map(str, data_classes[:3])) + (", ..." if len(data_classes) > 3 else "")
        mine = ", ".join(map(str, decoder_classes[:3])) + (", ..." if len(decoder_classes) > 3 else "")
        warn(
            f"decoder {decoder_name!r} was trained on classes ({mine}) but the data name theirs ({shown}): "
            "labels are matched by number only"
        )


def warn_single_class(labels: torch.Tensor, classes: list[str], what: str) -> None:
    """Flag a classification evaluation whose data hold one class: accuracy then says little."""
    import torch  # noqa: PLC0415

    if not len(labels):
        return
    if labels.is_floating_point():
        present = torch.unique(labels).tolist()
        low = high = present[0] if len(present) == 1 else None
    else:  # a single class iff min == max: one pass, no sort as unique() needs
        low, high = (int(v) for v in torch.aminmax(labels))
    if low is not None and low == high:
        label = int(low)
        name = classes[label] if 0 <= label < len(classes) else str(label)
        warn(f"{what} hold a single class ({name!r}): accuracy cannot tell a classifier from a constant")
