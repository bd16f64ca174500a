"""A user's own model, defined outside relstitch: the module ``train_your_own.py`` trains and saves.

relstitch records ``my_models:build_encoder`` (and its keyword arguments) in the checkpoint and imports it
again when the checkpoint is loaded with ``--trust-code``: this file must be importable there (installed,
or its folder on ``PYTHONPATH``).
"""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Two strided convolutions with batch norm (28 → 14 → 7), then a linear map to the latent."""

    def __init__(self, latent_dim: int = 64, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.GELU(),
            nn.Flatten(),
        )
        self.to_latent = nn.Linear(2 * width * 7 * 7, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.to_latent(self.features(x))
        return out


def build_encoder(latent_dim: int = 64, width: int = 16) -> SmallCNN:
    """The factory relstitch records: keyword arguments only, JSON values."""
    return SmallCNN(latent_dim=latent_dim, width=width)
