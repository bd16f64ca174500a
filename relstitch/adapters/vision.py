"""Image models that are plain ``nn.Module``s: ``torchvision:NAME`` and what it shares with ``python:`` and
``timm:`` (the latent tap, weights fitting, the image encoder and its preprocessing).

A network's latent is one layer's activation (:class:`LatentTap`): by default the input of its classifier
(``fc``/``classifier``/``heads``/``head``), so the pooled features, as the paper takes them. Weights come
from a local file (:func:`fit_weights`, checked tensor by tensor) or, for ``torchvision:NAME#weights=ENUM``,
from torchvision's own cache (``$TORCH_HOME/hub/checkpoints``), checked against the sha256 prefix in the
file's name and fed with the enum's own preprocessing (:func:`enum_weights`). Nothing is downloaded.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import assignable, check_shapes, check_weights
from ..data import check_input_spec, prepare_images
from ..errors import RelstitchError, UsageError
from ..io.userfiles import open_regular
from .base import SourceEncoder, SourceOptions, first_line, parse_call, register_model_source

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
    model are fine (:func:`relstitch.checkpoints.check_weights`), cast to the model's dtype.
    """
    model.load_state_dict(_checked_weights(model, path, what))


def built_with_weights(
    create: Callable[[], nn.Module], path: str | Path, what: str, *, probe: nn.Module | None = None
) -> nn.Module:
    """The model ``create()`` builds, with a weights file's tensors (checked as :func:`fit_weights` does).

    It is built on the meta device first (``probe``, when the caller already made one) and checked there;
    the file's tensors then become its weights (:func:`relstitch.checkpoints.assignable`), so no random
    init is drawn only to be overwritten (ViT-B/16: 1.4 s). Where that cannot be done (the builder needs
    real tensors, a buffer is not in the file, a weight is shared), it is built for real and loaded.
    """
    probe = probe if probe is not None else meta_build(create)
    if probe is None:
        model = create()
        fit_weights(model, path, what)
        return model
    state = _checked_weights(probe, path, what)
    if not assignable(probe, state):
        model = create()
        model.load_state_dict(state)
        return model
    own = probe.state_dict()
    # the values load_state_dict's copy would give: the model's dtype, contiguous
    probe.load_state_dict({n: t.to(own[n].dtype).contiguous() for n, t in state.items()}, assign=True)
    return probe


def meta_build(create: Callable[[], nn.Module]) -> nn.Module | None:
    """``create()`` on the meta device (no memory, no random init); None when the builder cannot run there
    (it computes with its tensors, or fails): the caller then builds for real."""
    try:
        with torch.device("meta"):
            return create()
    except Exception:  # noqa: BLE001  (whatever the builder raises here, building for real says it properly)
        return None


def _checked_weights(model: nn.Module, path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The weights file's tensors, checked against ``model``'s (real or meta): names, shapes, dtype kinds,
    every value finite, and finite still in the model's dtype."""
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
    return dict(state)


@dataclass
class ImageEncoder(SourceEncoder):
    """An image network behind a :class:`LatentTap`, fed per its input spec.

    Beyond :func:`relstitch.data.prepare_images` (channels, exact ``resize``, ``mean``/``std``), the spec
    may ask for what torchvision's and timm's evaluation transforms do: ``resize_shorter`` (the shorter
    side to N, aspect kept), ``crop`` (a centre crop ``[H, W]`` after the resize) and ``interpolation``.
    """

    def prepare(self, raw_batch: Any) -> torch.Tensor:
        spec = self.input_spec
        if not any(key in spec for key in ("resize_shorter", "crop", "interpolation")):
            return prepare_images(raw_batch, spec)  # as before: the same tensors, the same hashes
        # scaled to [0, 1] and given its channels first; resized and cropped; normalised last
        pixels = prepare_images(raw_batch, {k: spec[k] for k in ("scale", "channels") if k in spec})
        if pixels.ndim == 4:
            size = spec.get("resize") or _shorter_side(pixels.shape[-2:], spec.get("resize_shorter"))
            mode = spec.get("interpolation", "bilinear")
            if size and list(pixels.shape[-2:]) != list(size):
                pixels = torch.nn.functional.interpolate(
                    pixels,
                    size=tuple(size),
                    mode=mode,
                    **({"align_corners": False, "antialias": True} if mode != "nearest" else {}),
                )
            if spec.get("crop"):
                pixels = _centre_crop(pixels, spec["crop"])
        return prepare_images(pixels, {k: spec[k] for k in ("mean", "std") if k in spec})


def _shorter_side(size: Any, shorter: int | None) -> list[int] | None:
    """``[H, W]`` with the shorter side ``shorter``, the longer scaled alike (torchvision's rounding)."""
    if not shorter:
        return None
    height, width = int(size[0]), int(size[1])
    if height <= width:
        return [shorter, int(shorter * width / height)]
    return [int(shorter * height / width), shorter]


def _centre_crop(pixels: torch.Tensor, crop: list[int]) -> torch.Tensor:
    height, width = pixels.shape[-2:]
    if crop[0] > height or crop[1] > width:
        raise RelstitchError(
            f"cannot crop {crop[0]}x{crop[1]} from images resized to {height}x{width}",
            hint="give a smaller crop=H,W or a larger resize=",
        )
    top, left = int(round((height - crop[0]) / 2.0)), int(round((width - crop[1]) / 2.0))
    return pixels[..., top : top + crop[0], left : left + crop[1]]


def image_encoder(
    model: nn.Module,
    architecture: dict[str, Any],
    spec: dict[str, Any],
    name: str,
    source: str,
    resolved: dict[str, Any] | None = None,
) -> ImageEncoder:
    architecture = dict(architecture, input=spec)  # preprocessing changes the latents: it is part of identity
    return ImageEncoder(
        module=LatentTap(model, architecture.get("layer")).eval(),
        architecture=architecture,
        input_spec=spec,
        latent_dim=0,  # learnt on the first batch
        name=name,
        meta={"source": source},
        resolved={**(resolved or {}), "preprocessing": spec},
    )


def image_spec(
    opts: SourceOptions,
    *,
    resize: list[int] | None,
    channels: int | None,
    mean: Any,
    std: Any,
    resize_shorter: int | None = None,
    crop: list[int] | None = None,
    interpolation: str | None = None,
) -> dict[str, Any]:
    """An image encoder's input spec: the source's own preprocessing, each part the user gives replacing
    it. A ``resize=`` of the user's replaces the source's resize *and* crop (``crop=`` crops again).
    Checked whole (:func:`~relstitch.data.dataset.check_input_spec`) before any model runs: a bad option is
    refused here, not as a failed or huge batch later."""
    if opts.resize is not None:
        resize, resize_shorter, crop = opts.resize, None, None

    def mine(value: Any, own: Any) -> Any:
        return own if value is None else value  # a 0 the user gave is checked, never taken for "not given"

    spec = {
        "modality": "image",
        "scale": 255.0,
        "resize": resize,
        "resize_shorter": resize_shorter,
        "crop": mine(opts.crop, crop),
        "interpolation": interpolation,
        "channels": mine(opts.channels, channels),
        "mean": mine(opts.mean, mean),
        "std": mine(opts.std, std),
    }
    return check_input_spec({k: v for k, v in spec.items() if v is not None}, option=True)


# ----------------------------------------------------------------------------- torchvision enums
_ENUM_NAME = re.compile(r"(?:[A-Za-z0-9]+_Weights\.)?[A-Z][A-Z0-9_]*")
"""``DEFAULT``, ``IMAGENET1K_V1`` or ``ResNet18_Weights.IMAGENET1K_V1``: a weights enum, not a file."""


def is_enum_name(weights: str) -> bool:
    """Whether ``weights=`` names a torchvision weights enum (an existing file of that name wins)."""
    return bool(_ENUM_NAME.fullmatch(weights)) and not Path(weights).exists()


def cached_weights_file(url: str) -> Path:
    """Where torchvision keeps the file of a weights URL: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    from urllib.parse import urlparse

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def check_sha256_prefix(path: Path) -> str | None:
    """Check a torchvision weights file against the sha256 prefix its name carries
    (``resnet18-f37072fd.pth``), as torchvision checks a download; returns the prefix (None: no prefix)."""
    found = torch.hub.HASH_REGEX.search(path.name)
    if not found or not found.group(1):
        return None
    digest = hashlib.sha256()
    try:
        with open_regular(path) as handle:  # in chunks: the same digest, memory bounded
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise RelstitchError(f"cannot read the weights file: {first_line(exc)}", path=path) from None
    if not digest.hexdigest().startswith(found.group(1)):
        raise RelstitchError(
            f"the file's sha256 begins {digest.hexdigest()[: len(found.group(1))]}, its name says "
            f"{found.group(1)}: it is damaged or not the file it is named after",
            path=path,
            hint="delete it and fetch it again on a machine with network access",
        )
    return found.group(1)


_BUILDING = threading.Lock()


@contextmanager
def _state_from_file(enum: Any, state: dict[str, torch.Tensor]) -> Iterator[None]:
    """While torchvision's builder runs, its one read of the weights (``get_state_dict``: a download when
    the file is absent, ``torch.load(weights_only=False)`` when present) returns ``state`` instead: the
    same file, already hash-checked and read by :func:`relstitch.io.safe_load.load_weights`."""
    kind = type(enum)
    with _BUILDING:
        setattr(kind, "get_state_dict", lambda self, *args, **kwargs: state)  # noqa: B010
        try:
            yield
        finally:
            delattr(kind, "get_state_dict")  # WeightsEnum's own again


def enum_weights(
    arch: str, name: str, kwargs: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Build ``torchvision:arch`` with the weights enum ``name`` from torchvision's cache.

    torchvision's own builder makes the model the enum needs (its number of classes, ``transform_input``,
    renamed keys); the file is ``$TORCH_HOME/hub/checkpoints/<the enum URL's file name>``, its sha256
    checked against the prefix in its name. Returns (model, input spec from the enum's transforms before
    the user's overrides, what it resolved to).
    """
    import torchvision

    from ..io.safe_load import load_weights

    try:
        weights_class = torchvision.models.get_model_weights(arch)
    except ValueError:
        raise RelstitchError(
            f"torchvision:{arch} has no weights enum", hint="give a weights file: weights=FILE"
        ) from None
    member = name.rpartition(".")[2]
    known = list(weights_class.__members__)
    if name.partition(".")[1] and name.partition(".")[0] != weights_class.__name__ or member not in known:
        close = difflib.get_close_matches(member, known, n=1)
        raise UsageError(
            f"torchvision:{arch} has no weights {name!r}; "
            f"its enum {weights_class.__name__} has {', '.join(known)}",
            hint=f"did you mean {close[0]!r}?" if close else None,
        )
    enum = weights_class[member]
    path = cached_weights_file(enum.url)
    if not path.is_file():
        raise RelstitchError(
            f"{weights_class.__name__}.{enum.name}'s file {path.name} is not in torchvision's cache",
            path=path.parent,
            hint=f"on a machine with network access run torchvision.models.get_model({arch!r}, "
            f"weights={name!r}) (or fetch {enum.url}) and copy {path.name} into that folder "
            "(TORCH_HOME/hub/checkpoints); relstitch never downloads",
        )
    prefix = check_sha256_prefix(path)
    transform = enum.transforms()
    sizes: list[Any] = [getattr(transform, key, None) for key in ("resize_size", "crop_size", "mean", "std")]
    if any(size is None for size in sizes):
        raise RelstitchError(
            f"{weights_class.__name__}.{enum.name} is not a classification enum "
            f"({type(transform).__name__}): relstitch reads classifiers' pooled features"
        )
    state = load_weights(path)
    try:
        with _state_from_file(enum, state):
            model = torchvision.models.get_model(arch, weights=enum, **kwargs)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise RelstitchError(
            f"cannot build torchvision:{arch} with {name}: {first_line(exc)}", path=path
        ) from None
    resize, crop, mean, std = sizes
    spec = {
        "resize": list(resize) if len(resize) == 2 else None,
        "resize_shorter": int(resize[0]) if len(resize) == 1 else None,
        "crop": list(crop) * (2 if len(crop) == 1 else 1),
        "interpolation": str(transform.interpolation.value),
        "channels": 3,
        "mean": list(mean),
        "std": list(std),
    }
    resolved = {
        "weights": str(path.resolve()),
        "enum": f"{weights_class.__name__}.{enum.name}",
        "sha256_prefix": prefix,
    }
    return model, spec, resolved


@register_model_source(
    "torchvision",
    ("weights", "layer", "resize", "crop", "channels", "mean", "std"),
    "a torchvision architecture: weights from a local file or an enum (DEFAULT...) in torchvision's cache",
)
def _load_torchvision(locator: str, opts: SourceOptions) -> ImageEncoder:
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
            f"torchvision:{arch} needs weights: a local file or an enum in torchvision's cache "
            "(relstitch never downloads)",
            hint=f"write torchvision:{arch}#weights=FILE or #weights=DEFAULT, or pass -O weights=...",
        )
    if is_enum_name(opts.weights):
        model, own, resolved = enum_weights(arch, opts.weights, kwargs)
    else:

        def create() -> nn.Module:
            try:
                model: nn.Module = torchvision.models.get_model(arch, weights=None, **kwargs)
                return model
            except (TypeError, ValueError) as exc:
                raise RelstitchError(f"cannot build torchvision:{arch}: {first_line(exc)}") from None

        model = built_with_weights(create, opts.weights, f"torchvision:{arch}")
        own = {"resize": [224, 224], "channels": 3, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
        resolved = {"weights": str(Path(opts.weights).resolve())}
    layer = opts.layer or next(
        (f"{n}:input" for n in CLASSIFIER_NAMES if isinstance(getattr(model, n, None), nn.Module)), None
    )
    if layer is None:
        raise UsageError(
            f"torchvision:{arch} has no fc/classifier/head: say which layer is the latent",
            hint="-O layer=NAME",
        )
    spec = image_spec(opts, **{"resize": None, "channels": None, "mean": None, "std": None, **own})
    architecture = {"name": f"torchvision:{arch}", "args": kwargs, "layer": layer}
    return image_encoder(model, architecture, spec, opts.name or arch, f"torchvision:{arch}", resolved)
