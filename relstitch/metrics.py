"""Task metrics and their direction (higher or lower is better)."""

from __future__ import annotations

import math

import torch

DIRECTIONS = {"accuracy": "higher", "macro_f1": "higher", "mse": "lower", "psnr": "higher"}
MAIN_METRIC = {"classification": "accuracy", "reconstruction": "mse"}


def classification_scores(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 (mean over classes present in labels or predictions)."""
    pred = logits.argmax(dim=1)
    accuracy = (pred == labels).float().mean().item()
    f1s = []
    for c in range(num_classes):
        tp = int(((pred == c) & (labels == c)).sum())
        fp = int(((pred == c) & (labels != c)).sum())
        fn = int(((pred != c) & (labels == c)).sum())
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0}


def reconstruction_scores(mse: float) -> dict[str, float]:
    """Mean squared error over pixels in [0, 1] and the PSNR it implies (peak value 1)."""
    return {"mse": mse, "psnr": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")}
