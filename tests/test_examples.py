"""examples/: the scripts run as a user runs them, and do what their docs say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_train_your_own_stitches_a_users_model_zero_shot(tmp_path: Path) -> None:
    """Two seeds of a user-defined CNN with the relative layer: stitched well above chance, and their
    checkpoints refused without --trust-code (they name a factory: code)."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH="")  # the script finds my_models beside itself, nothing else
    run = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train_your_own.py"), "--fast", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "--trust-code" in run.stdout and "mycnn-s0" in run.stdout
    report = json.loads((out / "report.json").read_text())
    pairs = report["pairs"]
    stitched = [p["scores"]["accuracy"] for p in pairs if p["stitched"]]
    own = [p["scores"]["accuracy"] for p in pairs if not p["stitched"]]
    assert len(stitched) == 2 and len(own) == 2  # the diagonal is known: decoders record their encoder
    # chance is 0.1 (10 classes); measured with --fast: not stitched 0.76-0.78, stitched 0.72-0.76
    assert min(own) > 0.65 and min(stitched) > 0.5, (own, stitched)
    # without --trust-code every checkpoint is refused, naming its factory
    refused = subprocess.run(
        [sys.executable, "-m", "relstitch", "stitch", str(out / "mycnn-s0.encoder.safetensors")]
        + [str(out / "mycnn-s1.decoder.safetensors"), "--anchors", str(out / "anchors.safetensors")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO / "examples")),
        timeout=300,
    )
    assert refused.returncode == 1
    assert "'my_models:build_encoder'" in refused.stderr and "--trust-code" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
