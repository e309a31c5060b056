"""The method registry: one module per method, each registering itself. Add a method: one file, one line here."""

from methods import (
    adapter,  # noqa: F401
    bitfit,  # noqa: F401
    frozen,  # noqa: F401
    full,  # noqa: F401
    gradual,  # noqa: F401
    ia3,  # noqa: F401
    l2sp,  # noqa: F401
    llrd,  # noqa: F401
    lora,  # noqa: F401
    partial,  # noqa: F401
    prefix,  # noqa: F401
    prompt,  # noqa: F401
    scratch,  # noqa: F401
)
