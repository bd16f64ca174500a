"""Reports of a matrix run: the JSON document (versioned schema) and its renderings.

- :mod:`.document` builds, writes, loads and migrates the JSON report;
- :mod:`.schema` holds the JSON Schema and a small validator;
- :mod:`.terminal` (rich heatmap tables), :mod:`.text` (CSV, Markdown) and :mod:`.html` (one
  self-contained page) render a report document, so a saved report re-renders without recomputing.

Nothing here imports torch at import time: ``relstitch report`` is instant.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .document import (
    SCHEMA_VERSION,
    build_report,
    label_baselines,
    load_report,
    parse_groups,
    report_json,
    upgrade_report,
    write_json,
)
from .html import to_html, write_html
from .schema import report_schema, schema_errors
from .terminal import aggregate_table, matrix_table, print_report, summary_table
from .text import to_csv, to_markdown, write_csv, write_markdown

FORMATS = ("table", "md", "csv", "html", "json")


def render(report: dict[str, Any], fmt: str, *, metric: str | None = None) -> str:
    """A report as text in one of :data:`FORMATS` except ``table`` (which needs a console)."""
    if fmt == "md":
        return to_markdown(report, metric)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        return to_html(report, metric)
    if fmt == "json":
        return report_json(report)
    raise ValueError(f"no text renderer for {fmt!r}")


def write_reports(
    report: dict[str, Any],
    outputs: Mapping[str, str | os.PathLike[str] | None],
    *,
    metric: str | None = None,
    force: bool = False,
) -> list[str]:
    """Write ``report`` in each format of ``outputs`` (``{"json": PATH, "md": PATH, ...}``, None skipped),
    each file atomically; returns the paths written. The same bytes as :func:`render` gives for that
    format."""
    from ..io.atomic import atomic_write  # noqa: PLC0415

    written = []
    for fmt, path in outputs.items():
        if path is not None:
            atomic_write(path, render(report, fmt, metric=metric), force=force)
            written.append(str(path))
    return written


__all__ = [
    "FORMATS",
    "SCHEMA_VERSION",
    "aggregate_table",
    "build_report",
    "label_baselines",
    "load_report",
    "matrix_table",
    "parse_groups",
    "print_report",
    "render",
    "report_json",
    "report_schema",
    "schema_errors",
    "summary_table",
    "to_csv",
    "to_html",
    "to_markdown",
    "upgrade_report",
    "write_csv",
    "write_html",
    "write_json",
    "write_markdown",
    "write_reports",
]
