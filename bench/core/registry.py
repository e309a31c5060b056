"""Name -> class registries for tasks and methods.

Registration is a decorator in the module that defines the entry, so a new task or method is one new file plus
one import line in its package's ``__init__``. Entry modules keep heavy imports inside functions, so importing
every entry (what ``adaptbench ls`` does) stays fast. Duplicate names are an error; an unknown name is answered
with the closest registered names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


def suggest(name: str, choices: list[str], kind: str) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(choices))}."


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        if name != name.lower() or " " in name or "_" in name:
            raise ValueError(f"{self.kind} name {name!r} must be lowercase with hyphens, e.g. 'glue-sst2'")

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"duplicate {self.kind} name {name!r}: already registered by {self._entries[name]!r}")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(suggest(name, list(self._entries), self.kind)) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


TASKS: Registry = Registry("task")
METHODS: Registry = Registry("method")


def load_all() -> None:
    """Import the task and method packages so that every entry has registered itself."""
    import methods  # noqa: F401
    import tasks  # noqa: F401
