"""relstitch.nn: the relative layer for any model and the authors' heads on it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from relstitch.anchors import Anchors
from relstitch.errors import RelstitchError
from relstitch.nn import RelativeHead, RelativeProjection
from relstitch.projection import ProjectionConfig, relative_projection


def tiny_encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8))


ANCHOR_INPUTS = torch.randn(10, 4, 4, generator=torch.Generator().manual_seed(1))
HASH_A, HASH_B = "a" * 64, "b" * 64


@pytest.mark.parametrize(
    "config",
    [
        ProjectionConfig(),
        ProjectionConfig(similarity="cosine,euclidean", centering="center", normalization="standard"),
        ProjectionConfig(similarity="euclidean", normalization="l2", top_k=4),
    ],
)
def test_equals_relative_projection_with_grad_and_without(config: ProjectionConfig) -> None:
    encoder = tiny_encoder()
    layer = RelativeProjection(ANCHOR_INPUTS, config, embed=encoder, anchor_hash=HASH_A)
    x = torch.randn(7, 4, 4)
    expected = relative_projection(encoder(x).detach(), encoder(ANCHOR_INPUTS).detach(), config)
    assert layer.output_dim == config.output_dim(10) == expected.shape[1]
    with torch.no_grad():
        assert torch.equal(layer(encoder(x)), expected)
    assert torch.allclose(layer(encoder(x)), expected, atol=1e-6)


def test_gradient_flows_to_the_batch_not_to_the_anchors() -> None:
    encoder = tiny_encoder()
    layer = RelativeProjection(ANCHOR_INPUTS, embed=encoder)
    x = torch.randn(5, 4, 4, requires_grad=True)
    seen: list[torch.Tensor] = []
    original = layer.anchor_latents

    def spy() -> torch.Tensor:
        latents = original()
        seen.append(latents)
        return latents

    layer.anchor_latents = spy  # type: ignore[method-assign]
    layer(encoder(x)).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not seen[0].requires_grad  # anchors embedded under no_grad: no graph through them
    # the encoder's weights get a gradient through the batch only
    first = encoder[1].weight.grad
    assert first is not None and first.abs().sum() > 0


def test_fixed_anchor_latents_and_an_anchor_set() -> None:
    latents = torch.randn(6, 8)
    layer = RelativeProjection(latents)
    x = torch.randn(3, 8, requires_grad=True)
    assert torch.allclose(layer(x), relative_projection(x, latents))
    assert layer.anchor_hash is None
    anchors = Anchors(
        inputs=torch.randint(0, 255, (6, 1, 4, 4), dtype=torch.uint8),
        ids=torch.arange(6),
        labels=torch.zeros(6, dtype=torch.int64),
    )
    from_set = RelativeProjection(anchors, embed=lambda a: a.float().flatten(1))
    assert from_set.anchor_hash == anchors.hash
    with pytest.raises(RelstitchError, match="embed="):
        RelativeProjection(anchors)
    with pytest.raises(RelstitchError, match="2-d"):
        RelativeProjection(torch.randn(6, 2, 2))


def test_state_dict_carries_the_anchor_hash_and_refuses_other_anchors() -> None:
    encoder = tiny_encoder()
    layer = RelativeProjection(ANCHOR_INPUTS, embed=encoder, anchor_hash=HASH_A)
    state = layer.state_dict()
    assert list(state) == ["anchor_hash_bytes"]  # anchors and encoder weights are not saved twice
    assert bytes(state["anchor_hash_bytes"].tolist()).decode() == HASH_A
    same = RelativeProjection(ANCHOR_INPUTS, embed=encoder, anchor_hash=HASH_A)
    same.load_state_dict(state)
    unknown = RelativeProjection(ANCHOR_INPUTS, embed=encoder)  # built without a hash: adopts the recorded
    unknown.load_state_dict(state)
    assert unknown.anchor_hash == HASH_A
    other = RelativeProjection(ANCHOR_INPUTS, embed=encoder, anchor_hash=HASH_B)
    with pytest.raises(RelstitchError, match=r"recorded for anchors a{12}, .* anchors b{12}") as caught:
        other.load_state_dict(state)
    assert "\n" not in str(caught.value)
    # inside a model, under its prefix, the same
    model = nn.ModuleDict({"encoder": encoder, "bottleneck": layer})
    assert set(model.state_dict()) == {f"encoder.{k}" for k in encoder.state_dict()} | {
        "bottleneck.anchor_hash_bytes"
    }
    clone = nn.ModuleDict(
        {
            "encoder": encoder,
            "bottleneck": RelativeProjection(ANCHOR_INPUTS, embed=encoder, anchor_hash=HASH_B),
        }
    )
    with pytest.raises(RelstitchError, match="recorded for anchors"):
        clone.load_state_dict(model.state_dict())


def test_bf16_autocast_runs() -> None:
    encoder = tiny_encoder()
    layer = RelativeProjection(ANCHOR_INPUTS, embed=encoder, anchor_hash=HASH_A)
    x = torch.randn(300, 4, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r = layer(encoder(x))
        assert r.dtype == torch.bfloat16
        r.float().sum().backward()
        with torch.no_grad():  # the chunked, no-grad path too
            assert layer(encoder(x)).shape == (300, 10)
    assert x.grad is not None and torch.isfinite(x.grad).all()
    reference = relative_projection(encoder(x), encoder(ANCHOR_INPUTS))
    assert torch.allclose(r.float(), reference, atol=0.05)  # bf16 keeps ~3 digits


def test_relative_head_is_the_registry_head_on_the_layer() -> None:
    encoder = tiny_encoder()
    layer = RelativeProjection(ANCHOR_INPUTS, embed=encoder, anchor_hash=HASH_A)
    head = RelativeHead(layer, num_classes=3, hidden=16)
    assert head.architecture == {
        "name": "vision-head",
        "args": {"in_dim": 10, "num_classes": 3, "hidden": 16},
    }
    x = torch.randn(4, 4, 4)
    out = head(encoder(x))
    assert out.shape == (4, 3)
    assert torch.allclose(out, head.head(layer(encoder(x))))
    assert "projection.anchor_hash_bytes" in head.state_dict()


@pytest.mark.slow
def test_torch_compile_runs() -> None:
    try:
        import torch._dynamo  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        pytest.skip(f"torch.compile is unavailable: {exc}")
    encoder = tiny_encoder()
    layer = RelativeProjection(ANCHOR_INPUTS, embed=encoder, anchor_hash=HASH_A)
    compiled = torch.compile(layer)
    x = torch.randn(5, 4, 4, requires_grad=True)
    try:
        r = compiled(encoder(x))
    except Exception as exc:  # no C compiler on this machine: inductor cannot build its kernels
        if "compiler" in str(exc).lower() or "InvalidCxxCompiler" in type(exc).__name__:
            pytest.skip(f"torch.compile cannot build kernels here: {type(exc).__name__}")
        raise
    assert torch.allclose(r, layer(encoder(x)), atol=1e-5)
    r.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
