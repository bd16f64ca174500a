"""Text inputs: parallel named views (``en``/``fr``) that index like a tensor, stored as UTF-8 bytes +
offsets.

A text dataset's ``x`` and a text anchor set's ``inputs`` are :class:`TextViews`. Indexing with a tensor
of positions or a slice returns another :class:`TextViews` with every view subset alike, so the code
that slices image tensors (``x[indices]``, ``x[start:stop]``) works unchanged for text. On disk each
view is two tensors: the concatenated UTF-8 bytes and ``n + 1`` offsets (safetensors holds no strings).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import RelstitchError


class TextViews:
    """Equal-length, equal-order lists of strings under view names; the first view is the default."""

    def __init__(self, views: Mapping[str, Sequence[str]], default: str | None = None) -> None:
        if not views:
            raise RelstitchError("text data needs at least one view")
        self._views = {name: list(texts) for name, texts in views.items()}
        lengths = {name: len(texts) for name, texts in self._views.items()}
        if len(set(lengths.values())) > 1:
            raise RelstitchError(f"parallel text views differ in length: {lengths}")
        for name, texts in self._views.items():
            bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
            if bad is not None:
                raise RelstitchError(f"view {name!r}: item {bad} is {type(texts[bad]).__name__}, not text")
        self.default = default or next(iter(self._views))
        if self.default not in self._views:
            raise RelstitchError(f"default view {self.default!r} is not one of {self.names}")

    @property
    def names(self) -> list[str]:
        return list(self._views)

    @property
    def shape(self) -> tuple[int]:
        """``(n,)``: per-sample shape ``()``, so shape checks written for tensors compare text with text."""
        return (len(self),)

    def __len__(self) -> int:
        return len(self._views[self.default])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextViews) and self._views == other._views and self.default == other.default

    def __repr__(self) -> str:
        return f"TextViews({len(self)} texts, views {self.names})"

    def __getitem__(self, index: Any) -> TextViews:
        if isinstance(index, slice):
            picked = {name: texts[index] for name, texts in self._views.items()}
        else:
            if isinstance(index, torch.Tensor) and index.dtype == torch.bool:  # a mask, as tensors accept
                index = index.nonzero().flatten()
            positions = index.tolist() if isinstance(index, torch.Tensor) else list(index)
            if isinstance(positions, int):
                positions = [positions]
            picked = {name: [texts[i] for i in positions] for name, texts in self._views.items()}
        return TextViews(picked, self.default)

    def contiguous(self) -> TextViews:
        """Tensor-like no-op (callers written for tensors call it)."""
        return self

    def view(self, name: str | None = None) -> list[str]:
        """The texts of view ``name`` (the default view when ``None``)."""
        name = name or self.default
        if name not in self._views:
            close = difflib.get_close_matches(name, self.names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"available views: {', '.join(self.names)}"
            raise RelstitchError(f"text data has no view {name!r}", hint=hint)
        return self._views[name]

    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """``{prefix}{view}.bytes`` (uint8) and ``{prefix}{view}.offsets`` (int64, n + 1) per view."""
        out: dict[str, torch.Tensor] = {}
        for name, texts in self._views.items():
            encoded = [t.encode("utf-8") for t in texts]
            lengths = torch.tensor([0] + [len(b) for b in encoded], dtype=torch.int64)
            blob = b"".join(encoded)
            # frombuffer refuses an empty buffer, hence the spare byte sliced off again
            out[f"{prefix}{name}.bytes"] = torch.frombuffer(
                bytearray(blob) or bytearray(1), dtype=torch.uint8
            )[: len(blob)]
            out[f"{prefix}{name}.offsets"] = torch.cumsum(lengths, 0)
        return out

    @classmethod
    def from_tensors(
        cls,
        tensors: Mapping[str, torch.Tensor],
        prefix: str,
        names: Sequence[str],
        default: str | None = None,
    ) -> TextViews:
        """Inverse of :meth:`to_tensors`; refuses offsets that do not fit their bytes."""
        views: dict[str, list[str]] = {}
        for name in names:
            blob_key, offsets_key = f"{prefix}{name}.bytes", f"{prefix}{name}.offsets"
            if blob_key not in tensors or offsets_key not in tensors:
                raise RelstitchError(f"text view {name!r} is missing its bytes or offsets tensor")
            blob = tensors[blob_key].numpy().tobytes()
            offsets = tensors[offsets_key].tolist()
            if (
                not offsets
                or offsets[0] != 0
                or offsets[-1] != len(blob)
                or any(b < a for a, b in zip(offsets, offsets[1:]))
            ):
                raise RelstitchError(f"text view {name!r}: offsets do not fit its {len(blob)} bytes")
            try:
                views[name] = [blob[a:b].decode("utf-8") for a, b in zip(offsets, offsets[1:])]
            except UnicodeDecodeError:
                raise RelstitchError(f"text view {name!r} is not valid UTF-8") from None
        return cls(views, default)
