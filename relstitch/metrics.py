"""Task metrics and their direction (higher or lower is better)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

DIRECTIONS = {"accuracy": "higher", "macro_f1": "higher", "mse": "lower", "psnr": "higher"}
MAIN_METRIC = {"classification": "accuracy", "reconstruction": "mse"}
TASK_METRICS = {"classification": ("accuracy", "macro_f1"), "reconstruction": ("mse", "psnr")}


@dataclass
class ClassificationCounts:
    """Exact integer counts of a classifier's hits, added batch by batch: the scores of N samples never
    need their N predictions held at once (a million-sample matrix scores in the memory of one batch)."""

    num_classes: int
    samples: int = 0
    correct: int = 0
    tp: list[int] = field(default_factory=list)  # per class: hits
    predicted: list[int] = field(default_factory=list)  # per class: predictions of it
    actual: list[int] = field(default_factory=list)  # per class: labels of it

    def add(self, pred: torch.Tensor, labels: torch.Tensor) -> None:
        """Count one batch of predicted classes against its labels."""
        hit = pred == labels
        # Three bincounts instead of a loop over classes (one pass each): tp, and the counts of each class
        # among predictions and labels, so fp = predicted - tp and fn = actual - tp.
        top = [int(v.max()) + 1 for v in (pred, labels) if len(v)]
        size = max(self.num_classes, *top)
        batch = [
            torch.bincount(v, minlength=size)[: self.num_classes].tolist()
            for v in (labels[hit], pred, labels)
        ]
        for total, counts in zip((self.tp, self.predicted, self.actual), batch, strict=True):
            total[:] = [a + b for a, b in zip(total or [0] * self.num_classes, counts, strict=True)]
        self.samples += len(labels)
        self.correct += int(hit.sum())

    def scores(self) -> dict[str, float]:
        """Accuracy and macro-F1 (mean over classes present in labels or predictions)."""
        # float32 division, as the mean of the 0/1 hits always was: scores do not move by a last bit.
        accuracy = (torch.tensor(float(self.correct)) / self.samples).item()
        # 2tp + fp + fn = predicted + actual; classes absent from both are left out of the mean.
        f1s = [2 * t / (p + a) for t, p, a in zip(self.tp, self.predicted, self.actual, strict=True) if p + a]
        return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0}


def classification_scores(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 (mean over classes present in labels or predictions) of ``logits``."""
    counts = ClassificationCounts(num_classes)
    counts.add(logits.argmax(dim=1), labels)
    return counts.scores()


def reconstruction_scores(mse: float) -> dict[str, float]:
    """Mean squared error over pixels in [0, 1] and the PSNR it implies (peak value 1)."""
    return {"mse": mse, "psnr": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")}
