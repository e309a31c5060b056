"""The method plugins: every module of this folder whose name does not start with ``_`` is imported when the method
registry is first used (``bench.core.registry.Registry.discover``), in name order, and registers its methods with
``@METHODS.register("<name>")``. Add a method: one file here, nothing else (CONTRIBUTING.md). Modules starting with
``_`` are helpers (torch layers and the like), imported only by the methods that need them."""

from bench.core.registry import METHODS

METHODS.discover(__name__, __path__)
