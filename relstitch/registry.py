"""One registry mechanism for everything relstitch lets you plug in, timm style.

Architectures, model sources, data sources, anchor strategies and similarities are each a
:class:`Registry`: a read-only mapping from a name to an entry (a factory, a loader, a function),
filled by ``@REGISTRY.register(name)`` where the entry is defined. Tests register their fakes the
same way real entries do. Looking up a name that is not there is the user's bad option value: one
:func:`~relstitch.errors.unknown_choice` line (exit 2), the closest name as a hint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, overload

from .errors import unknown_choice

T = TypeVar("T")


class Registry(Mapping[str, T]):
    """Name → entry, in registration order; ``kind`` names what the entries are (``"anchor strategy"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: Any = None) -> Any:
        """``@registry.register(name)`` above a definition, or ``registry.register(name, entry)``.

        Registering another entry under a taken name is refused: two plug-ins would silently fight.
        """

        def add(value: T) -> T:
            if name in self._entries and self._entries[name] is not value:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = value
            return value

        return add if entry is None else add(entry)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise unknown_choice(self.kind, name, self._entries) from None

    def get(self, name: str, default: Any = None) -> Any:  # no lookup error, as dict.get
        return self._entries.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
