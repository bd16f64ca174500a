"""Interrupting `relstitch encode` half-way (Ctrl-C, SIGTERM) leaves no output and no temporary file.

A real subprocess encodes the full Fashion-MNIST training set (60,000 images, read from the IDX files
Debian ships) with a small CNN; it is signalled once its temporary file exists, i.e. in the middle of
writing. Skipped, with the reason, where the dataset is not installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from relstitch.anchors import save_anchors, select_anchors
from relstitch.architectures import create_encoder
from relstitch.checkpoints import save_encoder
from relstitch.components import Encoder
from relstitch.data import default_image_spec, load_dataset

FASHION = Path("/usr/share/datasets/fashion-mnist")
pytestmark = [
    pytest.mark.slow,  # subprocesses encoding 60,000 images: CI runs it, the edit-test loop skips it
    pytest.mark.skipif(
        not (FASHION / "train-images-idx3-ubyte.gz").exists(),
        reason=f"the full Fashion-MNIST IDX files are not installed in {FASHION}",
    ),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An (untrained: encode does not care) CNN encoder and 32 anchors, in a folder of their own."""
    folder = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    args = {"in_channels": 1, "latent_dim": 32}
    encoder = Encoder(
        create_encoder("cnn", **args).eval(),
        {"name": "cnn", "args": args},
        default_image_spec((1, 28, 28)),
        32,
        "interrupted",
    )
    anchors = select_anchors(load_dataset("builtin:train"), 32, "uniform", seed=0)
    return save_encoder(encoder, folder / "e.encoder.safetensors"), save_anchors(
        anchors, folder / "a.safetensors"
    )


def start_encode(inputs: tuple[Path, Path], out: Path) -> subprocess.Popen:
    encoder, anchors = inputs
    command = [
        sys.executable,
        "-m",
        "relstitch",
        "encode",
        str(encoder),
        "--anchors",
        str(anchors),
        "--data",
        f"idx:{FASHION}:train",
        "--batch-size",
        "64",
        "-o",
        str(out),
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )


def wait_for_temporary_file(proc: subprocess.Popen, folder: Path, limit: float = 120.0) -> Path:
    """The temporary file the writer streams into: its existence means encoding is under way."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = [p for p in folder.iterdir() if p.name.endswith(".tmp")]
        if found:
            return found[0]
        if proc.poll() is not None:
            pytest.fail(
                f"encode ended (code {proc.returncode}) before it could be interrupted: {proc.stderr.read()}"
            )
        time.sleep(0.01)
    proc.kill()
    pytest.fail("encode never started writing")


def wait_for_batches(
    proc: subprocess.Popen, temporary: Path, nbytes: int = 1 << 20, limit: float = 120.0
) -> None:
    """Until ``nbytes`` of the temporary file are on disk (its blocks, not its size: the writer may size it
    up front): batches have been written, and many more are to come. A condition, not a sleep."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if temporary.exists() and temporary.stat().st_blocks * 512 >= nbytes:
            return
        if proc.poll() is not None:
            pytest.fail(
                f"encode ended (code {proc.returncode}) before it could be interrupted: {proc.stderr.read()}"
            )
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"encode never wrote {nbytes} bytes")


@pytest.mark.parametrize(
    ("signal_number", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_an_interrupted_encode_leaves_nothing(inputs, tmp_path, signal_number, code):
    out = tmp_path / "embeddings.safetensors"
    proc = start_encode(inputs, out)
    wait_for_batches(proc, wait_for_temporary_file(proc, tmp_path))  # well inside the 938 batches
    assert proc.poll() is None, "encode finished before the signal: the test no longer interrupts anything"
    proc.send_signal(signal_number)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == [
        "error: " + ("interrupted" if code == 130 else "terminated") + "; no partial output was written"
    ]
    assert list(tmp_path.iterdir()) == [], "an output or temporary file was left behind"


def test_a_killed_encode_never_leaves_a_half_output(inputs, tmp_path):
    """SIGKILL cannot be caught: the temporary file stays, but the output path never holds half a file."""
    out = tmp_path / "embeddings.safetensors"
    proc = start_encode(inputs, out)
    temporary = wait_for_temporary_file(proc, tmp_path)
    wait_for_batches(proc, temporary)
    proc.kill()
    proc.communicate(timeout=60)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [
        temporary.name
    ]  # hidden (.name.*.tmp) and named after the output
