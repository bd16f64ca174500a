"""The report on a terminal: one heatmap per method, a short summary, the main score.

Layout (:func:`print_report`), made to fit one screen for a zoo the size of the shipped one::

    relative · accuracy ↑         one heatmap per method: encoders × decoders, * on the diagonal
    absolute · accuracy ↑
    rows: encoders · ...          the one caption, under the last heatmap
    accuracy ↑: mean ± std ...    the summary: a row per method, a column per setting (not stitched,
                                  stitched, stitched (cross-space)), each mean ± std (n) over all pairs
    accuracy baselines ...        chance and majority-class accuracy of the data (classification)
    main score: ...               the relative stitched mean

``by_group=True`` (``--by-group``) adds the breakdown by encoder group → decoder group; the JSON,
Markdown and HTML reports always hold it. Group labels are shown short (``bert-L6``, not
``hf:bert-L6-H384``; see :func:`~relstitch.reports.common.group_names`).

Colour is a help, never the only carrier: the diagonal also has ``*``, failures ``✗n``, and the
metric its ↑/↓, so the table reads the same under ``NO_COLOR`` or in a pipe. No table is wider than
the console: when full names do not fit, decoders (then encoders too) become ``D1``/``E1``... with a
legend below; a heatmap still too wide is split into several tables of fewer decoders; the summary
and the by-group table fall back to one row per setting, then to plain lines.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from .common import (
    abbreviations,
    aggregate_rows,
    arrow,
    baseline_line,
    cells,
    choose_metric,
    control_note,
    direction_of,
    failure_notes,
    fmt,
    group_label,
    group_names,
    group_pairs,
    heat_rgb,
    ink_for,
    mean_std,
    method_title,
    renamed_note,
    scale_for,
)
from .document import ALL, SETTINGS

CAPTION = "rows: encoders, columns: decoders · * = not stitched (the decoder's own encoder)"  # 80 columns
BY_GROUP_HINT = "per group pair: --by-group"


def _table_width(columns: list[list[str]]) -> int:
    """Width rich's default box needs for these columns (each a list of its cell texts, header included)."""
    widths = [max(cell_len(line) for text in column for line in text.split("\n")) for column in columns]
    return (
        sum(widths) + 3 * len(widths) + 1
    )  # one space of padding either side and one border per column, plus the last


def _fits(header: list[str], rows: list[list[str]], width: int | None) -> bool:
    return width is None or _table_width([list(c) for c in zip(header, *rows, strict=True)]) <= width


def packed(entries: list[str], width: int | None) -> list[str]:
    """Legend entries side by side in aligned columns, as many per line as ``width`` holds (one per line
    without a width)."""
    if not entries:
        return []
    column = max(cell_len(e) for e in entries) + 2
    per_line = 1 if width is None else max(1, (width + 2) // column)
    return [
        "".join(e + " " * (column - cell_len(e)) for e in entries[i : i + per_line]).rstrip()
        for i in range(0, len(entries), per_line)
    ]


def matrix_table(
    report: dict[str, Any], method: str, metric: str | None = None, *, width: int | None = None
) -> tuple[RenderableType, list[str]]:
    """One method's encoder × decoder heatmap for ``metric`` (default: the main metric).

    Returns the heatmap (a table; several, one after the other, when even abbreviated it is wider
    than ``width``) and the lines to print under it: the legend of abbreviated names, then the
    reasons for failed cells (numbered ``✗1``, ``✗2``..., one line per distinct reason).
    """
    metric = choose_metric(report, metric)
    scale = scale_for(report, metric)
    matrix = report["matrices"][method]
    rows = list(cells(report, method, metric))
    numbers, failures = failure_notes(
        [
            (encoder, decoder, cell.error)
            for encoder, row in rows
            for decoder, cell in zip(matrix["columns"], row, strict=True)
            if cell.error
        ]
    )
    texts = [
        [
            f"✗{numbers[(encoder, decoder)]}"
            if cell.error
            else fmt(cell.value) + ("*" if cell.diagonal else "")
            for decoder, cell in zip(matrix["columns"], row, strict=True)
        ]
        for encoder, row in rows
    ]

    def width_with(enc: dict[str, str], dec: dict[str, str], header: str, columns: list[int]) -> int:
        return _table_width(
            [[header, *(enc[e] for e in matrix["rows"])]]
            + [[dec[matrix["columns"][j]], *(t[j] for t in texts)] for j in columns]
        )

    every = list(range(len(matrix["columns"])))
    full_enc, full_dec = ({n: n for n in names} for names in (matrix["rows"], matrix["columns"]))
    short_enc, short_dec = abbreviations(matrix["rows"], "E"), abbreviations(matrix["columns"], "D")
    # full names; else short decoders (the columns make the width); else short encoders too
    for enc_label, dec_label, header in (
        (full_enc, full_dec, "encoder \\ decoder"),
        (full_enc, short_dec, "encoder \\ decoder"),
        (short_enc, short_dec, "enc \\ dec"),
    ):
        if width is None or width_with(enc_label, dec_label, header, every) <= width:
            break
    chunks = [every]  # still too wide: as many decoders per table as fit
    if width is not None and width_with(enc_label, dec_label, header, every) > width:
        chunks = []
        for j in every:
            if chunks and width_with(enc_label, dec_label, header, [*chunks[-1], j]) <= width:
                chunks[-1].append(j)
            else:
                chunks.append([j])

    title = f"{method_title(report, method)} · {metric} {arrow(direction_of(report, metric))}"
    tables = []
    for n, chunk in enumerate(chunks):
        heading = title if n == 0 else f"{title} (continued)"
        # at least as wide as its title (within the width), so that rich does not wrap the title over two
        # lines
        table = Table(
            title=heading, title_justify="left", min_width=min(cell_len(heading), width or cell_len(heading))
        )
        table.add_column(header, style="bold", no_wrap=True)
        for j in chunk:
            table.add_column(Text(dec_label[matrix["columns"][j]]), justify="right", no_wrap=True)
        for (encoder, row), row_texts in zip(rows, texts, strict=True):
            rendered: list[Text] = []
            for j in chunk:
                cell, text = row[j], row_texts[j]
                if cell.error:
                    rendered.append(Text(text, style="dim"))
                    continue
                position = scale.position(cell.value)
                style = (
                    ""
                    if position is None
                    else f"{ink_for(rgb := heat_rgb(position))} on rgb({rgb[0]},{rgb[1]},{rgb[2]})"
                )
                rendered.append(
                    Text(text if cell.present else "", style=style + (" bold" if cell.diagonal else ""))
                )
            table.add_row(Text(enc_label[encoder]), *rendered)
        tables.append(table)

    legend: list[str] = []
    groups = group_names(report)
    for names, mapping, role in (
        (matrix["rows"], enc_label, "encoders"),
        (matrix["columns"], dec_label, "decoders"),
    ):
        items = {item["name"]: item for item in report[role]}
        entries = []
        for name in names:
            if mapping[name] == name:
                continue
            item = items.get(name, {})
            seed = "" if item.get("seed") is None else f", seed {item['seed']}"
            entries.append(
                f"{mapping[name]} = {name} ({groups.get(item.get('group'), item.get('group') or '?')}{seed})"
            )
        legend += packed(entries, width)
    return (tables[0] if len(tables) == 1 else Group(*tables)), legend + failures


def _rows_by_method(
    report: dict[str, Any], metric: str
) -> tuple[list[str], list[str], dict[str, dict[str, Any]]]:
    """Methods, settings present, and ``{method: {setting: the pooled (all → all) aggregate row}}``."""
    pooled: dict[str, dict[str, Any]] = {}
    for method, setting, by_group in aggregate_rows(report, metric):
        if (ALL, ALL) in by_group:
            pooled.setdefault(method, {})[setting] = by_group[(ALL, ALL)]
    settings = [s for s in SETTINGS if any(s in row for row in pooled.values())]
    return list(pooled), settings, pooled


def summary_table(
    report: dict[str, Any], metric: str | None = None, *, width: int | None = None, note: str | None = None
) -> Group:
    """The short summary: a row per method, a column per setting, each cell mean ± std (n) over every pair.

    Settings: not stitched (the diagonal), stitched, and stitched (cross-space) — an encoder trained
    with the other bottleneck. ``note`` is added to the title. When that does not fit in ``width``,
    the same numbers come one setting per row, and on a very narrow screen as plain lines.
    """
    metric = choose_metric(report, metric)
    methods, settings, pooled = _rows_by_method(report, metric)
    title = f"{metric} {arrow(direction_of(report, metric))}: mean ± std (n) over pairs" + (
        f" · {note}" if note else ""
    )
    wide = [[method, *(mean_std(pooled[method].get(s)) for s in settings)] for method in methods]
    for header in (["method", *settings], ["method", *(s.replace(" (", "\n(") for s in settings)]):
        if _fits(header, wide, width):  # the settings on one line, else "(cross-space)" under "stitched"
            return _plain_table(title, header, wide, numeric_from=1)
    header = ["method", "setting", "mean ± std (n)"]
    long = [
        [method, s, mean_std(pooled[method][s])]
        for method in methods
        for s in settings
        if s in pooled[method]
    ]
    if _fits(header, long, width):
        return _plain_table(title, header, long, numeric_from=2)
    lines = [Text(title)]
    for method in methods:
        lines.append(Text(method, style="bold"))
        lines += [Text(f"  {s}: {mean_std(pooled[method][s])}") for s in settings if s in pooled[method]]
    return Group(*lines)


def _plain_table(title: str, header: list[str], body: list[list[str]], *, numeric_from: int) -> Group:
    """The title line, then a table of plain texts (never read as markup): the first column bold, numbers from
    ``numeric_from`` right-aligned. The title is a line of its own, so a long one wraps at the console's
    width, not the table's, and never widens the table."""
    table = Table()
    for i, name in enumerate(header):
        numeric = i >= numeric_from
        table.add_column(
            Text(name),
            style="bold" if i == 0 else "",
            justify="right" if numeric else "left",
            no_wrap=numeric,
        )
    for row in body:
        table.add_row(*(Text(cell) for cell in row))
    return Group(Text(title), table)


def aggregate_table(report: dict[str, Any], metric: str | None = None, *, width: int | None = None) -> Group:
    """The breakdown by group (``--by-group``): method × setting rows, a column per encoder group → decoder
    group (``all`` pools them), groups shown by their short names.

    When that does not fit in ``width``, the same numbers come one group pair per row instead, and on
    a very narrow screen as plain lines.
    """
    metric = choose_metric(report, metric)
    columns = group_pairs(report, metric)
    names = group_names(report)
    rows = aggregate_rows(report, metric)
    title = f"{metric} {arrow(direction_of(report, metric))}: mean ± std (n) by encoder group → decoder group"
    header = ["method", "setting", *(group_label(p, names) for p in columns)]
    wide = [
        [method, setting, *(mean_std(by_group.get(pair)) for pair in columns)]
        for method, setting, by_group in rows
    ]
    if _fits(header, wide, width):
        return _plain_table(title, header, wide, numeric_from=2)
    header = ["method", "setting", "groups", "mean ± std (n)"]
    long = [
        [method, setting, group_label(pair, names), mean_std(by_group[pair])]
        for method, setting, by_group in rows
        for pair in columns
        if pair in by_group
    ]
    if _fits(header, long, width):
        return _plain_table(title, header, long, numeric_from=3)
    pad = max(cell_len(group_label(p, names)) for p in columns)
    lines = [Text(title)]
    for method, setting, by_group in rows:
        lines.append(Text(f"{method} · {setting}", style="bold"))
        lines += [
            Text(f"  {group_label(p, names):<{pad}}  {mean_std(by_group[p])}")
            for p in columns
            if p in by_group
        ]
    return Group(*lines)


def main_score_line(report: dict[str, Any]) -> str:
    score = report["main_score"]
    if score["value"] is None:
        return f"main score: none (no stitched {score['method'] or ''} pairs)".replace("  ", " ")
    return (
        f"main score: {score['metric']} {arrow(score['direction'])} {fmt(score['value'])} — mean over "
        f"{score['n']} stitched {score['method']} pair{'s' if score['n'] != 1 else ''}"
    )


def print_report(
    console: Console, report: dict[str, Any], metric: str | None = None, *, by_group: bool = False
) -> None:
    """Everything a terminal shows: every method's heatmap, the summary, the baselines, the main score.

    ``by_group`` adds the breakdown by encoder group → decoder group after the summary; without it,
    the summary's title says how to ask for it (when the run has more than one group pair).
    """
    metric = choose_metric(report, metric)
    for method in report["methods"]:
        table, notes = matrix_table(report, method, metric, width=console.width)
        console.print(table)
        for note in notes:  # one line each, never wrapped by rich: names and paths stay whole for grep
            console.print(Text(note, style="dim"), soft_wrap=True)
    console.print(Text(CAPTION, style="dim"))
    if (controls := control_note(report)) is not None:
        console.print(Text(controls, style="dim"))
    if (renamed := renamed_note(report)) is not None:
        console.print(Text(renamed, style="dim"), soft_wrap=True)
    if report["aggregate"]:  # empty when every pair failed
        several = len(group_pairs(report, metric)) > 1
        console.print(
            summary_table(
                report, metric, width=console.width, note=BY_GROUP_HINT if several and not by_group else None
            )
        )
        if by_group:
            console.print(aggregate_table(report, metric, width=console.width))
    if (baselines := baseline_line(report)) is not None:  # right above the main score it judges
        console.print(Text(baselines))
    console.print(Text(main_score_line(report)))
