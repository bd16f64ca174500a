"""Training: encoders + decoders end to end (``train``) and heads on frozen embeddings (``fit``).

End to end with a **relative bottleneck**, as the authors do: at every step the encoder embeds the
batch *and* the anchors (anchors under ``no_grad``), the batch is projected onto the anchors, and the
decoder reads the relative vector. The **absolute** control feeds the latent straight to the decoder.
Both share one optimisation loop.

Scores people can judge: ``fit`` holds a seeded share of its samples out and scores the head on them
(``training.validation``); ``train`` scores on data that matches what it trained on (:func:`plan_evaluation`:
the data named, else the source's test split, else a seeded share held out). Both splits are one helper,
:func:`held_out_split`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .anchor_set import Anchors
from .architectures import create_decoder, create_encoder
from .checkpoints import SPACES
from .components import Decoder, Encoder
from .data import Dataset, default_image_spec, load_dataset, prepare_images
from .data.sources import test_split_reference
from .encoding import EncodedSpace
from .errors import RelstitchError, UsageError, unknown_choice
from .metrics import classification_scores
from .nn import RelativeProjection
from .progress import ProgressFn, silent
from .projection import ProjectionConfig
from .reports.document import label_baselines

TASKS = ("classification", "reconstruction")
DEFAULT_HEAD = {"classification": "vision-head", "reconstruction": "conv-decoder"}
HOLD_OUT = 0.1
"""The share of the training data held out for scoring when nothing else is named: ``fit``'s validation
split, and what ``train`` scores on when its data has no test split."""


def percent(fraction: float) -> str:
    """``0.1`` → ``10 %``: a held-out share as the output and the docs write it."""
    return f"{fraction * 100:g} %"


def held_out_split(
    n: int, fraction: float, seed: int, *, hint: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the positions ``0..n-1`` into (kept, held out), each in ascending order.

    ``round(fraction * n)`` positions (at least one) are held out, drawn by a generator seeded with
    ``seed`` alone, so one seed gives one split on every machine and in every run. ``hint`` says how to
    do without a split when ``n`` is too small for one.
    """
    if not 0 < fraction < 1:
        raise UsageError(f"a held-out share must be above 0 and below 1, not {fraction:g}")
    count = max(1, round(fraction * n))
    if count >= n:
        raise RelstitchError(
            f"{n} sample{'s' if n != 1 else ''}: too few to hold {percent(fraction)} out and train on "
            "the rest",
            hint=hint,
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[count:].sort().values, order[:count].sort().values


@dataclass
class TrainConfig:
    """Everything that decides a training run (recorded in both checkpoints)."""

    arch: str = "cnn"
    task: str = "classification"
    space: str = "relative"
    latent_dim: int = 64
    head: str | None = None  # decoder architecture; default by task
    hidden: int = 128
    epochs: int = 8
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)  # used by the relative bottleneck

    def validate(self) -> None:
        if self.task not in TASKS:
            raise unknown_choice("task", self.task, TASKS)
        if self.space not in SPACES:
            raise unknown_choice("space", self.space, ("relative", "absolute"))
        for key in ("latent_dim", "epochs", "batch_size", "hidden"):
            if getattr(self, key) < 1:
                raise RelstitchError(f"{key} must be at least 1")
        if not self.lr > 0:
            raise RelstitchError("learning rate must be positive")
        self.projection.validate()


def _optimise(
    params: list[nn.Parameter],
    n: int,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    loss_of_batch: Callable[[torch.Tensor], torch.Tensor],
    progress: ProgressFn,
    description: str,
) -> float:
    """Adam over shuffled mini-batches (seeded order); returns the last epoch's mean loss."""
    optimiser = torch.optim.Adam(params, lr=lr)
    order_gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = (n + batch_size - 1) // batch_size
    last = float("nan")
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(n, generator=order_gen).split(batch_size):
            loss = loss_of_batch(idx)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
            progress(description, 1, epochs * steps_per_epoch)
        last = total / n
        if last != last:  # NaN: stop early with a clear message rather than save garbage
            raise RelstitchError("training diverged (loss is NaN)", hint="lower the learning rate")
    return last


def _task_spec(task: str, dataset: Dataset) -> dict[str, Any]:
    if task == "classification":
        return {"type": "classification", "classes": list(dataset.classes)}
    return {"type": "reconstruction", "shape": list(dataset.x.shape[1:])}


def train(
    dataset: Dataset,
    anchors: Anchors | None,
    config: TrainConfig,
    *,
    name: str = "model",
    progress: ProgressFn = silent,
) -> tuple[Encoder, Decoder]:
    """Train an encoder + decoder end to end; relative space needs ``anchors``."""
    config.validate()
    x_all = dataset.x
    if dataset.modality == "text" or not isinstance(x_all, torch.Tensor):  # only text data holds TextViews
        raise RelstitchError(
            f"train builds image encoders but data {dataset.name} is text",
            hint="for text, embed with a pretrained model (encode hf:DIR) and train a head with fit",
        )
    if config.space == "relative" and anchors is None:
        raise RelstitchError(
            "a relative bottleneck needs anchors", hint="pass --anchors FILE (see `relstitch anchors`)"
        )
    if anchors is not None and anchors.inputs.shape[1:] != x_all.shape[1:]:
        raise RelstitchError(
            f"anchors have shape {tuple(anchors.inputs.shape[1:])} per sample, "
            f"data has {tuple(x_all.shape[1:])}",
            path=anchors.path,
        )
    relative_anchors = (
        anchors if config.space == "relative" else None
    )  # not None when relative (checked above)
    torch.manual_seed(config.seed)
    in_shape = tuple(x_all.shape[1:])
    enc_args: dict[str, Any] = {"latent_dim": config.latent_dim}
    enc_args.update({"in_shape": list(in_shape)} if config.arch == "mlp" else {"in_channels": in_shape[0]})
    encoder_module = create_encoder(config.arch, **enc_args)
    in_dim = (
        config.projection.output_dim(len(relative_anchors))
        if relative_anchors is not None
        else config.latent_dim
    )
    head = config.head or DEFAULT_HEAD[config.task]
    dec_args: dict[str, Any] = {"in_dim": in_dim}
    if config.task == "classification":
        dec_args.update(num_classes=len(dataset.classes), hidden=config.hidden)
    else:
        dec_args.update(out_channels=in_shape[0])
    decoder_module = create_decoder(head, **dec_args)
    projection = config.projection if relative_anchors is not None else None
    spec = default_image_spec(in_shape)
    # The relative bottleneck is the public layer: the anchors embedded by the same encoder at every step,
    # without gradient (relstitch.nn.RelativeProjection), so users' own models train exactly as these do.
    bottleneck = (
        RelativeProjection(
            prepare_images(relative_anchors.inputs, spec),
            projection,
            embed=encoder_module,
            anchor_hash=relative_anchors.hash,
        )
        if relative_anchors is not None
        else None
    )

    def forward(x_uint8: torch.Tensor) -> torch.Tensor:
        z = encoder_module(prepare_images(x_uint8, spec))
        if bottleneck is not None:
            z = bottleneck(z)
        out: torch.Tensor = decoder_module(z)
        return out

    def loss_of_batch(idx: torch.Tensor) -> torch.Tensor:
        out = forward(x_all[idx])
        if config.task == "classification":
            return F.cross_entropy(out, dataset.y[idx])
        return F.mse_loss(out, x_all[idx].float() / 255.0)

    encoder_module.train()
    decoder_module.train()
    final_loss = _optimise(
        list(encoder_module.parameters()) + list(decoder_module.parameters()),
        len(dataset),
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        loss_of_batch=loss_of_batch,
        progress=progress,
        description=f"training {name}",
    )
    training = {
        "config": asdict(config),
        "dataset": dataset.describe(),
        "final_train_loss": final_loss,
        "space": config.space,
        "seed": config.seed,
    }
    encoder = Encoder(
        module=encoder_module.eval(),
        architecture={"name": config.arch, "args": enc_args},
        input_spec=spec,
        latent_dim=config.latent_dim,
        name=name,
        meta={"training": training},
    )
    decoder = Decoder(
        module=decoder_module.eval(),
        architecture={"name": head, "args": dec_args},
        space=config.space,
        input_dim=in_dim,
        task=_task_spec(config.task, dataset),
        name=name,
        projection=projection,
        anchor_hash=relative_anchors.hash if relative_anchors is not None else None,
        encoder_hash=encoder.hash,
        meta={"training": training},
    )
    return encoder, decoder


@dataclass(frozen=True)
class EvalPlan:
    """Where ``train`` scores what it trained (:func:`plan_evaluation`).

    ``source`` is ``given`` (data the user named), ``test split`` (the test split of the training
    source) or ``held out`` (a seeded ``fraction`` of the training data, which is then not trained on).
    ``reference`` is the data loaded for scoring; None when held out.
    """

    source: str
    reference: str | None
    fraction: float = HOLD_OUT
    seed: int = 0

    def split(self, dataset: Dataset) -> tuple[Dataset, Dataset]:
        """(the data to train on, the data to score on): ``dataset`` and the named data, or ``dataset``
        split by :func:`held_out_split`."""
        if self.reference is not None:
            return dataset, load_dataset(self.reference)
        kept, held = held_out_split(
            len(dataset), self.fraction, self.seed, hint="name data to score on with --eval-data"
        )
        share, rest = percent(self.fraction), percent(1 - self.fraction)
        return (
            dataset.subset(kept, name=f"{dataset.name}[{rest} kept, seed {self.seed}]"),
            dataset.subset(held, name=f"{dataset.name}[{share} held out, seed {self.seed}]"),
        )

    def describe(self, held_out: Dataset) -> str:
        """What was scored on, for people: ``builtin:test``, ``the test split idx:DIR:test`` or ``60 samples
        held out of the training data (10 %, seed 0)``."""
        if self.source == "held out":
            return (
                f"{len(held_out)} samples held out of the training data "
                f"({percent(self.fraction)}, seed {self.seed})"
            )
        return f"the test split {self.reference}" if self.source == "test split" else str(self.reference)

    def record(self, held_out: Dataset) -> dict[str, Any]:
        """The same for the checkpoints' metadata (``training.eval``, beside the scores)."""
        record: dict[str, Any] = {"source": self.source, "data": held_out.describe()}
        if self.source == "held out":
            record.update(fraction=self.fraction, seed=self.seed)
        else:
            record["reference"] = self.reference
        return record


def plan_evaluation(data: str, eval_data: str | None, *, seed: int, fraction: float = HOLD_OUT) -> EvalPlan:
    """Where ``train --data DATA`` scores its models: ``eval_data`` when given; else the test split of the
    same source (:func:`relstitch.data.sources.test_split_reference`: ``builtin:train`` → ``builtin:test``,
    ``idx:DIR`` → ``idx:DIR:test``); else ``fraction`` of the training data held out with ``seed``.

    Never the built-in data for a user's own: a score on data the model was not trained for means nothing.
    """
    if eval_data is not None:
        return EvalPlan("given", eval_data)
    test = test_split_reference(data)
    if test is not None:
        return EvalPlan("test split", test)
    return EvalPlan("held out", None, fraction, seed)


@dataclass
class FitConfig:
    """A head trained on a frozen encoder's embeddings.

    ``val``: the share of the samples held out (seeded by ``seed``) and scored after training, not
    trained on; 0 trains on every sample and scores nothing.
    """

    space: str = "relative"
    head: str = "vision-head"
    hidden: int = 128
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    val: float = HOLD_OUT


def fit(
    space: EncodedSpace,
    config: FitConfig,
    *,
    projection: ProjectionConfig | None = None,
    name: str = "head",
    progress: ProgressFn = silent,
) -> Decoder:
    """Train a classification head on an embeddings file's relative (or absolute) vectors.

    A relative head reads ``space.relative(projection)`` (default: cosine), computed from the file's
    absolute and anchor latents, so any projection works without re-encoding; the decoder records it.
    With ``config.val`` above 0 that share of the samples is held out (:func:`held_out_split`) and
    scored after training: ``training.validation`` in the decoder's metadata.
    """
    if config.space not in SPACES:
        raise unknown_choice("space", config.space, ("relative", "absolute"))
    if not 0 <= config.val < 1:
        raise UsageError(f"--val must be at least 0 and below 1 (a share of the samples), not {config.val:g}")
    if config.space == "absolute" and projection is not None:  # silently dropping it would mislead
        raise UsageError(
            "an absolute head reads the latents, not a projection: drop the projection (or fit relative)"
        )
    classes = space.dataset.get("classes") or []
    if not classes:
        raise RelstitchError("embeddings carry no class names: cannot fit a classifier", path=space.path)
    labels = space.labels
    if len(torch.unique(labels)) < 2:
        raise RelstitchError("embeddings hold a single class: nothing to learn", path=space.path)
    # Labels past the class names never get here: a Dataset and load_embeddings refuse them.
    projection = (projection or ProjectionConfig()) if config.space == "relative" else None
    inputs = space.relative(projection) if projection else space.latents()
    held: torch.Tensor | None = None
    if config.val:
        kept, held = held_out_split(len(inputs), config.val, config.seed, hint="fit with --val 0")
        train_inputs, train_labels = inputs[kept], labels[kept]
    else:
        train_inputs, train_labels = inputs, labels
    torch.manual_seed(config.seed)
    args = {"in_dim": inputs.shape[1], "num_classes": len(classes), "hidden": config.hidden}
    module = create_decoder(config.head, **args)
    module.train()
    final_loss = _optimise(
        list(module.parameters()),
        len(train_inputs),
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        progress=progress,
        description=f"fitting {name}",
        loss_of_batch=lambda idx: F.cross_entropy(module(train_inputs[idx]), train_labels[idx]),
    )
    module.eval()
    validation = None
    if held is not None:  # the held-out samples, never trained on: what a training loss cannot show
        with torch.inference_mode():
            scores = classification_scores(module(inputs[held]), labels[held], len(classes))
        validation = {
            "fraction": config.val,
            "seed": config.seed,
            "samples": len(held),
            "scores": scores,
            "baselines": label_baselines(labels[held].tolist(), classes),
        }
    made_by = found if isinstance(found := space.meta.get("encoder"), dict) else {}
    # "arch" names the encoder the head was fitted on, as in `train`'s config: reports group heads by it.
    training = {
        "config": dict(asdict(config), arch=made_by.get("architecture")),
        "dataset": {k: v for k, v in space.dataset.items() if k != "classes"},
        "final_train_loss": final_loss,
        "train_samples": len(train_inputs),
        "validation": validation,
        "space": config.space,
        "seed": config.seed,
        "embeddings": str(space.path) if space.path else None,
    }
    return Decoder(
        module=module,
        architecture={"name": config.head, "args": args},
        space=config.space,
        input_dim=inputs.shape[1],
        task={"type": "classification", "classes": list(classes)},
        name=name,
        projection=projection,
        anchor_hash=space.anchor_hash if projection else None,
        encoder_hash=space.encoder_hash,
        meta={"training": training},
    )
