"""A tiny model registry in the style of timm: ``register``, ``create``, ``names``.

Architectures register themselves by name; checkpoints store ``{"name": ..., "args": {...}}`` and are
rebuilt with :meth:`Registry.create`. Test code registers its own modules the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import RelstitchError, unknown_choice


class Registry:
    """Name → factory returning a ``torch.nn.Module``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} architecture {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, name: str, **kwargs: Any) -> Any:
        if name not in self._factories:
            raise unknown_choice(f"{self.kind} architecture", name, self.names())
        try:
            return self._factories[name](**kwargs)
        except TypeError as exc:
            raise RelstitchError(f"bad arguments for {self.kind} architecture {name!r}: {exc}") from None


ENCODERS = Registry("encoder")
DECODERS = Registry("decoder")


def create_encoder(name: str, **kwargs: Any) -> Any:
    """Build a registered encoder architecture."""
    return ENCODERS.create(name, **kwargs)


def create_decoder(name: str, **kwargs: Any) -> Any:
    """Build a registered decoder architecture."""
    return DECODERS.create(name, **kwargs)


def list_encoders() -> list[str]:
    return ENCODERS.names()


def list_decoders() -> list[str]:
    return DECODERS.names()
