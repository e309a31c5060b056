"""Stopping a command on purpose: Ctrl-C (SIGINT) or SIGTERM (``kill``, a scheduler, ``timeout``).

Both become one exception, ``Stopped`` (a ``KeyboardInterrupt``, so every ``finally`` and every existing Ctrl-C
path runs as for Ctrl-C), that the command line turns into one line on stderr and the shell's exit code for the
signal, 128 + its number: 130 for SIGINT, 143 for SIGTERM. Python's default for SIGTERM is to die on the spot,
silently and without running a ``finally``: ``sigterm_raises`` installs a handler that raises ``Stopped`` instead,
so a grid stopped by a scheduler ends its cells' processes, releases its claims and says what it recorded, as on
Ctrl-C. Records are written atomically (``bench.core.store``), so a stop never leaves a half-written one.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class Stopped(KeyboardInterrupt):
    """The command was asked to stop by ``signum``; ``message`` (when given) says what was done and how to go on."""

    def __init__(self, signum: int = signal.SIGINT, message: str = "") -> None:
        super().__init__(signum, message)
        self.signum, self.message = int(signum), message

    @property
    def code(self) -> int:
        """The exit code a shell gives a command ended by the signal: 128 + its number."""
        return 128 + self.signum

    @property
    def name(self) -> str:
        return NAMES.get(self.signum, signal.Signals(self.signum).name)

    def __str__(self) -> str:
        return self.message or f"interrupted by {self.name}"


def signum_of(e: BaseException) -> int:
    """The signal behind a ``KeyboardInterrupt``: its own for a ``Stopped``, else SIGINT (Python's Ctrl-C)."""
    return e.signum if isinstance(e, Stopped) else int(signal.SIGINT)


def _raise(signum: int, frame: object) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While open, SIGTERM raises ``Stopped(SIGTERM)`` in the main thread (only the main thread can install a
    handler: elsewhere this does nothing); the previous handler is restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
