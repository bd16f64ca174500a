"""Scale-out: ``encode`` data-parallel under torchrun (2 CPU processes, gloo) equals a single-process run.

Real processes: ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m relstitch encode ...``,
exactly what docs/PERFORMANCE.md tells a user to type (``torchrun`` is that module's console script).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # torchrun subprocesses: CI runs it, the edit-test loop skips it

REPO = Path(__file__).resolve().parent.parent
ENCODER = REPO / "checkpoints" / "cnn-rel-s0.encoder.safetensors"


def relstitch(*args: str, processes: int = 1, **env: str) -> subprocess.CompletedProcess:
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
    ]
    command = (launcher if processes > 1 else [sys.executable]) + ["-m", "relstitch", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env}
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


# ------------------------------------------------------------------------- eval-matrix under torchrun
def results(path: Path) -> tuple[str, dict]:
    """A report's results as bytes (everything but ``run``), and its ``run`` section."""
    report = json.loads(path.read_text())
    return json.dumps({k: v for k, v in report.items() if k != "run"}, sort_keys=True), report["run"]


def test_two_process_eval_matrix_equals_a_single_process_run(tmp_path):
    """Rank r encodes encoders r, r+2, ... into the per-run folder; rank 0 scores every pair: the same
    report, results byte for byte, and the per-run folder gone once the report is written."""
    xdg = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    one = relstitch("eval-matrix", "--limit", 300, "--json", tmp_path / "one.json", **xdg)
    assert one.returncode == 0, one.stderr
    two = relstitch("eval-matrix", "--limit", 300, "--json", tmp_path / "two.json", processes=2, **xdg)
    assert two.returncode == 0, two.stderr
    (single, run1), (double, run2) = results(tmp_path / "one.json"), results(tmp_path / "two.json")
    assert double == single
    assert run1["world_size"] == 1 and run2["world_size"] == 2
    assert two.stdout.count("wrote") == 1 and two.stdout.count("main score") == 1  # rank 0 alone prints
    assert list((tmp_path / "xdg" / "relstitch" / "runs").iterdir()) == []


def test_a_failing_encoder_on_one_rank_is_its_failed_row_and_no_rank_waits(tmp_path):
    """One broken encoder among four, on rank 1: its row fails with the single process's reason, rank 0
    writes the report, every rank ends (no timeout), the exit status is a single process's (1)."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    names = ["cnn-rel-s0", "broken", "cnn-rel-s1", "cnn-abs-s0"]
    for name in names:
        target = zoo / f"{name}.encoder.safetensors"
        if name == "broken":
            target.write_bytes(b"not a safetensors file")
        else:
            target.write_bytes((REPO / "checkpoints" / f"{name}.encoder.safetensors").read_bytes())
    args: list = ["eval-matrix", "--limit", 200]
    for name in names:
        args += ["-e", zoo / f"{name}.encoder.safetensors"]
    args += [
        "-D",
        REPO / "checkpoints" / "cnn-rel-s0.decoder.safetensors",
        "-a",
        ENCODER.parent / "anchors.safetensors",
    ]
    one = relstitch(*args, "--json", tmp_path / "one.json", "--cache", tmp_path / "cache1")
    two = relstitch(*args, "--json", tmp_path / "two.json", "--cache", tmp_path / "cache2", processes=2)
    assert one.returncode == 1 and two.returncode == 1, (one.stderr, two.stderr)
    assert "error: 1 of 4 pairs failed" in one.stderr and "error: 1 of 4 pairs failed" in two.stderr
    (single, _), (double, run2) = results(tmp_path / "one.json"), results(tmp_path / "two.json")
    assert double == single and run2["world_size"] == 2
    report = json.loads((tmp_path / "two.json").read_text())
    assert [e["name"] for e in report["encoders"] if e.get("error")] == ["broken"]
    assert [
        p.name for p in (tmp_path / "cache2").iterdir() if p.name.startswith(".")
    ] == []  # no records left


def test_spare_ranks_split_an_encoders_data_and_the_report_equals_one_process(tmp_path):
    """Two ranks, one encoder: both encode it, each a shard of whole batches, into its one cache entry;
    rank 0 scores it. The results are a single process's byte for byte; the report says who encoded it."""
    args: list = ["eval-matrix", "-e", ENCODER, "--limit", 300, "--batch-size", 64]
    for name in ("cnn-rel-s0", "cnn-rel-s1"):
        args += ["-D", REPO / "checkpoints" / f"{name}.decoder.safetensors"]
    xdg = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    one = relstitch(*args, "--json", tmp_path / "one.json", **xdg)
    two = relstitch(*args, "--json", tmp_path / "two.json", processes=2, **xdg)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr, two.stderr)
    (single, run1), (double, run2) = results(tmp_path / "one.json"), results(tmp_path / "two.json")
    assert double == single
    assert run2["encoder_ranks"] == {"cnn-rel-s0": [0, 1]} and "encoder_ranks" not in run1
    assert list((tmp_path / "xdg" / "relstitch" / "runs").iterdir()) == []


PICKY = '''
from torch import nn


class Picky(nn.Module):
    """Refuses a batch of 36: with 100 samples in batches of 64, only the second shard's batch."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 16))

    def forward(self, x):
        if len(x) == 36 and self.mode == "raise":
            raise RuntimeError("picky refuses a batch of 36")
        z = self.net(x)
        if len(x) == 36:  # "nan": the sixth row of that batch has no value
            z[5] = float("nan")
        return z


def build(mode="raise"):
    model = Picky()
    model.mode = mode
    return model
'''


@pytest.mark.parametrize(
    "mode,reason", [("raise", "picky refuses a batch of 36"), ("nan", "the first at index [69, 0]")]
)
def test_an_encoder_that_fails_on_one_ranks_shard_fails_its_row_and_no_rank_waits(tmp_path, mode, reason):
    """The encoder fails on rank 1's shard only (its data split across both ranks): rank 0 hears of it
    instead of waiting for the shard, records the row as failed with the single process's reason (a
    non-finite latent named by its row of the whole data, not of the shard), and both ranks end with a
    single process's exit status."""
    import torch

    from relstitch.checkpoints import save_encoder
    from relstitch.data import default_image_spec

    (tmp_path / "picky_models.py").write_text(PICKY)
    sys.path.insert(0, str(tmp_path))
    try:
        import picky_models

        torch.manual_seed(0)
        save_encoder(
            picky_models.build(mode),
            tmp_path / "picky.encoder.safetensors",
            factory="picky_models:build",
            factory_kwargs={"mode": mode},
            input_spec=default_image_spec([1, 28, 28]),
        )
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("picky_models", None)
    args: list = ["eval-matrix", "--trust-code", "-e", tmp_path / "picky.encoder.safetensors"]
    args += ["-D", REPO / "checkpoints" / "cnn-rel-s0.decoder.safetensors"]
    args += ["--limit", 100, "--batch-size", 64]
    env = {"PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}", "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    one = relstitch(*args, "--json", tmp_path / "one.json", **env)
    two = relstitch(*args, "--json", tmp_path / "two.json", processes=2, **env)
    assert one.returncode == 1 and two.returncode == 1, (one.stderr, two.stderr)
    assert "error: 1 of 1 pairs failed" in two.stderr
    assert str(REPO / "relstitch") not in two.stderr  # no relstitch traceback (torchrun prints its own)
    (single, _), (double, run2) = results(tmp_path / "one.json"), results(tmp_path / "two.json")
    assert double == single and run2["encoder_ranks"] == {"picky": [0, 1]}
    report = json.loads((tmp_path / "two.json").read_text())
    assert reason in report["encoders"][0]["error"], report["encoders"][0]["error"]
