"""eval-matrix's loop: pairs and failed rows in order, fail-fast, warnings, progress, one space at a time.

Real shipped checkpoints, the built-in data; the only hand-made pieces are real objects with one thing
changed: a decoder claiming other anchors, an encoder wrapped (or its encoded space edited) so that some
latents are zero.
"""

from __future__ import annotations

import dataclasses
import gc
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
from relstitch.matrix import eval_matrix

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
def single():
    """One class only: every scored pair warns."""
    full = load_dataset("builtin:test")
    return full.subset((full.y == 3).nonzero().flatten()[:60], name="builtin:test[class 3]")


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


def test_pairs_in_row_order_with_failed_pairs_and_a_failed_encoder(zoo_anchors, data, decoders, broken):
    encoders = [*ENCODERS[:3], broken, *ENCODERS[3:]]
    result = eval_matrix(encoders, decoders, zoo_anchors, data, null_baseline=True)
    per_row = len(decoders) + 6  # 6 relative heads add a control each
    assert len(result.pairs) == len(encoders) * per_row
    names = [e["name"] for e in result.encoders]
    assert [p.encoder for p in result.pairs] == [n for n in names for _ in range(per_row)]  # row-major
    # Errors: the other-anchors pair and its control in each loadable row, and every cell of the broken row.
    assert sum(p.error is not None for p in result.pairs) == 2 * (len(encoders) - 1) + per_row
    assert "error" in result.encoders[3] and names[3] == "broken"
    assert all(p.error for p in result.pairs[3 * per_row : 4 * per_row])
    scored = [p for p in result.pairs if p.error is None and p.control is None]
    assert scored and all(0.0 <= p.scores["accuracy"] <= 1.0 for p in scored)
    assert any(
        p.scores["accuracy"] > 0.5 for p in scored if not p.stitched
    )  # real heads on their own encoders


@pytest.mark.parametrize("order", ["pair-first", "load-first", "load-only"])
def test_fail_fast_raises_the_first_error_in_row_order(zoo_anchors, data, decoders, broken, order):
    # pair-first: row 0 has a refused pair and the next encoder cannot load; row 0 is scored first.
    heads = decoders if order != "load-only" else decoders[:-1]
    encoders = [ENCODERS[0], broken, ENCODERS[1]] if order != "load-first" else [broken, *ENCODERS[:2]]
    with pytest.raises(RelstitchError) as caught:
        eval_matrix(encoders, heads, zoo_anchors, data, fail_fast=True)
    assert ("other-anchors" in str(caught.value)) == (order == "pair-first")
    assert ("broken" in str(caught.value)) == (order != "pair-first")


def test_warnings_come_row_by_row(zoo_anchors, decoders, single):
    # Precomputed spaces with one zero latent warn as soon as each row is loaded; the single-class data
    # makes every scored pair warn. Row 0's pair warnings come before encoder 1's zero-norm warning.
    spaces = {}
    for path in ENCODERS[:4]:
        space = encode(load_encoder(path), zoo_anchors, single)
        space.absolute[0] = 0.0  # a latent with no direction
        spaces[str(path)] = space

    def load(ref: str | Path) -> EncodedSpace:
        return dataclasses.replace(spaces[str(ref)], _relative_cache={})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RelstitchWarning)
        eval_matrix(ENCODERS[:4], decoders, zoo_anchors, single, load=load)
    seen = [str(w.message) for w in caught if issubclass(w.category, RelstitchWarning)]
    zero = [i for i, m in enumerate(seen) if "zero norm" in m]
    assert len(zero) == 4 and zero[0] == 0 and zero[1] > 1
    assert any("single class" in m for m in seen[zero[0] + 1 : zero[1]])


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


def test_warnings_reach_the_clis_warning_lines(zoo_anchors, decoders, single, capsys):
    with warnings_as_lines():
        eval_matrix(ENCODERS[:3], decoders, zoo_anchors, single, load=zero_first)
    lines = capsys.readouterr().err.splitlines()
    assert sum("single class" in line for line in lines) == 1  # said once, as the CLI does
    assert sum(line.startswith("warning: ") and "zero norm" in line for line in lines) == 3  # one per encoder


def test_progress_is_called_per_batch_from_the_callers_thread(zoo_anchors, data, decoders):
    calls = []
    threads = set()

    def progress(description, advance, total):
        calls.append((description, advance, total))
        threads.add(threading.get_ident())

    eval_matrix(ENCODERS[:4], decoders, zoo_anchors, data, progress=progress, batch_size=64)
    assert len(calls) == 4 * (5 + 4)  # 300 anchors and 200 samples in batches of 64
    assert calls[:5] == [(f"{ENCODERS[0].name.split('.')[0]}: anchors", 64, 300)] * 4 + [
        (f"{ENCODERS[0].name.split('.')[0]}: anchors", 44, 300)
    ]
    assert threads == {threading.get_ident()}


def test_heads_run_under_the_callers_autocast(zoo_anchors, data, decoders):
    plain = eval_matrix(ENCODERS[:2], decoders, zoo_anchors, data)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = eval_matrix(ENCODERS[:2], decoders, zoo_anchors, data)
    assert [p.scores for p in cast.pairs] != [p.scores for p in plain.pairs]  # the heads ran in bfloat16


@pytest.mark.slow
def test_each_space_is_released_before_the_next_encoder_runs(zoo_anchors, data, decoders):
    counts = []

    def progress(description, advance, total):
        if description.endswith(": data"):
            gc.collect()
            counts.append(sum(type(o) is EncodedSpace for o in gc.get_objects()))

    before = sum(type(o) is EncodedSpace for o in gc.get_objects())
    eval_matrix(ENCODERS, decoders, zoo_anchors, data, progress=progress, batch_size=128)
    assert len(counts) == 2 * len(ENCODERS)  # 200 samples in batches of 128
    assert max(counts) == before  # the encoder running has no space yet, the previous row's is gone


def test_an_interrupt_while_encoding_propagates_and_leaves_no_thread(zoo_anchors, data, decoders):
    threads_before = threading.active_count()
    calls = []

    def progress(description, advance, total):
        calls.append(description)
        if len(calls) == 12:  # inside the second encoder
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        eval_matrix(ENCODERS, decoders, zoo_anchors, data, progress=progress, batch_size=64)
    assert threading.active_count() == threads_before


def test_relative_vectors_too_large_to_hold_are_streamed_with_the_same_scores(
    zoo_anchors, data, decoders, monkeypatch
):
    """Past the budget, a row's relative vectors are computed batch by batch as each decoder reads them,
    never held whole (the space's cache of them stays empty); every pair scores as the held path does."""
    import relstitch.encoding as encoding
    from relstitch.projection import ProjectedRows

    paths = [p for p in ENCODERS if "-rel-" in p.name][:2]
    heads = [d for d in decoders if d.space == "relative"]
    held = eval_matrix(paths, heads, zoo_anchors, data)
    spaces: list[EncodedSpace] = []
    real_encode = encoding.encode

    def keep(*args, **kwargs):  # the real encode; the spaces are kept to look at afterwards
        spaces.append(real_encode(*args, **kwargs))
        return spaces[-1]

    monkeypatch.setenv("RELSTITCH_MAX_HELD_MB", "0")
    monkeypatch.setattr(encoding, "encode", keep)
    streamed = eval_matrix(paths, heads, zoo_anchors, data)
    assert len(spaces) == len(paths)
    assert all(space._relative_cache == {} for space in spaces)  # no N x k tensor was kept
    assert isinstance(spaces[0].relative_rows(heads[0].projection), ProjectedRows)
    assert [(p.encoder, p.decoder, p.error) for p in streamed.pairs] == [
        (p.encoder, p.decoder, p.error) for p in held.pairs
    ]
    for a, b in zip(streamed.pairs, held.pairs):
        assert a.scores.keys() == b.scores.keys()
        for metric, value in a.scores.items():
            assert value == pytest.approx(b.scores[metric], abs=1e-6), (a.encoder, a.decoder, metric)
    assert any(p.scores for p in streamed.pairs)  # real scores were compared, not only failures


def test_projected_rows_equal_the_whole_projection(zoo_anchors, data):
    """A slice of ProjectedRows is the same rows of the whole projection (every projection is per sample)."""
    from relstitch.projection import ProjectedRows, ProjectionConfig, relative_projection, relative_projector

    torch.manual_seed(0)
    x, anchors = torch.randn(700, 16), torch.randn(50, 16)
    for config in (ProjectionConfig(), ProjectionConfig(centering="standard", normalization="l2", top_k=5)):
        whole = relative_projection(x, anchors, config)
        rows = ProjectedRows(x, relative_projector(anchors, config))
        assert len(rows) == 700
        assert torch.allclose(torch.cat([rows[s : s + 256] for s in range(0, 700, 256)]), whole, atol=1e-6)


def test_stored_relative_vectors_too_large_to_hold_are_not_read(zoo_anchors, data, tmp_path, monkeypatch):
    """An embeddings file's relative vectors past the budget stay on disk: the space is read without them,
    and a decoder gets the same vectors computed slice by slice from the latents."""
    from relstitch.encoding import load_embeddings, save_embeddings
    from relstitch.projection import ProjectedRows

    space = encode(load_encoder(ENCODERS[0]), zoo_anchors, data)
    path = save_embeddings(space, tmp_path / "e.embeddings.safetensors")
    assert load_embeddings(path)._relative_cache  # within the budget: read and held as written
    monkeypatch.setenv("RELSTITCH_MAX_HELD_MB", "0")
    back = load_embeddings(path)
    assert back._relative_cache == {}
    rows = back.relative_rows()
    assert isinstance(rows, ProjectedRows)
    assert torch.allclose(rows[0 : len(rows)], space.relative(), atol=1e-6)


def test_latents_too_large_to_hold_stay_in_the_cache_with_the_same_scores(
    zoo_anchors, data, decoders, tmp_path, monkeypatch
):
    """With a cache, each encoder's latents are streamed into its entry and, past the budget, read back
    slice by slice (StoredRows): no N-row tensor of latents or relative vectors is held, and every pair,
    absolute and translated ones included, scores as the held path does."""
    import relstitch.encoding as encoding
    from relstitch.io.rows import StoredRows

    paths = ENCODERS[:3]
    methods = ("relative", "absolute", "procrustes")
    held = eval_matrix(paths, decoders, zoo_anchors, data, methods=methods)
    spaces: list[EncodedSpace] = []
    real_load = encoding.load_embeddings  # cached_encode imports it where it runs: watched there

    def keep(*args, **kwargs):
        spaces.append(real_load(*args, **kwargs))
        return spaces[-1]

    monkeypatch.setenv("RELSTITCH_MAX_HELD_MB", "0")
    monkeypatch.setattr(encoding, "load_embeddings", keep)
    stored = eval_matrix(paths, decoders, zoo_anchors, data, methods=methods, cache=tmp_path / "c")
    assert len(spaces) == len(paths)
    assert all(isinstance(space.absolute, StoredRows) and not space._relative_cache for space in spaces)
    assert [(p.encoder, p.decoder, p.method, p.error) for p in stored.pairs] == [
        (p.encoder, p.decoder, p.method, p.error) for p in held.pairs
    ]
    for a, b in zip(stored.pairs, held.pairs):
        assert a.scores.keys() == b.scores.keys()
        for metric, value in a.scores.items():
            assert value == pytest.approx(b.scores[metric], abs=1e-6), (a.encoder, a.decoder, a.method)
    assert {p.method for p in stored.pairs if p.scores} == set(methods)  # every method really scored
