"""What every renderer shares: number format, arrows, the heat scale, cell lookup, abbreviations.

Renderers read only the report document (never a live run), so ``relstitch report`` re-renders a
saved file exactly as ``eval-matrix`` printed it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .document import ALL, SETTINGS, is_score

# A red → yellow → green scale (ColorBrewer RdYlGn end points): red is the worst value, green the best.
_STOPS = ((215, 48, 39), (254, 224, 139), (26, 152, 80))


def fmt(value: Any) -> str:
    """A score for people: 3 decimals (1 from 100 up); stored non-finite strings as they are; – for none."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def arrow(direction: str) -> str:
    return "↑" if direction == "higher" else "↓"


def method_title(report: dict[str, Any], method: str) -> str:
    """``relative``, or ``relative-null (control: shuffled-anchors)`` for a control's matrix."""
    control = next(
        (p.get("control") for p in report["pairs"] if p["method"] == method and p.get("control")), None
    )
    return f"{method} (control: {control})" if control else method


def baseline_summary(baselines: dict[str, Any]) -> str:
    """``accuracy baselines: chance 0.100 (10 classes), majority class 0.654 (negative)``: the two
    guessers of :func:`~relstitch.reports.document.label_baselines`."""
    return (
        f"{baselines['metric']} baselines: chance {fmt(baselines['chance'])} ({baselines['classes']} "
        f"classes), majority class {fmt(baselines['majority'])} ({baselines['majority_class']})"
    )


def baseline_line(report: dict[str, Any]) -> str | None:
    """The report's line on its baselines, or None when it has none (reconstruction, unlabelled data,
    a report older than schema 3). Says so when the main score is not above the majority class."""
    baselines = report.get("baselines")
    if not baselines:
        return None
    line = baseline_summary(baselines)
    score = report["main_score"]
    if score["metric"] == baselines["metric"] and is_score(score["value"]):
        if score["value"] <= baselines["majority"]:
            line += " — the main score is not above it"
    return line


CONTROL_NOTE = (
    "A NAME-null matrix is a control: the encoder's anchor latents shuffled, so the anchors no longer "
    "correspond; a stitched score that came from the anchors collapses toward or below chance there."
)


def control_note(report: dict[str, Any]) -> str | None:
    """:data:`CONTROL_NOTE` when the report holds a control's matrix, else None."""
    return CONTROL_NOTE if any(p.get("control") for p in report["pairs"]) else None


def direction_of(report: dict[str, Any], metric: str) -> str:
    direction: str = report["metrics"].get(metric, {}).get("direction", "higher")
    return direction


def choose_metric(report: dict[str, Any], metric: str | None) -> str:
    """``metric`` if the report has it, else the main metric; an unknown name is a usage error."""
    from ..errors import UsageError

    if metric is None:
        main: str = report["main_metric"]
        return main
    if metric not in report["metrics"]:
        raise UsageError(
            f"unknown metric {metric!r} for this report; choose one of {', '.join(sorted(report['metrics']))}"
        )
    return metric


@dataclass(frozen=True)
class Scale:
    """Maps a metric's values onto [0, 1] with 1 the best, shared by every method's heatmap."""

    low: float
    high: float
    direction: str

    def position(self, value: Any) -> float | None:
        if not is_score(value):
            return None
        t = 0.5 if self.high == self.low else (value - self.low) / (self.high - self.low)
        return 1.0 - t if self.direction == "lower" else t


def scale_for(report: dict[str, Any], metric: str) -> Scale:
    values = [
        v
        for m in report["matrices"].values()
        for row in m["values"].get(metric, [])
        for v in row
        if is_score(v)
    ]
    return Scale(min(values, default=0.0), max(values, default=1.0), direction_of(report, metric))


def heat_rgb(t: float) -> tuple[int, int, int]:
    """Colour of position ``t`` (0 worst, 1 best) on the red-yellow-green scale."""
    t = min(max(t, 0.0), 1.0)
    (a, b), u = ((_STOPS[0], _STOPS[1]), t * 2) if t < 0.5 else ((_STOPS[1], _STOPS[2]), t * 2 - 1)
    red, green, blue = (round(x + (y - x) * u) for x, y in zip(a, b, strict=True))
    return red, green, blue


def ink_for(rgb: tuple[int, int, int]) -> str:
    """Black or white text, whichever reads better on ``rgb`` (relative luminance)."""
    r, g, b = rgb
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"


@dataclass(frozen=True)
class Cell:
    """One matrix cell as renderers need it."""

    value: Any
    diagonal: bool
    error: str | None
    present: bool


def cells(report: dict[str, Any], method: str, metric: str) -> Iterator[tuple[str, list[Cell]]]:
    """Rows of ``(encoder, cells)`` of one method's matrix, with the diagonal and failures marked."""
    index = {(p["encoder"], p["decoder"], p["method"]): p for p in reversed(report["pairs"])}
    matrix = report["matrices"][method]
    for i, encoder in enumerate(matrix["rows"]):
        row = []
        for j, decoder in enumerate(matrix["columns"]):
            pair = index.get((encoder, decoder, method))
            row.append(
                Cell(
                    matrix["values"][metric][i][j],
                    bool(pair and not pair["stitched"]),
                    pair["error"] if pair else None,
                    pair is not None,
                )
            )
        yield encoder, row


def abbreviations(names: list[str], prefix: str) -> dict[str, str]:
    """``{"cnn-rel-s0": "E1", ...}``: short labels for a narrow screen, explained in a legend."""
    return {name: f"{prefix}{i}" for i, name in enumerate(names, 1)}


def group_pairs(report: dict[str, Any], metric: str) -> list[tuple[str, str]]:
    """The (encoder group, decoder group) columns of the aggregated table: ``all`` first.

    When every pair falls in one group pair, that column would repeat ``all``, so it is left out.
    """
    found: list[tuple[str, str]] = []
    for row in report["aggregate"]:
        key = (row["encoder_group"], row["decoder_group"])
        if row["metric"] == metric and key != (ALL, ALL) and key not in found:
            found.append(key)
    found.sort()
    return [(ALL, ALL)] + (found if len(found) > 1 else [])


def aggregate_rows(
    report: dict[str, Any], metric: str
) -> list[tuple[str, str, dict[tuple[str, str], dict[str, Any]]]]:
    """``(method, setting, {group pair: aggregate row})`` in method then setting order."""
    table: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
    for row in report["aggregate"]:
        if row["metric"] == metric:
            table.setdefault((row["method"], row["setting"]), {})[
                (row["encoder_group"], row["decoder_group"])
            ] = row
    order = {m: i for i, m in enumerate(report["methods"])}
    keys = sorted(table, key=lambda k: (order.get(k[0], len(order)), SETTINGS.index(k[1])))
    return [(method, setting, table[(method, setting)]) for method, setting in keys]


def mean_std(row: dict[str, Any] | None) -> str:
    """``0.812 ± 0.011 (n=6)``; the std is left out for a single pair."""
    if row is None:
        return "–"
    spread = f" ± {fmt(row['std'])}" if row["std"] is not None else ""
    return f"{fmt(row['mean'])}{spread} (n={row['n']})"


def group_label(pair: tuple[str, str], names: dict[str, str] | None = None) -> str:
    """``cnn→mlp`` (``all`` for the pooled pair), each group through ``names`` (see :func:`group_names`)
    when given."""
    if pair == (ALL, ALL):
        return ALL
    names = names or {}
    return f"{names.get(pair[0], pair[0])}→{names.get(pair[1], pair[1])}"


_SOURCE_PREFIXES = ("hf:", "torchvision:", "python:")
_HIDDEN_SIZE = re.compile(r"-H\d+(?=-|$)")


def short_group(name: str) -> str:
    """A group label for people: the architecture and its depth, without the model source or the width.

    ``hf:bert-L6-H384`` → ``bert-L6``, ``torchvision:resnet18`` → ``resnet18``,
    ``python:pkg.models:small_cnn`` → ``small_cnn``; ``cnn`` and labels given with ``--group`` stay as
    they are.
    """
    for prefix in _SOURCE_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            rest = name[len(prefix) :]
            if prefix == "hf:":
                return _HIDDEN_SIZE.sub("", rest) or rest
            return rest.rsplit(":", 1)[-1] or rest
    return name


def _without_source(name: str) -> str:
    """``hf:bert-L6-H384`` → ``bert-L6-H384``: only the model source left out."""
    return next((name[len(p) :] for p in _SOURCE_PREFIXES if name.startswith(p) and len(name) > len(p)), name)


def group_names(report: dict[str, Any]) -> dict[str, str]:
    """``{group: display name}`` for every group of ``report``, short (:func:`short_group`) yet one to one.

    Groups whose short names would collide (``hf:bert-L6-H384`` and ``hf:bert-L6-H768``) keep their
    width (``bert-L6-H384``), and if that still collides, their full label.
    """
    found = {item.get("group") for items in (report["encoders"], report["decoders"]) for item in items}
    found |= {row[key] for row in report.get("aggregate", []) for key in ("encoder_group", "decoder_group")}
    groups = sorted(g for g in found if isinstance(g, str) and g != ALL)
    names: dict[str, str] = {}
    for shorten in (short_group, _without_source, str):
        wanted = {g: shorten(g) for g in groups if g not in names}
        taken = list(names.values()) + list(wanted.values())
        names |= {g: n for g, n in wanted.items() if taken.count(n) == 1 and n != ALL}
    return names | {g: g for g in groups if g not in names}


def renamed_note(report: dict[str, Any]) -> str | None:
    """The legend for checkpoints shown under another name because they shared theirs, or None."""
    renamed = [
        f"{item['name']} = {item.get('path') or item['renamed_from']}"
        for items in (report["encoders"], report["decoders"])
        for item in items
        if item.get("renamed_from")
    ]
    if not renamed:
        return None
    return "Checkpoints that share a name are told apart by folder (then position): " + ", ".join(renamed)


def failure_notes(failed: list[tuple[str, str, str]]) -> tuple[dict[tuple[str, str], int], list[str]]:
    """Number each distinct failure reason once: ``{(encoder, decoder): n}`` and one ``✗n where: reason``
    line each.

    A decoder that cannot load fails a whole column with one reason: one line, not one per row.
    """
    by_reason: dict[str, list[tuple[str, str]]] = {}
    for encoder, decoder, error in failed:
        by_reason.setdefault(error, []).append((encoder, decoder))
    numbers: dict[tuple[str, str], int] = {}
    lines = []
    for n, (error, where) in enumerate(by_reason.items(), 1):
        numbers.update(dict.fromkeys(where, n))
        encoders, decoders = {e for e, _ in where}, {d for _, d in where}
        if len(where) == 1:
            place = f"{where[0][0]} → {where[0][1]}"
        elif len(decoders) == 1:
            place = f"column {next(iter(decoders))} ({len(where)} cells)"
        elif len(encoders) == 1:
            place = f"row {next(iter(encoders))} ({len(where)} cells)"
        else:
            place = f"{len(where)} cells"
        lines.append(f"✗{n} {place}: {error}")
    return numbers, lines


def checkpoint_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(role, name, group, seed, short hash) for the provenance tables."""
    rows = []
    for role, items in (("encoder", report["encoders"]), ("decoder", report["decoders"])):
        for item in items:
            extra = f" ({item['space'] or 'unreadable'})" if role == "decoder" else ""
            seed = "–" if item.get("seed") is None else str(item["seed"])
            rows.append((role + extra, item["name"], item["group"], seed, (item.get("hash") or "–")[:12]))
    return rows
