"""Reports: the matrix as JSON (with provenance), CSV (long form) and a rich table.

The JSON keeps results and volatile facts apart: everything under ``run`` (date, durations, command
line) changes from run to run; everything else is a deterministic function of the inputs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
from datetime import datetime, timezone
from typing import Any

from rich.table import Table
from rich.text import Text

from . import __version__
from .atomic import atomic_write
from .matrix import MatrixResult, metric_direction

SCHEMA_VERSION = 1


def _clean(value: Any) -> Any:
    """JSON has no Infinity/NaN: store them as strings so the file stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def build_report(result: MatrixResult, *, config: dict[str, Any], command: list[str] | None = None) -> dict[str, Any]:
    """The JSON report of a matrix run (schema version :data:`SCHEMA_VERSION`)."""
    import torch  # noqa: PLC0415  (only to record its version; already loaded by the run)

    metrics = sorted({m for p in result.pairs for m in p.scores})
    encoders = [e["name"] for e in result.encoders]
    decoders = [d["name"] for d in result.decoders]
    matrix = {
        metric: [
            [(p.scores.get(metric) if (p := result.cell(e, d)) and not p.error else None) for d in decoders]
            for e in encoders
        ]
        for metric in metrics
    }
    return _clean({
        "schema_version": SCHEMA_VERSION,
        "relstitch_version": __version__,
        "task": result.task,
        "main_metric": result.main_metric,
        "metrics": {m: {"direction": metric_direction(m)} for m in metrics},
        "config": config,
        "anchors": result.anchors,
        "dataset": result.dataset,
        "encoders": [{k: v for k, v in e.items() if k != "encode_seconds"} for e in result.encoders],
        "decoders": result.decoders,
        "matrix": {"rows": encoders, "columns": decoders, "values": matrix},
        "pairs": [{k: v for k, v in p.to_dict().items() if k != "seconds"} for p in result.pairs],
        "failed_pairs": [{"encoder": p.encoder, "decoder": p.decoder, "error": p.error} for p in result.pairs if p.error],
        "summary": result.summary(),
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()},
        "run": {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command if command is not None else sys.argv,
            "timings": result.timings,
            "pair_seconds": {f"{p.encoder}|{p.decoder}": p.seconds for p in result.pairs},
            "encode_seconds": {e["name"]: e.get("encode_seconds") for e in result.encoders},
        },
    })


def write_json(report: dict[str, Any], path: str | os.PathLike, *, force: bool = False) -> None:
    atomic_write(path, json.dumps(report, indent=2, sort_keys=False) + "\n", force=force)


def to_csv(report: dict[str, Any]) -> str:
    """Long form: one row per (encoder, decoder, metric); failed pairs get one row with the error."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["encoder", "decoder", "space", "stitched", "metric", "value", "error"])
    for pair in report["pairs"]:
        if pair["error"]:
            writer.writerow([pair["encoder"], pair["decoder"], pair["space"], pair["stitched"], "", "", pair["error"]])
        for metric, value in pair["scores"].items():
            writer.writerow([pair["encoder"], pair["decoder"], pair["space"], pair["stitched"], metric, value, ""])
    return buffer.getvalue()


def write_csv(report: dict[str, Any], path: str | os.PathLike, *, force: bool = False) -> None:
    atomic_write(path, to_csv(report), force=force)


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def matrix_table(result: MatrixResult, metric: str | None = None) -> tuple[Table, list[str]]:
    """Encoders as rows, decoders as columns; the non-stitched diagonal in bold with ``*``.

    Returns the table and the notes for failed cells (numbered ``✗1``, ``✗2``, ...).
    """
    metric = metric or result.main_metric
    arrow = "↑" if metric_direction(metric) == "higher" else "↓"
    table = Table(title=f"{metric} {arrow}  (rows: encoders, columns: decoders; * = not stitched)", title_justify="left")
    table.add_column("encoder \\ decoder", style="bold")
    for d in result.decoders:
        table.add_column(f"{d['name']}\n({d['space'][:3]})", justify="right")
    notes: list[str] = []
    for e in result.encoders:
        cells: list[Text | str] = []
        for d in result.decoders:
            pair = result.cell(e["name"], d["name"])
            if pair is None:
                cells.append("")
            elif pair.error:
                notes.append(pair.error)
                cells.append(Text(f"✗{len(notes)}", style="dim"))
            elif not pair.stitched:
                cells.append(Text(_fmt(pair.scores[metric]) + "*", style="bold"))
            else:
                cells.append(_fmt(pair.scores[metric]))
        table.add_row(e["name"], *cells)
    return table, [f"✗{i}: {note}" for i, note in enumerate(notes, 1)]


def summary_table(result: MatrixResult) -> Table:
    """Mean main metric per space, not stitched vs stitched."""
    metric = result.main_metric
    arrow = "↑" if metric_direction(metric) == "higher" else "↓"
    table = Table(title=f"summary: mean {metric} {arrow}", title_justify="left")
    for column in ("space", "setting", "pairs", "mean", "min", "max"):
        table.add_column(column, justify="right" if column in ("pairs", "mean", "min", "max") else "left")
    for row in result.summary():
        table.add_row(row["space"], row["setting"], str(row["pairs"]), _fmt(row["mean"]), _fmt(row["min"]), _fmt(row["max"]))
    return table
