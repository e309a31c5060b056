"""Claims: so that two grids on one results folder never compute the same cell twice.

Before a grid runs a cell it creates ``<results>/<suite>/.claims/<key>.json`` with ``os.open(O_CREAT | O_EXCL)``
(atomic: of two processes, exactly one creates it) holding the owner's pid, host and start time. The claim is
removed once the cell's record is written. Another grid that finds the claim skips the cell and says who holds it.

A claim is stale, and is taken over, when its owner is gone: on the same host its pid no longer exists; on another
host (a shared filesystem) it is older than the suite's cell timeout plus a margin. Stale claims are judged and
removed under an ``flock`` on ``.claims/.lock``, so two grids recovering the same stale claim cannot both win.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

OTHER_HOST_MARGIN_S = 600.0  # added to the cell timeout before another host's claim is presumed dead
UNWRITTEN_GRACE_S = 10.0  # a claim file still empty this long after creation belonged to a process that died


@dataclass(frozen=True)
class Owner:
    pid: int
    host: str
    created_at: float

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}"


def me() -> Owner:
    return Owner(os.getpid(), socket.gethostname(), time.time())


class Claims:
    def __init__(self, folder: Path, stale_after_s: float) -> None:
        self.folder = folder / ".claims"
        self.stale_after_s = stale_after_s + OTHER_HOST_MARGIN_S

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def acquire(self, key: str) -> Owner | None:
        """Claim a cell. Returns None when the claim is ours now, else the live owner that holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._create(key):
            return None
        with self._recovery_lock():
            holder = self.owner(key)
            if holder is not None and not self.is_stale(holder, key):
                return holder
            self.path(key).unlink(missing_ok=True)
            if self._create(key):
                return None
        return self.owner(key) or Owner(-1, "?", time.time())

    def release(self, key: str) -> None:
        """Remove our claim (after the cell's record is written); never someone else's."""
        holder = self.owner(key)
        if holder is not None and (holder.pid, holder.host) == (os.getpid(), socket.gethostname()):
            self.path(key).unlink(missing_ok=True)

    def owner(self, key: str) -> Owner | None:
        """Who holds the claim (None: nobody). A claim whose content is not written yet counts as live for
        ``UNWRITTEN_GRACE_S`` (its creator is writing it), then as owned by a dead process (pid 0)."""
        path = self.path(key)
        try:
            text, mtime = path.read_text(), path.stat().st_mtime
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            return Owner(int(data["pid"]), str(data["host"]), float(data["created_at"]))
        except (ValueError, KeyError, TypeError):
            return Owner(0 if time.time() - mtime > UNWRITTEN_GRACE_S else -1, socket.gethostname(), mtime)

    def is_stale(self, owner: Owner, key: str) -> bool:
        if owner.pid == -1:  # being written right now
            return False
        if owner.host == socket.gethostname():
            return not _alive(owner.pid)
        return time.time() - owner.created_at > self.stale_after_s

    def _create(self, key: str) -> bool:
        try:
            fd = os.open(self.path(key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        owner = me()
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": owner.pid, "host": owner.host, "created_at": owner.created_at, "key": key}, f)
        return True

    @contextlib.contextmanager
    def _recovery_lock(self):
        with open(self.folder / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True
