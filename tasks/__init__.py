"""The task registry: one module per task family, each task registering itself. Add a task: one file, one line."""

from tasks import glue, medmnist  # noqa: F401
