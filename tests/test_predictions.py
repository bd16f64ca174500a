"""`stitch --predictions FILE` (per-sample output from the scoring pass itself, .csv or .safetensors) and
the one-line error for a file that is not safetensors at all, on the real tiny zoo and built-in data."""

from __future__ import annotations

import csv
import gzip
import json
import pickle

import pytest
import torch
from cli_checks import one_line_error

from relstitch.anchors import load_anchors
from relstitch.checkpoints import (
    DECODER_SUFFIX,
    ENCODER_SUFFIX,
    load_decoder,
    load_encoder,
    save_decoder,
    save_encoder,
)
from relstitch.data import load_dataset
from relstitch.errors import RelstitchError
from relstitch.io.artifacts import load_artifact, read_header
from relstitch.stitching import stitch
from relstitch.training import TrainConfig, train

LIMIT = 200  # samples scored per stitch: enough for every class, fast on 2 cores


def _rows(path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _stitch_json(cli, *args) -> dict:
    result = cli("stitch", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# -------------------------------------------------------------------------------- library
def test_kept_predictions_are_the_outputs_the_scores_came_from(tiny_zoo, test_data):
    encoder, decoder = (
        load_encoder(tiny_zoo.encoder("cnn-rel-s0")),
        load_decoder(tiny_zoo.decoder("cnn-rel-s1")),
    )
    anchors = load_anchors(tiny_zoo.anchors_path)
    plain = stitch(encoder, decoder, anchors, test_data)
    kept = stitch(encoder, decoder, anchors, test_data, keep_predictions=True)
    assert plain.predictions is None
    assert kept.scores == plain.scores  # keeping changes nothing in the numbers
    p = kept.predictions
    assert (
        p.task == "classification"
        and p.outputs.dtype == torch.float32
        and p.outputs.shape == (len(test_data), 10)
    )
    assert torch.equal(p.ids, test_data.ids) and torch.equal(p.labels, test_data.y)
    assert (p.predicted == p.labels).float().mean().item() == kept.scores["accuracy"]
    assert p.provenance["anchor_hash"] == anchors.hash and p.provenance["data"]["hash"] == test_data.hash
    assert "predictions" not in kept.to_dict()  # tensors stay out of --json and reports
    json.dumps(kept.to_dict())


# -------------------------------------------------------------------------------- CLI, every path
def test_relative_pair_to_csv(cli, tmp_path, tiny_zoo):
    out = tmp_path / "p.csv"
    info = _stitch_json(
        cli,
        tiny_zoo.encoder("cnn-rel-s0"),
        tiny_zoo.decoder("cnn-rel-s1"),
        "--anchors",
        tiny_zoo.anchors_path,
        "--limit",
        LIMIT,
        "--predictions",
        out,
    )
    assert info["predictions_file"] == str(out) and info["stitched"] is True
    rows = _rows(out)
    assert list(rows[0]) == ["id", "label", "label_name", "prediction", "prediction_name", "correct"]
    data = load_dataset("builtin:test", limit=LIMIT)
    assert [int(r["id"]) for r in rows] == data.ids.tolist()
    assert [int(r["label"]) for r in rows] == data.y.tolist()
    assert all(r["label_name"] == data.classes[int(r["label"])] for r in rows)
    assert all(r["prediction_name"] == data.classes[int(r["prediction"])] for r in rows)
    assert all(r["correct"] == str(int(r["label"] == r["prediction"])) for r in rows)
    assert sum(int(r["correct"]) for r in rows) / len(rows) == pytest.approx(
        info["scores"]["accuracy"], abs=1e-6
    )
    assert len({r["prediction"] for r in rows}) > 1  # a trained head, not one constant answer


def test_absolute_pair_to_safetensors_and_inspect(cli, tmp_path, tiny_zoo):
    out = tmp_path / "p.safetensors"
    info = _stitch_json(
        cli,
        tiny_zoo.encoder("cnn-abs-s0"),
        tiny_zoo.decoder("cnn-abs-s0"),
        "--anchors",
        tiny_zoo.anchors_path,
        "--limit",
        LIMIT,
        "--predictions",
        out,
    )
    art = load_artifact(out, "predictions")
    assert set(art.tensors) == {"ids", "labels", "outputs", "predictions"}
    assert art.tensors["outputs"].dtype == torch.float32 and art.tensors["outputs"].shape == (LIMIT, 10)
    assert torch.equal(art.tensors["predictions"], art.tensors["outputs"].argmax(1))
    accuracy = (art.tensors["predictions"] == art.tensors["labels"]).float().mean().item()
    assert accuracy == info["scores"]["accuracy"]
    meta = art.meta
    assert meta["encoder"]["hash"] == load_encoder(tiny_zoo.encoder("cnn-abs-s0")).hash
    assert meta["decoder"]["name"] == "cnn-abs-s0" and meta["decoder"]["hash"] == info["decoder_hash"]
    assert meta["anchor_hash"] == load_anchors(tiny_zoo.anchors_path).hash
    assert meta["method"] == "absolute" and meta["stitched"] is False
    assert meta["data"]["hash"] == load_dataset("builtin:test", limit=LIMIT).hash
    assert meta["task"]["type"] == "classification" and meta["scores"] == info["scores"]

    shown = cli("inspect", out, "--json")
    assert shown.exit_code == 0, shown.stderr
    described = json.loads(shown.stdout)
    assert described["kind"] == "predictions" and described["tensors"]["outputs"]["shape"] == [LIMIT, 10]
    assert "predictions" in cli("inspect", out).stdout
    # a predictions file is a relstitch file of its own kind, not something else
    line = one_line_error(
        cli("stitch", tiny_zoo.encoder("cnn-abs-s0"), out, "--anchors", tiny_zoo.anchors_path)
    )
    assert "is a relstitch predictions file, expected a decoder file" in line


def test_translation_pair(cli, tmp_path, tiny_zoo):
    out = tmp_path / "t.safetensors"
    info = _stitch_json(
        cli,
        tiny_zoo.encoder("cnn-abs-s1"),
        tiny_zoo.decoder("cnn-abs-s0"),
        "--anchors",
        tiny_zoo.anchors_path,
        "--limit",
        LIMIT,
        "--method",
        "procrustes",
        "--predictions",
        out,
    )
    art = load_artifact(out, "predictions")
    assert art.meta["method"] == info["method"] == "procrustes" and art.meta["stitched"] is True
    accuracy = (art.tensors["predictions"] == art.tensors["labels"]).float().mean().item()
    assert accuracy == info["scores"]["accuracy"]


def test_precomputed_embeddings(cli, tmp_path, tiny_zoo):
    emb, out = tmp_path / "e.safetensors", tmp_path / "pre.csv"
    assert (
        cli(
            "encode",
            tiny_zoo.encoder("cnn-rel-s1"),
            "--anchors",
            tiny_zoo.anchors_path,
            "--limit",
            LIMIT,
            "-o",
            emb,
        ).exit_code
        == 0
    )
    info = _stitch_json(cli, f"embeddings:{emb}", tiny_zoo.decoder("cnn-rel-s0"), "--predictions", out)
    rows = _rows(out)
    assert [int(r["id"]) for r in rows] == load_artifact(emb, "embeddings").tensors["ids"].tolist()
    assert sum(int(r["correct"]) for r in rows) / len(rows) == pytest.approx(
        info["scores"]["accuracy"], abs=1e-6
    )
    # the same vectors live give the same predictions
    live = tmp_path / "live.csv"
    _stitch_json(
        cli,
        tiny_zoo.encoder("cnn-rel-s1"),
        tiny_zoo.decoder("cnn-rel-s0"),
        "--anchors",
        tiny_zoo.anchors_path,
        "--limit",
        LIMIT,
        "--predictions",
        live,
    )
    assert live.read_text() == out.read_text()


@pytest.fixture(scope="module")
def autoencoders(tmp_path_factory, train_data, anchors, tiny_zoo):
    """Two tiny relative conv autoencoders on the zoo's anchors (1 epoch on 400 images)."""
    folder = tmp_path_factory.mktemp("ae")
    data = train_data.subset(torch.arange(400))
    for seed in (0, 1):
        config = TrainConfig(
            arch="conv-ae", task="reconstruction", space="relative", seed=seed, epochs=1, latent_dim=16
        )
        encoder, decoder = train(data, anchors, config, name=f"ae{seed}")
        save_encoder(encoder, folder / f"ae{seed}{ENCODER_SUFFIX}")
        save_decoder(decoder, folder / f"ae{seed}{DECODER_SUFFIX}")
    return folder


def test_reconstruction_per_sample_mse(cli, tmp_path, tiny_zoo, autoencoders):
    pair = (
        autoencoders / f"ae0{ENCODER_SUFFIX}",
        autoencoders / f"ae1{DECODER_SUFFIX}",
        "--anchors",
        tiny_zoo.anchors_path,
        "--limit",
        100,
    )
    info = _stitch_json(cli, *pair, "--predictions", tmp_path / "r.csv")
    _stitch_json(cli, *pair, "--predictions", tmp_path / "r.safetensors")
    rows = _rows(tmp_path / "r.csv")
    assert list(rows[0]) == ["id", "label", "label_name", "mse"] and len(rows) == 100
    per_sample = torch.tensor([float(r["mse"]) for r in rows], dtype=torch.float64)
    assert per_sample.mean().item() == pytest.approx(info["scores"]["mse"], rel=1e-5)
    art = load_artifact(tmp_path / "r.safetensors", "predictions")
    assert set(art.tensors) == {"ids", "labels", "outputs", "mse"}
    assert art.tensors["outputs"].shape == (100, 1, 28, 28) and art.tensors["outputs"].dtype == torch.float32
    assert art.tensors["mse"].tolist() == per_sample.tolist()  # the CSV holds the very same numbers
    images = load_dataset("builtin:test", limit=100).x.float() / 255.0
    recomputed = ((art.tensors["outputs"] - images) ** 2).flatten(1).mean(1)
    assert torch.allclose(recomputed, art.tensors["mse"], rtol=1e-5)
    assert art.meta["task"]["type"] == "reconstruction" and art.meta["scores"]["mse"] == info["scores"]["mse"]


# -------------------------------------------------------------------------------- refused before any work
def test_unknown_extension_is_usage_error_before_any_work(cli, tmp_path, tiny_zoo):
    missing = tmp_path / "no-such.encoder.safetensors"  # were any work done, this would be the error
    for name in ("p.json", "p", "p.txt"):
        line = one_line_error(
            cli("stitch", missing, tiny_zoo.decoder("cnn-rel-s1"), "--predictions", tmp_path / name), code=2
        )
        assert name in line and ".csv or .safetensors" in line
    assert not list(tmp_path.iterdir())


def test_existing_output_needs_force(cli, tmp_path, tiny_zoo):
    out = tmp_path / "p.csv"
    out.write_text("keep me\n")
    missing = tmp_path / "no-such.encoder.safetensors"
    line = one_line_error(cli("stitch", missing, tiny_zoo.decoder("cnn-rel-s1"), "--predictions", out))
    assert "p.csv" in line and "already exists" in line and "--force" in line
    assert out.read_text() == "keep me\n"
    result = cli(
        "stitch",
        tiny_zoo.encoder("cnn-rel-s0"),
        tiny_zoo.decoder("cnn-rel-s1"),
        "--anchors",
        tiny_zoo.anchors_path,
        "--limit",
        50,
        "--predictions",
        out,
        "--force",
    )
    assert result.exit_code == 0, result.stderr
    assert f"wrote {out}: 50 predictions" in result.stdout.replace("\n", "")
    assert len(_rows(out)) == 50
    # --force never lets the output replace one of the command's own inputs
    decoder = tmp_path / "copy.decoder.safetensors"
    decoder.write_bytes(tiny_zoo.decoder("cnn-rel-s1").read_bytes())
    line = one_line_error(
        cli(
            "stitch",
            tiny_zoo.encoder("cnn-rel-s0"),
            decoder,
            "--anchors",
            tiny_zoo.anchors_path,
            "--predictions",
            decoder,
            "--force",
        )
    )
    assert "both an input and an output" in line
    assert decoder.read_bytes() == tiny_zoo.decoder("cnn-rel-s1").read_bytes()


def test_force_never_replaces_the_default_anchor_file(cli, tmp_path, tiny_zoo):
    # No --anchors: the shipped zoo's anchor file is read, so it is an input. The encoder is missing, so even
    # a broken check could not get as far as writing.
    from relstitch.cli import anchors_or_zoo

    shipped = anchors_or_zoo(None)
    before = shipped.read_bytes()
    missing = tmp_path / "no-such.encoder.safetensors"
    line = one_line_error(
        cli("stitch", missing, tiny_zoo.decoder("cnn-rel-s1"), "--predictions", shipped, "--force")
    )
    assert "both an input and an output" in line and "anchors.safetensors" in line
    assert shipped.read_bytes() == before


def test_force_never_replaces_a_translations_default_target_encoder(cli, tmp_path, tiny_zoo):
    # --method procrustes without --target-encoder reads PREFIX.encoder.safetensors beside
    # PREFIX.decoder.safetensors
    decoder, target = tmp_path / "own.decoder.safetensors", tmp_path / "own.encoder.safetensors"
    decoder.write_bytes(tiny_zoo.decoder("cnn-abs-s0").read_bytes())
    target.write_bytes(tiny_zoo.encoder("cnn-abs-s0").read_bytes())
    line = one_line_error(
        cli(
            "stitch",
            tiny_zoo.encoder("cnn-abs-s1"),
            decoder,
            "--anchors",
            tiny_zoo.anchors_path,
            "--limit",
            50,
            "--method",
            "procrustes",
            "--predictions",
            target,
            "--force",
        )
    )
    assert "both an input and an output" in line and "own.encoder.safetensors" in line
    assert target.read_bytes() == tiny_zoo.encoder("cnn-abs-s0").read_bytes()
    # and the default still works as a translation's target (scores from the same pair as an explicit one)
    assert (
        _stitch_json(
            cli,
            tiny_zoo.encoder("cnn-abs-s1"),
            decoder,
            "--anchors",
            tiny_zoo.anchors_path,
            "--limit",
            50,
            "--method",
            "procrustes",
            "--predictions",
            tmp_path / "p.csv",
        )["stitched"]
        is True
    )


# -------------------------------------------------------------------------------- not a safetensors file
def _torch_zip(path):
    torch.save({"w": torch.zeros(3)}, path)


def _torch_legacy(path):
    torch.save({"w": torch.zeros(3)}, path, _use_new_zipfile_serialization=False)


NOT_SAFETENSORS = {
    "m.pt": (_torch_zip, "a PyTorch checkpoint", "torchvision:NAME#weights=FILE"),
    "old.pth": (_torch_legacy, "a Python pickle", "safetensors.torch.save_file"),
    "plain.pkl": (
        lambda p: p.write_bytes(pickle.dumps({"a": 1}, protocol=4)),
        "a Python pickle",
        "weights=FILE",
    ),
    "d.safetensors.gz": (
        lambda p: p.write_bytes(gzip.compress(b"\0" * 100)),
        "gzip-compressed data",
        "gunzip",
    ),
    # a JSON array: an object would be read as a report by inspect (tests/test_reports.py)
    "report.json": (
        lambda p: p.write_text('[{"schema_version": 2, "pairs": []}]'),
        "JSON text",
        "relstitch report FILE",
    ),
    "empty.safetensors": (
        lambda p: p.write_bytes(b""),
        "an empty file",
        "give a relstitch .safetensors file",
    ),
    "notes.safetensors": (
        lambda p: p.write_text("weights are on the shared drive\n"),
        "a text file",
        "give a relstitch .safetensors file",
    ),
}


@pytest.mark.parametrize("name", sorted(NOT_SAFETENSORS))
def test_inspect_says_what_a_non_safetensors_file_is(cli, tmp_path, name):
    make, looks_like, fix = NOT_SAFETENSORS[name]
    path = tmp_path / name
    make(path)
    line = one_line_error(cli("inspect", path))
    assert line.startswith(f"error: {path}: not a safetensors file: it looks like {looks_like}"), line
    assert fix in line
    assert "header length" not in line  # the raw number meant nothing to the user


def test_unrecognised_bytes_keep_the_detail(cli, tmp_path):
    path = tmp_path / "r.safetensors"
    path.write_bytes(bytes(range(256)) * 4)
    line = one_line_error(cli("inspect", path))
    assert "not a safetensors file (header length" in line and "give a relstitch .safetensors file" in line


def test_every_verb_says_the_same_for_a_checkpoint(cli, tmp_path, tiny_zoo):
    """One function words the error: inspect, stitch (decoder or encoder) and encode agree word for word."""
    checkpoint = tmp_path / "model.pt"
    _torch_zip(checkpoint)
    with pytest.raises(RelstitchError) as caught:
        read_header(checkpoint)
    expected = f"error: {caught.value}"
    assert one_line_error(cli("inspect", checkpoint)) == expected
    assert (
        one_line_error(
            cli("stitch", tiny_zoo.encoder("cnn-rel-s0"), checkpoint, "--anchors", tiny_zoo.anchors_path)
        )
        == expected
    )
    assert (
        one_line_error(
            cli("stitch", checkpoint, tiny_zoo.decoder("cnn-rel-s0"), "--anchors", tiny_zoo.anchors_path)
        )
        == expected
    )
    assert (
        one_line_error(
            cli("encode", checkpoint, "--anchors", tiny_zoo.anchors_path, "-o", tmp_path / "e.safetensors")
        )
        == expected
    )
    assert not (tmp_path / "e.safetensors").exists()
