"""Name -> class registries for tasks and methods.

Registration is a decorator in the module that defines the entry, and the modules are found by their files: a plugin
package (``methods/``, ``tasks/``) calls ``discover`` in its ``__init__``, and the first use of the registry (a name
asked for or listed) imports every module of the package whose name does not start with ``_`` (those are helpers), in
name order, so a new task or method is one new file and nothing else. A module that fails to import stops the use
with a ``PluginImportError`` naming its file. Registering does not discover: a module imported on its own (as
unpickling a cell in its own process does) must not set off its siblings' imports half-way through its own, so a
plugin module registers at import time and asks the registries nothing until one of its functions runs.

The registries start empty: ``bench.catalog`` imports the plugin packages, and the rest of bench reads the
registries through the catalog. Entry modules keep heavy imports inside functions, so importing every entry (what
``adaptbench ls`` does) stays fast (``tests/test_layout.py``). Duplicate names are an error; an unknown name is
answered with the closest registered names, every registered name, and where a new entry goes.

A registry can also hold families: ``add_family(prefix, build)`` makes every ``prefix:argument`` a name, whose entry
``build(argument)`` makes on first use (then cached), e.g. ``peft:LoHaConfig`` (methods/peft_config.py). An entry with a
``name`` of its own (a class attribute) is what records and keys call it (``canonical``), so that name must be a plain
one (lowercase with hyphens: no ``:`` or ``/`` in a file name); once built, the entry is found by it too, in this
process. ``names()`` and iteration list the registered entries only: a family is not a list of names.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class PluginImportError(ImportError):
    """A plugin module (a file of ``methods/`` or ``tasks/``) failed to import; the message names the file."""


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
    def __init__(self, kind: str, variable: str | None = None) -> None:
        self.kind = kind
        self.variable = variable or f"{kind.upper()}S"  # what a plugin module calls it: @METHODS.register(...)
        self._entries: dict[str, T] = {}
        self.families: dict[str, Callable[[str], T]] = {}
        self._built: dict[str, T] = {}  # family names and the built entries' own names -> entry
        self.homes: list[str] = []  # the plugin packages discovered, as folders: "methods"
        self.modules: list[str] = []  # the plugin modules imported by discovery, in import order
        self._pending: list[tuple[str, list[str]]] = []  # (package, its __path__) not imported yet
        self._discovering = False

    def discover(self, package: str, path: Iterable[str]) -> None:
        """Have every module of ``package`` (at ``path``: the package's ``__path__``) whose name does not start with
        ``_`` imported the first time this registry is used, in name order; each registers its entries."""
        self.homes.append(package.replace(".", "/"))
        self._pending.append((package, list(path)))

    def _discover(self) -> None:
        """Import the pending plugin packages' modules (once; a module that failed is tried again at the next use)."""
        if self._discovering:  # a plugin module being imported uses the registry: it sees what is registered so far
            return
        self._discovering = True
        try:
            while self._pending:
                package, path = self._pending[0]
                for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
                    if info.name.startswith("_"):
                        continue
                    module = f"{package}.{info.name}"
                    try:
                        importlib.import_module(module)
                    except Exception as e:
                        file = f"{package.replace('.', '/')}/{info.name}{'/__init__.py' if info.ispkg else '.py'}"
                        raise PluginImportError(
                            f"{self.kind} plugin {file} failed to import: {type(e).__name__}: {e} (every module of "
                            f"{package}/ whose name does not start with '_' is imported to find the {self.kind}s; "
                            "fix it, or start its name with '_' if it is a helper)"
                        ) from e
                    if module not in self.modules:
                        self.modules.append(module)
                self._pending.pop(0)
        finally:
            self._discovering = False

    @staticmethod
    def _plain(name: str) -> bool:
        return name == name.lower() and not any(c in name for c in " _:/\\")

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

    def add_family(self, prefix: str, build: Callable[[str], T]) -> None:
        """Make ``prefix:argument`` a name: ``build(argument)`` makes its entry on first use (then cached); it raises
        ``UnknownNameError`` (or ``ValueError``) for an argument it cannot build, with the fix."""
        if not prefix or not self._plain(prefix):
            raise ValueError(f"{self.kind} family prefix {prefix!r} must be lowercase with hyphens, e.g. 'peft'")
        if prefix in self.families:
            raise ValueError(f"duplicate {self.kind} family {prefix!r}: already added by {self.families[prefix]!r}")
        self.families[prefix] = build

    def get(self, name: str) -> T:
        self._discover()
        if name in self._entries:
            return self._entries[name]
        if name in self._built:
            return self._built[name]
        prefix, sep, argument = name.partition(":")
        if not (sep and prefix in self.families):
            raise UnknownNameError(self.explain(name))
        if not argument:
            raise UnknownNameError(f"{self.kind} {name!r} names nothing: use {prefix}:<argument>")
        entry = self.families[prefix](argument)
        own = getattr(entry, "name", None)
        if isinstance(own, str) and own != name:
            if not self._plain(own) or own in self._entries:
                raise ValueError(
                    f"{self.kind} family {prefix!r} built {entry!r} named {own!r}: an entry's own name must be a "
                    "plain name (lowercase with hyphens, no ':' or '/') that no registered entry has"
                )
            if self._built.setdefault(own, entry) is not entry:
                raise ValueError(f"{self.kind} {own!r}: built twice as different entries (from {name!r})")
        self._built[name] = entry
        return entry

    def canonical(self, name: str) -> str:
        """The name records and keys use for ``name``: a registered name itself; for a family name, the built entry's
        own ``name`` when it has one (``peft:LoHaConfig`` -> ``peft-loha``)."""
        entry = self.get(name)
        if name in self._entries:
            return name
        own = getattr(entry, "name", None)
        return own if isinstance(own, str) else name

    def explain(self, name: str) -> str:
        """Why ``name`` is not an entry: the closest registered names, every registered name (and family), and where
        a new entry goes."""
        self._discover()
        prefix, sep, argument = name.partition(":")
        close = difflib.get_close_matches(prefix, list(self.families), n=1, cutoff=0.4) if sep else []
        if close:
            return f"unknown {self.kind} family {prefix!r} in {name!r}. Did you mean '{close[0]}:{argument}'?"
        message = suggest(name, list(self._entries), self.kind)
        if self.families:
            message += f" Or a family: {', '.join(f'{p}:<argument>' for p in sorted(self.families))}."
        return message + self.where_new(name)

    def where_new(self, name: str) -> str:
        """Where a new entry called ``name`` goes (empty for a registry without a plugin package)."""
        if not self.homes:
            return ""
        plain = bool(name) and self._plain(name) and name[0].isalpha()
        label = name if plain else "<name>"
        module = name.replace("-", "_") if plain else "<name>"
        return (
            f" A new {self.kind} goes in {self.homes[0]}/{module}.py, its class registered with "
            f"@{self.variable}.register(\"{label}\"): every module there not starting with '_' is found by its file."
        )

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self._discover()
        if name in self._entries or name in self._built:
            return True
        prefix, sep, argument = name.partition(":")
        return bool(sep and argument and prefix in self.families)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._discover()
        return len(self._entries)


TASKS: Registry = Registry("task", "TASKS")
METHODS: Registry = Registry("method", "METHODS")
