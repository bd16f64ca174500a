"""``timm:NAME[(k=v)]``: a timm architecture (the optional ``timm`` extra: ``pip install -e '.[timm]'``).

The architecture is timm's (``timm.create_model(NAME, pretrained=False)``: nothing downloaded); the weights
come from ``weights=FILE`` or else from the Hugging Face cache, the repository timm names for ``NAME``
(``pretrained_cfg["hf_hub_id"]``, ``timm/NAME.TAG``), looked up by ``huggingface_hub`` (:mod:`.hub`).
Either way they are read by :func:`relstitch.io.safe_load.load_weights` and fitted tensor by tensor. The
preprocessing is the model's own ``pretrained_cfg`` (timm's evaluation transform: the shorter side to
``size / crop_pct``, a centre crop to ``input_size``, its interpolation, mean and std), unless the user
overrides it. The latent is timm's pooled features before the classifier
(``forward_head(forward_features(x), pre_logits=True)``), as for torchvision, or a ``layer=``.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import RelstitchError, UsageError
from .base import SourceOptions, first_line, parse_call, register_model_source
from .hub import cached_snapshot
from .vision import ImageEncoder, built_with_weights, fit_weights, image_encoder, image_spec, meta_build

HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
"""The weights files of a timm repository on the Hub, in the order timm itself prefers them."""


class PreLogits(nn.Module):
    """A timm model whose forward returns its pooled features before the classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(x)  # type: ignore[operator]
        pooled: torch.Tensor = self.model.forward_head(features, pre_logits=True)  # type: ignore[operator]
        return pooled


def _import_timm() -> Any:
    try:
        import timm
    except ImportError:
        raise RelstitchError(
            "timm: references need the optional timm package, which is not installed",
            hint="pip install -e '.[timm]' (or pip install 'relstitch[timm]')",
        ) from None
    return timm


def timm_spec(data: dict[str, Any], opts: SourceOptions) -> dict[str, Any]:
    """The input spec of timm's evaluation transform for a model's data config, the user's options over it."""
    _, height, width = data["input_size"]
    crop_pct = data.get("crop_pct") or 0.875  # timm's DEFAULT_CROP_PCT
    mode = data.get("crop_mode") or "center"
    scaled = [math.floor(height / crop_pct), math.floor(width / crop_pct)]
    if mode == "center" and scaled[0] == scaled[1]:
        resize, shorter = None, scaled[0]  # timm: Resize(shorter side), then CenterCrop
    elif mode == "squash":
        resize, shorter = scaled, None  # timm: Resize((h, w)), aspect not kept, then CenterCrop
    else:
        raise RelstitchError(
            f"timm's crop mode {mode!r} for a {height}x{width} input is not one relstitch reproduces",
            hint="give the preprocessing yourself: resize=H,W (and crop=, mean=, std=)",
        )
    return image_spec(
        opts,
        resize=resize,
        resize_shorter=shorter,
        crop=[int(height), int(width)],
        interpolation=str(data.get("interpolation") or "bilinear"),
        channels=int(data["input_size"][0]),
        mean=[float(v) for v in data["mean"]],
        std=[float(v) for v in data["std"]],
    )


def _hub_weights(hub_id: str) -> tuple[Path, dict[str, Any]]:
    folder, resolved = cached_snapshot(hub_id, None)
    for name in HUB_WEIGHTS:
        if (folder / name).is_file():
            return folder / name, resolved
    raise RelstitchError(
        f"the cached snapshot of {hub_id} holds no weights ({' or '.join(HUB_WEIGHTS)})", path=folder
    )


@register_model_source(
    "timm",
    ("weights", "layer", "resize", "crop", "channels", "mean", "std"),
    "a timm architecture (extra: timm); weights from a local file or the Hugging Face cache (timm/NAME)",
)
def _load_timm(locator: str, opts: SourceOptions) -> ImageEncoder:
    arch, kwargs = parse_call(locator)
    timm = _import_timm()
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=1)
        raise RelstitchError(
            f"timm has no model {arch!r}",
            hint=f"did you mean {close[0]!r}?" if close else "see timm.list_models()",
        )

    def create() -> nn.Module:
        try:
            model: nn.Module = timm.create_model(arch, pretrained=False, **kwargs)
            return model
        except Exception as exc:  # timm raises TypeError/ValueError/RuntimeError/...: they do not build
            raise RelstitchError(f"cannot build timm:{arch}: {first_line(exc)}") from None

    probe = meta_build(create)  # no random init: the weights file's tensors become the model's
    built = create() if probe is None else None  # cannot run on meta: built for real, once
    config = dict(getattr(probe if probe is not None else built, "pretrained_cfg", None) or {})
    resolved: dict[str, Any] = {}
    if opts.weights:
        weights = Path(opts.weights)
    elif isinstance(config.get("hf_hub_id"), str):
        weights, resolved = _hub_weights(config["hf_hub_id"])
    else:
        raise UsageError(
            f"timm:{arch} names no Hugging Face repository for its weights",
            hint=f"write timm:{arch}#weights=FILE or pass -O weights=FILE",
        )
    if built is not None:
        fit_weights(built, weights, f"timm:{arch}")
        model = built
    else:
        model = built_with_weights(create, weights, f"timm:{arch}", probe=probe)
    spec = timm_spec(timm.data.resolve_model_data_config(model), opts)
    architecture = {
        "name": f"timm:{config.get('architecture') or arch}",  # the tag shows in the weights and the spec
        "args": kwargs,
        "layer": opts.layer,
        "latent": None if opts.layer else "pre_logits",
    }
    tagged = ".".join(str(part) for part in (config.get("architecture"), config.get("tag")) if part)
    resolved = {**resolved, "weights": str(weights.resolve()), "pretrained_cfg": tagged or arch}
    network = model if opts.layer else PreLogits(model)
    return image_encoder(network, architecture, spec, opts.name or arch, f"timm:{arch}", resolved)
