"""encoding.py: a model that refuses its inputs is one relstitch error naming the encoder, never a traceback.

Real pieces: relstitch's own CNN architecture built for three channels (what an RGB model is) and fed the
built-in grey images, so its first convolution raises as any model of the wrong input would; the shipped
zoo beside it in one eval-matrix.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from relstitch.anchors import load_anchors
from relstitch.architectures import create_encoder
from relstitch.checkpoints import ENCODER_SUFFIX, load_decoder, save_encoder
from relstitch.components import Encoder
from relstitch.data import default_image_spec, load_dataset
from relstitch.encoding import embed
from relstitch.errors import RelstitchError
from relstitch.matrix import eval_matrix

ZOO = Path(__file__).resolve().parent.parent / "checkpoints"


def rgb_encoder() -> Encoder:
    """A CNN for three-channel images whose spec declares the built-in data's grey shape: its first
    convolution refuses every batch."""
    torch.manual_seed(0)
    module = create_encoder("cnn", in_channels=3, latent_dim=8)
    architecture = {"name": "cnn", "args": {"in_channels": 3, "latent_dim": 8}}
    return Encoder(module, architecture, default_image_spec([1, 28, 28]), 8, "rgb-cnn")


@pytest.fixture(scope="module")
def data():
    full = load_dataset("builtin:test")
    return full.subset(torch.arange(40), name="builtin:test[:40]")


def test_a_model_that_refuses_its_inputs_is_one_relstitch_error(data) -> None:
    with pytest.raises(RelstitchError) as caught:
        embed(rgb_encoder(), data.x)
    message = str(caught.value)
    assert "'rgb-cnn' failed on its inputs" in message and "3 channels" in message
    assert "\n" not in message


def test_eval_matrix_keeps_the_other_rows_when_one_model_refuses_its_inputs(data, tmp_path: Path) -> None:
    rgb = save_encoder(rgb_encoder(), tmp_path / f"rgb{ENCODER_SUFFIX}")
    good = ZOO / "cnn-rel-s0.encoder.safetensors"
    decoder = load_decoder(ZOO / "cnn-rel-s1.decoder.safetensors")
    result = eval_matrix([rgb, good], [decoder], load_anchors(ZOO / "anchors.safetensors"), data)
    failed, scored = result.pairs
    assert failed.error and "failed on its inputs" in failed.error
    assert scored.error is None and 0.0 <= scored.scores["accuracy"] <= 1.0


def test_encode_cli_says_it_in_one_line(cli, tmp_path: Path) -> None:
    path = save_encoder(rgb_encoder(), tmp_path / f"rgb{ENCODER_SUFFIX}")
    out = tmp_path / "out.safetensors"
    result = cli("encode", path, "-a", ZOO / "anchors.safetensors", "--limit", "20", "-o", out)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "failed on its inputs" in result.stderr and not out.exists()
