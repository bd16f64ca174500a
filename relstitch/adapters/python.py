"""``python:package.module:function(key=value)``: any ``torch.nn.Module`` a Python function the user
names builds.

Only the reference the user typed is imported (a file name or metadata never is): naming the function is
the user's explicit choice to run it. Keyword arguments are literals, read with ``ast.literal_eval``.
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoints import build_from_factory
from .base import SourceOptions, parse_call, register_model_source
from .vision import ImageEncoder, fit_weights, image_encoder, image_spec


@register_model_source(
    "python",
    ("weights", "layer", "resize", "crop", "channels", "mean", "std"),
    "a torch.nn.Module built by a Python function: package.module:function(key=value)",
)
def _load_python(locator: str, opts: SourceOptions) -> ImageEncoder:
    target, kwargs = parse_call(locator)
    # The user typed this reference: running it is their choice, once (never again on the meta device)
    model = build_from_factory(target, kwargs)
    if opts.weights:
        fit_weights(model, opts.weights, target)
    spec = image_spec(opts, resize=None, channels=None, mean=0.0, std=1.0)
    architecture = {"name": f"python:{target}", "args": kwargs, "layer": opts.layer}
    resolved = {"weights": str(Path(opts.weights).resolve())} if opts.weights else {}
    return image_encoder(
        model, architecture, spec, opts.name or target.rpartition(":")[2], f"python:{target}", resolved
    )
