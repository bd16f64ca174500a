"""An input spec is checked wherever one enters (``relstitch.data.check_input_spec``): an encoder
checkpoint's header, a stitched file's, the image sources' ``-O resize=/crop=/channels=/mean=/std=`` and a
spec given from Python. A bad one is refused there in one line naming the file (or option) and the key, not
by a failed or huge batch later, nor silently by ``StitchedModel.forward``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_checks import one_line_error
from safetensors.torch import load_file
from torch import nn

from relstitch.adapters import load_encoder_ref
from relstitch.anchors import load_anchors
from relstitch.checkpoints import load_decoder, load_encoder
from relstitch.data import default_image_spec
from relstitch.data.dataset import MAX_IMAGE_SIDE, check_input_spec
from relstitch.errors import RelstitchError, UsageError
from relstitch.export import StitchedModel, export_stitched, load_stitched
from relstitch.io.artifacts import read_header, serialize

# What an edited header may say, and the key the refusal must name. The tiny zoo's encoders read
# [1, 28, 28] images with one mean and one std.
BAD_SPECS = [
    ({"std": 0}, "relstitch.input.std is 0, expected a finite number > 0"),
    ({"std": [0.3, 0.0, 0.3], "mean": [0.5] * 3, "channels": 3}, "relstitch.input.std[1] is 0.0"),
    ({"std": -1.5}, "relstitch.input.std is -1.5"),
    ({"mean": "0.5"}, "relstitch.input.mean is '0.5'"),
    ({"mean": {"r": 1}}, "relstitch.input.mean is {'r': 1}"),
    ({"std": True}, "relstitch.input.std is True"),
    ({"mean": [0.1, 0.2, 0.3]}, "relstitch.input.mean has 3 values for 1-channel images"),
    ({"channels": 3, "mean": [0.1, 0.2]}, "relstitch.input.mean has 2 values for 3-channel images"),
    ({"mean": [0.1, 0.2], "std": [1, 2, 3], "shape": [784]}, "relstitch.input.std has 3 values and mean 2"),
    ({"channels": 0}, "relstitch.input.channels is 0"),
    ({"channels": 4}, "relstitch.input.channels is 4, expected one of 1, 3"),
    ({"channels": 3.0}, "relstitch.input.channels is 3.0"),
    (
        {"resize": [224000, 224000]},
        f"relstitch.input.resize[0] is 224000, expected an integer from 1 to {MAX_IMAGE_SIDE}",
    ),
    ({"resize": [-28, 28]}, "relstitch.input.resize[0] is -28"),
    ({"resize": [28.5, 28]}, "relstitch.input.resize[0] is 28.5"),
    ({"resize": 28}, "relstitch.input.resize is 28, expected [height, width]"),
    ({"crop": [0, 20]}, "relstitch.input.crop[0] is 0"),
    ({"resize_shorter": 10**9}, "relstitch.input.resize_shorter is 1000000000"),
    ({"interpolation": "lanczos"}, "relstitch.input.interpolation is 'lanczos'"),
    ({"scale": 0}, "relstitch.input.scale is 0"),
    ({"shape": [1, 28, 0]}, "relstitch.input.shape[2] is 0"),
    ({"shape": [3, 10**5, 10**5]}, "values per sample"),
]


def edited(source: Path, target: Path, spec: str) -> Path:
    """A copy of a relstitch file whose header's ``relstitch.input`` is the JSON text ``spec`` (the
    tensors and every other key unchanged): what a hand-edited or damaged header looks like."""
    raw = read_header(source).raw_metadata
    target.write_bytes(serialize(load_file(str(source)), {**raw, "relstitch.input": spec}))
    return target


def with_changes(source: Path, changes: dict[str, object]) -> str:
    """The JSON text of ``source``'s input spec with ``changes`` applied."""
    return json.dumps({**json.loads(read_header(source).raw_metadata["relstitch.input"]), **changes})


@pytest.mark.parametrize("changes, wanted", BAD_SPECS)
def test_an_encoder_with_a_bad_input_spec_is_refused_at_load(tiny_zoo, tmp_path, changes, wanted) -> None:
    source = tiny_zoo.encoder("cnn-rel-s0")
    bad = edited(source, tmp_path / "bad.encoder.safetensors", with_changes(source, changes))
    with pytest.raises(RelstitchError) as caught:
        load_encoder(bad)
    message = str(caught.value)
    assert wanted in message and str(bad) in message and "\n" not in message
    assert "re-save the file with relstitch" in message  # and how to fix it


def test_numbers_json_reads_but_no_float_holds_are_refused(tiny_zoo, tmp_path) -> None:
    source = tiny_zoo.encoder("cnn-rel-s0")
    spec = json.loads(read_header(source).raw_metadata["relstitch.input"])
    # 1e400 reads as inf, a 400-digit integer as an int no float holds (NaN is refused by the header reader)
    for key, text in (("mean", "1e400"), ("std", "-1e400"), ("std", "1" + "0" * 400)):
        raw = json.dumps({**spec, key: "@"}).replace('"@"', text)
        bad = edited(source, tmp_path / f"{key}.encoder.safetensors", raw)
        with pytest.raises(
            RelstitchError, match=f"relstitch.input.{key} is .{{1,40}}, expected a finite number"
        ):
            load_encoder(bad)
    with pytest.raises(
        RelstitchError, match="corrupt encoder file: relstitch.input"
    ):  # the schema's: an object
        load_encoder(edited(source, tmp_path / "list.encoder.safetensors", "[1, 28, 28]"))


def test_the_cli_refuses_an_edited_encoder_in_one_line(tiny_zoo, tmp_path, cli) -> None:
    source = tiny_zoo.encoder("cnn-rel-s0")
    bad = edited(source, tmp_path / "bad.encoder.safetensors", with_changes(source, {"std": 0}))
    out = tmp_path / "e.safetensors"
    line = one_line_error(cli("encode", bad, "-a", tiny_zoo.anchors_path, "--limit", 10, "-o", out))
    assert str(bad) in line and "relstitch.input.std is 0" in line and not out.exists()


def test_a_good_spec_loads_unchanged(tiny_zoo) -> None:
    encoder = load_encoder(tiny_zoo.encoder("cnn-rel-s0"))
    assert encoder.input_spec == default_image_spec([1, 28, 28])
    spec = {
        "modality": "image",
        "channels": 3,
        "resize": (32, 32),
        "mean": [0.5] * 3,
        "std": 0.25,
        "view": None,
    }
    assert check_input_spec(spec) == spec and check_input_spec(spec) is not spec


# --------------------------------------------------------------------------------------- stitched files
@pytest.fixture(scope="module")
def shipped(tiny_zoo, tmp_path_factory) -> StitchedModel:
    pair = (load_encoder(tiny_zoo.encoder("cnn-rel-s0")), load_decoder(tiny_zoo.decoder("cnn-rel-s1")))
    folder = tmp_path_factory.mktemp("stitched")
    return export_stitched(*pair, load_anchors(tiny_zoo.anchors_path), folder / "s.safetensors")


@pytest.mark.parametrize("changes, wanted", BAD_SPECS[:8])
def test_a_stitched_file_with_a_bad_input_spec_is_refused_at_load(shipped, tmp_path, changes, wanted) -> None:
    assert shipped.path is not None
    bad = edited(shipped.path, tmp_path / "bad.safetensors", with_changes(shipped.path, changes))
    with pytest.raises(RelstitchError) as caught:
        load_stitched(bad)
    assert wanted in str(caught.value) and str(bad) in str(caught.value) and "\n" not in str(caught.value)


def test_a_stitched_model_built_in_python_checks_its_spec(shipped) -> None:
    parts = (shipped.encoder, shipped.decoder, shipped.anchor_latents, shipped.projection)
    with pytest.raises(UsageError, match="input spec: std is 0, expected a finite number > 0"):
        StitchedModel(*parts, {**shipped.input_spec, "std": 0}, shipped.task)
    model = StitchedModel(*parts, shipped.input_spec, shipped.task)  # the same spec is fine
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    assert torch.isfinite(model.eval()(images)).all()


# ------------------------------------------------------------------------ the image sources' options
def tiny_net() -> nn.Module:
    """The factory the tests name as ``python:<this module>:tiny_net`` (grey or RGB in, 8 values out)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.LazyConv2d(8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


NET = f"python:{__name__}:tiny_net"


@pytest.mark.parametrize(
    "options, wanted, fix",
    [
        ({"std": "0"}, "input spec: std is 0.0, expected a finite number > 0", "std"),
        ({"std": "0.5,0,0.5", "channels": "3"}, "std[1] is 0.0", "std"),
        ({"mean": "nan"}, "mean is nan, expected a finite number", "mean"),
        # sizes typed as text: refused as the option is read, before any model is built or weights read
        ({"resize": "224000"}, "'resize' (sides go from 1 to 4096 pixels, got '224000')", "resize"),
        ({"crop": "5000,20"}, "'crop' (sides go from 1 to 4096 pixels", "crop"),
        ({"resize": "2,3,4"}, "'resize' (expected H,W or one size, got '2,3,4')", "resize"),
        ({"resize": [224000, 3]}, "resize[0] is 224000, expected an integer from 1 to 4096", "resize"),
        ({"channels": "0"}, "channels is 0", "channels"),  # a 0 is the user's: never read as "not given"
        ({"channels": "4"}, "channels is 4, expected one of 1, 3", "channels"),
        ({"channels": "3", "mean": "0.1,0.2"}, "mean has 2 values for 3-channel images", "mean"),
        ({"channels": 1, "std": [1.0, 2.0, 3.0]}, "std has 3 values for 1-channel images", "std"),
        ({"resize": 224}, "resize is 224, expected [height, width]", "resize"),  # Python: no text to parse
    ],
)
def test_bad_image_options_are_refused_when_the_encoder_loads(options, wanted, fix) -> None:
    with pytest.raises(UsageError) as caught:
        load_encoder_ref(NET, **options)
    assert wanted in str(caught.value) and f"-O {fix}=" in str(caught.value)


def test_good_image_options_make_the_spec() -> None:
    encoder = load_encoder_ref(f"{NET}#resize=32,channels=3,mean=0.5,std=0.25,0.25,0.25")
    assert {k: encoder.input_spec[k] for k in ("resize", "channels", "mean", "std")} == {
        "resize": [32, 32],
        "channels": 3,
        "mean": 0.5,
        "std": [0.25, 0.25, 0.25],
    }
    grey = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    assert encoder.prepare(grey).shape == (2, 3, 32, 32)


def test_the_cli_refuses_a_bad_option_in_one_line_before_any_work(tiny_zoo, tmp_path, cli) -> None:
    out = tmp_path / "e.safetensors"
    args = ["encode", NET, "-a", tiny_zoo.anchors_path, "--limit", 10, "-o", out]
    line = one_line_error(cli(*args, "-O", "resize=224000"), code=2)
    assert "1 to 4096 pixels, got '224000'" in line and "-O resize=" in line and not out.exists()
    # refused as it is read: before a weights file (here, one that does not exist) is looked for
    tv = ["encode", "torchvision:resnet18#weights=absent.safetensors", *args[2:]]
    line = one_line_error(cli(*tv, "-O", "resize=224000"), code=2)
    assert "1 to 4096 pixels" in line and "absent" not in line
    line = one_line_error(cli(*args[:1], f"{NET}#std=0", *args[2:]), code=2)
    assert "std is 0.0" in line and not out.exists()
