"""Translation baselines (Procrustes, least squares, affine), their place in stitch and eval-matrix
beside relative stitching, and the null baseline that must collapse — on the shipped zoo."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import torch
from cli_checks import one_line_error

from relstitch.anchors import load_anchors
from relstitch.checkpoints import load_decoder, load_encoder
from relstitch.controls import derangement, shuffled_anchor_space
from relstitch.data import load_dataset
from relstitch.encoding import embed, encode
from relstitch.errors import RelstitchError, RelstitchWarning
from relstitch.matrix import eval_matrix
from relstitch.stitching import evaluate_pair
from relstitch.translation import METHODS, evaluate_translation, fit_translation, procrustes

ZOO = Path(__file__).resolve().parent.parent / "checkpoints"


def orthogonal(dim: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(
        torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    return q * torch.sign(torch.diagonal(r))


def points(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------- the maps
def test_procrustes_recovers_a_known_orthogonal_map_exactly():
    x, q = points(40, 12, 0), orthogonal(12, 1)
    torch.testing.assert_close(procrustes(x, x @ q), q)


def test_the_full_pipeline_recovers_rotation_rescaling_and_shift_with_isotropic_scaling():
    x, q = points(200, 10, 2), orthogonal(10, 3)
    y = 4.0 * x @ q + 7.0
    for method in ("procrustes", "lstsq", "lstsq-ortho"):
        translation = fit_translation(
            x[:50], y[:50], method, scaling="isotropic"
        )  # fitted on 50 anchors only
        torch.testing.assert_close(translation(x[50:]), y[50:])


def test_zero_padding_maps_a_smaller_space_into_a_larger_one():
    x = points(60, 6, 4)
    q = orthogonal(9, 5)
    y = torch.nn.functional.pad(x, (0, 3)) @ q  # x lives in a 6-d subspace of the 9-d target
    translation = fit_translation(x[:30], y[:30], "procrustes", scaling="none")
    out = translation(x[30:])
    assert out.shape == (30, 9)
    torch.testing.assert_close(out, y[30:])
    back = fit_translation(y[:30], x[:30], "procrustes", scaling="none")(
        y[30:]
    )  # and the way down: truncated
    torch.testing.assert_close(back, x[30:])


def test_lstsq_recovers_a_general_linear_map_and_lstsq_ortho_is_orthogonal():
    x, m = points(80, 8, 6), points(8, 8, 7)
    torch.testing.assert_close(
        fit_translation(x[:40], x[:40] @ m, "lstsq", scaling="none")(x[40:]), x[40:] @ m
    )
    ortho = fit_translation(x[:40], x[:40] @ m, "lstsq-ortho", scaling="none").matrix
    torch.testing.assert_close(ortho.T @ ortho, torch.eye(8, dtype=ortho.dtype))


def test_affine_is_deterministic_for_a_seed_and_fits_better_than_doing_nothing():
    x, q = points(100, 8, 8), orthogonal(8, 9)
    y = x @ q + 1.0
    a, b = fit_translation(x, y, "affine", seed=0), fit_translation(x, y, "affine", seed=0)
    torch.testing.assert_close(a.matrix, b.matrix)
    assert a.bias is not None
    error = float(((a(x) - y) ** 2).mean())
    assert error < 0.5 * float(((x - y) ** 2).mean())


# ----------------------------------------------------------------- fewer anchors than dimensions
def test_procrustes_with_fewer_anchors_than_dimensions_is_unique():
    x, q = points(6, 10, 10), orthogonal(10, 11)  # 6 anchors span 6 of 10 dimensions
    r = procrustes(x, x @ q)
    torch.testing.assert_close(x @ r, x @ q)  # exact on the anchors
    span = torch.linalg.qr(x.T).Q  # [10, 6]
    torch.testing.assert_close(r, span @ span.T @ q)  # q on the anchors' span, zero off it: nothing invented
    order = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    # the same anchors in another order: only rounding differs (U Vᵀ of the full SVD moved by ~1 here)
    torch.testing.assert_close(procrustes(x[order], (x @ q)[order]), r, rtol=0, atol=1e-10)


def test_translation_bytes_do_not_depend_on_the_thread_count():
    x, y = (
        points(150, 256, 12),
        points(150, 256, 13),
    )  # k < d: U Vᵀ of the full SVD differed by 0.27 at 1 vs 2 threads
    before, fitted = torch.get_num_threads(), {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with pytest.warns(RelstitchWarning):
                fitted[threads] = [fit_translation(x, y, m).matrix for m in ("procrustes", "lstsq-ortho")]
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(fitted[1], fitted[2], strict=True))


def test_enough_anchors_give_an_exactly_orthogonal_map_and_no_warning():
    x, y = points(40, 12, 14), points(40, 12, 15)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RelstitchWarning)
        fit_translation(x, y, "lstsq")
        for method in ("procrustes", "lstsq-ortho"):
            matrix = fit_translation(x, y, method).matrix
            torch.testing.assert_close(
                matrix.T @ matrix, torch.eye(12, dtype=matrix.dtype), rtol=0, atol=1e-12
            )


def test_fewer_anchors_than_dimensions_warn_that_only_their_span_is_determined():
    x, y = points(5, 8, 16), points(5, 8, 17)
    for method in ("procrustes", "lstsq", "lstsq-ortho"):  # centred, 5 anchors span 4 dimensions
        with pytest.warns(
            RelstitchWarning,
            match=rf"\({method}\): the 5 anchors determine the map on 4 of 8 latent dimensions only "
            r"\(their span\)",
        ) as caught:
            fit_translation(x, y, method)
        assert len(caught) == 1 and "land on the target anchors' mean" in str(caught[0].message)
    with pytest.warns(RelstitchWarning, match="land at the origin"):
        fit_translation(
            x, y, "procrustes", scaling="none"
        )  # uncentred: 5 anchors span 5 dimensions, still < 8
    with warnings.catch_warnings():
        warnings.simplefilter("error", RelstitchWarning)
        fit_translation(x, y, "affine")  # gradient descent: no rank to speak of, no warning


def test_latents_that_span_fewer_dimensions_than_the_anchors_could_say_so_not_more_anchors():
    """More anchors than dimensions already (50 in 8-d), but the source latents vary in 7 directions only
    (one coordinate copies another): the warning says that, not 'use more anchors'."""
    x, y = points(50, 8, 18), points(50, 8, 19)
    x[:, 7] = x[:, 0]
    for method in ("procrustes", "lstsq", "lstsq-ortho"):
        with pytest.warns(RelstitchWarning) as caught:
            fit_translation(x, y, method)
        (message,) = {str(w.message) for w in caught}
        assert (
            f"translation ({method}): the map is determined on 7 of 8 latent dimensions only: the 50 "
            "anchors' centred latents span only 7 of the source space's 8 dimensions" in message
        ), message
        assert "more anchors than dimensions" not in message and "on the target anchors' mean" in message
    with pytest.warns(RelstitchWarning, match="the 50 anchors' latents span only 7 of the target space's 8"):
        fit_translation(
            y, x, "procrustes", scaling="none"
        )  # uncentred, and the degenerate side is the target


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rotate",), "unknown translation method"),
        (("procrustes",), "same anchors in both spaces"),
    ],
)
def test_translation_mistakes_are_one_line_errors(args, message):
    with pytest.raises(RelstitchError, match=message):
        fit_translation(points(10, 4, 0), points(9, 4, 1), *args)


def test_derangement_moves_every_anchor():
    for n in (2, 3, 17, 300):
        perm = derangement(n, seed=n)
        assert sorted(perm.tolist()) == list(range(n)) and (perm != torch.arange(n)).all()


# ------------------------------------------------------------------------------ on the shipped zoo
@pytest.fixture(scope="module")
def zoo_run():
    """The shipped zoo's CNNs on 500 built-in test images (encoded once for the module)."""
    anchors = load_anchors(ZOO / "anchors.safetensors")
    data = load_dataset("builtin:test", limit=500)
    spaces = {
        name: encode(load_encoder(ZOO / f"{name}.encoder.safetensors"), anchors, data)
        for name in ("cnn-abs-s0", "cnn-abs-s1", "cnn-rel-s0", "cnn-rel-s1")
    }
    return anchors, data, spaces


def test_procrustes_stitches_absolute_decoders_that_raw_latents_cannot(zoo_run):
    _, data, spaces = zoo_run
    decoder = load_decoder(ZOO / "cnn-abs-s0.decoder.safetensors")
    target = spaces["cnn-abs-s0"].anchor_absolute
    raw = evaluate_pair(spaces["cnn-abs-s1"], decoder, data).scores["accuracy"]
    mapped = evaluate_translation(spaces["cnn-abs-s1"], target, decoder, "procrustes", data)
    assert mapped.method == "procrustes" and mapped.stitched and mapped.space == "absolute"
    assert raw < 0.3 < 0.7 < mapped.scores["accuracy"]
    own = evaluate_translation(spaces["cnn-abs-s0"], target, decoder, "procrustes", data)
    assert not own.stitched
    assert (
        own.scores == evaluate_pair(spaces["cnn-abs-s0"], decoder, data).scores
    )  # the identity map, exactly


def test_procrustes_on_fewer_zoo_anchors_than_latent_dimensions(zoo_run):
    _, data, spaces = zoo_run
    decoder = load_decoder(ZOO / "cnn-abs-s0.decoder.safetensors")
    few = {
        n: dataclasses.replace(spaces[n], anchor_absolute=spaces[n].anchor_absolute[:32], _relative_cache={})
        for n in ("cnn-abs-s0", "cnn-abs-s1")
    }  # 32 anchors, 64-d latents
    with pytest.warns(
        RelstitchWarning, match="the 32 anchors determine the map on 31 of 64 latent dimensions only"
    ):
        stitched = evaluate_translation(
            few["cnn-abs-s1"], few["cnn-abs-s0"].anchor_absolute, decoder, "procrustes", data
        )
    assert stitched.scores["accuracy"] > 0.7  # measured 0.80 on 1,000 images (0.82 with all 300 anchors)
    own = few["cnn-abs-s0"].anchor_absolute
    with pytest.warns(RelstitchWarning):
        onto_itself = fit_translation(own, own, "procrustes")
    torch.testing.assert_close(
        onto_itself(own).float(), own
    )  # the anchors lie in their own span: mapped unchanged


def test_the_null_baseline_collapses_relative_and_translated_stitching(zoo_run):
    _, data, spaces = zoo_run
    relative = load_decoder(ZOO / "cnn-rel-s0.decoder.safetensors")
    absolute = load_decoder(ZOO / "cnn-abs-s0.decoder.safetensors")
    source = spaces["cnn-rel-s1"]
    shuffled = shuffled_anchor_space(source)
    assert (
        not shuffled._relative_cache
        and source.anchor_absolute.data_ptr() != shuffled.anchor_absolute.data_ptr()
    )
    real = evaluate_pair(source, relative, data).scores["accuracy"]
    null = evaluate_pair(shuffled, relative, data).scores["accuracy"]
    assert real > 0.7 and null < 0.35
    target = spaces["cnn-abs-s0"].anchor_absolute
    real = evaluate_translation(spaces["cnn-abs-s1"], target, absolute, "procrustes", data).scores["accuracy"]
    null = evaluate_translation(
        shuffled_anchor_space(spaces["cnn-abs-s1"]), target, absolute, "procrustes", data
    )
    assert real > 0.7 and null.scores["accuracy"] < 0.35


def test_eval_matrix_puts_methods_and_controls_side_by_side(zoo_run):
    anchors, data, _ = zoo_run
    encoders = [ZOO / f"{n}.encoder.safetensors" for n in ("cnn-abs-s0", "cnn-abs-s1", "cnn-rel-s0")]
    decoders = [
        load_decoder(ZOO / f"{n}.decoder.safetensors") for n in ("cnn-rel-s0", "cnn-abs-s0", "cnn-abs-s2")
    ]
    result = eval_matrix(
        encoders, decoders, anchors, data, methods=["relative", "absolute", *METHODS], null_baseline=True
    )
    by = {(p.encoder, p.decoder, p.method): p for p in result.pairs}
    assert len(by) == len(result.pairs)  # one pair per (encoder, decoder, method)
    methods = {p.method for p in result.pairs}
    assert methods == {"relative", "relative-null", "absolute", *METHODS, *(f"{m}-null" for m in METHODS)}
    assert all(p.control == "shuffled-anchors" for p in result.pairs if p.method.endswith("-null"))
    assert by[("cnn-abs-s1", "cnn-rel-s0", "relative")].space == "relative"
    assert ("cnn-abs-s1", "cnn-rel-s0", "procrustes") not in by  # translations feed absolute decoders only
    stitched = by[("cnn-abs-s1", "cnn-abs-s0", "procrustes")]
    assert stitched.error is None and stitched.scores["accuracy"] > 0.7
    assert by[("cnn-abs-s1", "cnn-abs-s0", "procrustes-null")].scores["accuracy"] < 0.35
    missing = by[("cnn-abs-s1", "cnn-abs-s2", "lstsq")]  # cnn-abs-s2's own encoder was not given
    assert missing.error and "not among the encoders given" in missing.error and "--encoders" in missing.error
    assert result.cell("cnn-abs-s1", "cnn-abs-s0").method == "absolute"
    assert result.cell("cnn-abs-s1", "cnn-abs-s0", "affine").method == "affine"


def test_eval_matrix_refuses_unknown_methods_and_methods_no_decoder_fits(zoo_run):
    anchors, data, _ = zoo_run
    relative_only = [load_decoder(ZOO / "cnn-rel-s0.decoder.safetensors")]
    with pytest.raises(RelstitchError, match="unknown method"):
        eval_matrix(
            [ZOO / "cnn-rel-s0.encoder.safetensors"], relative_only, anchors, data, methods=["rotation"]
        )
    with pytest.raises(RelstitchError, match="no decoder fits"):
        eval_matrix(
            [ZOO / "cnn-rel-s0.encoder.safetensors"], relative_only, anchors, data, methods=["procrustes"]
        )


def test_target_anchor_latents_come_from_the_decoders_own_encoder(zoo_run):
    anchors, _, spaces = zoo_run
    torch.testing.assert_close(
        embed(load_encoder(ZOO / "cnn-abs-s0.encoder.safetensors"), anchors.inputs),
        spaces["cnn-abs-s0"].anchor_absolute,
    )


# ------------------------------------------------------------------------------------------ CLI
def test_stitch_with_a_translation_finds_the_decoders_own_encoder(cli):
    args = (
        "stitch",
        ZOO / "cnn-abs-s1.encoder.safetensors",
        ZOO / "cnn-abs-s0.decoder.safetensors",
        "--anchors",
        ZOO / "anchors.safetensors",
        "--limit",
        "200",
    )
    result = cli(*args, "--method", "lstsq-ortho", "--json")
    assert result.exit_code == 0, result.output
    pair = json.loads(result.stdout)
    assert pair["method"] == "lstsq-ortho" and pair["stitched"] and pair["scores"]["accuracy"] > 0.7
    wrong = cli(*args, "--method", "procrustes", "--target-encoder", ZOO / "cnn-abs-s2.encoder.safetensors")
    assert wrong.exit_code == 1 and "--target-encoder" in wrong.stderr and "Traceback" not in wrong.stderr
    relative = cli(
        "stitch",
        ZOO / "cnn-abs-s1.encoder.safetensors",
        ZOO / "cnn-rel-s0.decoder.safetensors",
        "--anchors",
        ZOO / "anchors.safetensors",
        "--method",
        "procrustes",
    )
    assert relative.exit_code == 1 and "reads relative vectors" in relative.stderr
    native = cli(*args, "--method", "relative")
    assert native.exit_code == 2 and "reads absolute vectors" in native.stderr


def test_eval_matrix_cli_reports_methods_and_the_control(cli, tmp_path):
    out = tmp_path / "m.json"
    encoders = [
        str(ZOO / f"{n}.encoder.safetensors")
        for n in ("cnn-abs-s0", "cnn-abs-s1", "cnn-rel-s0", "cnn-rel-s1")
    ]
    decoders = [
        str(ZOO / f"{n}.decoder.safetensors")
        for n in ("cnn-abs-s0", "cnn-abs-s1", "cnn-rel-s0", "cnn-rel-s1")
    ]
    result = cli(
        "eval-matrix",
        *(a for e in encoders for a in ("-e", e)),
        *(a for d in decoders for a in ("-D", d)),
        "--anchors",
        ZOO / "anchors.safetensors",
        "--limit",
        "200",
        "--method",
        "relative,absolute,procrustes",
        "--null-baseline",
        "--json",
        out,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    pairs = report["pairs"]
    assert {p["method"] for p in pairs} == {
        "relative",
        "absolute",
        "procrustes",
        "relative-null",
        "procrustes-null",
    }
    controls = [p for p in pairs if p["control"]]
    assert controls and all(
        p["method"].endswith("-null") and p["control"] == "shuffled-anchors" for p in controls
    )

    def mean(method: str) -> float:
        values = [
            p["scores"]["accuracy"]
            for p in pairs
            if p["method"] == method
            and p["stitched"]
            and p["encoder"].split("-")[1] == p["decoder"].split("-")[1]
        ]  # same bottleneck: the method itself
        return sum(values) / len(values)

    assert mean("relative") > 0.7 and mean("procrustes") > 0.7 and mean("absolute") < 0.3
    assert mean("relative-null") < 0.35 and mean("procrustes-null") < 0.35
    bad = cli("eval-matrix", "--method", "relative,rotate", "--limit", "10")
    assert bad.exit_code == 2 and "unknown method" in bad.stderr


def test_translation_scaling_reaches_the_fit_from_stitch_and_eval_matrix(cli, tmp_path, zoo_run):
    """--translation-scaling is the library's ``scaling``: the CLI's scores equal the library's for that
    scaling."""
    anchors, data, spaces = zoo_run
    decoder = load_decoder(ZOO / "cnn-abs-s0.decoder.safetensors")
    target = spaces["cnn-abs-s0"].anchor_absolute
    expected = {
        s: evaluate_translation(spaces["cnn-abs-s1"], target, decoder, "lstsq", data, scaling=s).scores[
            "accuracy"
        ]
        for s in ("standard", "none")
    }
    assert expected["standard"] != expected["none"]  # the option must be able to change a score
    common = ["--anchors", ZOO / "anchors.safetensors", "--limit", "500"]
    for scaling in ("standard", "none"):
        one = cli(
            "stitch",
            ZOO / "cnn-abs-s1.encoder.safetensors",
            ZOO / "cnn-abs-s0.decoder.safetensors",
            *common,
            "--method",
            "lstsq",
            "--translation-scaling",
            scaling,
            "--json",
        )
        assert one.exit_code == 0, one.stderr
        assert json.loads(one.stdout)["scores"]["accuracy"] == pytest.approx(expected[scaling], abs=1e-9)
        out = tmp_path / f"{scaling}.json"
        matrix = cli(
            "eval-matrix",
            "-e",
            ZOO / "cnn-abs-s1.encoder.safetensors",
            "-e",
            ZOO / "cnn-abs-s0.encoder.safetensors",
            "-D",
            ZOO / "cnn-abs-s0.decoder.safetensors",
            *common,
            "--method",
            "lstsq",
            "--translation-scaling",
            scaling,
            "--json",
            out,
        )
        assert matrix.exit_code == 0, matrix.stderr
        report = json.loads(out.read_text())
        assert report["config"]["translation_scaling"] == scaling
        cell = next(p for p in report["pairs"] if p["encoder"] == "cnn-abs-s1" and p["method"] == "lstsq")
        assert cell["scores"]["accuracy"] == pytest.approx(expected[scaling], abs=1e-9)


@pytest.mark.parametrize(
    "args",
    [
        ("eval-matrix", "--translation-scaling", "none"),  # no translation method: it would be ignored
        ("eval-matrix", "--method", "procrustes", "--translation-scaling", "whiten"),
        (
            "stitch",
            str(ZOO / "cnn-abs-s1.encoder.safetensors"),
            str(ZOO / "cnn-abs-s0.decoder.safetensors"),
            "--translation-scaling",
            "none",
        ),
    ],
)
def test_translation_scaling_misuse_is_a_usage_error(cli, args):
    line = one_line_error(cli(*args), 2)
    assert "--translation-scaling" in line
