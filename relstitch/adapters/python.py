"""``python:package.module:function(key=value)``: any ``torch.nn.Module`` a Python function the user
names builds.

Only the reference the user typed is imported (a file name or metadata never is): naming the function is
the user's explicit choice to run it. Keyword arguments are literals, read with ``ast.literal_eval``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import RelstitchError, UsageError
from .base import SourceOptions, first_line, parse_call, register_model_source
from .vision import ImageEncoder, fit_weights, image_encoder, image_spec


@register_model_source(
    "python",
    ("weights", "layer", "resize", "crop", "channels", "mean", "std"),
    "a torch.nn.Module built by a Python function: package.module:function(key=value)",
)
def _load_python(locator: str, opts: SourceOptions) -> ImageEncoder:
    target, kwargs = parse_call(locator)
    module_name, sep, function_name = target.rpartition(":")
    if not sep or not module_name or not function_name:
        raise UsageError(f"python:{locator}: expected python:package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while importing
        raise RelstitchError(
            f"cannot import {module_name!r}: {first_line(exc)}",
            hint="check the module path and that it is installed",
        ) from None
    factory: Any = module
    for part in function_name.split("."):  # Class.classmethod works too (EfficientNet.from_name)
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise RelstitchError(f"module {module_name!r} has no function {function_name!r}")
    try:
        model = factory(**kwargs)
    except Exception as exc:  # the user's factory failed: report it in one line
        raise RelstitchError(f"{target}({', '.join(kwargs)}) raised {first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise RelstitchError(f"{target} returned {type(model).__name__}, not a torch.nn.Module")
    if opts.weights:
        fit_weights(model, opts.weights, target)
    spec = image_spec(opts, resize=None, channels=None, mean=0.0, std=1.0)
    architecture = {"name": f"python:{target}", "args": kwargs, "layer": opts.layer}
    resolved = {"weights": str(Path(opts.weights).resolve())} if opts.weights else {}
    return image_encoder(model, architecture, spec, opts.name or function_name, f"python:{target}", resolved)
