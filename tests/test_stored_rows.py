"""Latents read from their file slice by slice (``relstitch.io.rows.StoredRows``, issue #15): the same
numbers as the whole tensor, for every float dtype a file may hold; a file that shrinks is refused in one
line, one replaced under the same name is never mixed in; ``load_embeddings`` checks stored latents
block by block as it checks held ones; the held budget comes from ``RELSTITCH_MAX_HELD_MB``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from cli_checks import one_line_error
from safetensors.torch import save_file

from relstitch.encoding import EncodedSpace, load_embeddings, save_embeddings
from relstitch.errors import RelstitchError
from relstitch.io.artifacts import read_header
from relstitch.io.rows import StoredRows
from relstitch.projection import ProjectedRows
from relstitch.runtime import MAX_HELD_BYTES, held_budget


def _space(n: int = 1000, d: int = 7, k: int = 12) -> EncodedSpace:
    torch.manual_seed(0)
    return EncodedSpace(
        encoder_name="e",
        encoder_hash="h" * 64,
        absolute=torch.randn(n, d),
        anchor_absolute=torch.randn(k, d),
        labels=torch.arange(n) % 3,
        ids=torch.arange(n),
        anchor_hash="a" * 64,
        dataset={"name": "synthetic", "size": n, "hash": "d" * 64, "classes": ["a", "b", "c"]},
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_slices_are_the_rows_of_the_whole_tensor(tmp_path: Path, dtype: torch.dtype) -> None:
    whole = torch.randn(1000, 5).to(dtype)
    path = tmp_path / "t.safetensors"
    save_file({"before": torch.arange(3), "x": whole, "after": torch.ones(2)}, str(path))
    rows = StoredRows(read_header(path), "x")
    assert len(rows) == 1000 and rows.shape == (1000, 5)
    for a, b in ((0, 1), (0, 1000), (17, 530), (999, 1000), (400, 400), (990, 5000), (-3, None)):
        got = rows[a:b]
        assert got.dtype == torch.float32
        assert torch.equal(got, whole[a:b].float()), (a, b)
    assert torch.equal(torch.cat([block for _, block in rows.blocks(300)]), whole.float())
    assert [first for first, _ in rows.blocks(300)] == [0, 300, 600, 900]
    with pytest.raises(TypeError):
        rows[::2]
    rows.close()


def test_a_shrunk_file_is_refused_and_a_replaced_one_is_never_mixed_in(tmp_path: Path) -> None:
    path = save_embeddings(_space(), tmp_path / "e.safetensors")
    header = read_header(path)
    rows = StoredRows(header, "absolute")
    first = rows[0:10].clone()
    # replaced under its name (as an atomic writer does): the open file is still the one read
    other = save_embeddings(_space(n=1000, d=7, k=3), tmp_path / "other.safetensors")
    os.replace(other, path)
    assert torch.equal(rows[0:10], first)
    with pytest.raises(RelstitchError, match="changed"):  # and a new reader sees it is not the header's
        StoredRows(header, "absolute")
    # shrunk in place: a read past its end is refused in one line, never garbage
    shrinking = save_embeddings(_space(), tmp_path / "s.safetensors")
    stored = StoredRows(read_header(shrinking), "absolute")
    os.truncate(shrinking, read_header(shrinking).tensors["absolute"].start + 40)
    with pytest.raises(RelstitchError, match="changed while relstitch read its absolute"):
        stored[0:100]


def test_load_embeddings_keeps_latents_past_the_budget_in_the_file(tmp_path: Path, monkeypatch) -> None:
    space = _space()
    path = save_embeddings(space, tmp_path / "e.safetensors")
    assert isinstance(load_embeddings(path).absolute, torch.Tensor)  # within the budget: read whole
    monkeypatch.setenv("RELSTITCH_MAX_HELD_MB", "0")
    back = load_embeddings(path)
    assert isinstance(back.absolute, StoredRows) and back._relative_cache == {}
    assert torch.equal(back.latents(), space.absolute)
    rows = back.relative_rows()
    assert isinstance(rows, ProjectedRows)
    assert torch.allclose(rows[100:300], space.relative()[100:300], atol=1e-6)
    assert torch.equal(back.relative(), space.relative())  # whole, when asked for the whole
    # a file's bad latent is found block by block, named by its row of the whole file
    broken = _space()
    broken.absolute[777, 3] = float("nan")
    bad = save_embeddings(broken, tmp_path / "bad.safetensors")
    with pytest.raises(RelstitchError, match=r"1 NaN .* index \[777, 3\]"):
        load_embeddings(bad)


def test_the_held_budget_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("RELSTITCH_MAX_HELD_MB", raising=False)
    assert held_budget() == MAX_HELD_BYTES == 512 * 1024**2
    monkeypatch.setenv("RELSTITCH_MAX_HELD_MB", "64")
    assert held_budget() == 64 * 1024**2
    for bad in ("-1", "1.5", "lots"):
        monkeypatch.setenv("RELSTITCH_MAX_HELD_MB", bad)
        with pytest.raises(RelstitchError, match="RELSTITCH_MAX_HELD_MB .* whole number of MiB"):
            held_budget()


def test_a_bad_budget_stops_the_command_before_any_work(tmp_path: Path, monkeypatch, cli) -> None:
    """A typo in RELSTITCH_MAX_HELD_MB is bad usage: one line, exit 2, before a matrix starts (it would
    otherwise fail every pair halfway through) and before any output is written."""
    checkpoints = Path(__file__).resolve().parent.parent / "checkpoints"
    monkeypatch.setenv("RELSTITCH_MAX_HELD_MB", "lots")
    out = tmp_path / "m.json"
    args = ["eval-matrix", "-e", checkpoints / "cnn-rel-s0.encoder.safetensors"]
    args += ["-D", checkpoints / "cnn-rel-s1.decoder.safetensors", "--limit", 50, "--json", out]
    line = one_line_error(cli(*args), code=2)
    assert "RELSTITCH_MAX_HELD_MB is 'lots'" in line and not out.exists()
