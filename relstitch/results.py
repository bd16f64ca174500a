"""What scoring a pair gives: its :class:`PairResult` (scores, or why it could not run) and, on request,
its per-sample :class:`Predictions`. The types alone, below the code that makes them (stitching,
translation, the matrix) and the code that writes them (predictions files, reports).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Predictions:
    """One pair's per-sample output, kept from the decoder pass that scored it."""

    task: str  # "classification" or "reconstruction"
    ids: torch.Tensor  # [N] int64, each sample's position in its source split
    labels: torch.Tensor  # [N] int64
    outputs: torch.Tensor  # float32: logits [N, classes] or reconstructions [N, C, H, W]
    errors: torch.Tensor | None  # reconstruction: per-sample MSE [N]; None for classification
    classes: list[str]  # the decoder's class names (classification) or the data's
    label_names: list[
        str
    ]  # the data's class names: a label is named by the data, a prediction by the decoder
    provenance: dict[str, Any]  # encoder, decoder, anchor_hash, data: the metadata of a .safetensors file

    @property
    def predicted(self) -> torch.Tensor:
        """The predicted class of each sample (classification only): the argmax the accuracy was computed
        from."""
        if self.task != "classification":
            raise ValueError("a reconstruction has no predicted classes")
        return self.outputs.argmax(dim=1)


@dataclass
class PairResult:
    """The outcome of one encoder/decoder pair: scores, or the reason it could not run."""

    encoder: str
    decoder: str
    space: str
    stitched: bool
    scores: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    encoder_hash: str | None = None
    decoder_hash: str | None = None
    encoder_space: str | None = None  # the bottleneck the encoder was trained with, if known
    method: str | None = None  # how the pair is wired: relative, absolute or a translation; default = space
    control: str | None = None  # set for a control run (e.g. "shuffled-anchors"): not the method's score
    # Per-sample output, only when scored with keep_predictions=True; tensors, so never in to_dict
    # (reports, --json).
    predictions: Predictions | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.method is None:
            self.method = self.space

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "predictions"}
