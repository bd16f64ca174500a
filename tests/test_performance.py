"""Behaviour behind the performance work (issue #6). Never a timed pass/fail: speed lives in bench/.

- the projection's blocks (rows, and anchors when k is large) give the unblocked numbers and fit the budget;
- the streaming embeddings writer gives the in-memory file byte for byte, and leaves nothing when interrupted;
- encoders run once per eval-matrix (counted with a real forward hook), and not at all from the cache;
- ``--device``/``--dtype``; ``relstitch --help`` and ``inspect`` import neither torch nor transformers.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relstitch.anchors import load_anchors
from relstitch.architectures.registry import ENCODERS as ENCODER_REGISTRY
from relstitch.checkpoints import load_decoder, load_encoder, save_encoder
from relstitch.components import Encoder
from relstitch.data import default_image_spec, load_dataset
from relstitch.encoding import encode, iter_embed, load_embeddings, save_embeddings
from relstitch.errors import RelstitchError
from relstitch.hygiene import check_finite
from relstitch.io.artifacts import serialize
from relstitch.io.cache import cache_path
from relstitch.matrix import eval_matrix
from relstitch.metrics import classification_scores
from relstitch.projection import (
    MIN_BLOCK_ROWS,
    ProjectionConfig,
    block_shape,
    relative_projection,
    relative_projector,
)
from relstitch.streaming import StreamWriter, batch_shard, encode_to_file

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "checkpoints"
ENCODERS = [ZOO / f"{name}.encoder.safetensors" for name in ("cnn-rel-s0", "cnn-abs-s1", "mlp-rel-s0")]
DECODERS = [ZOO / f"{name}.decoder.safetensors" for name in ("cnn-rel-s1", "mlp-rel-s1", "cnn-abs-s1")]


@pytest.fixture(scope="module")
def small_data():
    return load_dataset("builtin:test", limit=300)


@pytest.fixture(scope="module")
def zoo_anchors():
    return load_anchors(ZOO / "anchors.safetensors")


# ------------------------------------------------------------------------------------ projection
CONFIGS = [
    ProjectionConfig(),
    ProjectionConfig(centering="standard"),
    ProjectionConfig(similarity="euclidean"),
    ProjectionConfig(similarity="cosine,l1", normalization="standard"),
    ProjectionConfig(top_k=7),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe())
def test_blocked_projection_equals_unblocked(config):
    gen = torch.Generator().manual_seed(0)
    x, anchors = torch.randn(1500, 40, generator=gen), torch.randn(600, 40, generator=gen)
    whole = relative_projection(x, anchors, config, chunk_size=None, max_chunk_bytes=1 << 40)
    budget = 150_000  # far below one 256-row block of 600 anchors: forces anchor blocks where allowed
    blocked = relative_projection(x, anchors, config, chunk_size=None, max_chunk_bytes=budget)
    separable = config.normalization == "none" and not config.top_k
    fused = (
        separable and config.similarity == "cosine"
    )  # writes straight into the output: no anchor blocks needed
    rows, cols = block_shape(
        len(x),
        40,
        config.output_dim(600),
        4,
        budget,
        split_anchors=separable and not fused,
        temporaries=not fused,
    )
    assert rows < len(x)
    if separable and not fused:
        assert cols < 600  # the anchors really were split
    torch.testing.assert_close(blocked, whole, rtol=1e-6, atol=1e-6)


def test_plain_cosine_needs_no_anchor_blocks_however_many_anchors():
    # No [rows, k] temporaries: the budget only covers a copy of the rows, so k never forces a split.
    assert block_shape(10**6, 768, 10**6, 4, 256 * 1024**2, split_anchors=False, temporaries=False) == (
        87381,
        10**6,
    )
    x, anchors = torch.randn(700, 16), torch.randn(5000, 16)
    torch.testing.assert_close(
        relative_projection(x, anchors, max_chunk_bytes=16 * 64 * 4),
        relative_projection(x, anchors, chunk_size=None, max_chunk_bytes=1 << 40),
        rtol=1e-6,
        atol=1e-6,
    )


def test_projection_chunk_size_still_caps_rows():
    x, anchors = torch.randn(1000, 16), torch.randn(50, 16)
    torch.testing.assert_close(
        relative_projection(x, anchors, chunk_size=64),
        relative_projection(x, anchors, chunk_size=None),
        rtol=1e-6,
        atol=1e-6,
    )
    assert block_shape(1000, 16, 50, 4, 1 << 30, 64) == (64, 50)


def test_projection_keeps_gradients_through_blocks():
    x = torch.randn(300, 8, requires_grad=True)
    relative_projection(x, torch.randn(20, 8), max_chunk_bytes=1000).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 10**7),
    d=st.integers(1, 4096),
    width=st.integers(1, 10**5),
    budget=st.integers(10**5, 10**9),
)
def test_block_shape_fits_the_budget(n, d, width, budget):
    rows, cols = block_shape(n, d, width, 4, budget)
    assert 1 <= rows <= n and 1 <= cols <= width
    if rows * 4 * (d + 3 * cols) > budget:
        # Only when even one minimal block cannot fit: a single anchor column per block of rows.
        assert cols == 1 and rows <= MIN_BLOCK_ROWS


def test_block_shape_refuses_a_non_positive_budget():
    with pytest.raises(RelstitchError, match="max_chunk_bytes"):
        block_shape(10, 4, 4, 4, 0)


# ------------------------------------------------------------------------------------- streaming
@pytest.mark.parametrize(
    "config",
    [ProjectionConfig(), ProjectionConfig(similarity="cosine,euclidean", normalization="l2")],
    ids=lambda c: c.describe(),
)
def test_streaming_file_equals_in_memory_file_byte_for_byte(tmp_path, small_data, zoo_anchors, config):
    encoder = load_encoder(ENCODERS[0])
    in_memory = save_embeddings(
        encode(encoder, zoo_anchors, small_data, batch_size=64),
        tmp_path / "mem.safetensors",
        projection=config,
    )
    summary = encode_to_file(
        encoder, zoo_anchors, small_data, tmp_path / "stream.safetensors", projection=config, batch_size=64
    )
    assert in_memory.read_bytes() == (tmp_path / "stream.safetensors").read_bytes()
    assert summary["samples"] == 300 and summary["relative_dim"] == config.output_dim(len(zoo_anchors))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mem.safetensors",
        "stream.safetensors",
    ]  # no temp left


def test_cache_entries_leave_the_relative_vectors_out_in_both_writers(tmp_path, small_data, zoo_anchors):
    """Without relative vectors (the cache's entries), the streaming and in-memory files are still the same
    bytes, and read back into the same space (its relative vectors recomputed from the latents)."""
    encoder = load_encoder(ENCODERS[0])
    space = encode(encoder, zoo_anchors, small_data, batch_size=64)
    in_memory = save_embeddings(space, tmp_path / "mem.safetensors", relative=False)
    encode_to_file(
        encoder, zoo_anchors, small_data, tmp_path / "stream.safetensors", batch_size=64, relative=False
    )
    assert in_memory.read_bytes() == (tmp_path / "stream.safetensors").read_bytes()
    with_relative = save_embeddings(space, tmp_path / "full.safetensors")
    assert in_memory.stat().st_size < with_relative.stat().st_size
    back = load_embeddings(in_memory)
    assert back._relative_cache == {}
    assert torch.allclose(back.relative(), space.relative(), atol=1e-6)


def test_stream_writer_writes_rows_in_any_order_and_matches_serialize(tmp_path):
    tensors = {
        "a": torch.arange(12, dtype=torch.float32).reshape(6, 2),
        "b": torch.arange(5, dtype=torch.int64),
        "c": torch.zeros((0, 3), dtype=torch.bfloat16),
    }
    shapes = {"a": ("F32", (6, 2)), "b": ("I64", (5,)), "c": ("BF16", (0, 3))}
    meta = {"relstitch.kind": '"embeddings"', "z": "1"}
    with StreamWriter(tmp_path / "s.safetensors", shapes, meta) as writer:
        writer.write("a", tensors["a"][4:], 4)
        writer.write("b", tensors["b"])
        writer.write("a", tensors["a"][:4], 0)
    assert (tmp_path / "s.safetensors").read_bytes() == serialize(tensors, meta)


def test_stream_writer_refuses_wrong_rows_and_leaves_nothing_when_interrupted(tmp_path):
    shapes = {"a": ("F32", (4, 2))}
    with (
        pytest.raises(ValueError, match="outside"),
        StreamWriter(tmp_path / "x.safetensors", shapes, {}) as writer,
    ):
        writer.write("a", torch.zeros(3, 2), 2)
    with (
        pytest.raises(ValueError, match="declared"),
        StreamWriter(tmp_path / "x.safetensors", shapes, {}) as writer,
    ):
        writer.write("a", torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(KeyboardInterrupt), StreamWriter(tmp_path / "x.safetensors", shapes, {}) as writer:
        writer.write("a", torch.zeros(2, 2))
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_encode_to_file_refuses_an_existing_output_before_any_work(tmp_path, small_data, zoo_anchors):
    out = tmp_path / "e.safetensors"
    out.write_bytes(b"keep me")
    encoder = load_encoder(ENCODERS[0])
    calls = Counter()
    handle = encoder.module.register_forward_hook(lambda *_: calls.update(["forward"]))
    try:
        with pytest.raises(RelstitchError, match="already exists"):
            encode_to_file(encoder, zoo_anchors, small_data, out)
    finally:
        handle.remove()
    assert calls["forward"] == 0 and out.read_bytes() == b"keep me"


def test_encoding_loops_over_batches_not_samples(small_data):
    encoder = load_encoder(ENCODERS[2])
    sizes = []
    handle = encoder.module.register_forward_hook(lambda module, args, output: sizes.append(len(args[0])))
    try:
        starts = [start for start, _ in iter_embed(encoder, small_data.x, batch_size=128)]
    finally:
        handle.remove()
    assert sizes == [128, 128, 44] and starts == [0, 128, 256]


@pytest.mark.parametrize("n,batch,world", [(300, 64, 2), (1000, 256, 3), (5, 64, 4), (0, 8, 2)])
def test_batch_shards_cover_every_row_once_in_whole_batches(n, batch, world):
    shards = [batch_shard(n, batch, rank, world) for rank in range(world)]
    assert shards[0][0] == 0 and shards[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(shards, shards[1:], strict=False))
    assert all(start % batch == 0 for start, stop in shards if stop > start)


# --------------------------------------------------------------------------------- device, dtype
def test_encode_bfloat16_on_cpu_is_close_to_float32(cli, tmp_path):
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.safetensors"
        result = cli("encode", ENCODERS[0], "--limit", 200, "--device", "cpu", "--dtype", dtype, "-o", out)
        assert result.exit_code == 0, result.stderr
    full, half = (load_embeddings(tmp_path / f"{d}.safetensors") for d in ("float32", "bfloat16"))
    assert not torch.equal(full.absolute, half.absolute)  # autocast really ran the encoder in bfloat16
    # The tolerance docs/PERFORMANCE.md states for reduced precision: cosines within 0.05.
    assert (full.relative() - half.relative()).abs().max() < 0.05


@pytest.mark.parametrize(
    "args,message",
    [
        (("--dtype", "int8"), "unknown dtype"),
        (("--device", "tpu"), "device"),
    ],
)
def test_encode_refuses_bad_device_or_dtype_in_one_line(cli, tmp_path, args, message):
    result = cli("encode", ENCODERS[0], "-o", tmp_path / "e.safetensors", *args)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "e.safetensors").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when there is no GPU")
def test_encode_on_cuda_without_a_gpu_says_so(cli, tmp_path):
    result = cli("encode", ENCODERS[0], "-o", tmp_path / "e.safetensors", "--device", "cuda")
    assert result.exit_code == 1 and "no CUDA device" in result.stderr


# ----------------------------------------------------------------------------------- eval-matrix
class EncoderCalls:
    """Counts forward calls and rows of top-level encoder modules, with torch's global forward hook."""

    def __init__(self, encoder_types: tuple[type, ...]) -> None:
        self.types, self.calls, self.rows = encoder_types, Counter(), Counter()

    def __enter__(self) -> EncoderCalls:
        def hook(module, args, output):
            if isinstance(module, self.types):
                self.calls[type(module).__name__] += 1
                self.rows[type(module).__name__] += len(args[0])

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def test_eval_matrix_encodes_data_and_anchors_exactly_once_per_encoder(tmp_path, small_data, zoo_anchors):
    encoders = [load_encoder(p) for p in ENCODERS]
    per_type = Counter(type(e.module).__name__ for e in encoders)
    decoders = [load_decoder(p) for p in DECODERS]
    batch = 100
    with EncoderCalls(tuple({type(e.module) for e in encoders})) as counted:
        first = eval_matrix(
            ENCODERS, decoders, zoo_anchors, small_data, batch_size=batch, cache=tmp_path / "cache"
        )
    k, n = len(zoo_anchors), len(small_data)
    for name, count in per_type.items():
        assert counted.rows[name] == count * (n + k)
        assert counted.calls[name] == count * (math.ceil(n / batch) + math.ceil(k / batch))
    assert len(first.pairs) == len(ENCODERS) * len(DECODERS)
    assert not any(info["from_cache"] for info in first.encoders)
    assert all(cache_path(tmp_path / "cache", e, zoo_anchors, small_data).exists() for e in encoders)

    # Second run from the cache: no encoder forward at all, the same scores.
    with EncoderCalls(tuple({type(e.module) for e in encoders})) as again:
        second = eval_matrix(
            ENCODERS, decoders, zoo_anchors, small_data, batch_size=batch, cache=tmp_path / "cache"
        )
    assert sum(again.calls.values()) == 0 and all(info["from_cache"] for info in second.encoders)
    assert [(p.encoder, p.decoder, p.scores, p.error) for p in first.pairs] == [
        (p.encoder, p.decoder, p.scores, p.error) for p in second.pairs
    ]


def test_cache_entry_that_does_not_match_is_encoded_again(tmp_path, small_data, zoo_anchors):
    encoder = load_encoder(ENCODERS[0])
    decoders = [load_decoder(DECODERS[0])]
    entry = cache_path(tmp_path, encoder, zoo_anchors, small_data)
    entry.write_bytes(b"not a safetensors file")
    result = eval_matrix([ENCODERS[0]], decoders, zoo_anchors, small_data, cache=tmp_path)
    assert not result.encoders[0]["from_cache"]
    assert load_embeddings(entry).encoder_hash == encoder.hash  # replaced by a good entry


def test_eval_matrix_cache_option_through_the_cli(cli, tmp_path):
    args = (
        "eval-matrix",
        "-e",
        ENCODERS[0],
        "-e",
        ENCODERS[1],
        "-D",
        DECODERS[0],
        "--limit",
        100,
        "--cache",
        tmp_path / "c",
    )
    assert cli(*args).exit_code == 0
    assert len(list((tmp_path / "c").glob("*.embeddings.safetensors"))) == 2
    (tmp_path / "file").write_text("x")
    result = cli(
        "eval-matrix", "-e", ENCODERS[0], "-D", DECODERS[0], "--limit", 100, "--cache", tmp_path / "file"
    )
    assert result.exit_code == 1 and "cache is a file" in result.stderr


def matrix_report(cli, path: Path, *args) -> dict:
    result = cli(
        "eval-matrix",
        "-e",
        ENCODERS[0],
        "-e",
        ENCODERS[2],
        "-D",
        DECODERS[0],
        "-D",
        DECODERS[1],
        "--limit",
        200,
        "--json",
        path,
        *args,
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(path.read_text())


def test_eval_matrix_device_cpu_equals_the_default_and_is_recorded(cli, tmp_path):
    default = matrix_report(cli, tmp_path / "default.json")
    on_cpu = matrix_report(cli, tmp_path / "cpu.json", "--device", "cpu", "--dtype", "float32")
    assert on_cpu["pairs"] == default["pairs"]  # the same vectors, so the same scores to the last bit
    assert on_cpu["config"]["device"] == "cpu" and on_cpu["config"]["dtype"] == "float32"
    expected = (
        "cuda" if torch.cuda.is_available() else "cpu"
    )  # auto resolves to a real device before it is recorded
    assert default["config"]["device"].startswith(expected) and default["config"]["dtype"] == "float32"


def test_eval_matrix_bfloat16_is_close_to_float32(cli, tmp_path):
    full = matrix_report(cli, tmp_path / "f32.json", "--device", "cpu")
    half = matrix_report(cli, tmp_path / "bf16.json", "--device", "cpu", "--dtype", "bfloat16")
    assert half["config"]["dtype"] == "bfloat16"
    scores = [
        (a["scores"]["accuracy"], b["scores"]["accuracy"])
        for a, b in zip(full["pairs"], half["pairs"], strict=True)
        if not a.get("error")
    ]
    assert scores and all(abs(a - b) <= 0.05 for a, b in scores)  # 200 samples: at most 10 flip


def test_eval_matrix_refuses_bad_device_or_dtype_before_any_work(cli, tmp_path):
    for args, message in ((("--dtype", "int8"), "unknown dtype"), (("--device", "tpu"), "device")):
        result = cli(
            "eval-matrix", "-e", ENCODERS[0], "-D", DECODERS[0], "--json", tmp_path / "r.json", *args
        )
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "r.json").exists()


def test_reduced_precision_gets_its_own_cache_entry(tmp_path, small_data, zoo_anchors):
    encoder = load_encoder(ENCODERS[0])
    full = cache_path(tmp_path, encoder, zoo_anchors, small_data)
    assert (
        cache_path(tmp_path, encoder, zoo_anchors, small_data, torch.float32) == full
    )  # float32 keeps its old key
    half = cache_path(tmp_path, encoder, zoo_anchors, small_data, torch.bfloat16)
    assert half != full
    eval_matrix(
        [ENCODERS[0]],
        [load_decoder(DECODERS[0])],
        zoo_anchors,
        small_data,
        cache=tmp_path,
        dtype=torch.bfloat16,
    )
    assert half.exists() and not full.exists()  # a float32 run will not be served bfloat16 vectors


# ---------------------------------------------------------------------------- cheaper, same answers
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe())
def test_prepared_projector_equals_relative_projection(config):
    gen = torch.Generator().manual_seed(3)
    anchors = torch.randn(40, 16, generator=gen)
    project = relative_projector(anchors, config)
    for rows in (1, 7, 300):
        x = torch.randn(rows, 16, generator=gen)
        assert torch.equal(project(x), relative_projection(x, anchors, config))
    with pytest.raises(RelstitchError, match="latent dimensions"):
        project(torch.zeros(2, 5))


def reference_scores(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """The per-class loop classification_scores replaced (kept here as the definition)."""
    pred = logits.argmax(dim=1)
    f1s = []
    for c in range(num_classes):
        tp = int(((pred == c) & (labels == c)).sum())
        fp = int(((pred == c) & (labels != c)).sum())
        fn = int(((pred != c) & (labels == c)).sum())
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {
        "accuracy": (pred == labels).float().mean().item(),
        "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
    }


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), classes=st.integers(1, 12), extra=st.integers(0, 3), seed=st.integers(0, 10**6))
def test_vectorised_metrics_equal_the_per_class_loop(n, classes, extra, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes + extra, generator=gen)  # extra columns: predictions outside the classes
    labels = torch.randint(0, classes, (n,), generator=gen)
    assert classification_scores(logits, labels, classes) == reference_scores(logits, labels, classes)


def test_finite_check_fast_path_keeps_every_verdict():
    check_finite(torch.full((4, 3), 3e38), "big")  # finite values whose sum overflows: still accepted
    for bad, counts in ((float("nan"), "1 NaN and 0 infinite"), (float("inf"), "0 NaN and 1 infinite")):
        values = torch.ones(5, 3)
        values[3, 1] = bad
        with pytest.raises(RelstitchError, match=rf"{counts} value\(s\), the first at index \[13, 1\]"):
            check_finite(values, "x", offset=10)


def test_checkpoint_loading_without_a_second_build_keeps_the_weights_and_buffers(tmp_path):
    encoder = load_encoder(ENCODERS[0])
    again = load_encoder(ENCODERS[0])
    assert again.hash == encoder.hash and not any(p.is_meta for p in again.module.parameters())

    @ENCODER_REGISTRY.register("perf-test-buffered")
    def buffered(width: int = 4) -> torch.nn.Module:
        class Buffered(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.linear = torch.nn.Linear(784, width)
                self.register_buffer("scale", torch.full((width,), 2.0), persistent=False)  # not in the file

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.linear(x.flatten(1)) * self.scale

        return Buffered()

    module = buffered()
    path = save_encoder(
        Encoder(
            module, {"name": "perf-test-buffered", "args": {}}, default_image_spec([1, 28, 28]), 4, "buffered"
        ),
        tmp_path / "b.encoder.safetensors",
    )
    loaded = load_encoder(path)
    assert torch.equal(
        loaded.module.scale, torch.full((4,), 2.0)
    )  # built for real: the buffer is not left uninitialised
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded.module(x), module(x))


# -------------------------------------------------------------------------------------- start-up
def imported_modules(*args: str) -> set[str]:
    """Top-level modules a fresh interpreter imports to run ``relstitch ARGS`` (from -X importtime)."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "relstitch", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    names = {
        line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")
    }
    assert "typer" in {n.split(".")[0] for n in names}  # the probe works: it sees what was imported
    return {n.split(".")[0] for n in names}


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("inspect", "checkpoints/anchors.safetensors"),
        ("encode", "--help"),
        ("inspect", "docs/examples/zoo-report.json"),
    ],
    ids=" ".join,
)
def test_start_up_imports_neither_torch_nor_transformers(args):
    loaded = imported_modules(*args)
    assert not loaded & {"torch", "transformers", "torchvision"}
