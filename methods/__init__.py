"""The method registry: one module per method, each registering itself. Add a method: one file, one line here."""

from methods import frozen, full, lora, scratch  # noqa: F401
