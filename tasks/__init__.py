"""The task registry: one module per task family, each task registering itself. Add a task: one file, one line."""

# ruff: noqa: F401
import tasks.glue
import tasks.medmnist
import tasks.shift
