"""The report as one self-contained HTML file: inline CSS, inline SVG heatmaps, no script, no network.

Open it from disk, mail it, attach it to a paper's supplement: it needs nothing else. Hovering a
cell shows its pair and value through SVG ``<title>`` (a browser feature, not JavaScript).
"""

from __future__ import annotations

import json
import os
import shlex
from html import escape
from typing import Any

from ..io.atomic import atomic_write
from .common import (
    Scale,
    aggregate_rows,
    arrow,
    baseline_line,
    cells,
    checkpoint_rows,
    choose_metric,
    control_note,
    direction_of,
    fmt,
    group_label,
    group_pairs,
    heat_rgb,
    ink_for,
    mean_std,
    method_title,
    renamed_note,
    scale_for,
)

BOLD, NUM = (
    ' font-weight="bold"',
    ' class="num"',
)  # attributes, kept out of f-strings (no backslashes there before 3.12)
CELL_W, CELL_H, CHAR_W = 64, 30, 7.2  # px; CHAR_W approximates a 12 px sans-serif glyph for label space

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1b1b1b; \
background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.score { font-size: 15px; margin: 0 0 12px; } .muted { color: #555; }
.maps { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
svg text { font: 12px system-ui, sans-serif; }
table { border-collapse: collapse; margin: 4px 0 8px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
code { font-size: 12px; }
"""


def _rgb(rgb: tuple[int, int, int]) -> str:
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})"


def heatmap_svg(report: dict[str, Any], method: str, metric: str, scale: Scale) -> str:
    """One method's matrix as an SVG heatmap: value in each cell, the diagonal outlined and starred."""
    matrix = report["matrices"][method]
    left = int(max((len(n) for n in matrix["rows"]), default=4) * CHAR_W) + 12
    rise = int(
        max((len(n) for n in matrix["columns"]), default=4) * CHAR_W * 0.72
    )  # labels at 45° go up and right
    top = rise + 16
    width = left + CELL_W * len(matrix["columns"]) + max(rise - CELL_W // 2, 0) + 8
    height = top + CELL_H * len(matrix["rows"]) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(method)} {escape(metric)} heatmap">'
    ]
    for j, name in enumerate(matrix["columns"]):
        x, y = left + CELL_W * j + CELL_W / 2, top - 6
        parts.append(f'<text x="{x:.0f}" y="{y}" transform="rotate(-45 {x:.0f} {y})">{escape(name)}</text>')
    diagonal = []
    for i, (encoder, row) in enumerate(cells(report, method, metric)):
        y = top + CELL_H * i
        parts.append(
            f'<text x="{left - 8}" y="{y + CELL_H / 2 + 4:.0f}" text-anchor="end">{escape(encoder)}</text>'
        )
        for j, (decoder, cell) in enumerate(zip(matrix["columns"], row, strict=True)):
            x = left + CELL_W * j
            position = scale.position(cell.value)
            fill = "#d9d9d9" if cell.error else "#f2f2f2" if position is None else _rgb(heat_rgb(position))
            ink = "black" if position is None else ink_for(heat_rgb(position))
            label = (
                "✗"
                if cell.error
                else (fmt(cell.value) + ("*" if cell.diagonal else ""))
                if cell.present
                else ""
            )
            tip = f"{encoder} → {decoder} ({method}): " + (cell.error or fmt(cell.value))
            parts.append(
                f'<g><title>{escape(tip)}</title><rect x="{x}" y="{y}" width="{CELL_W}" height="{CELL_H}" '
                f'fill="{fill}" stroke="#fff"/><text x="{x + CELL_W / 2:.0f}" y="{y + CELL_H / 2 + 4:.0f}" '
                f'text-anchor="middle" fill="{ink}"{BOLD if cell.diagonal else ""}>'
                f"{escape(label)}</text></g>"
            )
            if cell.diagonal:
                diagonal.append(
                    f'<rect x="{x + 1.5}" y="{y + 1.5}" width="{CELL_W - 3}" height="{CELL_H - 3}" '
                    f'fill="none" stroke="#111" stroke-width="2.5"/>'
                )
    parts += diagonal  # drawn last so neighbouring cells do not cover the outline
    parts.append("</svg>")
    return "".join(parts)


def colour_bar_svg(scale: Scale, metric: str) -> str:
    """The scale's key: worst on the left, best on the right, with the values at the ends."""
    worst, best = (scale.high, scale.low) if scale.direction == "lower" else (scale.low, scale.high)
    stops = "".join(
        f'<stop offset="{t:.2f}" stop-color="{_rgb(heat_rgb(t))}"/>' for t in (0, 0.25, 0.5, 0.75, 1)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="320" height="38" '
        'role="img" aria-label="colour scale">'
        f'<defs><linearGradient id="scale">{stops}</linearGradient></defs>'
        f'<rect x="0" y="0" width="320" height="14" fill="url(#scale)"/>'
        f'<text x="0" y="30">{escape(fmt(worst))} (worse)</text>'
        f'<text x="320" y="30" text-anchor="end">(better) {escape(fmt(best))}</text></svg>'
        f' <span class="muted">{escape(metric)} {arrow(scale.direction)}</span>'
    )


def _table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """An HTML table; cells are escaped here, so callers pass plain text."""
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{NUM if j in numeric else ''}>{escape(str(c))}</td>" for j, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(report: dict[str, Any], metric: str | None = None) -> str:
    """The whole report as one HTML document."""
    metric = choose_metric(report, metric)
    scale = scale_for(report, metric)
    data, score, run, env = report["dataset"], report["main_score"], report["run"], report["environment"]
    title = f"relstitch report: {report['task']} on {data['name']} ({data['size']} samples)"
    body = [f"<h1>{escape(title)}</h1>"]
    if score["value"] is not None:
        body.append(
            f'<p class="score">Main score: {escape(score["metric"])} {arrow(score["direction"])} '
            f"<b>{escape(fmt(score['value']))}</b>, mean over {score['n']} stitched "
            f"{escape(str(score['method']))} pairs.</p>"
        )
    if (baselines := baseline_line(report)) is not None:
        body.append(f'<p class="score">{escape(baselines[0].upper() + baselines[1:])}.</p>')
    body.append(
        f'<h2>Matrices: {escape(metric)} {arrow(direction_of(report, metric))}</h2><div class="maps">'
    )
    for method in report["methods"]:
        svg = heatmap_svg(report, method, metric, scale)
        body.append(f"<figure><figcaption>{escape(method_title(report, method))}</figcaption>{svg}</figure>")
    body.append("</div>")
    body.append(f"<p>{colour_bar_svg(scale, metric)}</p>")
    body.append(
        '<p class="muted">Rows: encoders; columns: decoders; outlined and * = not stitched '
        "(the decoder's own encoder); ✗ = failed. One colour scale for every method.</p>"
    )
    if (controls := control_note(report)) is not None:
        body.append(f'<p class="muted">{escape(controls)}</p>')
    if (renamed := renamed_note(report)) is not None:
        body.append(f'<p class="muted">{escape(renamed)}</p>')
    if report["aggregate"]:  # empty when every pair failed
        columns = group_pairs(report, metric)
        body.append(
            f"<h2>Aggregated: {escape(metric)} {arrow(direction_of(report, metric))}, "
            "mean ± std over pairs</h2>"
        )
        body.append(
            _table(
                ["method", "setting", *(group_label(p) for p in columns)],
                [
                    [m, s, *(mean_std(g.get(p)) for p in columns)]
                    for m, s, g in aggregate_rows(report, metric)
                ],
                numeric=set(range(2, 2 + len(columns))),
            )
        )
        body.append(
            '<p class="muted">Columns: encoder group → decoder group; '
            "std is the sample std (n − 1) over pairs.</p>"
        )
    if report["failed_pairs"]:
        body.append("<h2>Failed pairs</h2>")
        body.append(
            _table(
                ["encoder", "decoder", "method", "error"],
                [[f["encoder"], f["decoder"], f["method"], f["error"]] for f in report["failed_pairs"]],
            )
        )
    body.append("<h2>Configuration</h2>")
    body.append(f"<pre>{escape(json.dumps(report['config'], indent=2, ensure_ascii=False))}</pre>")
    body.append("<h2>Provenance</h2>")
    anchors = report["anchors"]
    facts = [
        ["relstitch", f"{report['relstitch_version']} (report schema {report['schema_version']})"],
        ["data", f"{data['name']}, {data['size']} samples, sha256 {data.get('hash')}"],
        [
            "anchors",
            f"{anchors['count']} {anchors.get('strategy')} (seed {anchors.get('seed')}), "
            f"{anchors.get('path') or 'as recorded in the embeddings files'}, "
            f"sha256 {anchors.get('hash')}",
        ],
        ["metrics", ", ".join(f"{m} {arrow(v['direction'])}" for m, v in report["metrics"].items())],
        [
            "environment",
            f"Python {env['python']}; "
            + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
            + f"; {env['platform']}",
        ],
        ["date", run["date"]],
        ["command", shlex.join(run["command"])],
    ]
    body.append(_table(["", ""], facts))
    body.append(
        _table(
            ["role", "name", "group", "seed", "sha256 (12)"],
            [list(r) for r in checkpoint_rows(report)],
            numeric={3},
        )
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_html(
    report: dict[str, Any], path: str | os.PathLike[str], *, metric: str | None = None, force: bool = False
) -> None:
    atomic_write(path, to_html(report, metric), force=force)
