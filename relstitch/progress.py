"""Progress reporting without printing: the library calls a callback, the CLI draws the bar."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, int], None]
"""``progress(description, advance, total)``: ``advance`` units of ``total`` done for that step."""


def silent(description: str, advance: int, total: int) -> None:
    """The default callback: report nothing."""
