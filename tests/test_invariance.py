"""The property the whole method rests on: relative vectors ignore rotations and rescalings."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relstitch.projection import ProjectionConfig, relative_projection


def random_orthogonal(dim: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed, may include reflections


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    k=st.integers(1, 30),
    dim=st.integers(2, 48),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**31 - 1),
    centering=st.booleans(),
)
def test_relative_vectors_are_invariant_to_orthogonal_maps_and_rescaling(n, k, dim, scale, seed, centering):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    anchors = torch.randn(k, dim, generator=gen, dtype=torch.float64)
    q = random_orthogonal(dim, gen)
    config = ProjectionConfig(centering=centering)
    before = relative_projection(x, anchors, config)
    after = relative_projection(scale * x @ q, scale * anchors @ q, config)
    torch.testing.assert_close(after, before, rtol=1e-9, atol=1e-9)


def test_cosine_matches_the_direct_formula_and_chunking_changes_nothing():
    gen = torch.Generator().manual_seed(1)
    x, anchors = torch.randn(1000, 8, generator=gen), torch.randn(7, 8, generator=gen)
    direct = torch.nn.functional.cosine_similarity(x[:, None, :], anchors[None, :, :], dim=-1)
    torch.testing.assert_close(relative_projection(x, anchors), direct, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        relative_projection(x, anchors, chunk_size=64), relative_projection(x, anchors, chunk_size=None)
    )


def test_centering_cancels_a_translation_and_plain_cosine_does_not():
    gen = torch.Generator().manual_seed(2)
    x, anchors = (
        torch.randn(30, 8, generator=gen, dtype=torch.float64),
        torch.randn(9, 8, generator=gen, dtype=torch.float64),
    )
    shift = 5 * torch.randn(8, generator=gen, dtype=torch.float64)
    centered = ProjectionConfig(centering=True)
    torch.testing.assert_close(
        relative_projection(x + shift, anchors + shift, centered), relative_projection(x, anchors, centered)
    )
    assert (
        relative_projection(x + shift, anchors + shift) - relative_projection(x, anchors)
    ).abs().max() > 0.1


def test_zero_vector_gets_zero_similarity_not_nan():
    anchors = torch.eye(3)
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    r = relative_projection(x, anchors)
    assert torch.isfinite(r).all()
    torch.testing.assert_close(r[0], torch.zeros(3))
    torch.testing.assert_close(r[1], torch.tensor([1.0, 0.0, 0.0]))
