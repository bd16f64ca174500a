"""relstitch/export.py and `relstitch export`: a stitched model in one file, equal to `stitch` on the same
pair, refused in one line when it cannot be shipped, read back only through relstitch's registries."""

from __future__ import annotations

import json

import pytest
import torch

from relstitch.anchors import load_anchors, save_anchors, select_anchors
from relstitch.checkpoints import load_decoder, load_encoder
from relstitch.errors import RelstitchError
from relstitch.export import ANCHOR_LATENTS, export_stitched, load_stitched
from relstitch.io.artifacts import check_kind, read_header, serialize
from relstitch.stitching import stitch


@pytest.fixture(scope="module")
def pair(tiny_zoo):
    """A stitched pair of the tiny zoo: encoder s0 into the relative decoder of s1."""
    return (
        load_encoder(tiny_zoo.encoder("cnn-rel-s0")),
        load_decoder(tiny_zoo.decoder("cnn-rel-s1")),
        load_anchors(tiny_zoo.anchors_path),
    )


@pytest.fixture(scope="module")
def shipped(pair, tmp_path_factory):
    return export_stitched(*pair, tmp_path_factory.mktemp("export") / "stitched.safetensors")


def test_load_stitched_gives_stitchs_predictions(pair, shipped, test_data):
    encoder, decoder, anchors = pair
    result = stitch(encoder, decoder, anchors, test_data, keep_predictions=True)
    model = load_stitched(shipped.path)
    assert isinstance(model, torch.nn.Module) and not model.training
    with torch.inference_mode():
        logits = torch.cat([model(test_data.x[s : s + 256]) for s in range(0, len(test_data), 256)])
    expected = result.predictions.outputs
    assert logits.shape == expected.shape
    assert (logits - expected).abs().max().item() <= 1e-5
    assert torch.equal(model.predict(test_data.x), expected.argmax(1))
    assert model.classes == decoder.task["classes"]


def test_the_file_holds_both_models_the_anchor_latents_and_the_contract(pair, shipped):
    encoder, decoder, anchors = pair
    header = read_header(shipped.path)
    assert check_kind(header, "stitched") == "stitched"
    names = set(header.tensors)
    assert ANCHOR_LATENTS in names
    assert {n.removeprefix("encoder.") for n in names if n.startswith("encoder.")} == set(
        encoder.module.state_dict()
    )
    assert {n.removeprefix("decoder.") for n in names if n.startswith("decoder.")} == set(
        decoder.module.state_dict()
    )
    assert header.tensors[ANCHOR_LATENTS].shape == (len(anchors), encoder.latent_dim)
    meta = header.metadata
    assert meta["anchor_hash"] == anchors.hash and meta["anchor_count"] == len(anchors)
    assert meta["encoder"]["hash"] == encoder.hash and meta["decoder"]["hash"] == decoder.hash
    assert meta["encoder"]["architecture"] == encoder.architecture
    assert meta["input"] == encoder.input_spec and meta["task"] == decoder.task
    assert meta["projection"] == decoder.projection.to_dict()


def test_cli_export_writes_inspect_describes_and_an_existing_output_is_refused(tiny_zoo, cli, tmp_path):
    out = tmp_path / "s.safetensors"
    args = [tiny_zoo.encoder("cnn-rel-s0"), tiny_zoo.decoder("cnn-rel-s1"), "-a", tiny_zoo.anchors_path]
    done = cli("export", *args, "-o", out)
    assert done.exit_code == 0, done.output
    assert "64 anchor latents" in done.stdout and "10 classes" in done.stdout
    shown = cli("inspect", out)
    assert shown.exit_code == 0 and "stitched file" in shown.stdout
    assert "stitched: encoder cnn-rel-s0" in shown.stdout.replace("\n", " ")
    info = json.loads(cli("inspect", out, "--json").stdout)
    assert info["kind"] == "stitched" and info["metadata"]["anchor_count"] == 64
    before = out.read_bytes()
    again = cli("export", *args, "-o", out)
    assert again.exit_code == 1 and "already exists" in again.stderr and again.stderr.count("\n") == 1
    assert out.read_bytes() == before
    assert cli("export", *args, "-o", out, "--force").exit_code == 0
    assert out.read_bytes() == before  # deterministic: the same pair, the same bytes
    # a bad --format is bad usage (exit 2) whatever the output: checked before the existing file is
    bogus = cli("export", *args, "-o", out, "--format", "tflite")
    assert bogus.exit_code == 2 and "unknown format 'tflite'" in bogus.stderr
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    "case, wanted",
    [
        ("other-anchors", "was trained with anchors"),
        ("absolute", "reads absolute latents"),
        ("hf", "hf: encoders need their own code or tokenizer files"),
        ("torchvision", "torchvision: encoders need their own code"),
        ("output-is-input", "is both an input and an output"),
        ("format", "unknown format 'tflite'"),
    ],
)
def test_what_cannot_be_shipped_is_refused_in_one_line_and_nothing_is_written(
    case, wanted, tiny_zoo, train_data, cli, tmp_path
):
    encoder, decoder = str(tiny_zoo.encoder("cnn-rel-s0")), tiny_zoo.decoder("cnn-rel-s1")
    anchors, out, extra = tiny_zoo.anchors_path, tmp_path / "s.safetensors", []
    if case == "other-anchors":
        anchors = save_anchors(select_anchors(train_data, 64, "uniform", seed=7), tmp_path / "a.safetensors")
    elif case == "absolute":
        decoder = tiny_zoo.decoder("cnn-abs-s1")
    elif case == "hf":
        encoder = f"hf:{tmp_path}"
    elif case == "torchvision":
        encoder = "torchvision:resnet18"
    elif case == "output-is-input":
        out = decoder
    elif case == "format":
        extra = ["--format", "tflite"]
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    result = cli("export", encoder, decoder, "-a", anchors, "-o", out, *extra)
    assert result.exit_code in (1, 2), result.output
    assert wanted in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_anchors_of_another_modality_are_refused(pair, tmp_path):
    from relstitch.data.text import TextViews

    encoder, decoder, anchors = pair
    text = type(anchors)(
        TextViews({"en": [f"anchor {i}" for i in range(len(anchors))]}), anchors.ids, anchors.labels
    )
    decoder.anchor_hash = text.hash  # a decoder recorded for these text anchors: the modality decides
    try:
        with pytest.raises(RelstitchError, match="reads image but the anchors are text"):
            export_stitched(encoder, decoder, text, tmp_path / "s.safetensors")
    finally:
        decoder.anchor_hash = anchors.hash
    assert not (tmp_path / "s.safetensors").exists()


def _rewrite(source, target, change):
    from safetensors.torch import load_file

    header = read_header(source)
    tensors = load_file(str(source))
    change(tensors)
    target.write_bytes(serialize(tensors, header.raw_metadata))
    return target


@pytest.mark.parametrize(
    "change, wanted",
    [
        (lambda t: t.update(anchor_latents=t["anchor_latents"][:10]), "anchor_latents is"),
        (lambda t: t["anchor_latents"].__setitem__((0, 0), float("nan")), "NaN"),
        (lambda t: t["encoder.project.bias"].add_(1.0), "recorded hash"),
        (lambda t: t.pop("decoder.net.1.weight"), "missing 1: net.1.weight"),
        (lambda t: t.update({"os.system": torch.zeros(1)}), "unexpected tensor"),
    ],
)
def test_a_damaged_stitched_file_is_refused_in_one_line(shipped, tmp_path, change, wanted):
    bad = _rewrite(shipped.path, tmp_path / "bad.safetensors", change)
    with pytest.raises(RelstitchError) as info:
        load_stitched(bad)
    assert wanted in str(info.value) and "\n" not in str(info.value)


def test_load_stitched_reads_only_stitched_files(tiny_zoo):
    with pytest.raises(RelstitchError, match="is a relstitch decoder file, expected a stitched file"):
        load_stitched(tiny_zoo.decoder("cnn-rel-s1"))


def test_onnx_export_gives_the_torch_modules_logits(pair, shipped, test_data, tmp_path):
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed (torch.onnx needs onnxscript)")
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    out = tmp_path / "stitched.onnx"
    model = export_stitched(*pair, out, format="onnx")
    session = ort.InferenceSession(str(out))
    x = test_data.x[:300]
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    with torch.inference_mode():
        expected = model(x)
    assert got.shape == expected.shape  # any batch size: the batch axis is dynamic
    assert (got - expected).abs().max().item() <= 1e-3
    assert torch.equal(got.argmax(1), expected.argmax(1))
