"""The projection menu: each similarity against its formula, the invariances each has and lacks,
centering, post-normalisation, top-k, the product of invariances, and the options on the CLI."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from relstitch.anchor_set import load_anchors
from relstitch.architectures import DECODERS, create_decoder
from relstitch.checkpoints import load_decoder, load_encoder
from relstitch.encoding import encode, load_embeddings
from relstitch.errors import RelstitchError
from relstitch.io.artifacts import save_artifact
from relstitch.projection import (
    EPS,
    SIMILARITIES,
    ProjectionConfig,
    anchor_statistics,
    relative_projection,
    row_scale_free_applies,
    standardise,
)
from relstitch.stitching import decoder_inputs, reads_row_scale_free

REPO_ZOO = Path(__file__).resolve().parent.parent / "checkpoints"  # the shipped zoo


def random_orthogonal(dim: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def data(seed: int = 0, n: int = 20, k: int = 7, dim: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=gen, dtype=torch.float64), torch.randn(
        k, dim, generator=gen, dtype=torch.float64
    )


def direct(x: torch.Tensor, a: torch.Tensor, name: str) -> torch.Tensor:
    """Each similarity written the slow, obvious way: a double loop over samples and anchors."""
    out = torch.empty(len(x), len(a), dtype=x.dtype)
    for i, u in enumerate(x):
        for j, v in enumerate(a):
            cos = float(u @ v / (u.norm() * v.norm()))
            out[i, j] = {
                "cosine": cos,
                "angular": 1 - math.acos(max(-1.0, min(1.0, cos))) / math.pi,
                "euclidean": -float(((u - v) ** 2).sum().sqrt()),
                "l1": -float((u - v).abs().sum()),
                "linf": -float((u - v).abs().max()),
            }[name]
    return out


@pytest.mark.parametrize("name", list(SIMILARITIES))
def test_each_similarity_matches_its_direct_formula(name):
    x, a = data()
    torch.testing.assert_close(
        relative_projection(x, a, ProjectionConfig(similarity=name)), direct(x, a, name)
    )


@pytest.mark.parametrize("name", list(SIMILARITIES))
def test_standard_centering_is_the_formula_on_standardised_latents(name):
    x, a = data(1)
    mean, std = a.mean(0), a.std(0, correction=0)
    expected = direct((x - mean) / std, (a - mean) / std, name)
    torch.testing.assert_close(
        relative_projection(x, a, ProjectionConfig(similarity=name, centering="standard")), expected
    )


def test_post_normalisations_match_their_formulas():
    x, a = data(2)
    r = direct(x, a, "euclidean")
    l2 = relative_projection(x, a, ProjectionConfig(similarity="euclidean", normalization="l2"))
    torch.testing.assert_close(l2, r / r.norm(dim=1, keepdim=True))
    standard = relative_projection(x, a, ProjectionConfig(similarity="euclidean", normalization="standard"))
    torch.testing.assert_close(standard, (r - r.mean(1, keepdim=True)) / r.std(1, keepdim=True, correction=0))


def test_top_k_keeps_exactly_the_k_largest_and_zeroes_the_rest():
    x, a = data(3, n=30, k=12)
    full = relative_projection(x, a)
    sparse = relative_projection(x, a, ProjectionConfig(top_k=4))
    assert ((sparse != 0).sum(dim=1) == 4).all()
    kept = sparse != 0
    torch.testing.assert_close(sparse[kept], full[kept])  # kept values unchanged
    # every kept value is at least every dropped value of its row
    assert (
        full.masked_fill(~kept, math.inf).min(1).values >= full.masked_fill(kept, -math.inf).max(1).values
    ).all()


def test_product_of_invariances_concatenates_normalised_blocks():
    x, a = data(4, k=9)
    config = ProjectionConfig(similarity="cosine,euclidean, l1", normalization="standard")
    r = relative_projection(x, a, config)
    assert r.shape == (len(x), 27) and config.output_dim(9) == 27
    for block, name in enumerate(("cosine", "euclidean", "l1")):
        alone = relative_projection(x, a, ProjectionConfig(similarity=name, normalization="standard"))
        torch.testing.assert_close(r[:, block * 9 : (block + 1) * 9], alone)
        torch.testing.assert_close(
            r[:, block * 9 : (block + 1) * 9].mean(1), torch.zeros(len(x), dtype=r.dtype)
        )


@pytest.mark.parametrize(
    "config",
    [
        ProjectionConfig(similarity="angular", centering="standard"),
        ProjectionConfig(similarity="euclidean,linf", normalization="l2", top_k=3),
        ProjectionConfig(similarity="l1", centering="center", normalization="standard"),
    ],
)
def test_chunking_changes_nothing(config):
    x, a = data(5, n=257, k=10)
    torch.testing.assert_close(
        relative_projection(x, a, config, chunk_size=16), relative_projection(x, a, config, chunk_size=None)
    )


# ----------------------------------------------------------------------------------- invariances
def transformed(x, a, seed, *, rotate=False, scale=1.0, shift=False):
    gen = torch.Generator().manual_seed(seed)
    q = random_orthogonal(x.shape[1], gen) if rotate else torch.eye(x.shape[1], dtype=x.dtype)
    b = 3 * torch.randn(x.shape[1], generator=gen, dtype=x.dtype) if shift else 0
    return scale * x @ q + b, scale * a @ q + b


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1), scale=st.floats(1e-2, 1e2), name=st.sampled_from(["cosine", "angular"])
)
def test_angle_based_similarities_ignore_rotation_and_rescaling(seed, scale, name):
    x, a = data(seed % 1000)
    config = ProjectionConfig(similarity=name)
    torch.testing.assert_close(
        relative_projection(*transformed(x, a, seed, rotate=True, scale=scale), config),
        relative_projection(x, a, config),
        rtol=1e-7,
        atol=1e-7,
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(["euclidean", "l1", "linf"]))
def test_distances_ignore_translation(seed, name):
    x, a = data(seed % 1000)
    config = ProjectionConfig(similarity=name)
    torch.testing.assert_close(
        relative_projection(*transformed(x, a, seed, shift=True), config),
        relative_projection(x, a, config),
        rtol=1e-7,
        atol=1e-7,
    )


def test_euclidean_ignores_rotation_but_l1_and_linf_do_not():
    x, a = data(6)
    moved = transformed(x, a, 6, rotate=True)
    same = ProjectionConfig(similarity="euclidean")
    torch.testing.assert_close(relative_projection(*moved, same), relative_projection(x, a, same))
    for name in ("l1", "linf"):
        config = ProjectionConfig(similarity=name)
        assert (relative_projection(*moved, config) - relative_projection(x, a, config)).abs().max() > 0.1


@pytest.mark.parametrize("name", ["euclidean", "l1", "linf"])
def test_distances_feel_rescaling_until_normalised_per_sample(name):
    x, a = data(7)
    scaled = transformed(x, a, 7, scale=5.0)
    raw = ProjectionConfig(similarity=name)
    assert (relative_projection(*scaled, raw) - relative_projection(x, a, raw)).abs().max() > 1.0
    for normalization in ("l2", "standard"):
        config = ProjectionConfig(similarity=name, normalization=normalization)
        torch.testing.assert_close(relative_projection(*scaled, config), relative_projection(x, a, config))


def test_cosine_feels_translation_unless_centered_and_standard_centering_ignores_per_axis_scaling():
    x, a = data(8)
    shifted = transformed(x, a, 8, shift=True)
    assert (relative_projection(*shifted) - relative_projection(x, a)).abs().max() > 0.1
    for centering in ("center", "standard"):
        config = ProjectionConfig(centering=centering)
        torch.testing.assert_close(relative_projection(*shifted, config), relative_projection(x, a, config))
    axis_scale = torch.tensor([1.0, 10.0, 0.1, 3.0, 0.5], dtype=torch.float64)
    standard, center = ProjectionConfig(centering="standard"), ProjectionConfig(centering="center")
    torch.testing.assert_close(
        relative_projection(x * axis_scale, a * axis_scale, standard), relative_projection(x, a, standard)
    )
    assert (
        relative_projection(x * axis_scale, a * axis_scale, center) - relative_projection(x, a, center)
    ).abs().max() > 0.1


@pytest.mark.parametrize("name", list(SIMILARITIES))
def test_a_sample_equal_to_an_anchor_has_finite_gradients(name):
    """Training end to end embeds anchors that are also in the batch: no NaN may come out."""
    _, a = data(9)
    x = a[:3].clone().requires_grad_(True)
    relative_projection(x, a, ProjectionConfig(similarity=name)).sum().backward()
    assert torch.isfinite(x.grad).all()


# ------------------------------------------------------------------------------------- the config
def test_config_is_hashable_and_spelling_is_canonical():
    a = ProjectionConfig(similarity="Cosine + L1", normalization="l2")
    b = ProjectionConfig(similarity="cosine,l1", normalization="l2")
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert ProjectionConfig(centering=True) == ProjectionConfig(centering="center")
    assert ProjectionConfig(centering=False) == ProjectionConfig()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ProjectionConfig(similarity="cosine,dot"), "unknown similarity 'dot'"),
        (ProjectionConfig(similarity="cosine,cosine", normalization="l2"), "listed twice"),
        (ProjectionConfig(centering="median"), "unknown centering"),
        (ProjectionConfig(normalization="batch"), "unknown normalization"),
        (ProjectionConfig(top_k=0), "top-k"),
        (ProjectionConfig(similarity="cosine,euclidean"), "needs each block normalised"),
    ],
)
def test_impossible_configs_are_refused_in_one_line(config, message):
    with pytest.raises(RelstitchError, match=message):
        config.validate()


def test_top_k_above_the_anchor_count_is_refused():
    x, a = data(10, k=5)
    with pytest.raises(RelstitchError, match="more than the 5 anchors"):
        relative_projection(x, a, ProjectionConfig(top_k=6))


def test_a_decoder_written_with_boolean_centering_still_loads(tmp_path):
    """Decoders from before the three centering modes stored ``centering: true/false``."""
    module = create_decoder("vision-head", in_dim=8, num_classes=3, hidden=4)
    meta = {
        "name": "old",
        "architecture": {"name": "vision-head", "args": {"in_dim": 8, "num_classes": 3, "hidden": 4}},
        "space": "relative",
        "input_dim": 8,
        "task": {"type": "classification", "classes": ["a", "b", "c"]},
        "projection": {"similarity": "cosine", "centering": True},
        "anchor_hash": "0" * 64,
        "encoder_hash": "1" * 64,
    }
    path = save_artifact(tmp_path / "old.decoder.safetensors", "decoder", module.state_dict(), meta)
    decoder = load_decoder(path)
    assert decoder.projection == ProjectionConfig(centering="center")
    meta["projection"] = {"similarity": "cosine", "centering": False}
    decoder = load_decoder(
        save_artifact(tmp_path / "older.decoder.safetensors", "decoder", module.state_dict(), meta)
    )
    assert decoder.projection == ProjectionConfig()


# ---------------------------------------------------------------------------------------- the CLI
def test_encode_writes_the_product_projection_and_records_it(cli, tmp_path):
    out = tmp_path / "e.safetensors"
    result = cli(
        "encode",
        REPO_ZOO / "cnn-rel-s0.encoder.safetensors",
        "--anchors",
        REPO_ZOO / "anchors.safetensors",
        "--limit",
        "50",
        "-o",
        out,
        "--similarity",
        "cosine,euclidean",
        "--normalization",
        "standard",
        "--centering",
        "center",
        "--top-k",
        "30",
    )
    assert result.exit_code == 0, result.output
    tensors = load_file(str(out))
    assert tensors["relative"].shape == (50, 600)
    assert ((tensors["relative"] != 0).sum(dim=1) == 60).all()  # top-30 in each of the two blocks
    loaded = load_embeddings(out)
    config = ProjectionConfig(
        similarity="cosine,euclidean", centering="center", normalization="standard", top_k=30
    )
    assert loaded.meta["projection"] == config.to_dict()
    torch.testing.assert_close(loaded.relative(config), tensors["relative"].float())


def test_bad_projection_options_are_usage_errors(cli, tmp_path):
    args = ("encode", REPO_ZOO / "cnn-rel-s0.encoder.safetensors", "-o", tmp_path / "e.safetensors")
    result = cli(*args, "--similarity", "cosine,l1")
    assert result.exit_code == 2 and "normalis" in result.stderr and "Traceback" not in result.stderr
    result = cli(*args, "--centering", "yes")
    assert result.exit_code == 2 and "unknown centering 'yes'" in result.stderr
    assert not (tmp_path / "e.safetensors").exists()


def test_train_records_the_projection_in_the_decoder(cli, tmp_path):
    prefix = tmp_path / "t"
    result = cli(
        "train",
        prefix,
        "--arch",
        "mlp",
        "--anchors",
        REPO_ZOO / "anchors.safetensors",
        "--epochs",
        "1",
        "--limit",
        "300",
        "--eval-data",
        "builtin:test",
        "--similarity",
        "angular,linf",
        "--normalization",
        "l2",
        "--centering",
        "standard",
    )
    assert result.exit_code == 0, result.output
    decoder = load_decoder(f"{prefix}.decoder.safetensors")
    assert decoder.projection == ProjectionConfig(
        similarity="angular,linf", centering="standard", normalization="l2"
    )
    assert decoder.input_dim == 600


# ------------------------------------------------------------- the row-scale-free cosine (issue #15)
FAST_CONFIGS = [
    ProjectionConfig(centering=centering, top_k=top_k)
    for centering in ("none", "center", "standard")
    for top_k in (None, 3)
]


def latents_with_degenerate_rows(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples of norms from 1e-12 to 1e3 (and an exact zero row, also after centering), and anchors."""
    x, a = data(7, n=24, k=9, dim=6)
    x = x.to(dtype) * torch.logspace(-12, 3, len(x), dtype=dtype)[:, None]
    x[0] = 0
    x[1] = a.to(dtype).mean(0)  # zero once centered
    return x, a.to(dtype)


def rescaled_rows(x: torch.Tensor, a: torch.Tensor, config: ProjectionConfig) -> torch.Tensor:
    """The normal projection with each row multiplied by its (centered) sample's clamped norm."""
    mean, std = anchor_statistics(a, config.centering)
    norms = standardise(x, mean, std).norm(dim=1, keepdim=True).clamp_min(EPS)
    return relative_projection(x, a, config) * norms


@pytest.mark.parametrize("config", FAST_CONFIGS, ids=ProjectionConfig.describe)
@pytest.mark.parametrize("budget", [1 << 30, 2_000])  # one block, and blocks of a few rows
def test_row_scale_free_is_each_row_times_its_norm(config, budget):
    x, a = latents_with_degenerate_rows()
    assert row_scale_free_applies(config)
    fast = relative_projection(x, a, config, row_scale_free=True, chunk_size=None, max_chunk_bytes=budget)
    torch.testing.assert_close(fast, rescaled_rows(x, a, config), rtol=1e-12, atol=1e-15)
    zero = 0 if config.centering == "none" else 1  # the row whose (centered) latent is 0
    assert torch.equal(fast[zero], torch.zeros_like(fast[zero]))  # zero, as it is in the normal path
    # With grad the rows are not blocked: the same numbers.
    grad = relative_projection(x.clone().requires_grad_(), a, config, row_scale_free=True)
    torch.testing.assert_close(grad.detach(), fast, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "config",
    [ProjectionConfig(similarity=name) for name in SIMILARITIES if name != "cosine"]
    + [
        ProjectionConfig(normalization="l2"),
        ProjectionConfig(normalization="standard", top_k=3),
        ProjectionConfig(similarity="cosine,euclidean", normalization="standard"),
    ],
    ids=ProjectionConfig.describe,
)
def test_row_scale_free_changes_nothing_where_the_rows_are_not_a_scale(config):
    x, a = data(8)
    assert not row_scale_free_applies(config)
    assert torch.equal(
        relative_projection(x, a, config, row_scale_free=True), relative_projection(x, a, config)
    )


ROW_SCALE_FREE_HEADS = sorted(name for name in DECODERS if getattr(DECODERS[name], "row_scale_free", False))


def head(name: str, in_dim: int, eps: float | None = None) -> torch.nn.Module:
    """A registered head with random LayerNorm affines (so they matter); ``eps`` replaces its LayerNorms'."""
    kwargs = {} if name == "conv-decoder" else {"num_classes": 5}
    module: torch.nn.Module = create_decoder(name, in_dim=in_dim, **kwargs).eval()
    gen = torch.Generator().manual_seed(3)
    for layer in module.modules():
        if isinstance(layer, torch.nn.LayerNorm):
            layer.weight.data = torch.randn(layer.weight.shape, generator=gen)
            layer.bias.data = torch.randn(layer.bias.shape, generator=gen)
            layer.eps = layer.eps if eps is None else eps
    return module


def test_every_head_of_relstitch_declares_its_leading_layernorm():
    assert ROW_SCALE_FREE_HEADS == ["conv-decoder", "text-head", "vision-head"]
    for name in ROW_SCALE_FREE_HEADS:
        module = head(name, 9)
        first = next(m for m in module.modules() if not list(m.children()))
        assert isinstance(first, torch.nn.LayerNorm) and first.normalized_shape == (9,), name


@pytest.mark.parametrize("name", ROW_SCALE_FREE_HEADS)
@pytest.mark.parametrize("config", FAST_CONFIGS, ids=ProjectionConfig.describe)
def test_head_outputs_are_equal_on_the_row_scale_free_cosine(name, config):
    x, a = latents_with_degenerate_rows(torch.float32)
    with torch.no_grad():
        normal = relative_projection(x, a, config)
        fast = relative_projection(x, a, config, row_scale_free=True)
        norms = standardise(x, *anchor_statistics(a, config.centering)).norm(dim=1)
        zero, large, small = norms == 0, norms >= 1, (norms < 1e-3) & (norms > 0)
        # A LayerNorm without eps is exactly blind to a positive row scale: equal to float32 rounding
        # (zero rows left out: without eps they are 0/0 either way).
        exact = head(name, a.shape[0], eps=0.0)
        torch.testing.assert_close(exact(fast[~zero]), exact(normal[~zero]), rtol=0, atol=1e-5)
        # With the real eps (1e-5): a zero row reads the same (the LayerNorm's bias), latents of norm
        # >= 1 stay within 1e-2, latents of norm << 1 do not: eps/|x|² swamps their variance.
        module = head(name, a.shape[0])
        assert zero.sum() == 1
        torch.testing.assert_close(module(fast[zero]), module(normal[zero]), rtol=0, atol=1e-6)
        torch.testing.assert_close(module(fast[large]), module(normal[large]), rtol=0, atol=1e-2)
        if config.centering == "none":  # centered, the tiny latents are no longer tiny
            assert (module(fast[small]) - module(normal[small])).abs().max() > 1e-2


def test_stitching_feeds_the_fast_path_only_when_asked_and_declared(tiny_zoo, test_data):
    encoder = load_encoder(tiny_zoo.encoder("cnn-rel-s0"))
    decoder = load_decoder(tiny_zoo.decoder("cnn-rel-s1"))
    space = encode(encoder, load_anchors(tiny_zoo.anchors_path), test_data.subset(torch.arange(200)))
    assert reads_row_scale_free(decoder)
    exact = decoder_inputs(space, decoder)
    fast = decoder_inputs(space, decoder, row_scale_free=True)
    torch.testing.assert_close(fast, exact * space.absolute.norm(dim=1, keepdim=True).clamp_min(EPS))
    assert decoder_inputs(space, decoder) is exact  # the space's cached vectors stay the exact ones
    # Not declared (a plain Sequential), or another similarity: the exact vectors, whatever is asked.
    undeclared = replace(decoder, module=torch.nn.Sequential(*decoder.module.net))
    assert not reads_row_scale_free(undeclared)
    assert torch.equal(decoder_inputs(space, undeclared, row_scale_free=True), exact)
    euclid = replace(decoder, projection=ProjectionConfig(similarity="euclidean"))
    assert not reads_row_scale_free(euclid)
