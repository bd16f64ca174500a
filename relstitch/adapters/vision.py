"""Image models that are plain ``nn.Module``s: ``torchvision:NAME`` and the latent tap they share with
``python:``.

A network's latent is one layer's activation (:class:`LatentTap`): by default the input of its classifier
(``fc``/``classifier``/``heads``/``head``), so the pooled features, as the paper takes them. Weights come
from a local file only (:func:`fit_weights`), checked tensor by tensor.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import check_shapes, check_weights
from ..components import Encoder
from ..errors import RelstitchError, UsageError
from .base import SourceOptions, first_line, parse_call, register_model_source

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CLASSIFIER_NAMES = ("fc", "classifier", "heads", "head")
"""Where torchvision models keep their classifier; the default latent is that module's input."""


class _Tapped(Exception):
    """Carries a layer's activation out of the forward pass (the rest of the network is skipped)."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _to_vector(out: Any) -> torch.Tensor:
    """Model output → ``[B, D]``: first element of tuples, 4-d maps average-pooled, anything else
    flattened."""
    if isinstance(out, Mapping):
        out = next(iter(out.values()))
    if isinstance(out, list | tuple):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise RelstitchError(
            f"the model returned {type(out).__name__}, not a tensor", hint="pick a layer with -O layer=NAME"
        )
    vectors: torch.Tensor = out.mean(dim=(2, 3)) if out.ndim == 4 else out
    return vectors.flatten(1)


class LatentTap(nn.Module):
    """Wrap a network so its forward returns one layer's activation (``NAME`` output, ``NAME:input``
    input)."""

    def __init__(self, model: nn.Module, layer: str | None) -> None:
        super().__init__()
        self.model = model
        self.layer = layer
        if layer:
            name, _, where = layer.partition(":")
            modules = dict(model.named_modules())
            modules.pop("", None)
            if name not in modules:
                close = difflib.get_close_matches(name, modules, n=3)
                top = ", ".join(n for n in modules if "." not in n)
                hint = (
                    f"did you mean {' or '.join(map(repr, close))}?" if close else f"top-level layers: {top}"
                )
                raise RelstitchError(f"the model has no layer {name!r}", hint=hint)
            if where not in ("", "output", "input"):
                raise UsageError(f"layer {layer!r}: write NAME, NAME:output or NAME:input")
        self._target, self._on_input = (
            layer.partition(":")[0] if layer else "",
            layer is not None and layer.endswith(":input"),
        )

    @staticmethod
    def _grab_input(module: nn.Module, args: tuple[Any, ...]) -> None:
        raise _Tapped(args[0])

    @staticmethod
    def _grab_output(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        raise _Tapped(output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.layer:
            return _to_vector(self.model(x))
        # The hook lives only during this call, so the wrapped network behaves normally anywhere else.
        target = self.model.get_submodule(self._target)
        if self._on_input:
            hook = target.register_forward_pre_hook(self._grab_input)
        else:
            hook = target.register_forward_hook(self._grab_output)
        try:
            self.model(x)
        except _Tapped as tapped:
            return _to_vector(tapped.value)
        finally:
            hook.remove()
        raise RelstitchError(
            f"layer {self.layer!r} did not run in the forward pass", hint="pick another layer"
        )


def fit_weights(model: nn.Module, path: str | Path, what: str) -> None:
    """Load a weights file into ``model``, refusing any missing, unexpected or misshapen tensor by name.

    The file is read by :func:`relstitch.io.safe_load.load_weights`: safetensors, or ``.pt/.pth/.bin``
    through ``torch.load(weights_only=True)`` only. A tensor of another kind of dtype than the model's
    (integers for float weights) or holding NaN/±Inf is refused too; float16/bfloat16 weights for a float32
    model are fine (:func:`relstitch.checkpoints.check_weights`).
    """
    from ..io.safe_load import load_weights

    state = load_weights(path)
    own = model.state_dict()
    try:
        check_shapes(own, state, what)
        # Foreign files: a float→float cast is allowed (half-precision releases are common), a change of
        # kind is not.
        check_weights(
            own,
            state,
            what,
            exact=False,
            hint="re-export the weights from the model they belong to (safetensors.torch.save_file)",
            finite_hint="use an intact copy of the weights (NaN/Inf: a diverged training run?)",
        )
    except RelstitchError as exc:
        raise RelstitchError(str(exc), path=path) from None
    for (
        name,
        tensor,
    ) in state.items():  # a narrowing cast (a float32 file, a float16 model) can overflow to ±Inf
        dtype = own[name].dtype
        if tensor.is_floating_point() and torch.finfo(dtype).max < torch.finfo(tensor.dtype).max:
            overflow = int((~torch.isfinite(tensor.to(dtype))).sum())
            if overflow:
                raise RelstitchError(
                    f"weight {name!r} has {overflow} value(s) beyond the range of {what}'s "
                    f"{str(dtype).removeprefix('torch.')}",
                    path=path,
                    hint="build the model in a wider dtype (float32)",
                )
    model.load_state_dict(state)


def image_encoder(
    model: nn.Module, architecture: dict[str, Any], spec: dict[str, Any], name: str, source: str
) -> Encoder:
    architecture = dict(architecture, input=spec)  # preprocessing changes the latents: it is part of identity
    return Encoder(
        module=LatentTap(model, architecture.get("layer")).eval(),
        architecture=architecture,
        input_spec=spec,
        latent_dim=0,
        name=name,
        meta={"source": source},
    )  # latent size: learnt on the first batch


def image_spec(
    opts: SourceOptions, *, resize: list[int] | None, channels: int | None, mean: Any, std: Any
) -> dict[str, Any]:
    spec = {
        "modality": "image",
        "scale": 255.0,
        "resize": opts.resize or resize,
        "channels": opts.channels or channels,
        "mean": opts.mean if opts.mean is not None else mean,
        "std": opts.std if opts.std is not None else std,
    }
    return {k: v for k, v in spec.items() if v is not None}


@register_model_source(
    "torchvision",
    ("weights", "layer", "resize", "channels", "mean", "std"),
    "a torchvision architecture with a local weights file",
)
def _load_torchvision(locator: str, opts: SourceOptions) -> Encoder:
    arch, kwargs = parse_call(locator)
    import torchvision

    known = torchvision.models.list_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=1)
        raise RelstitchError(
            f"torchvision has no model {arch!r}",
            hint=f"did you mean {close[0]!r}?" if close else "see torchvision.models.list_models()",
        )
    if not opts.weights:
        raise UsageError(
            f"torchvision:{arch} needs a local weights file (relstitch never downloads)",
            hint=f"write torchvision:{arch}#weights=FILE or pass -O weights=FILE",
        )
    try:
        model = torchvision.models.get_model(arch, weights=None, **kwargs)
    except (TypeError, ValueError) as exc:
        raise RelstitchError(f"cannot build torchvision:{arch}: {first_line(exc)}") from None
    fit_weights(model, opts.weights, f"torchvision:{arch}")
    layer = opts.layer or next(
        (f"{n}:input" for n in CLASSIFIER_NAMES if isinstance(getattr(model, n, None), nn.Module)), None
    )
    if layer is None:
        raise UsageError(
            f"torchvision:{arch} has no fc/classifier/head: say which layer is the latent",
            hint="-O layer=NAME",
        )
    spec = image_spec(opts, resize=[224, 224], channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    architecture = {"name": f"torchvision:{arch}", "args": kwargs, "layer": layer}
    return image_encoder(model, architecture, spec, opts.name or arch, f"torchvision:{arch}")
