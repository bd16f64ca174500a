"""A stitched pair's per-sample output (``relstitch stitch --predictions FILE``).

The predictions come from the very decoder pass that gave the pair's scores
(:func:`relstitch.stitching.decode_and_score`), so the file and the printed metrics always agree. Two
formats, chosen by the file's extension:

- ``.csv``: one row per sample. Classification: ``id, label, label_name, prediction, prediction_name,
  correct`` (1 or 0); reconstruction: ``id, label, label_name, mse``.
- ``.safetensors``: a relstitch ``predictions`` file: ``ids``, ``labels``, ``outputs`` (float32 logits
  ``[N, classes]`` or reconstructions ``[N, C, H, W]``) and ``predictions`` (classification, int64) or
  ``mse`` (reconstruction, per sample), with metadata naming encoder, decoder, anchors hash, data, method,
  task and scores.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

from .errors import UsageError
from .io.artifacts import save_artifact
from .io.atomic import atomic_write, check_outputs
from .results import PairResult, Predictions

FORMATS = (".csv", ".safetensors")


def check_predictions_output(
    path: str | os.PathLike[str], *, force: bool, inputs: Sequence[str | os.PathLike[str]] = ()
) -> Path:
    """Refuse a predictions path before any work: an unknown extension (exit 2), an existing file without
    ``force``, a missing folder, or one of the command's ``inputs`` (exit 1)."""
    return check_outputs([_format_checked(path)], force=force, inputs=tuple(inputs))[0]


def save_predictions(result: PairResult, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write ``result``'s predictions (scored with ``keep_predictions=True``) as CSV or a relstitch file."""
    kept = result.predictions
    if kept is None:
        raise ValueError("the pair was scored without keep_predictions=True")
    out = _format_checked(path)
    if out.suffix.lower() == ".csv":
        return atomic_write(out, predictions_csv(kept), force=force)
    tensors = {"ids": kept.ids, "labels": kept.labels, "outputs": kept.outputs.float()}
    if kept.task == "classification":
        tensors["predictions"] = kept.predicted
    else:
        assert kept.errors is not None  # a reconstruction keeps its per-sample errors
        tensors["mse"] = kept.errors.float()
    # a perfect reconstruction has psnr inf, which JSON cannot hold: stored as "inf", as reports do
    scores = {k: v if math.isfinite(v) else str(v) for k, v in result.scores.items()}
    meta = dict(
        kept.provenance, method=result.method, space=result.space, stitched=result.stitched, scores=scores
    )
    return save_artifact(out, "predictions", tensors, meta, force=force)


def _format_checked(path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    if out.suffix.lower() not in FORMATS:
        raise UsageError(
            f"--predictions {out}: unknown format {out.suffix or '(no extension)'!r}",
            hint=f"name a {' or '.join(FORMATS)} file",
        )
    return out


def predictions_csv(kept: Predictions) -> str:
    """The CSV text of ``kept``: one row per sample, in data order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    ids, labels = kept.ids.tolist(), kept.labels.tolist()
    label_names = [_name(kept.label_names, label) for label in labels]
    if kept.task == "classification":
        writer.writerow(["id", "label", "label_name", "prediction", "prediction_name", "correct"])
        for row in zip(ids, labels, label_names, kept.predicted.tolist(), strict=True):
            writer.writerow([*row, _name(kept.classes, row[3]), int(row[1] == row[3])])
    else:
        writer.writerow(["id", "label", "label_name", "mse"])
        assert kept.errors is not None  # a reconstruction keeps its per-sample errors
        # repr of a float round-trips: the CSV holds the same numbers as the .safetensors file
        writer.writerows(zip(ids, labels, label_names, map(repr, kept.errors.tolist()), strict=True))
    return buffer.getvalue()


def _name(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else ""
