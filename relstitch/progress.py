"""Progress reporting without printing: the library calls a callback, the CLI draws the bar.

The library reports ``progress(description, advance, total)``; :func:`terminal_bar` turns those calls
into a rich progress display (one bar per description, with the rate and the time left) when its
console is a terminal, and into nothing at all otherwise (a pipe, a file, CI logs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is imported only when a bar is drawn
    from rich.console import Console

ProgressFn = Callable[[str, int, int], None]
"""``progress(description, advance, total)``: ``advance`` units of ``total`` done for that step."""

STEP_PREFIXES = ("training ", "fitting ")
"""Descriptions whose units are optimiser steps (``relstitch.training``); every other description counts
samples."""


def silent(description: str, advance: int, total: int) -> None:
    """The default callback: report nothing."""


def unit_of(description: str) -> str:
    """``steps`` for training and fitting (one call per mini-batch), else ``samples`` (encoding)."""
    return "steps" if description.startswith(STEP_PREFIXES) else "samples"


def rate_text(speed: float | None, unit: str) -> str:
    """``1,234 samples/s``, ``3.2 steps/s``; ``– samples/s`` before there is a rate to show."""
    if speed is None:
        return f"– {unit}/s"
    return f"{speed:,.0f} {unit}/s" if speed >= 100 else f"{speed:.1f} {unit}/s"


@contextlib.contextmanager
def terminal_bar(console: Console) -> Iterator[ProgressFn]:
    """A progress callback drawing on ``console`` when it is a terminal; :func:`silent` otherwise.

    Columns: description, bar, done/total, rate (samples/s, or steps/s while training), elapsed and
    time left. A finished step's bar is hidden, so a matrix run over many encoders shows only the work
    in progress, and the whole display is cleared at the end (nothing is left in the scrollback).
    """
    if not console.is_terminal:  # a pipe or a file: not one byte of progress
        yield silent
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Units per second, with the task's own unit."""

        def render(self, task: Any) -> Text:
            return Text(
                rate_text(task.speed, task.fields.get("unit", "samples")), style="progress.data.speed"
            )

    tasks: dict[str, Any] = {}
    done: dict[str, int] = {}
    # the description holds a model's name: plain text, never markup ("[/x]" in a name must not break the bar)
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:

        def update(description: str, advance: int, total: int) -> None:
            if description not in tasks or done[description] >= total:  # new, or the same step again
                tasks[description] = bar.add_task(description, total=total, unit=unit_of(description))
                done[description] = 0
                bar.refresh()  # drawn at once: a step shorter than the refresh period still shows
            done[description] += advance
            finished = done[description] >= total  # hidden once done: only the work in progress shows
            bar.update(tasks[description], advance=advance, visible=not finished)

        yield update
