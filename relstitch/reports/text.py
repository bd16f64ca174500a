"""Plain-text forms of a report: long-form CSV (for dataframes) and Markdown (for READMEs and papers)."""

from __future__ import annotations

import csv
import io
import os
import shlex
from typing import Any

from ..io.atomic import atomic_write
from .common import (
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
    mean_std,
    method_title,
    renamed_note,
)
from .document import setting_of

CSV_COLUMNS = (
    "encoder",
    "decoder",
    "method",
    "metric",
    "value",
    "stitched",
    "setting",
    "space",
    "encoder_group",
    "decoder_group",
    "encoder_seed",
    "decoder_seed",
    "baseline_chance",
    "baseline_majority",
    "error",
)


def to_csv(report: dict[str, Any]) -> str:
    """Long form: one row per (encoder, decoder, method, metric); a failed pair is one row with its error.

    ``baseline_chance``/``baseline_majority`` repeat the report's accuracy baselines on every row (empty
    when it has none), so a dataframe compares each score with them without a second file.
    """
    baselines = report["baselines"] or {}
    groups = {("e", e["name"]): e for e in report["encoders"]} | {
        ("d", d["name"]): d for d in report["decoders"]
    }
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for pair in report["pairs"]:
        enc, dec = groups.get(("e", pair["encoder"]), {}), groups.get(("d", pair["decoder"]), {})
        common = [
            pair["stitched"],
            setting_of(pair),
            pair["space"],
            enc.get("group", ""),
            dec.get("group", ""),
            "" if enc.get("seed") is None else enc["seed"],
            "" if dec.get("seed") is None else dec["seed"],
            baselines.get("chance", ""),
            baselines.get("majority", ""),
        ]
        if pair["error"]:
            writer.writerow(
                [pair["encoder"], pair["decoder"], pair["method"], "", "", *common, pair["error"]]
            )
        for metric, value in pair["scores"].items():
            writer.writerow([pair["encoder"], pair["decoder"], pair["method"], metric, value, *common, ""])
    return buffer.getvalue()


def write_csv(report: dict[str, Any], path: str | os.PathLike[str], *, force: bool = False) -> None:
    atomic_write(path, to_csv(report), force=force)


def _md(text: Any) -> str:
    """A table cell: pipes escaped, line breaks flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]], align: list[str]) -> list[str]:
    lines = [
        "| " + " | ".join(_md(h) for h in header) + " |",
        "| " + " | ".join("---:" if a == "right" else ":---" for a in align) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _provenance(report: dict[str, Any]) -> list[str]:
    """Bullet points naming every input by hash, the config, the environment and the run."""
    cfg, env, data, anchors, run = (
        report["config"],
        report["environment"],
        report["dataset"],
        report["anchors"],
        report["run"],
    )
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    projections = (
        "; ".join(", ".join(f"{k}={v}" for k, v in p.items()) for p in cfg["projections"])
        or "none (absolute only)"
    )
    metrics = ", ".join(f"{m} {arrow(v['direction'])}" for m, v in report["metrics"].items())
    lines = [
        f"- relstitch {report['relstitch_version']}, report schema {report['schema_version']}",
        f"- task: {report['task']}; metrics: {metrics}; main metric: {report['main_metric']}",
        f"- data: `{data['name']}`, {data['size']} samples, sha256 `{(data.get('hash') or '–')[:16]}`",
        f"- anchors: {anchors['count']} {anchors.get('strategy') or '?'} (seed {anchors.get('seed')}), "
        f"{_where(anchors.get('path'))}, sha256 `{(anchors.get('hash') or '–')[:16]}`",
        f"- config: batch size {cfg['batch_size']}, device {cfg['device']}, {cfg['dtype']}, "
        f"limit {cfg['limit'] or 'none'}, "
        f"methods {', '.join(cfg['methods'])}; projection {projections}",
        f"- environment: Python {env['python']}, {packages}; {env['platform']}",
        f"- run: {run['date']}; `{shlex.join(run['command'])}`",
    ]
    if cfg["groups"]:
        lines.append("- groups given: " + ", ".join(f"`{g['pattern']}={g['group']}`" for g in cfg["groups"]))
    return lines


def to_markdown(report: dict[str, Any], metric: str | None = None) -> str:
    """The report as Markdown: one heatmap-less matrix per method, the aggregated table, failures,
    provenance."""
    metric = choose_metric(report, metric)
    up = arrow(direction_of(report, metric))
    data = report["dataset"]
    score = report["main_score"]
    out = [f"# relstitch report: {report['task']} on `{data['name']}` ({data['size']} samples)", ""]
    if score["value"] is not None:
        out += [
            f"**Main score:** {score['metric']} {arrow(score['direction'])} **{fmt(score['value'])}**, "
            f"mean over {score['n']} stitched {score['method']} pairs.",
            "",
        ]
    if (baselines := baseline_line(report)) is not None:
        out += [_md(baselines[0].upper() + baselines[1:]) + ".", ""]
    if (renamed := renamed_note(report)) is not None:
        out += [_md(renamed), ""]
    for method in report["methods"]:
        matrix = report["matrices"][method]
        rows = []
        failures = 0
        for encoder, row in cells(report, method, metric):
            texts = []
            for c in row:
                if c.error:
                    failures += 1
                    texts.append("✗")
                elif c.diagonal:
                    texts.append(f"**{fmt(c.value)}**\\*")
                else:
                    texts.append(fmt(c.value) if c.present else "")
            rows.append([_md(encoder), *texts])
        out += [f"## {method_title(report, method)} · {metric} {up}", ""]
        out += _md_table(
            ["encoder \\ decoder", *matrix["columns"]], rows, ["left"] + ["right"] * len(matrix["columns"])
        )
        note = "Rows: encoders; columns: decoders; \\* = not stitched (the decoder's own encoder)"
        out += ["", note + ("; ✗ = failed (see below)." if failures else "."), ""]
    if (controls := control_note(report)) is not None:
        out += [_md(controls), ""]
    if report["aggregate"]:  # empty when every pair failed
        columns = group_pairs(report, metric)
        out += [f"## Aggregated: {metric} {up}, mean ± std over pairs", ""]
        out += _md_table(
            ["method", "setting", *(group_label(p) for p in columns)],
            [
                [_md(m), s, *(mean_std(g.get(p)) for p in columns)]
                for m, s, g in aggregate_rows(report, metric)
            ],
            ["left", "left"] + ["right"] * len(columns),
        )
        out += ["", "Columns: encoder group → decoder group; std is the sample std (n − 1) over pairs.", ""]
    if report["failed_pairs"]:
        out += ["## Failed pairs", ""]
        out += _md_table(
            ["encoder", "decoder", "method", "error"],
            [
                [_md(f["encoder"]), _md(f["decoder"]), _md(f["method"]), _md(f["error"])]
                for f in report["failed_pairs"]
            ],
            ["left"] * 4,
        )
        out.append("")
    out += ["## Provenance", "", *_provenance(report), ""]
    out += _md_table(
        ["role", "name", "group", "seed", "sha256"],
        [[_md(r), _md(n), _md(g), s, f"`{h}`"] for r, n, g, s, h in checkpoint_rows(report)],
        ["left", "left", "left", "right", "left"],
    )
    return "\n".join(out) + "\n"


def write_markdown(
    report: dict[str, Any], path: str | os.PathLike[str], *, metric: str | None = None, force: bool = False
) -> None:
    atomic_write(path, to_markdown(report, metric), force=force)


def _where(path: str | None) -> str:
    """An anchor file's path in code style, or where the anchors came from when no file was named."""
    return f"`{path}`" if path else "as recorded in the embeddings files"
