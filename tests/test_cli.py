"""The command line as a Unix tool: output piped into a reader that goes away (``relstitch ... | head``).

Each command runs in its own process, its stdout a real pipe whose reading end is closed before the
command writes: every write then fails with EPIPE, as it does once ``head`` has read its lines.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relstitch.cli import BROKEN_PIPE_EXIT

REPO = Path(__file__).resolve().parent.parent


def into_a_closed_pipe(*args: object, cwd: Path) -> tuple[int, str]:
    """Run ``relstitch ARGS`` with nobody reading its stdout; its exit status and what it said on stderr."""
    command = [sys.executable, "-m", "relstitch", *map(str, args)]
    with subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first line is written
        stderr = proc.stderr.read().decode()
        return proc.wait(timeout=300), stderr


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", REPO / "checkpoints" / "anchors.safetensors"],  # rich tables
        ["inspect", REPO / "checkpoints" / "anchors.safetensors", "--json"],  # plain echo
        ["eval-matrix", "--help"],  # click's own help
    ],
    ids=["table", "json", "help"],
)
def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path, args: list[object]) -> None:
    code, stderr = into_a_closed_pipe(*args, cwd=tmp_path)
    assert (code, stderr) == (BROKEN_PIPE_EXIT, "")


@pytest.mark.slow
def test_eval_matrix_into_head_writes_its_reports_and_exits_quietly(tmp_path: Path, tiny_zoo) -> None:
    """`relstitch eval-matrix --json r.json | head`: no message, 128 + SIGPIPE as a shell reports for Unix
    tools, and the report (written before the table) is whole."""
    import json

    report = tmp_path / "r.json"
    code, stderr = into_a_closed_pipe(
        "eval-matrix",
        "-e",
        tiny_zoo.encoder("cnn-rel-s0"),
        "-D",
        tiny_zoo.decoder("cnn-rel-s1"),
        "-a",
        tiny_zoo.anchors_path,
        "--limit",
        50,
        "--json",
        report,
        cwd=tmp_path,
    )
    assert (code, stderr) == (BROKEN_PIPE_EXIT, "")
    assert json.loads(report.read_text())["pairs"][0]["error"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind
