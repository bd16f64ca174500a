"""Every verb through the CLI (CliRunner, in process), and the bad-input cases of the core issue."""

from __future__ import annotations

import gzip
import json
import re
import struct

import pytest
import torch
from cli_checks import one_line_error

from relstitch.anchors import load_anchors, save_anchors, select_anchors
from relstitch.checkpoints import load_decoder, load_encoder, save_decoder
from relstitch.stitching import stitch


# ------------------------------------------------------------------------------------------ verbs
def test_anchors_verb_writes_a_deterministic_anchor_file(cli, tmp_path):
    for name in ("a", "b"):
        result = cli(
            "anchors",
            tmp_path / f"{name}.safetensors",
            "--count",
            25,
            "--strategy",
            "stratified",
            "--seed",
            4,
        )
        assert result.exit_code == 0, result.stderr
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert len(load_anchors(tmp_path / "a.safetensors")) == 25


def test_train_encode_fit_stitch_chain(cli, tmp_path, tiny_zoo):
    prefix = tmp_path / "m"
    result = cli(
        "train", prefix, "--anchors", tiny_zoo.anchors_path, "--epochs", 1, "--limit", 600, "--latent-dim", 16
    )
    assert result.exit_code == 0, result.stderr
    assert "accuracy" in result.stdout
    encoder_path, decoder_path = tmp_path / "m.encoder.safetensors", tmp_path / "m.decoder.safetensors"
    assert load_decoder(decoder_path).encoder_hash == load_encoder(encoder_path).hash

    emb = tmp_path / "e.safetensors"
    result = cli("encode", encoder_path, "--anchors", tiny_zoo.anchors_path, "--limit", 300, "-o", emb)
    assert result.exit_code == 0, result.stderr
    head = tmp_path / "head.decoder.safetensors"
    result = cli("fit", emb, "-o", head, "--epochs", 3)
    assert result.exit_code == 0, result.stderr
    assert load_decoder(head).encoder_hash == load_encoder(encoder_path).hash

    # the fitted head on its own encoder is "not stitched"; on another encoder it is stitched
    result = cli("stitch", encoder_path, head, "--anchors", tiny_zoo.anchors_path, "--json")
    assert result.exit_code == 0, result.stderr
    own = json.loads(result.stdout)
    assert own["stitched"] is False and 0.1 < own["scores"]["accuracy"] <= 1.0
    result = cli("stitch", tiny_zoo.encoder("cnn-rel-s0"), head, "--anchors", tiny_zoo.anchors_path, "--json")
    assert json.loads(result.stdout)["stitched"] is True


def test_reconstruction_autoencoder_trains_and_stitches(cli, tmp_path, tiny_zoo):
    for seed in (0, 1):
        result = cli(
            "train",
            tmp_path / f"ae{seed}",
            "--arch",
            "conv-ae",
            "--task",
            "reconstruction",
            "--seed",
            seed,
            "--anchors",
            tiny_zoo.anchors_path,
            "--epochs",
            1,
            "--limit",
            500,
            "--latent-dim",
            16,
        )
        assert result.exit_code == 0, result.stderr
    result = cli(
        "stitch",
        tmp_path / "ae0.encoder.safetensors",
        tmp_path / "ae1.decoder.safetensors",
        "--anchors",
        tiny_zoo.anchors_path,
        "--limit",
        200,
        "--json",
    )
    scores = json.loads(result.stdout)["scores"]
    assert 0 < scores["mse"] < 0.25 and scores["psnr"] > 0


def test_eval_matrix_reports_every_pair_and_marks_the_diagonal(cli, tmp_path, tiny_zoo):
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    result = cli(
        "eval-matrix",
        "-e",
        str(tiny_zoo.folder / "*.encoder.safetensors"),
        "-D",
        str(tiny_zoo.folder / "*.decoder.safetensors"),
        "--anchors",
        tiny_zoo.anchors_path,
        "--limit",
        300,
        "--json",
        out_json,
        "--csv",
        out_csv,
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(out_json.read_text())
    assert len(report["pairs"]) == 16
    for pair in report["pairs"]:
        assert {"encoder", "decoder", "space", "stitched", "scores"} <= set(pair)
        assert pair["stitched"] == (pair["encoder"] != pair["decoder"])
    rows = out_csv.read_text().splitlines()
    assert rows[0].startswith("encoder,decoder,") and len(rows) > 16  # one row per pair and metric at least
    diagonal = [p for p in report["pairs"] if not p["stitched"]]
    assert len(diagonal) == 4
    assert re.search(r"\d\.\d{3}\*", result.stdout)  # a diagonal cell, marked


def test_self_stitch_equals_the_non_stitched_result(tiny_zoo, test_data):
    """Stitching a decoder onto its own encoder is exactly the end-to-end model."""
    encoder, decoder = (
        load_encoder(tiny_zoo.encoder("cnn-rel-s0")),
        load_decoder(tiny_zoo.decoder("cnn-rel-s0")),
    )
    anchors = load_anchors(tiny_zoo.anchors_path)
    result = stitch(encoder, decoder, anchors, test_data)
    with torch.inference_mode():
        from relstitch.projection import relative_projection

        x = encoder.prepare(test_data.x)
        logits = decoder.module(
            relative_projection(encoder.module(x), encoder.module(encoder.prepare(anchors.inputs)))
        )
    direct = (logits.argmax(1) == test_data.y).float().mean().item()
    assert result.stitched is False
    assert result.scores["accuracy"] == pytest.approx(direct, abs=1e-12)


def test_inspect_says_what_a_file_is(cli, tiny_zoo):
    result = cli("inspect", tiny_zoo.decoder("cnn-rel-s1"), "--json")
    info = json.loads(result.stdout)
    assert info["kind"] == "decoder" and info["metadata"]["space"] == "relative"
    assert info["tensors"] and len(info["sha256"]) == 64
    assert "decoder" in cli("inspect", tiny_zoo.decoder("cnn-rel-s1")).stdout


def test_version_and_help(cli):
    assert cli("--version").stdout.startswith("relstitch ")
    assert "eval-matrix" in cli("--help").stdout


# ------------------------------------------------------------------------------------ bad input
def test_missing_file(cli, tmp_path, tiny_zoo):
    line = one_line_error(
        cli(
            "stitch",
            tmp_path / "nope.safetensors",
            tiny_zoo.decoder("cnn-rel-s0"),
            "--anchors",
            tiny_zoo.anchors_path,
        )
    )
    assert "nope.safetensors" in line and "no such file" in line


def test_not_a_safetensors_file(cli, tmp_path, tiny_zoo):
    junk = tmp_path / "junk.safetensors"
    junk.write_text("this is not a model")
    line = one_line_error(
        cli("encode", junk, "--anchors", tiny_zoo.anchors_path, "-o", tmp_path / "e.safetensors")
    )
    assert "junk.safetensors" in line and "not a safetensors file" in line
    assert not (tmp_path / "e.safetensors").exists()


def test_wrong_kind_of_relstitch_file(cli, tmp_path, tiny_zoo):
    line = one_line_error(
        cli(
            "stitch",
            tiny_zoo.decoder("cnn-rel-s0"),
            tiny_zoo.decoder("cnn-rel-s1"),
            "--anchors",
            tiny_zoo.anchors_path,
        )
    )
    assert "is a relstitch decoder file, expected an encoder file" in line


def test_decoder_trained_with_other_anchors_names_both_hashes(cli, tmp_path, tiny_zoo, train_data):
    other = save_anchors(select_anchors(train_data, 64, "uniform", seed=99), tmp_path / "other.safetensors")
    line = one_line_error(
        cli("stitch", tiny_zoo.encoder("cnn-rel-s0"), tiny_zoo.decoder("cnn-rel-s1"), "--anchors", other)
    )
    wanted = load_decoder(tiny_zoo.decoder("cnn-rel-s1")).anchor_hash[:12]
    given = load_anchors(other).hash[:12]
    assert wanted in line and given in line


def test_anchor_count_differs_from_decoder_input(cli, tmp_path, tiny_zoo, train_data):
    few = select_anchors(train_data, 10, "uniform", seed=1)
    few_path = save_anchors(few, tmp_path / "few.safetensors")
    decoder = load_decoder(tiny_zoo.decoder("cnn-rel-s0"))
    decoder.anchor_hash = few.hash  # a decoder whose metadata claims these anchors but reads 64 inputs
    forged = save_decoder(decoder, tmp_path / "forged.decoder.safetensors")
    line = one_line_error(cli("stitch", tiny_zoo.encoder("cnn-rel-s0"), forged, "--anchors", few_path))
    assert "reads 64 similarities but there are 10 anchors" in line


def write_idx(folder, prefix: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    folder.mkdir(exist_ok=True)
    n, h, w = images.shape
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, h, w) + images.numpy().tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, n) + labels.to(torch.uint8).numpy().tobytes())


def test_data_whose_shape_does_not_fit_the_encoder(cli, tmp_path, tiny_zoo):
    small = tmp_path / "small"
    write_idx(small, "t10k", torch.randint(0, 255, (40, 8, 8), dtype=torch.uint8), torch.arange(40) % 10)
    write_idx(small, "train", torch.randint(0, 255, (40, 8, 8), dtype=torch.uint8), torch.arange(40) % 10)
    anchors8 = tmp_path / "a8.safetensors"
    assert cli("anchors", anchors8, "--data", f"idx:{small}:train", "--count", 5).exit_code == 0
    line = one_line_error(
        cli(
            "encode",
            tiny_zoo.encoder("cnn-rel-s0"),
            "--anchors",
            anchors8,
            "--data",
            f"idx:{small}:test",
            "-o",
            tmp_path / "e.safetensors",
        )
    )
    assert "(1, 8, 8)" in line and "(1, 28, 28)" in line
    # and 28x28 anchors with 8x8 data are refused before any encoding
    line = one_line_error(
        cli(
            "stitch",
            tiny_zoo.encoder("cnn-rel-s0"),
            tiny_zoo.decoder("cnn-rel-s0"),
            "--anchors",
            tiny_zoo.anchors_path,
            "--data",
            f"idx:{small}:test",
        )
    )
    assert "shape" in line


def test_existing_output_needs_force(cli, tmp_path):
    out = tmp_path / "a.safetensors"
    out.write_bytes(b"precious")
    line = one_line_error(cli("anchors", out, "--count", 5))
    assert "already exists" in line and "--force" in line
    assert out.read_bytes() == b"precious"
    assert cli("anchors", out, "--count", 5, "--force").exit_code == 0


def test_bad_usage_exits_2(cli):
    assert cli("anchors", "x.safetensors", "--count", 0).exit_code == 2
    assert cli("stitch").exit_code == 2
    assert cli("no-such-verb").exit_code == 2


def test_unknown_dataset_reference_suggests_a_fix(cli, tmp_path):
    line = one_line_error(cli("anchors", tmp_path / "a.safetensors", "--data", "biltin:train"))
    assert "did you mean 'builtin'" in line


def test_eval_matrix_where_every_pair_fails_exits_1_and_still_writes_its_report(cli, tmp_path, tiny_zoo):
    out = tmp_path / "r.json"
    result = cli(
        "eval-matrix",
        "-e",
        tiny_zoo.anchors_path,
        "-D",
        tiny_zoo.decoder("cnn-rel-s0"),
        "--anchors",
        tiny_zoo.anchors_path,
        "--limit",
        50,
        "--json",
        out,
    )
    line = one_line_error(result)
    assert "1 of 1 pairs failed" in line and "expected an encoder file" in line
    assert json.loads(out.read_text())["failed_pairs"]


def test_eval_matrix_refuses_an_unknown_metric_before_running(cli, tiny_zoo):
    result = cli(
        "eval-matrix",
        "-e",
        tiny_zoo.encoder("cnn-rel-s0"),
        "-D",
        tiny_zoo.decoder("cnn-rel-s0"),
        "--anchors",
        tiny_zoo.anchors_path,
        "--metric",
        "bogus",
    )
    assert "accuracy, macro_f1" in one_line_error(result, code=2)
    assert result.stdout == ""  # nothing ran, nothing rendered


def test_anchor_file_defaults_to_the_shipped_zoo_from_any_folder(cli, tmp_path, monkeypatch):
    from relstitch.cli import zoo_dir

    if not (zoo_dir() / "anchors.safetensors").exists():
        pytest.skip("shipped checkpoints/ not present")
    monkeypatch.chdir(tmp_path)
    result = cli("encode", zoo_dir() / "cnn-rel-s0.encoder.safetensors", "--limit", 20, "-o", "e.safetensors")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "e.safetensors").exists()


def test_options_that_would_be_silently_ignored_are_refused(cli, tmp_path, tiny_zoo):
    line = one_line_error(
        cli("train", tmp_path / "m", "--space", "absolute", "--anchors", tiny_zoo.anchors_path), code=2
    )
    assert "absolute bottleneck uses no anchors" in line
    assert not list(tmp_path.iterdir())
    emb = tmp_path / "e.safetensors"
    assert (
        cli(
            "encode",
            tiny_zoo.encoder("cnn-rel-s0"),
            "--anchors",
            tiny_zoo.anchors_path,
            "--limit",
            40,
            "-o",
            emb,
        ).exit_code
        == 0
    )
    line = one_line_error(
        cli("stitch", f"embeddings:{emb}", tiny_zoo.decoder("cnn-rel-s1"), "--limit", 5), code=2
    )
    assert "drop --limit" in line


def test_embeddings_files_keep_who_made_them(cli, tmp_path, tiny_zoo):
    """An encoder given as precomputed vectors is grouped and classified like the live encoder."""
    emb, head = tmp_path / "abs0.safetensors", tmp_path / "head.decoder.safetensors"
    assert (
        cli("encode", tiny_zoo.encoder("cnn-abs-s0"), "--anchors", tiny_zoo.anchors_path, "-o", emb).exit_code
        == 0
    )
    assert cli("fit", emb, "-o", head, "--epochs", 1).exit_code == 0
    assert load_decoder(head).meta["training"]["config"]["arch"] == "cnn"
    out = tmp_path / "r.json"
    result = cli(
        "eval-matrix",
        "-e",
        f"embeddings:{emb}",
        "-e",
        tiny_zoo.encoder("cnn-abs-s0"),
        "-D",
        tiny_zoo.decoder("cnn-rel-s0"),
        "--anchors",
        tiny_zoo.anchors_path,
        "--json",
        out,
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.read_text())
    live, pre = sorted(report["encoders"], key=lambda e: e["path"].startswith("embeddings:"))
    assert pre["trained_space"] == live["trained_space"] == "absolute"
    assert pre["group"] == live["group"] == "cnn"
    scores = [p["scores"]["accuracy"] for p in report["pairs"]]
    assert scores[0] == scores[1]  # the same vectors, the same score


def test_outputs_that_collide_are_refused_before_any_work(cli, tmp_path, tiny_zoo):
    same = tmp_path / "r.out"
    line = one_line_error(
        cli(
            "eval-matrix",
            "-e",
            tiny_zoo.encoder("cnn-rel-s0"),
            "-D",
            tiny_zoo.decoder("cnn-rel-s0"),
            "--anchors",
            tiny_zoo.anchors_path,
            "--json",
            same,
            "--markdown",
            same,
        )
    )
    assert "named twice as an output" in line and not same.exists()
    emb = tmp_path / "e.safetensors"
    assert (
        cli(
            "encode",
            tiny_zoo.encoder("cnn-rel-s0"),
            "--anchors",
            tiny_zoo.anchors_path,
            "--limit",
            30,
            "-o",
            emb,
        ).exit_code
        == 0
    )
    before = emb.read_bytes()
    line = one_line_error(cli("fit", emb, "-o", emb, "--force"))
    assert "both an input and an output" in line and emb.read_bytes() == before


def test_decoder_scored_on_data_with_other_class_names_is_flagged(cli, tmp_path, tiny_zoo):
    digits = tmp_path / "digits"  # IDX data outside a "fashion" folder are named "0".."9"
    write_idx(digits, "t10k", torch.randint(0, 255, (30, 28, 28), dtype=torch.uint8), torch.arange(30) % 10)
    result = cli(
        "stitch",
        tiny_zoo.encoder("cnn-rel-s0"),
        tiny_zoo.decoder("cnn-rel-s1"),
        "--anchors",
        tiny_zoo.anchors_path,
        "--data",
        f"idx:{digits}:test",
    )
    assert result.exit_code == 0, result.stderr
    assert (
        "trained on classes (T-shirt/top, Trouser, Pullover, ...) but the data name theirs (0, 1, 2, ...)"
        in result.stderr
    )
    quiet = cli(
        "stitch",
        tiny_zoo.encoder("cnn-rel-s0"),
        tiny_zoo.decoder("cnn-rel-s1"),
        "--anchors",
        tiny_zoo.anchors_path,
        "--limit",
        50,
    )
    assert "classes" not in quiet.stderr


def test_idx_file_that_inflates_past_its_header_is_refused_without_reading_it_all(cli, tmp_path):
    """A gzip 'bomb': the header declares 10 images, the stream inflates to 64 MB of zeros."""
    folder = tmp_path / "bomb"
    folder.mkdir()
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, 10, 28, 28))
        for _ in range(64):
            f.write(bytes(1 << 20))
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + bytes(10))
    line = one_line_error(
        cli("anchors", tmp_path / "a.safetensors", "--data", f"idx:{folder}:train", "--count", 2)
    )
    assert "holds more than its header's 7840 bytes" in line


IDX_UNDER_A_MEMORY_CAP = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (6 * 1024**3, 6 * 1024**3))  # less than the body the header announces
from relstitch.data import load_dataset
from relstitch.errors import RelstitchError
try:
    load_dataset(sys.argv[1])
except RelstitchError as exc:
    print(exc)
"""


@pytest.mark.slow
@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_idx_header_announcing_gigabytes_over_a_short_body_costs_only_the_body(tmp_path, gz):
    """Fuzzing found it: read(declared size) allocated all 8 GB a header announced before the short body
    showed. Under a 6 GB address-space cap the reader must still say 'truncated', not die of MemoryError."""
    import subprocess
    import sys

    header = struct.pack(">BBBBIII", 0, 0, 8, 3, 80_000, 100, 1000)  # 8e9 bytes declared, 100 bytes follow
    write = gzip.open if gz else open
    suffix = ".gz" if gz else ""
    with write(tmp_path / f"train-images-idx3-ubyte{suffix}", "wb") as f:
        f.write(header + bytes(100))
    with write(tmp_path / f"train-labels-idx1-ubyte{suffix}", "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, 80_000) + bytes(80_000))
    run = subprocess.run(
        [sys.executable, "-c", IDX_UNDER_A_MEMORY_CAP, f"idx:{tmp_path}:train"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-1500:]
    assert "IDX file truncated: header says 8000000000 bytes, found 100" in run.stdout
