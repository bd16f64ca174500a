"""Task metrics and their direction (higher or lower is better)."""

from __future__ import annotations

import math

import torch

DIRECTIONS = {"accuracy": "higher", "macro_f1": "higher", "mse": "lower", "psnr": "higher"}
MAIN_METRIC = {"classification": "accuracy", "reconstruction": "mse"}
TASK_METRICS = {"classification": ("accuracy", "macro_f1"), "reconstruction": ("mse", "psnr")}


def classification_scores(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 (mean over classes present in labels or predictions)."""
    pred = logits.argmax(dim=1)
    accuracy = (pred == labels).float().mean().item()
    # Three bincounts instead of a loop over classes (one pass each): tp, and the counts of each class
    # among predictions and labels, so fp = predicted - tp and fn = actual - tp. Exact integer counts.
    hit = pred == labels
    size = max(
        num_classes, int(pred.max()) + 1 if len(pred) else 0, int(labels.max()) + 1 if len(labels) else 0
    )
    tp = torch.bincount(labels[hit], minlength=size)[:num_classes].tolist()
    predicted = torch.bincount(pred, minlength=size)[:num_classes].tolist()
    actual = torch.bincount(labels, minlength=size)[:num_classes].tolist()
    # 2tp + fp + fn = predicted + actual; classes absent from both are left out of the mean.
    f1s = [2 * t / (p + a) for t, p, a in zip(tp, predicted, actual, strict=True) if p + a]
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0}


def reconstruction_scores(mse: float) -> dict[str, float]:
    """Mean squared error over pixels in [0, 1] and the PSNR it implies (peak value 1)."""
    return {"mse": mse, "psnr": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")}
