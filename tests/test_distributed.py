"""Scale-out: ``encode`` data-parallel under torchrun (2 CPU processes, gloo) equals a single-process run.

Real processes: ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m relstitch encode ...``,
exactly what the README tells a user to type (``torchrun`` is that module's console script).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENCODER = REPO / "checkpoints" / "cnn-rel-s0.encoder.safetensors"


def relstitch(*args: str, processes: int = 1) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command = (launcher if processes > 1 else [sys.executable]) + ["-m", "relstitch", *map(str, args)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


@pytest.mark.parametrize("limit,batch", [(300, 64), (1000, 256)])
def test_two_process_encode_equals_single_process_byte_for_byte(tmp_path, limit, batch):
    common = ("encode", ENCODER, "--limit", limit, "--batch-size", batch, "--device", "cpu")
    one = relstitch(*common, "-o", tmp_path / "one.safetensors")
    assert one.returncode == 0, one.stderr
    two = relstitch(*common, "-o", tmp_path / "two.safetensors", processes=2)
    assert two.returncode == 0, two.stderr
    assert "by 2 processes" in " ".join(two.stdout.split())  # it really ran as two ranks, and only rank 0 printed
    assert two.stdout.count("wrote") == 1
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "two.safetensors").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.safetensors", "two.safetensors"]  # no temp left


def test_two_process_encode_refuses_an_existing_output_on_every_rank(tmp_path):
    out = tmp_path / "e.safetensors"
    out.write_bytes(b"keep me")
    run = relstitch("encode", ENCODER, "--limit", 50, "--device", "cpu", "-o", out, processes=2)
    assert run.returncode != 0 and "already exists" in run.stderr
    assert out.read_bytes() == b"keep me" and list(tmp_path.iterdir()) == [out]
