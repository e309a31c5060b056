"""The task plugins: every module of this folder whose name does not start with ``_`` is imported when the task
registry is first used (``bench.core.registry.Registry.discover``), in name order, and registers its tasks with
``TASKS.register("<name>")``. Add a task (or a family of tasks): one file here, nothing else (CONTRIBUTING.md).
Modules starting with ``_`` are helpers."""

from bench.core.registry import TASKS

TASKS.discover(__name__, __path__)
