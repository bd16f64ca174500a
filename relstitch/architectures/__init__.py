"""Architectures relstitch can build from a checkpoint's config (registry in ``registry.py``)."""

from . import decoders, encoders  # noqa: F401  (importing registers the architectures)
from .registry import DECODERS, ENCODERS, create_decoder, create_encoder, list_decoders, list_encoders

__all__ = ["DECODERS", "ENCODERS", "create_decoder", "create_encoder", "list_decoders", "list_encoders"]
