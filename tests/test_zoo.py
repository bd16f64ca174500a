"""The headline on the shipped checkpoints: relative stitching works, absolute stitching does not."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean

import pytest

ZOO = Path(__file__).resolve().parent.parent / "checkpoints"


@pytest.mark.skipif(not (ZOO / "anchors.safetensors").exists(), reason="shipped checkpoints/ not present")
def test_shipped_zoo_shows_the_papers_headline(cli, tmp_path):
    out = tmp_path / "zoo.json"
    result = cli("eval-matrix", "--json", out)  # no arguments: built-in data, shipped checkpoints
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.read_text())
    encoders = {e["name"]: e for e in report["encoders"]}
    pairs = [p for p in report["pairs"] if not p["error"]]
    assert len(pairs) == len(report["pairs"]) == 64

    def accuracies(space: str, stitched: bool) -> list[float]:
        return [
            p["scores"]["accuracy"]
            for p in pairs
            if p["space"] == space
            and p["stitched"] == stitched
            and encoders[p["encoder"]]["trained_space"] == space
        ]

    diagonal = mean(accuracies("relative", False) + accuracies("absolute", False))
    relative_stitched = mean(accuracies("relative", True))
    absolute_stitched = mean(accuracies("absolute", True))
    print(
        f"\nshipped zoo on builtin:test: diagonal {diagonal:.3f}, relative stitched {relative_stitched:.3f}, "
        f"absolute stitched {absolute_stitched:.3f} (chance 0.100)"
    )
    assert relative_stitched >= 0.9 * diagonal
    assert absolute_stitched <= 0.3
