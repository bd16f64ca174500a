"""``relstitch fit`` with projection options: heads on another projection than the file's, no re-encoding.

The embeddings are the tiny zoo's absolute-trained CNN (seed 0, frozen) on 1,000 built-in training images,
written with ``--normalization l2`` so "the file's own projection" differs from encode's defaults and from
the projection asked for. Heads are scored through ``eval-matrix`` and ``stitch`` on the other zoo encoders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_checks import one_line_error

from relstitch.checkpoints import load_decoder, save_decoder
from relstitch.encoding import load_embeddings
from relstitch.errors import UsageError
from relstitch.io.artifacts import read_header
from relstitch.projection import ProjectionConfig, relative_projection
from relstitch.training import FitConfig, fit

EPOCHS = "4"


def ok(result) -> None:
    assert result.exit_code == 0, (result.stdout, result.stderr)


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory: pytest.TempPathFactory, tiny_zoo) -> Path:
    from typer.testing import CliRunner

    from relstitch.cli import app

    path = tmp_path_factory.mktemp("fitproj") / "abs-s0.emb.safetensors"
    result = CliRunner().invoke(
        app,
        [
            "encode",
            str(tiny_zoo.encoder("cnn-abs-s0")),
            "-a",
            str(tiny_zoo.anchors_path),
            "--data",
            "builtin:train",
            "--limit",
            "1000",
            "--normalization",
            "l2",
            "-o",
            str(path),
        ],
    )
    ok(result)
    return path


def test_a_head_fitted_with_centering_records_it_and_stitches(
    cli, tmp_path: Path, tiny_zoo, embeddings: Path
) -> None:
    head = tmp_path / "centered.decoder.safetensors"
    result = cli("fit", embeddings, "-o", head, "--centering", "center", "--epochs", EPOCHS)
    ok(result)
    assert "(cosine, center)" in result.stdout
    # The whole projection is what the options say, as in encode: the file's l2 is not carried over.
    decoder = load_decoder(head)
    assert decoder.projection == ProjectionConfig(centering="center")
    assert read_header(head).metadata["projection"]["centering"] == "center"

    # It was trained on centered vectors computed from the file's latents: on its own training vectors
    # it scores as the module does on relative_projection(centering="center"), and not on the stored (l2)
    # ones.
    space = load_embeddings(embeddings)
    centered = relative_projection(
        space.absolute, space.anchor_absolute, ProjectionConfig(centering="center")
    )
    with torch.no_grad():
        by_hand = (decoder.module(centered).argmax(1) == space.labels).float().mean().item()
        on_stored = (
            decoder.module(space.relative(ProjectionConfig(normalization="l2"))).argmax(1) == space.labels
        )
    own = json.loads(cli("stitch", f"embeddings:{embeddings}", head, "--json").stdout)
    assert own["stitched"] is False and own["scores"]["accuracy"] == pytest.approx(by_hand, abs=1e-9)
    assert by_hand > 0.6 and on_stored.float().mean().item() < by_hand

    # eval-matrix feeds it centered vectors from every zoo encoder: the head's own (diagonal) and three
    # stitched.
    report = tmp_path / "matrix.json"
    encoders = [arg for name in tiny_zoo.names for arg in ("-e", str(tiny_zoo.encoder(name)))]
    ok(
        cli(
            "eval-matrix",
            *encoders,
            "-D",
            head,
            "-a",
            tiny_zoo.anchors_path,
            "--data",
            "builtin:test",
            "--limit",
            "500",
            "--json",
            report,
        )
    )
    doc = json.loads(report.read_text())
    assert [d["projection"]["centering"] for d in doc["decoders"]] == ["center"]
    pairs = {p["encoder"]: p for p in doc["pairs"] if p["method"] == "relative" and not p.get("control")}
    assert set(pairs) == set(tiny_zoo.names) and all(p.get("error") is None for p in pairs.values())
    assert [n for n, p in pairs.items() if not p["stitched"]] == ["cnn-abs-s0"]
    accuracy = {name: pair["scores"]["accuracy"] for name, pair in pairs.items()}
    stitched = [a for name, a in accuracy.items() if name != "cnn-abs-s0"]
    # 10 classes, chance 0.1; measured: diagonal 0.75, stitched 0.70 / 0.50 / 0.71 (rel-s0, rel-s1, abs-s1)
    assert accuracy["cnn-abs-s0"] > 0.6 and min(stitched) > 0.3 and sum(stitched) / 3 > 0.55, accuracy
    # stitch, one pair at a time, gives the matrix's number
    result = cli(
        "stitch",
        tiny_zoo.encoder("cnn-rel-s1"),
        head,
        "-a",
        tiny_zoo.anchors_path,
        "--limit",
        "500",
        "--json",
    )
    ok(result)
    one = json.loads(result.stdout)
    assert one["stitched"] is True and one["scores"]["accuracy"] == pairs["cnn-rel-s1"]["scores"]["accuracy"]


def test_default_is_the_files_projection_byte_for_byte(cli, tmp_path: Path, embeddings: Path) -> None:
    # What fit wrote before the options existed: the library fit on the file's recorded projection.
    space = load_embeddings(embeddings)
    before = tmp_path / "before" / "head.decoder.safetensors"
    before.parent.mkdir()
    recorded = ProjectionConfig.from_dict(space.meta["projection"])
    assert recorded == ProjectionConfig(normalization="l2")
    save_decoder(fit(space, FitConfig(epochs=int(EPOCHS)), projection=recorded, name="head"), before)
    for folder, options in (
        ("default", ()),
        ("spelled", ("--normalization", "l2", "--similarity", "cosine")),
    ):
        out = tmp_path / folder / "head.decoder.safetensors"
        out.parent.mkdir()
        ok(cli("fit", embeddings, "-o", out, "--epochs", EPOCHS, *options))
        assert out.read_bytes() == before.read_bytes(), folder
    # another projection is another head
    other = tmp_path / "other.decoder.safetensors"
    ok(cli("fit", embeddings, "-o", other, "--epochs", EPOCHS, "--similarity", "euclidean", "--top-k", "16"))
    assert load_decoder(other).projection == ProjectionConfig(similarity="euclidean", top_k=16)


def test_projection_options_are_refused_where_they_mean_nothing(
    cli, tmp_path: Path, embeddings: Path
) -> None:
    out = tmp_path / "abs.decoder.safetensors"
    for option in (("--centering", "center"), ("--top-k", "5"), ("--similarity", "l1")):
        line = one_line_error(cli("fit", embeddings, "-o", out, "--space", "absolute", *option), code=2)
        assert option[0] in line and "absolute" in line
    assert not out.exists()
    line = one_line_error(cli("fit", embeddings, "-o", out, "--centering", "middle"), code=2)
    assert "middle" in line and not out.exists()
    # the library refuses the same combination rather than ignore the projection
    with pytest.raises(UsageError, match="absolute"):
        fit(
            load_embeddings(embeddings),
            FitConfig(space="absolute"),
            projection=ProjectionConfig(centering="center"),
        )
    # an absolute head with no projection option still fits, and records no projection
    ok(cli("fit", embeddings, "-o", out, "--space", "absolute", "--epochs", "1"))
    assert load_decoder(out).projection is None
