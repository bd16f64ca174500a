"""``--batch-size auto``: on the CPU a power of two whose activations stay under the allocator's reuse
ceiling, on CUDA a probed power of two that fits the card; bad sizes refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_checks import one_line_error
from torch import nn

from relstitch.anchors import load_anchors
from relstitch.checkpoints import load_encoder
from relstitch.components import Encoder
from relstitch.data import load_dataset
from relstitch.data.dataset import default_image_spec
from relstitch.encoding import (
    AUTO_MAX_BATCH,
    CPU_AUTO_MIN_BATCH,
    DEFAULT_BATCH,
    resolve_batch_size,
)
from relstitch.errors import RelstitchError
from relstitch.runtime import MMAP_THRESHOLD

ZOO = str(Path(__file__).resolve().parent.parent / "checkpoints")


@pytest.fixture(scope="module")
def cnn():
    return load_encoder(f"{ZOO}/cnn-rel-s0.encoder.safetensors")


def test_auto_on_the_cpu_keeps_the_default_for_a_small_encoder(cnn):
    x = load_dataset("builtin:test", limit=100).x
    assert resolve_batch_size("auto", cnn, x, device=torch.device("cpu")) == DEFAULT_BATCH
    assert resolve_batch_size(37, cnn, x) == 37


def wide_conv(channels: int) -> Encoder:
    """A real conv encoder whose first activation takes ``channels`` x 28 x 28 float32s per sample."""
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    return Encoder(module, {"name": "wide"}, default_image_spec((1, 28, 28)), channels, f"wide{channels}")


@pytest.mark.parametrize(
    ("channels", "dtype", "expected"),
    [
        (64, None, 128),  # 196 KiB a sample: 167 fit under 32 MiB
        (256, None, 32),  # 784 KiB: 41 fit
        (256, torch.bfloat16, 64),  # the same under bfloat16 autocast: half the bytes
        (2048, None, CPU_AUTO_MIN_BATCH),  # 6.1 MiB: 5 would fit, the floor is 8
    ],
)
def test_auto_on_the_cpu_keeps_each_activation_under_the_allocators_ceiling(channels, dtype, expected):
    encoder = wide_conv(channels)
    x = load_dataset("builtin:test", limit=40).x
    size = resolve_batch_size("auto", encoder, x, device=torch.device("cpu"), dtype=dtype)
    assert size == expected
    if size > CPU_AUTO_MIN_BATCH:  # the largest power of two under the ceiling, not a smaller one
        element = 2 if dtype is torch.bfloat16 else 4
        assert size * channels * 28 * 28 * element < MMAP_THRESHOLD <= 2 * size * channels * 28 * 28 * element
    assert not any(m._forward_hooks for m in encoder.module.modules())  # the probe's hooks are gone


def test_auto_on_the_cpu_runs_no_probe_for_a_single_batch():
    encoder = wide_conv(2048)
    calls = []
    encoder.module.register_forward_pre_hook(lambda module, args: calls.append(1))
    x = load_dataset("builtin:test", limit=CPU_AUTO_MIN_BATCH).x
    assert resolve_batch_size("auto", encoder, x, device=torch.device("cpu")) == DEFAULT_BATCH
    assert calls == []


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
