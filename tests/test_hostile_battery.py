"""The hostile-input battery (scripts/hostile_battery.py), its quick classes: code from names and name
clashes.

The battery runs the real CLI in subprocesses, a fresh folder per case; CI runs every class separately
(``python scripts/hostile_battery.py``). Here only classes 1 (names) and 3 (clash), about a minute.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses or many seconds: CI runs it, the edit-test loop skips it

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "hostile_battery.py"


@pytest.mark.skipif(
    not (REPO / "checkpoints" / "anchors.safetensors").exists(),
    reason="the battery copies the shipped checkpoints/ into each case; not present",
)
def test_hostile_battery_names_and_clashes(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "names,clash", "--json", str(results)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    failures = run.stdout.partition("\nfailing cases")[2].partition("\ntotals")[0]
    assert run.returncode == 0, (
        ("failing cases" + failures) if failures else run.stdout[-4000:] + run.stderr[-2000:]
    )
    assert results.exists()
