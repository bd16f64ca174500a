"""The report on a terminal: one heatmap table per method, the aggregated table, the main score.

Colour is a help, never the only carrier: the diagonal also has ``*``, failures ``✗n``, and the
metric its ↑/↓, so the table reads the same under ``NO_COLOR`` or in a pipe. When the full names do
not fit the console width, encoders and decoders become ``E1``/``D1``... with a legend below.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .common import (
    abbreviations,
    aggregate_rows,
    arrow,
    cells,
    choose_metric,
    direction_of,
    failure_notes,
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

CAPTION = "rows: encoders · columns: decoders · * = not stitched (the decoder's own encoder)"


def _table_width(columns: list[list[str]]) -> int:
    """Width rich's default box needs for these columns (each a list of its cell texts, header included)."""
    widths = [max(cell_len(line) for text in column for line in text.split("\n")) for column in columns]
    return sum(widths) + 3 * len(widths) + 1  # one space of padding either side and one border per column, plus the last


def matrix_table(report: dict[str, Any], method: str, metric: str | None = None, *,
                 width: int | None = None) -> tuple[Table, list[str]]:
    """One method's encoder × decoder heatmap for ``metric`` (default: the main metric).

    Returns the table and the lines to print under it: the abbreviation legend (only when the full
    names would not fit in ``width``) and the reasons for failed cells (numbered ``✗1``, ``✗2``...).
    """
    metric = choose_metric(report, metric)
    scale = scale_for(report, metric)
    matrix = report["matrices"][method]
    rows = list(cells(report, method, metric))
    texts = [[fmt(c.value) + ("*" if c.diagonal else "") for c in row] for _, row in rows]
    full_width = _table_width([["encoder \\ decoder", *matrix["rows"]]]
                              + [[name, *(t[j] for t in texts)] for j, name in enumerate(matrix["columns"])])
    short = width is not None and full_width > width
    enc_label = abbreviations(matrix["rows"], "E") if short else {n: n for n in matrix["rows"]}
    dec_label = abbreviations(matrix["columns"], "D") if short else {n: n for n in matrix["columns"]}

    title = f"{method_title(report, method)} · {metric} {arrow(direction_of(report, metric))}"
    # at least as wide as its title, so that rich does not wrap the title over two lines
    table = Table(title=title, title_justify="left", caption=CAPTION, caption_justify="left", min_width=cell_len(title))
    table.add_column("enc \\ dec" if short else "encoder \\ decoder", style="bold", no_wrap=True)
    for name in matrix["columns"]:
        table.add_column(dec_label[name], justify="right", no_wrap=True)
    numbers, failures = failure_notes([(encoder, decoder, cell.error) for encoder, row in rows
                                       for decoder, cell in zip(matrix["columns"], row, strict=True) if cell.error])
    for (encoder, row), row_texts in zip(rows, texts, strict=True):
        rendered: list[Text] = []
        for decoder, cell, text in zip(matrix["columns"], row, row_texts, strict=True):
            if cell.error:
                rendered.append(Text(f"✗{numbers[(encoder, decoder)]}", style="dim"))
                continue
            position = scale.position(cell.value)
            style = "" if position is None else f"{ink_for(rgb := heat_rgb(position))} on rgb({rgb[0]},{rgb[1]},{rgb[2]})"
            rendered.append(Text(text if cell.present else "", style=style + (" bold" if cell.diagonal else "")))
        table.add_row(enc_label[encoder], *rendered)
    notes: list[str] = []
    if short:
        labels = {e["name"]: e for e in report["encoders"]} | {d["name"]: d for d in report["decoders"]}
        for names, mapping in ((matrix["rows"], enc_label), (matrix["columns"], dec_label)):
            for name in names:
                item = labels.get(name, {})
                seed = "" if item.get("seed") is None else f", seed {item['seed']}"
                notes.append(f"{mapping[name]} = {name} ({item.get('group', '?')}{seed})")
    return table, notes + failures


def aggregate_table(report: dict[str, Any], metric: str | None = None, *, width: int | None = None) -> Table | Group:
    """The paper's table form: method × setting rows, a column per pair of groups (``all`` pools them).

    When that does not fit in ``width``, the same numbers come one group pair per row instead.
    """
    metric = choose_metric(report, metric)
    columns = group_pairs(report, metric)
    rows = aggregate_rows(report, metric)
    title = f"{metric} {arrow(direction_of(report, metric))}: mean ± std over pairs (encoder group → decoder group)"
    wide = [[method, setting, *(mean_std(by_group.get(pair)) for pair in columns)] for method, setting, by_group in rows]
    header = ["method", "setting", *(group_label(p) for p in columns)]
    if width is not None and _table_width([list(c) for c in zip(header, *wide, strict=True)]) > width:
        header = ["method", "setting", "groups", "mean ± std (n)"]
        wide = [[method, setting, group_label(pair), mean_std(by_group[pair])]
                for method, setting, by_group in rows for pair in columns if pair in by_group]
        if _table_width([list(c) for c in zip(header, *wide, strict=True)]) > width:
            return _aggregate_list(title, rows, columns)
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(header):
        numeric = i >= 2 and name != "groups"
        table.add_column(name, style="bold" if i == 0 else "", justify="right" if numeric else "left", no_wrap=numeric)
    for row in wide:
        table.add_row(*row)
    return table


def _aggregate_list(title: str, rows: list[Any], columns: list[tuple[str, str]]) -> Group:
    """The aggregate for very narrow screens: a heading per method and setting, one group pair per line."""
    pad = max(len(group_label(p)) for p in columns)
    lines = [Text(title)]
    for method, setting, by_group in rows:
        lines.append(Text(f"{method} · {setting}", style="bold"))
        lines += [Text(f"  {group_label(p):<{pad}}  {mean_std(by_group[p])}") for p in columns if p in by_group]
    return Group(*lines)


def summary_table(report: dict[str, Any], metric: str | None = None) -> Table | Group:
    """Kept for callers of the first report module: the aggregated table."""
    return aggregate_table(report, metric)


def main_score_line(report: dict[str, Any]) -> str:
    score = report["main_score"]
    if score["value"] is None:
        return f"main score: none (no stitched {score['method'] or ''} pairs)".replace("  ", " ")
    return (f"main score: {score['metric']} {arrow(score['direction'])} {fmt(score['value'])} — mean over "
            f"{score['n']} stitched {score['method']} pair{'s' if score['n'] != 1 else ''}")


def print_report(console: Console, report: dict[str, Any], metric: str | None = None) -> None:
    """Everything a terminal shows: every method's heatmap, the aggregated table, the main score."""
    metric = choose_metric(report, metric)
    for method in report["methods"]:
        table, notes = matrix_table(report, method, metric, width=console.width)
        console.print(table)
        for note in notes:
            console.print(note, style="dim", soft_wrap=True, highlight=False)
    if (note := renamed_note(report)) is not None:
        console.print(note, style="dim", soft_wrap=True, highlight=False)
    if report["aggregate"]:  # empty when every pair failed
        console.print(aggregate_table(report, metric, width=console.width))
    console.print(main_score_line(report), highlight=False)
