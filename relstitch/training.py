"""Training: encoders + decoders end to end (``train``) and heads on frozen embeddings (``fit``).

End to end with a **relative bottleneck**, as the authors do: at every step the encoder embeds the
batch *and* the anchors (anchors under ``no_grad``), the batch is projected onto the anchors, and the
decoder reads the relative vector. The **absolute** control feeds the latent straight to the decoder.
Both share one optimisation loop.
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
from .data import Dataset, default_image_spec, prepare_images
from .encoding import EncodedSpace
from .errors import RelstitchError, UsageError, unknown_choice
from .progress import ProgressFn, silent
from .projection import ProjectionConfig, relative_projection

TASKS = ("classification", "reconstruction")
DEFAULT_HEAD = {"classification": "vision-head", "reconstruction": "conv-decoder"}


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
    anchor_x = prepare_images(relative_anchors.inputs, spec) if relative_anchors is not None else None

    def forward(x_uint8: torch.Tensor) -> torch.Tensor:
        z = encoder_module(prepare_images(x_uint8, spec))
        if anchor_x is not None:
            with torch.no_grad():  # anchors are embedded by the same encoder, without gradient
                anchor_z = encoder_module(anchor_x)
            z = relative_projection(z, anchor_z, projection)
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


@dataclass
class FitConfig:
    """A head trained on a frozen encoder's embeddings."""

    space: str = "relative"
    head: str = "vision-head"
    hidden: int = 128
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0


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
    """
    if config.space not in SPACES:
        raise unknown_choice("space", config.space, ("relative", "absolute"))
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
    inputs = space.relative(projection) if projection else space.absolute
    torch.manual_seed(config.seed)
    args = {"in_dim": inputs.shape[1], "num_classes": len(classes), "hidden": config.hidden}
    module = create_decoder(config.head, **args)
    module.train()
    final_loss = _optimise(
        list(module.parameters()),
        len(inputs),
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        progress=progress,
        description=f"fitting {name}",
        loss_of_batch=lambda idx: F.cross_entropy(module(inputs[idx]), labels[idx]),
    )
    made_by = found if isinstance(found := space.meta.get("encoder"), dict) else {}
    # "arch" names the encoder the head was fitted on, as in `train`'s config: reports group heads by it.
    training = {
        "config": dict(asdict(config), arch=made_by.get("architecture")),
        "dataset": {k: v for k, v in space.dataset.items() if k != "classes"},
        "final_train_loss": final_loss,
        "space": config.space,
        "seed": config.seed,
        "embeddings": str(space.path) if space.path else None,
    }
    return Decoder(
        module=module.eval(),
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
