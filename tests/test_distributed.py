"""Scale-out: ``encode`` data-parallel under torchrun (2 CPU processes, gloo) equals a single-process run.

Real processes: ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m relstitch encode ...``,
exactly what docs/performance.md tells a user to type (``torchrun`` is that module's console script).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # torchrun subprocesses: CI runs it, the edit-test loop skips it

REPO = Path(__file__).resolve().parent.parent
ENCODER = REPO / "checkpoints" / "cnn-rel-s0.encoder.safetensors"


def relstitch(*args: str, processes: int = 1) -> subprocess.CompletedProcess:
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
    ]
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
    assert "by 2 processes" in " ".join(
        two.stdout.split()
    )  # it really ran as two ranks, and only rank 0 printed
    assert two.stdout.count("wrote") == 1
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "two.safetensors").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "one.safetensors",
        "two.safetensors",
    ]  # no temp left


def test_two_process_encode_refuses_an_existing_output_on_every_rank(tmp_path):
    out = tmp_path / "e.safetensors"
    out.write_bytes(b"keep me")
    run = relstitch("encode", ENCODER, "--limit", 50, "--device", "cpu", "-o", out, processes=2)
    assert run.returncode != 0 and "already exists" in run.stderr
    assert out.read_bytes() == b"keep me" and list(tmp_path.iterdir()) == [out]


def test_two_process_auto_batch_size_equals_a_single_process_run(tmp_path):
    """``--batch-size auto``: rank 0 picks the size (probed on the CPU) and every rank uses it."""
    common = ("encode", ENCODER, "--limit", 600, "--device", "cpu")
    one = relstitch(*common, "-o", tmp_path / "one.safetensors")
    two = relstitch(*common, "--batch-size", "auto", "-o", tmp_path / "two.safetensors", processes=2)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr, two.stderr)
    assert "batch 256 (auto)" in " ".join(two.stdout.split())
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "two.safetensors").read_bytes()


RANK_SCRIPT = """
import sys
from relstitch.anchors import load_anchors
from relstitch.checkpoints import load_encoder
from relstitch.data import load_dataset
from relstitch.distributed import from_env
from relstitch.errors import RelstitchError
from relstitch.streaming import encode_to_file

group = from_env("cpu")
try:
    encode_to_file(
        load_encoder(sys.argv[1]),
        load_anchors(sys.argv[2]),
        load_dataset("builtin:test", limit=50),
        sys.argv[3],
        batch_size=0,
        group=group,
    )
except RelstitchError as exc:
    print(f"rank {group.rank}: {exc}")
    sys.exit(1)
finally:
    group.close()
"""


def test_a_batch_size_refused_on_rank_0_stops_every_rank(tmp_path):
    """The size is decided on rank 0 and broadcast: its refusal must reach the other ranks, not leave them
    waiting."""
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "e.safetensors"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(script),
        str(ENCODER),
        str(REPO / "checkpoints" / "anchors.safetensors"),
        str(out),
    ]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)),
    )
    assert run.returncode != 0
    for rank in (0, 1):
        assert f"rank {rank}: batch size must be a positive integer or 'auto'" in run.stdout, (
            run.stdout + run.stderr
        )
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["ranks.py"]
