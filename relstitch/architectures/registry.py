"""The architecture registries, timm style: ``create_encoder``, ``create_decoder``, ``list_*``.

Architectures register themselves by name (``@ENCODERS.register("cnn")``); checkpoints store
``{"name": ..., "args": {...}}`` and are rebuilt with :func:`create_encoder` / :func:`create_decoder`.
Test code registers its own modules the same way. The mechanism is :class:`relstitch.registry.Registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import RelstitchError, unknown_choice
from ..registry import Registry

Factory = Callable[..., Any]
"""Keyword arguments → a ``torch.nn.Module``."""

ENCODERS: Registry[Factory] = Registry("encoder architecture")
DECODERS: Registry[Factory] = Registry("decoder architecture")


def _create(registry: Registry[Factory], name: str, **kwargs: Any) -> Any:
    if name not in registry:  # listed sorted: the message reads the same whatever the import order
        raise unknown_choice(registry.kind, name, sorted(registry))
    try:
        return registry[name](**kwargs)
    except TypeError as exc:
        raise RelstitchError(f"bad arguments for {registry.kind} {name!r}: {exc}") from None


def create_encoder(name: str, **kwargs: Any) -> Any:
    """Build a registered encoder architecture."""
    return _create(ENCODERS, name, **kwargs)


def create_decoder(name: str, **kwargs: Any) -> Any:
    """Build a registered decoder architecture."""
    return _create(DECODERS, name, **kwargs)


def list_encoders() -> list[str]:
    return sorted(ENCODERS)


def list_decoders() -> list[str]:
    return sorted(DECODERS)
