"""Output people can read: the main job fits one screen, group names are short, tables fit the terminal,
progress shows on a terminal and stays out of pipes."""

from __future__ import annotations

import ast
import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

from relstitch.cli import app
from relstitch.matrix import MatrixResult
from relstitch.progress import silent, terminal_bar, unit_of
from relstitch.reports import build_report, load_report, print_report
from relstitch.reports.common import group_names, short_group
from relstitch.results import PairResult

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "checkpoints"
MAX_LINES, COLUMNS = 50, 100
RELSTITCH = [sys.executable, "-m", "relstitch"]


def plain_env(**extra: str) -> dict[str, str]:
    """The environment of a plain shell: no colour forced, no width inherited from the test runner."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")
    }
    return env | extra


def rendered(report: dict, width: int, *, by_group: bool = False) -> list[str]:
    """What a ``width``-column terminal without colour shows, lines stripped of rich's padding."""
    console = Console(file=io.StringIO(), width=width, color_system=None)
    print_report(console, report, by_group=by_group)
    return [line.rstrip() for line in console.file.getvalue().splitlines()]


def widest(lines: list[str]) -> int:
    return max(cell_len(line) for line in lines)


# --------------------------------------------------------------------------- the shipped main job
@pytest.fixture(scope="module")
def main_job() -> dict:
    """``relstitch eval-matrix`` with no arguments, as a user types it: a subprocess, COLUMNS=100, output
    piped."""
    run = subprocess.run(
        [*RELSTITCH, "eval-matrix"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=plain_env(COLUMNS=str(COLUMNS)),
    )
    assert run.returncode == 0, run.stderr
    return {"stdout": run.stdout, "stderr": run.stderr}


@pytest.fixture(scope="module")
def zoo_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same run in-process (typer's CliRunner, COLUMNS=100), with its JSON report kept."""
    out = tmp_path_factory.mktemp("zoo") / "r.json"
    with pytest.MonkeyPatch.context() as mp:
        # rich reads COLUMNS when a Console is made: one made now, whatever COLUMNS the test runner had at
        # import
        mp.setenv("COLUMNS", str(COLUMNS))
        mp.setattr("relstitch.cli.console", Console())
        result = CliRunner().invoke(
            app, ["eval-matrix", "--json", str(out)], env={"COLUMNS": str(COLUMNS)}, catch_exceptions=False
        )
    assert result.exit_code == 0, result.stderr
    return {"stdout": result.stdout, "path": out, "report": load_report(out)}


@pytest.mark.slow  # the CLI in a subprocess
def test_the_main_job_fits_one_screen_at_100_columns(main_job):
    lines = [line.rstrip() for line in main_job["stdout"].splitlines()]  # rich pads lines to the table width
    assert len(lines) <= MAX_LINES, main_job["stdout"]
    assert widest(lines) <= COLUMNS, main_job["stdout"]
    text = main_job["stdout"]
    # one heatmap per method, the summary with both methods in every setting, the main score last
    assert [line for line in lines if " · accuracy ↑" in line and "mean" not in line] == [
        "relative · accuracy ↑",
        "absolute · accuracy ↑",
    ]
    header = next(line for line in lines if line.startswith("┃ method"))
    assert header.index("not stitched") < header.index(" stitched ┃") < header.index("stitched (cross-space)")
    for method in ("relative", "absolute"):
        row = next(line for line in lines if line.startswith(f"│ {method} "))
        assert row.count("±") == 3 and row.count("(n=") == 3, row
    assert lines[-1].startswith("main score: accuracy ↑ ") and "stitched relative pairs" in lines[-1]
    # the breakdown by group only on request
    assert "→" not in text and "by encoder group" not in text and "--by-group" in text
    assert main_job["stderr"] == ""  # a pipe gets no progress bar, no warnings


@pytest.mark.slow  # the CLI in a subprocess
def test_the_same_run_in_process_and_in_a_100_column_console(zoo_report, main_job):
    shown = zoo_report["stdout"].splitlines()
    assert shown[-1] == f"wrote {zoo_report['path']}"
    assert len(shown) <= MAX_LINES and widest(shown) <= COLUMNS, zoo_report["stdout"]
    lines = rendered(zoo_report["report"], COLUMNS)
    assert len(lines) <= MAX_LINES and widest(lines) <= COLUMNS
    assert lines == [
        line.rstrip() for line in main_job["stdout"].splitlines()
    ]  # the saved report re-renders the same


@pytest.mark.parametrize("width", [60, 80, 100])
@pytest.mark.parametrize("by_group", [False, True])
def test_no_line_of_the_shipped_report_is_wider_than_the_terminal(zoo_report, width, by_group):
    lines = rendered(zoo_report["report"], width, by_group=by_group)
    assert widest(lines) <= width, "\n".join(lines)
    assert ("cnn→mlp" in "\n".join(lines)) is by_group


@pytest.mark.parametrize("width", [60, 80, 100])
def test_the_main_job_with_its_baselines_still_fits(zoo_report, width):
    """The baselines line (chance and majority class of the built-in test set) above the main score: within
    the width, and the whole at 100 columns still within one screen."""
    from relstitch.data import load_dataset
    from relstitch.reports.document import label_baselines

    data = load_dataset("builtin:test")
    report = zoo_report["report"] | {"baselines": label_baselines(data.y.tolist(), data.classes)}
    lines = rendered(report, width)
    assert widest(lines) <= width, "\n".join(lines)
    if width == COLUMNS:
        assert len(lines) <= MAX_LINES - 1, "\n".join(lines)  # and a line left for eval-matrix's "wrote"
        baselines = "accuracy baselines: chance 0.100 (10 classes), majority class 0.100 (T-shirt/top)"
        assert lines[-2] == baselines and lines[-1].startswith("main score: ")


def test_by_group_on_report_and_eval_matrix(zoo_report, tmp_path):
    runner = CliRunner()
    plain = runner.invoke(app, ["report", str(zoo_report["path"])], env={"COLUMNS": "100"})
    grouped = runner.invoke(app, ["report", str(zoo_report["path"]), "--by-group"], env={"COLUMNS": "100"})
    assert plain.exit_code == grouped.exit_code == 0
    assert "cnn→cnn" not in plain.stdout and "by encoder group → decoder group" not in plain.stdout
    assert "by encoder group → decoder group" in grouped.stdout
    for pair in ("cnn→cnn", "cnn→mlp", "mlp→cnn", "mlp→mlp"):
        assert pair in grouped.stdout, pair
    saved = tmp_path / "t.txt"
    assert (
        runner.invoke(app, ["report", str(zoo_report["path"]), "--by-group", "-o", str(saved)]).exit_code == 0
    )
    assert "cnn→mlp" in saved.read_text() and widest(saved.read_text().splitlines()) <= 100
    # eval-matrix --by-group, on a small matrix
    args = ["eval-matrix", "--limit", "100"]
    for name in ("cnn-rel-s0", "mlp-rel-s0"):
        args += [
            "-e",
            str(ZOO / f"{name}.encoder.safetensors"),
            "-D",
            str(ZOO / f"{name}.decoder.safetensors"),
        ]
    small = runner.invoke(app, [*args, "--by-group"], env={"COLUMNS": "100"})
    assert small.exit_code == 0, small.stderr
    assert "cnn→mlp" in small.stdout and "mlp→cnn" in small.stdout
    assert "--by-group" in runner.invoke(app, ["eval-matrix", "--help"]).stdout
    assert "--by-group" in runner.invoke(app, ["report", "--help"]).stdout


# ---------------------------------------------------------------------------------- group names
@pytest.mark.parametrize(
    ("label", "short"),
    [
        ("hf:bert-L6-H384", "bert-L6"),
        ("hf:mpnet-L12-H768", "mpnet-L12"),
        ("hf:xlm-roberta-L12-H768", "xlm-roberta-L12"),
        ("hf:model", "model"),
        ("cnn", "cnn"),
        ("mlp", "mlp"),
        ("torchvision:resnet18", "resnet18"),
        ("python:pkg.models:small_cnn", "small_cnn"),
        ("absnet", "absnet"),
    ],
)
def test_short_group_names(label, short):
    assert short_group(label) == short


def synthetic(architectures: dict[str, str], *, decoders: list[str] | None = None) -> dict:
    """A report of relative models named after their architecture label, every encoder with every decoder."""
    names = list(architectures)
    decoders = names if decoders is None else decoders
    hashes = {name: f"{i:064x}" for i, name in enumerate(names, 1)}
    enc = [
        {
            "name": n,
            "path": f"{n}.e",
            "hash": hashes[n],
            "latent_dim": 8,
            "trained_space": "relative",
            "architecture": architectures[n],
            "seed": 0,
            "encode_seconds": 0.1,
        }
        for n in names
    ]
    dec = [
        {
            "name": n,
            "path": f"{n}.d",
            "hash": f"{i:064x}".replace("0", "d", 1),
            "space": "relative",
            "input_dim": 4,
            "encoder_hash": hashes[n],
            "anchor_hash": "e" * 64,
            "projection": {"similarity": "cosine"},
            "architecture": "text-head",
            "seed": 0,
        }
        for i, n in enumerate(decoders, 100)
    ]
    pairs = [
        PairResult(
            e,
            d,
            "relative",
            e != d,
            {"accuracy": 0.5 + 0.3 * (e == d) + 0.001 * i},
            seconds=0.01,
            encoder_space="relative",
        )
        for i, (e, d) in enumerate((e, d) for e in names for d in decoders)
    ]
    result = MatrixResult(
        enc,
        dec,
        pairs,
        "classification",
        "accuracy",
        {"path": "a.st", "hash": "e" * 64, "count": 4, "strategy": "uniform", "seed": 0},
        {"name": "toy", "size": 8, "hash": "f" * 64},
        {"total_seconds": 1.0},
    )
    return build_report(result, config={"data": "toy", "limit": None, "batch_size": 8})


def test_hf_groups_are_shown_short_and_only_with_by_group():
    report = synthetic(
        {"minilm-a": "hf:bert-L6-H384", "minilm-b": "hf:bert-L6-H384", "mpnet": "hf:mpnet-L12-H768"}
    )
    assert {e["group"] for e in report["encoders"]} == {
        "hf:bert-L6-H384",
        "hf:mpnet-L12-H768",
    }  # the data keeps the label
    plain = "\n".join(rendered(report, 100))
    grouped = "\n".join(rendered(report, 100, by_group=True))
    assert "bert-L6→mpnet-L12" in grouped and "mpnet-L12→bert-L6" in grouped and "bert-L6→bert-L6" in grouped
    assert "→" not in plain
    for text in (plain, grouped):
        assert "hf:" not in text and "H384" not in text and "H768" not in text
    legend = "\n".join(rendered(report, 40))  # abbreviated names: the legend says the short group
    assert "E1 = minilm-a (bert-L6, seed 0)" in legend and "E3 = mpnet (mpnet-L12, seed 0)" in legend


def test_short_group_names_never_merge_two_groups():
    report = synthetic({"a": "hf:bert-L2-H32", "b": "hf:bert-L2-H48", "c": "hf:mpnet-L12-H768", "d": "cnn"})
    assert group_names(report) == {
        "hf:bert-L2-H32": "bert-L2-H32",
        "hf:bert-L2-H48": "bert-L2-H48",
        "hf:mpnet-L12-H768": "mpnet-L12",
        "cnn": "cnn",
    }
    grouped = "\n".join(rendered(report, 120, by_group=True))
    assert "bert-L2-H32→bert-L2-H48" in grouped and "hf:" not in grouped


@pytest.mark.parametrize("width", [60, 80, 100])
def test_a_wide_matrix_is_abbreviated_then_split_never_wider_than_the_terminal(width):
    names = [f"hf-model-with-a-long-name-{i}" for i in range(14)]
    report = synthetic({n: f"hf:bert-L{i % 3 + 2}-H{64 * (i % 2 + 1)}" for i, n in enumerate(names)})
    for by_group in (False, True):
        lines = rendered(report, width, by_group=by_group)
        assert widest(lines) <= width, "\n".join(lines)
    lines = rendered(report, width)
    # two groups whose short names would be one keep their width: bert-L3-H128 and bert-L3-H64
    assert any("D14 = hf-model-with-a-long-name-13 (bert-L3-H128, seed 0)" in line for line in lines)
    # every cell is shown once, in one table or another: 14 × 14 values, the diagonal marked
    rows = [
        line for line in lines if line.startswith("│") and "±" not in line
    ]  # the heatmaps' rows, not the summary's
    assert sum(len(re.findall(r"\d\.\d{3}", line)) for line in rows) == 14 * 14
    assert sum(line.count("*") for line in rows) == 14


# ------------------------------------------------------------------------------------- progress
def test_progress_callback_draws_only_on_a_terminal():
    drawn = Console(file=io.StringIO(), force_terminal=True, width=120)
    with terminal_bar(drawn) as progress:
        assert progress is not silent
        progress("cnn-rel-s0: data", 250, 1000)
    text = drawn.file.getvalue()
    assert "cnn-rel-s0: data" in text and "250/1000" in text and "samples/s" in text
    training = Console(file=io.StringIO(), force_terminal=True, width=120)
    with terminal_bar(training) as progress:
        progress("training cnn", 1, 80)
    assert "1/80" in training.file.getvalue() and "steps/s" in training.file.getvalue()
    odd = Console(file=io.StringIO(), force_terminal=True, width=120)
    with terminal_bar(odd) as progress:  # a model's name is text, never markup
        progress("[/bold]odd[x]: data", 5, 10)
    assert "[/bold]odd[x]: data" in odd.file.getvalue()
    piped = Console(file=io.StringIO(), force_terminal=False)
    with terminal_bar(piped) as progress:
        assert progress is silent
        progress("cnn-rel-s0: data", 250, 1000)
    assert piped.file.getvalue() == ""
    assert unit_of("training x") == unit_of("fitting x") == "steps" and unit_of("x: data") == "samples"


def _encode_command(tmp_path: Path) -> list[str]:
    return [
        *RELSTITCH,
        "encode",
        str(ZOO / "cnn-rel-s0.encoder.safetensors"),
        "-o",
        str(tmp_path / "e.safetensors"),
        "--batch-size",
        "16",
        "--force",
    ]


@pytest.mark.slow  # the CLI in a subprocess
def test_progress_is_silent_in_a_pipe(tmp_path):
    run = subprocess.run(
        _encode_command(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=300, env=plain_env()
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == "" and run.stdout.startswith("wrote ")


@pytest.mark.slow  # the CLI in a subprocess
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminals as on Linux")
def test_progress_shows_on_a_terminal(tmp_path):
    """stderr a pseudo-terminal (as in an interactive shell), stdout a pipe: the bar goes to stderr only."""
    main, child = pty.openpty()
    process = subprocess.Popen(
        _encode_command(tmp_path),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=child,
        env=plain_env(COLUMNS="120", TERM="xterm-256color"),
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    stdout = process.stdout.read().decode()
    assert process.wait(timeout=300) == 0
    drawn = b"".join(chunks).decode("utf-8", "replace")
    assert "cnn-rel-s0: data" in drawn and "samples/s" in drawn and "/1000" in drawn, drawn
    assert stdout.startswith("wrote ") and "samples/s" not in stdout


def test_every_long_verb_draws_progress():
    """The verbs that run an encoder or train pass the CLI's progress callback down (see the report to the
    lead for stitch and anchors --space-encoder, whose library calls take no callback yet)."""
    tree = ast.parse((REPO / "relstitch" / "cli.py").read_text())
    uses = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and any(
            isinstance(n, ast.Call) and getattr(n.func, "id", None) == "progress_bar" for n in ast.walk(node)
        )
    }
    assert {"encode", "eval_matrix", "compare", "train", "fit"} <= uses, uses
