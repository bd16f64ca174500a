"""The architecture registry and every registered architecture building and running."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from relstitch.architectures import create_decoder, create_encoder, list_decoders, list_encoders
from relstitch.errors import RelstitchError
from relstitch.training import TrainConfig, train


def test_registry_lists_the_core_architectures():
    assert {"mlp", "cnn", "conv-ae", "resnet18"} <= set(list_encoders())
    assert {"vision-head", "text-head", "conv-decoder"} <= set(list_decoders())


def test_unknown_architecture_suggests_the_closest_name():
    with pytest.raises(RelstitchError, match="did you mean 'resnet18'"):
        create_encoder("resnet-18")


@pytest.mark.parametrize("name", ["mlp", "cnn", "conv-ae", "resnet18"])
def test_every_encoder_maps_28x28_images_to_its_latent(name):
    args = {"in_shape": [1, 28, 28]} if name == "mlp" else {"in_channels": 1}
    model = create_encoder(name, latent_dim=24, **args).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 28, 28)).shape == (3, 24)


def test_heads_and_conv_decoder_shapes():
    with torch.no_grad():
        assert create_decoder("vision-head", in_dim=50, num_classes=10).eval()(torch.randn(4, 50)).shape == (
            4,
            10,
        )
        assert create_decoder("text-head", in_dim=50, num_classes=7).eval()(torch.randn(4, 50)).shape == (
            4,
            7,
        )
        image = create_decoder("conv-decoder", in_dim=50).eval()(torch.randn(4, 50))
    assert image.shape == (4, 1, 28, 28) and 0 <= image.min() and image.max() <= 1


@pytest.mark.slow
def test_resnet18_trunk_trains_end_to_end_with_a_relative_bottleneck(train_data, anchors):
    small = train_data.subset(torch.arange(64))
    config = TrainConfig(arch="resnet18", epochs=1, batch_size=32, latent_dim=16, seed=0)
    encoder, decoder = train(small, anchors, config, name="r18")
    assert decoder.input_dim == len(anchors) and decoder.encoder_hash == encoder.hash
    assert encoder.meta["training"]["final_train_loss"] > 0


def test_python_dash_m_runs_the_cli():
    out = subprocess.run(
        [sys.executable, "-m", "relstitch", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("relstitch ")
