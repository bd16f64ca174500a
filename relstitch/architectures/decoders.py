"""Decoders (task heads): relative vector ``[B, k]`` or absolute latent ``[B, D]`` → task output.

Every head starts with a LayerNorm over its input: for relative vectors this is the normalisation
the authors apply after the projection (Moschella et al. 2023); for absolute latents it is kept too, so the
two spaces differ only in what they read.

``row_scale_free = True`` on a head declares that leading LayerNorm over its whole input: its outputs
ignore a positive per-row factor on its input (up to the LayerNorm's eps), so a caller may feed it the
unnormalised cosine (``relative_projection(..., row_scale_free=True)``; ``stitching.decoder_inputs``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .registry import DECODERS


class RowNorm(nn.Module):
    """Normalise each sample over its features, no learned affine.

    This is what the authors' ``nn.InstanceNorm1d(k)`` does to a ``[B, k]`` batch (PyTorch reads a 2-d
    input as one unbatched ``[C, L]`` sample), written out so the intent is explicit.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:])


_ACTIVATIONS = {"tanh": nn.Tanh, "silu": nn.SiLU, "relu": nn.ReLU}


@DECODERS.register("vision-head")
class VisionHead(nn.Module):
    """LayerNorm → Linear → Tanh → RowNorm → Linear(classes): the authors' vision head."""

    row_scale_free: ClassVar[bool] = True  # a leading LayerNorm: see the module docstring

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 128, activation: str = "tanh") -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, hidden),
            _ACTIVATIONS[activation](),
            RowNorm(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(r)
        return out


@DECODERS.register("text-head")
class TextHead(nn.Module):
    """LayerNorm → (Linear → SiLU → RowNorm) x2 → Linear(classes): the authors' text head."""

    row_scale_free: ClassVar[bool] = True  # a leading LayerNorm: see the module docstring

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, hidden),
            nn.SiLU(),
            RowNorm(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            RowNorm(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(r)
        return out


@DECODERS.register("conv-decoder")
class ConvDecoder(nn.Module):
    """Decoder half of the convolutional autoencoder: vector → 1x28x28 image in [0, 1]."""

    row_scale_free: ClassVar[bool] = True  # a leading LayerNorm: see the module docstring

    def __init__(self, in_dim: int, out_channels: int = 1) -> None:
        super().__init__()
        self.expand = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, 64 * 7 * 7), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, out_channels, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(self.expand(r).view(-1, 64, 7, 7))
        return out
