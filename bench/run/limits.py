"""Running out of memory before a cell can: the message a user gets when an import or an allocation of the command
itself (not of a cell, which becomes an ``oom`` record) fails for want of memory.

The usual cause is an address-space limit (``ulimit -v``, ``prlimit --as``): importing torch maps its shared
libraries and reserves address space far beyond what it touches (over 3 GB on a CPU build of torch 2.x), so a limit
meant to cap memory use makes ``import torch`` fail with ``ImportError: ... failed to map segment from shared
object`` or a ``MemoryError``, long before anything is allocated. Resident memory is what a cell really uses (its
record measures it); a cgroup limit caps that instead.
"""

from __future__ import annotations

import errno
import resource

# what a failed import or allocation says when it ran out of memory (the loader's and libc's wording)
MEMORY_WORDS = ("failed to map segment", "cannot allocate memory", "can't allocate memory", "out of memory")


def address_space_limit() -> int | None:
    """This process's address-space limit in bytes (``ulimit -v`` / ``prlimit --as``, the soft limit); None: none."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def is_memory_fault(e: BaseException) -> bool:
    """Whether an exception is a failure to get memory: a ``MemoryError``, an ``OSError`` ENOMEM, or an import
    whose shared library could not be mapped."""
    if isinstance(e, MemoryError):
        return True
    if isinstance(e, OSError) and e.errno == errno.ENOMEM:
        return True
    return isinstance(e, ImportError | OSError) and any(w in str(e).lower() for w in MEMORY_WORDS)


def memory_fault_text(e: BaseException, what: str = "adaptbench") -> str:
    """One paragraph: what failed, the limit (when one is set), what needs the memory and how to give it."""
    error = " ".join(f"{type(e).__name__}: {e}".split())
    limit = address_space_limit()
    if limit is None:
        return (
            f"{what} ran out of memory ({error}): importing torch and loading a model need a few GB free. "
            "Fix: free memory, raise the container's memory limit, or run on a machine with more memory."
        )
    return (
        f"{what} ran out of memory ({error}): this process may map at most {limit / 2**30:.1f} GiB of address space "
        "(`ulimit -v` / `prlimit --as`), and importing torch alone maps over 3 GB before a cell allocates anything. "
        "Fix: remove the limit (`ulimit -v unlimited`) or raise it well above that; to cap the memory a run uses, "
        "limit resident memory instead, e.g. `systemd-run --user --scope -p MemoryMax=8G adaptbench ...`."
    )
