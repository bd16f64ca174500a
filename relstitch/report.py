"""Kept for callers of the first report module; the code lives in :mod:`relstitch.reports`."""

from __future__ import annotations

from .reports import (  # noqa: F401  (re-exported)
    SCHEMA_VERSION,
    build_report,
    load_report,
    matrix_table,
    summary_table,
    to_csv,
    write_csv,
    write_json,
)
