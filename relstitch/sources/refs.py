"""Reading source references: ``kind:locator#key=value,key=value`` (shared by model and data sources)."""

from __future__ import annotations

from ..errors import UsageError


def split_fragment(ref: str) -> tuple[str, str]:
    """``hf:DIR#view=fr`` → (``hf:DIR``, ``view=fr``); a ``#`` not followed by KEY=VALUE belongs to the path."""
    head, sep, fragment = ref.rpartition("#")
    if sep and "=" in fragment:
        return head, fragment
    return ref, ""


def split_options(text: str) -> dict[str, str]:
    """``"text=en,fr,label=topic"`` → ``{"text": "en,fr", "label": "topic"}``.

    A comma-separated piece without ``=`` continues the previous value, so lists need no quoting.
    Keys are normalised to snake case (``max-length`` → ``max_length``).
    """
    raw: dict[str, str] = {}
    key = None
    for piece in text.split(","):
        if "=" in piece:
            key, _, value = piece.partition("=")
            key = key.strip().replace("-", "_")
            raw[key] = value.strip()
        elif key is not None:
            raw[key] += "," + piece.strip()
        elif piece.strip():
            raise UsageError(f"option {piece.strip()!r} is not KEY=VALUE")
    return raw
