"""Name -> class registries for tasks and methods.

Registration is a decorator in the module that defines the entry, so a new task or method is one new file plus
one import line in its package's ``__init__``. The registries start empty: ``bench.catalog`` imports the plugin
packages, which fills them, and the rest of bench reads them through the catalog. Entry modules keep heavy imports
inside functions, so importing every entry (what ``adaptbench ls`` does) stays fast (``tests/test_layout.py``).
Duplicate names are an error; an unknown name is answered with the closest registered names.
"""

from __future__ import annotations

import difflib
import sys
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


def _findable(cls: type, name: str, kind: str) -> None:
    """Make a class that a factory built (``type(...)`` inside a function) findable under its module by its name, as
    a class written in the module is: a resolved cell travels to the cell's own process pickled, and pickle finds a
    class by module and name. Two factory classes of one name in one module cannot both be found: refused."""
    module = sys.modules.get(cls.__module__)
    if module is None or "<locals>" in cls.__qualname__ or "." in cls.__qualname__:
        return
    present = getattr(module, cls.__qualname__, None)
    if present is None:
        setattr(module, cls.__qualname__, cls)
    elif present is not cls:
        raise ValueError(
            f"{kind} {name!r}: its class {cls.__qualname__} is not the {cls.__qualname__} of module {cls.__module__}; "
            "give the class a name of its own in its module (a cell's process finds it by that name)"
        )


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
            if isinstance(obj, type):
                _findable(obj, name, self.kind)
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
