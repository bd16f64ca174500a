"""eval-matrix pipelined (a worker scores encoder i while encoder i+1 encodes) gives the serial loop's result.

Real shipped checkpoints, the built-in data; the only hand-made pieces are real objects with one thing
changed: a decoder claiming other anchors, an encoder wrapped (or its encoded space edited) so that some
latents are zero.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import threading
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from relstitch.adapters import load_encoder_ref
from relstitch.anchors import load_anchors
from relstitch.checkpoints import load_decoder, load_encoder
from relstitch.cli import warnings_as_lines
from relstitch.data import load_dataset
from relstitch.encoding import EncodedSpace, encode
from relstitch.errors import RelstitchError, RelstitchWarning
from relstitch.matrix import eval_matrix, pipeline_pays

ZOO = Path(__file__).resolve().parent.parent / "checkpoints"
ENCODERS = sorted(ZOO.glob("*.encoder.safetensors"))
DECODERS = sorted(ZOO.glob("*.decoder.safetensors"))


@pytest.fixture(scope="module")
def zoo_anchors():
    return load_anchors(ZOO / "anchors.safetensors")


@pytest.fixture(scope="module")
def data():
    full = load_dataset("builtin:test")
    return full.subset(torch.arange(200), name="builtin:test[:200]")


@pytest.fixture(scope="module")
def decoders():
    heads = [load_decoder(p) for p in DECODERS]
    # A real decoder that claims other anchors: every row gets one pair refused by check_pair.
    other = dataclasses.replace(heads[-1], name="other-anchors", anchor_hash="0" * 64)
    return [*heads, other]


@pytest.fixture()
def broken(tmp_path):
    path = tmp_path / "broken.encoder.safetensors"
    path.write_bytes(b"not a safetensors file at all")
    return path


def comparable(result):
    """Everything a run reports except wall-clock timings (which differ between any two runs)."""
    pairs = [{k: v for k, v in p.to_dict().items() if k != "seconds"} for p in result.pairs]
    encoders = [{k: v for k, v in e.items() if k != "encode_seconds"} for e in result.encoders]
    return pairs, encoders, result.decoders


def run(*args, **kwargs):
    """Serial and pipelined runs of the same matrix."""
    return eval_matrix(*args, workers=0, **kwargs), eval_matrix(*args, workers=1, **kwargs)


def test_pipelined_equals_serial_pair_by_pair_with_failed_pairs_and_a_failed_encoder(
    zoo_anchors, data, decoders, broken
):
    encoders = [*ENCODERS[:3], broken, *ENCODERS[3:]]
    serial, pipelined = run(encoders, decoders, zoo_anchors, data, null_baseline=True)
    assert comparable(pipelined) == comparable(serial)  # the same floats, order, errors and encoder entries
    assert len(serial.pairs) == len(encoders) * (len(decoders) + 6)  # 6 relative heads add a control each
    # Errors: the other-anchors pair and its control in each loadable row, and every cell of the broken row.
    assert sum(p.error is not None for p in serial.pairs) == 2 * (len(encoders) - 1) + len(decoders) + 6
    assert "error" in serial.encoders[3] and serial.pairs[3 * (len(decoders) + 6)].encoder == "broken"
    scored = [p for p in serial.pairs if p.error is None and p.control is None]
    assert scored and all(0.0 <= p.scores["accuracy"] <= 1.0 for p in scored)
    assert any(
        p.scores["accuracy"] > 0.5 for p in scored if not p.stitched
    )  # real heads on their own encoders


@pytest.mark.parametrize("order", ["pair-first", "load-first", "load-only"])
def test_fail_fast_raises_the_error_the_serial_loop_meets_first(zoo_anchors, data, decoders, broken, order):
    # pair-first: row 0 has a refused pair and the next encoder cannot load. The pipeline loads encoder 1
    # before it scores row 0, but the serial loop scores row 0 first, so its pair error must win.
    heads = decoders if order != "load-only" else decoders[:-1]
    encoders = [ENCODERS[0], broken, ENCODERS[1]] if order != "load-first" else [broken, *ENCODERS[:2]]
    messages = []
    for workers in (0, 1):
        with pytest.raises(RelstitchError) as caught:
            eval_matrix(encoders, heads, zoo_anchors, data, fail_fast=True, workers=workers)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert ("other-anchors" in messages[0]) == (order == "pair-first")


class ZeroFirst(nn.Module):
    """A real encoder whose first latent of every batch is zero (a latent with no direction)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.module(x)
        return torch.cat([torch.zeros_like(z[:1]), z[1:]])


def zero_first(ref: str):
    encoder = load_encoder_ref(ref)
    encoder.module = ZeroFirst(encoder.module)
    return encoder


def test_warnings_of_both_threads_reach_the_caller_in_the_serial_order(zoo_anchors, decoders):
    # Single-class data: every scored pair warns on the worker. Precomputed spaces with one zero latent:
    # each row warns on the caller's thread as soon as it is "loaded" (no encoding), i.e. while the worker
    # is still scoring the row before. The serial order interleaves them row by row.
    full = load_dataset("builtin:test")
    single = full.subset((full.y == 3).nonzero().flatten()[:60], name="builtin:test[class 3]")
    spaces = {}
    for path in ENCODERS[:4]:
        space = encode(load_encoder(path), zoo_anchors, single)
        space.absolute[0] = 0.0  # a latent with no direction
        spaces[str(path)] = space

    def load(ref: str | Path) -> EncodedSpace:
        return dataclasses.replace(
            spaces[str(ref)], _relative_cache={}
        )  # fresh per run: nothing shared between runs

    seen = []
    for workers in (0, 1):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RelstitchWarning)
            eval_matrix(ENCODERS[:4], decoders, zoo_anchors, single, load=load, workers=workers)
        seen.append([str(w.message) for w in caught if issubclass(w.category, RelstitchWarning)])
    assert seen[1] == seen[0]
    zero = [i for i, m in enumerate(seen[0]) if "zero norm" in m]
    assert len(zero) == 4 and zero[0] == 0 and zero[1] > 1  # row 0's pair warnings come before encoder 1's
    assert any("single class" in m for m in seen[0][zero[0] + 1 : zero[1]])


def test_worker_warnings_reach_the_clis_warning_lines(zoo_anchors, decoders, capsys):
    full = load_dataset("builtin:test")
    single = full.subset((full.y == 3).nonzero().flatten()[:60], name="builtin:test[class 3]")
    with warnings_as_lines():
        eval_matrix(ENCODERS[:3], decoders, zoo_anchors, single, load=zero_first, workers=1)
    lines = capsys.readouterr().err.splitlines()
    assert sum("single class" in line for line in lines) == 1  # said once, as the CLI does
    assert sum(line.startswith("warning: ") and "zero norm" in line for line in lines) == 3  # one per encoder


def test_progress_is_called_as_in_the_serial_loop_from_the_callers_thread(zoo_anchors, data, decoders):
    calls = {0: [], 1: []}
    threads = set()
    for workers in (0, 1):

        def progress(description, advance, total, workers=workers):
            calls[workers].append((description, advance, total))
            threads.add(threading.get_ident())

        eval_matrix(
            ENCODERS[:4], decoders, zoo_anchors, data, progress=progress, batch_size=64, workers=workers
        )
    assert calls[1] == calls[0] and len(calls[0]) == 4 * (
        5 + 4
    )  # 300 anchors and 200 samples in batches of 64
    assert threads == {threading.get_ident()}


def test_heads_run_under_the_callers_autocast_in_both_modes(zoo_anchors, data, decoders):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        serial, pipelined = run(ENCODERS[:3], decoders, zoo_anchors, data)
    plain = eval_matrix(ENCODERS[:3], decoders, zoo_anchors, data, workers=0)
    assert comparable(pipelined) == comparable(serial)
    # The heads really ran in bfloat16 there: some score moved (a worker without the caller's mode would not).
    assert [p.scores for p in serial.pairs] != [p.scores for p in plain.pairs]


def test_earlier_rows_are_released_while_later_encoders_run(zoo_anchors, data, decoders):
    counts = []

    def progress(description, advance, total):
        if (
            description.endswith(": data") and advance == total - 128
        ):  # the last of 200 samples in batches of 128
            gc.collect()
            counts.append(sum(type(o) is EncodedSpace for o in gc.get_objects()))

    before = sum(type(o) is EncodedSpace for o in gc.get_objects())
    eval_matrix(ENCODERS, decoders, zoo_anchors, data, progress=progress, batch_size=128, workers=1)
    assert len(counts) == len(ENCODERS)
    assert max(counts) <= before + 1  # the row being scored; the one encoding is not a space yet


def test_an_interrupt_while_encoding_stops_the_worker_and_leaves_no_thread(zoo_anchors, data, decoders):
    threads_before = threading.active_count()
    calls = []

    def progress(description, advance, total):
        calls.append(description)
        if len(calls) == 12:  # inside the third encoder, while the worker scores the second
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        eval_matrix(ENCODERS, decoders, zoo_anchors, data, progress=progress, batch_size=64, workers=1)
    assert threading.active_count() == threads_before


def test_workers_must_be_0_or_1(zoo_anchors, data, decoders):
    with pytest.raises(RelstitchError, match="workers must be 0"):
        eval_matrix(ENCODERS[:2], decoders, zoo_anchors, data, workers=2)


def test_the_default_pipelines_only_when_the_worker_has_a_core_of_its_own():
    cores = len(os.sched_getaffinity(0))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(cores)  # torch's threads fill every core: a second stage would fight them
        assert not pipeline_pays()
        assert pipeline_pays(torch.device("cuda"))  # encoders on a GPU: the caller's thread mostly waits
        if cores > 1:
            torch.set_num_threads(cores - 1)
            assert pipeline_pays(torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
