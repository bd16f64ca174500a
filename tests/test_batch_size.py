"""``--batch-size auto``: the default on the CPU, a probed power of two that fits the card on CUDA; bad sizes
refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_checks import one_line_error

from relstitch.anchors import load_anchors
from relstitch.checkpoints import load_encoder
from relstitch.data import load_dataset
from relstitch.encoding import AUTO_MAX_BATCH, DEFAULT_BATCH, resolve_batch_size
from relstitch.errors import RelstitchError

ZOO = str(Path(__file__).resolve().parent.parent / "checkpoints")


@pytest.fixture(scope="module")
def cnn():
    return load_encoder(f"{ZOO}/cnn-rel-s0.encoder.safetensors")


def test_auto_is_the_default_batch_on_the_cpu(cnn):
    x = load_dataset("builtin:test", limit=100).x
    assert resolve_batch_size("auto", cnn, x, device=torch.device("cpu")) == DEFAULT_BATCH
    assert resolve_batch_size(37, cnn, x) == 37


@pytest.mark.parametrize("bad", [0, -3, 2.5, "big", True])
def test_bad_sizes_are_refused(cnn, bad):
    with pytest.raises(RelstitchError, match="positive integer or 'auto'"):
        resolve_batch_size(bad, cnn, torch.zeros(4, 1, 28, 28, dtype=torch.uint8))


def test_cli_auto_writes_the_same_file_as_the_default_on_the_cpu(cli, tmp_path):
    common = [f"{ZOO}/cnn-rel-s0.encoder.safetensors", "--limit", "300", "--device", "cpu"]
    auto = cli("encode", *common, "--batch-size", "auto", "-o", str(tmp_path / "auto.safetensors"))
    assert auto.exit_code == 0, auto.output
    assert "batch 256 (auto)" in " ".join(auto.output.split())  # rich wraps long lines
    assert cli("encode", *common, "-o", str(tmp_path / "default.safetensors")).exit_code == 0
    assert (tmp_path / "auto.safetensors").read_bytes() == (tmp_path / "default.safetensors").read_bytes()


@pytest.mark.parametrize("verb", ["encode", "stitch", "eval-matrix"])
@pytest.mark.parametrize("value", ["0", "many"])
def test_cli_refuses_a_bad_batch_size_as_usage(cli, tmp_path, verb, value):
    args = {
        "encode": [f"{ZOO}/cnn-rel-s0.encoder.safetensors", "-o", str(tmp_path / "e.safetensors")],
        "stitch": [f"{ZOO}/cnn-rel-s0.encoder.safetensors", f"{ZOO}/cnn-rel-s1.decoder.safetensors"],
        "eval-matrix": [],
    }[verb]
    result = cli(verb, *args, "--batch-size", value)
    assert "--batch-size" in one_line_error(result, 2)
    assert not (tmp_path / "e.safetensors").exists()


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (the probe measures GPU memory)"
)
def test_auto_on_cuda_is_a_probed_power_of_two_and_matches_the_cpu(cnn):
    anchors, data = load_anchors(f"{ZOO}/anchors.safetensors"), load_dataset("builtin:test")
    size = resolve_batch_size("auto", cnn, data.x, device=torch.device("cuda"))
    assert (
        size & (size - 1) == 0 and DEFAULT_BATCH <= size <= AUTO_MAX_BATCH
    )  # a tiny CNN fits far more than 256
    from relstitch.encoding import encode

    on_gpu = encode(cnn, anchors, data, batch_size="auto", device=torch.device("cuda"))
    on_cpu = encode(
        load_encoder(f"{ZOO}/cnn-rel-s0.encoder.safetensors"), anchors, data, device=torch.device("cpu")
    )
    assert torch.allclose(on_gpu.relative(), on_cpu.relative(), atol=1e-4)
