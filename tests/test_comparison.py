"""``relstitch compare``: Jaccard@k, MRR@k, mean cosine and linear CKA across latent spaces."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relstitch.comparison import compare_spaces, linear_cka, mean_cosine, retrieval_scores
from relstitch.encoding import EncodedSpace
from relstitch.errors import RelstitchError

ZOO = Path(__file__).resolve().parent.parent / "checkpoints"


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def orthogonal(dim: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(randn(dim, dim, seed=seed))
    return q * torch.sign(torch.diagonal(r))


def space(
    name: str, absolute: torch.Tensor, anchors: torch.Tensor, anchor_hash: str = "a" * 64
) -> EncodedSpace:
    n = len(absolute)
    return EncodedSpace(
        name,
        name * 8,
        absolute,
        anchors,
        torch.zeros(n, dtype=torch.int64),
        torch.arange(n),
        anchor_hash,
        {"name": "synthetic", "size": n},
    )


def slow_retrieval(source: torch.Tensor, target: torch.Tensor, k: int) -> tuple[float, float]:
    """Jaccard@k and MRR@k as the paper's notebook defines them, one sample at a time."""

    def top(query: torch.Tensor) -> list[int]:
        sims = [float(query @ t / (query.norm() * t.norm())) for t in target]
        return sorted(range(len(target)), key=lambda j: -sims[j])[:k]

    jaccard, mrr = 0.0, 0.0
    for i in range(len(target)):
        own, found = set(top(target[i])), top(source[i])
        jaccard += len(own & set(found)) / len(own | set(found))
        mrr += 1 / (found.index(i) + 1) if i in found else 0.0
    return jaccard / len(target), mrr / len(target)


def test_retrieval_matches_the_definition_sample_by_sample():
    x = randn(40, 6, seed=0)
    y = x @ orthogonal(6, 1) + 0.8 * randn(40, 6, seed=2)  # related, not equal: partial overlaps
    fast = retrieval_scores(x, y, 5)
    slow = slow_retrieval(x, y, 5)
    assert fast == pytest.approx(slow, abs=1e-12)
    assert 0 < fast[0] < 1 and 0 < fast[1] < 1


@settings(max_examples=15, deadline=None)
@given(n=st.integers(12, 80), dim=st.integers(2, 20), k=st.integers(1, 10), seed=st.integers(0, 10_000))
def test_a_space_against_itself_scores_one_everywhere(n, dim, k, seed):
    x = randn(n, dim, seed=seed)
    assert retrieval_scores(x, x, k) == pytest.approx((1.0, 1.0))
    assert mean_cosine(x, x) == pytest.approx(1.0)
    assert linear_cka(x, x) == pytest.approx(1.0)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(5, 60), dim=st.integers(2, 24), scale=st.floats(1e-2, 1e2), seed=st.integers(0, 10_000))
def test_cka_is_one_under_an_orthogonal_map_and_rescaling(n, dim, scale, seed):
    x = randn(n, dim, seed=seed)
    assert linear_cka(x, scale * x @ orthogonal(dim, seed + 1)) == pytest.approx(1.0, abs=1e-9)


def test_cka_of_unrelated_spaces_is_low_and_takes_any_dimensions():
    x, y = randn(500, 8, seed=3), randn(500, 30, seed=4)
    assert linear_cka(x, y) < 0.2
    assert linear_cka(x, torch.cat([x, randn(500, 2, seed=5)], dim=1)) > 0.5


def test_compare_relative_space_sees_through_a_rotation_that_absolute_space_does_not():
    anchors, samples = randn(30, 10, seed=6), randn(200, 10, seed=7)
    q = orthogonal(10, 8)
    result = compare_spaces([space("a", samples, anchors), space("b", 3 * samples @ q, 3 * anchors @ q)], k=5)
    for metric in ("jaccard", "mrr", "cosine", "cka"):
        assert result.value("a", "b", "relative", metric) == pytest.approx(1.0)
    assert result.value("a", "b", "absolute", "mrr") < 0.5
    assert result.value("a", "b", "absolute", "cka") == pytest.approx(1.0)  # CKA itself ignores rotations


def test_different_dimensions_compare_in_relative_space_and_by_cka_only_in_absolute():
    anchors, samples = randn(30, 10, seed=9), randn(100, 10, seed=10)
    wide = torch.cat([samples, torch.zeros(100, 6, dtype=torch.float64)], 1)
    wide_anchors = torch.cat([anchors, torch.zeros(30, 6, dtype=torch.float64)], 1)
    result = compare_spaces([space("small", samples, anchors), space("wide", wide, wide_anchors)], k=5)
    row = next(r for r in result.rows if r["space"] == "absolute")
    assert row["jaccard"] is None and row["cosine"] is None and "10-d vs 16-d" in row["note"]
    assert row["cka"] == pytest.approx(1.0)
    assert result.value("small", "wide", "relative", "mrr") == pytest.approx(1.0)


def test_spaces_of_other_samples_or_other_anchors_are_refused():
    anchors, samples = randn(5, 4, seed=11), randn(20, 4, seed=12)
    a = space("a", samples, anchors)
    with pytest.raises(RelstitchError, match="different samples"):
        compare_spaces([a, replace(space("b", samples, anchors), ids=torch.arange(20) + 1)])
    with pytest.raises(RelstitchError, match="different anchors"):
        compare_spaces([a, space("b", samples, anchors, anchor_hash="b" * 64)])
    with pytest.raises(RelstitchError, match="at least two"):
        compare_spaces([a])


def test_cli_compares_two_seeds_and_prints_a_matrix_for_three(cli, tmp_path):
    files = []
    for name in ("cnn-rel-s0", "cnn-rel-s1"):
        out = tmp_path / f"{name}.safetensors"
        assert (
            cli(
                "encode",
                ZOO / f"{name}.encoder.safetensors",
                "--anchors",
                ZOO / "anchors.safetensors",
                "--limit",
                "200",
                "-o",
                out,
            ).exit_code
            == 0
        )
        files.append(out)
    result = cli("compare", *files, "--k", "5", "--json", tmp_path / "c.json")
    assert result.exit_code == 0, result.output
    assert "Jaccard@5" in result.stdout and "cnn-rel-s0 → cnn-rel-s1" in result.stdout
    scores = json.loads((tmp_path / "c.json").read_text())
    assert scores["k"] == 5 and len(scores["pairs"]) == 4  # two directions x two spaces
    relative = next(p for p in scores["pairs"] if p["space"] == "relative")
    absolute = next(p for p in scores["pairs"] if p["space"] == "absolute")
    assert relative["mrr"] > 2 * absolute["mrr"]  # the point of the method, on two real seeds
    # an encoder is encoded on the spot with the same anchors and data (here 200 test images)
    result = cli(
        "compare",
        *files,
        ZOO / "mlp-rel-s0.encoder.safetensors",
        "--limit",
        "200",
        "--anchors",
        ZOO / "anchors.safetensors",
        "--normalization",
        "standard",
    )
    assert result.exit_code == 0, result.output
    assert "source \\ target" in result.stdout and "mlp-rel-s0" in result.stdout
    result = cli("compare", files[0])
    assert result.exit_code == 2 and "at least two" in result.stderr
