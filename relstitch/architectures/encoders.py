"""Encoders: image → latent vector ``[B, latent_dim]``. Small enough to train on a laptop CPU."""

from __future__ import annotations

import torch
from torch import nn

from .registry import ENCODERS


@ENCODERS.register("mlp")
class MLPEncoder(nn.Module):
    """Flatten → Linear → ReLU → Linear."""

    def __init__(
        self, in_shape: tuple[int, ...] = (1, 28, 28), hidden: int = 128, latent_dim: int = 64
    ) -> None:
        super().__init__()
        n_in = 1
        for d in in_shape:
            n_in *= d
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, latent_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z: torch.Tensor = self.net(x)
        return z


@ENCODERS.register("cnn")
class CNNEncoder(nn.Module):
    """Three stride-2 convolutions (28 → 14 → 7 → 4) and a linear map to the latent."""

    def __init__(self, in_channels: int = 1, width: int = 16, latent_dim: int = 64) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.project = nn.Linear(2 * w * 4 * 4, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z: torch.Tensor = self.project(self.features(x))
        return z


@ENCODERS.register("conv-ae")
class ConvAEEncoder(nn.Module):
    """Encoder half of the convolutional autoencoder (28 → 14 → 7, then linear)."""

    def __init__(self, in_channels: int = 1, latent_dim: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, latent_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z: torch.Tensor = self.net(x)
        return z


@ENCODERS.register("resnet18")
def resnet18_trunk(in_channels: int = 1, latent_dim: int = 64) -> nn.Module:
    """torchvision ResNet-18 adapted to 28x28 inputs (3x3 stem, no max-pool), no pretrained weights.

    The classifier is replaced by a linear map from the 512 pooled features to the latent.
    """
    from torchvision.models import resnet18

    model: nn.Module = resnet18(weights=None, num_classes=latent_dim)
    # The ImageNet stem (7x7 stride 2 + max-pool) would shrink 28x28 to 7x7 before the first block.
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model
