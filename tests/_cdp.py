"""A minimal Chrome DevTools Protocol client for tests: headless Chromium over ``--remote-debugging-pipe``.

Why this and not playwright, selenium or a websocket client: the browser test needs only a page load, a few
``Runtime.evaluate`` calls, mouse clicks, console and network events and screenshots. Chromium speaks CDP over a
pair of pipes (it reads commands from fd 3 and writes replies and events to fd 4, each message JSON ended by a NUL
byte), so the standard library is enough: no new dependency, no browser download, no port to pick. The browser is
Debian's ``chromium`` package (``apt-get install chromium``); ``find_chromium`` returns None without it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    pass


class Browser:
    """One headless Chromium and one page (a flattened session on a new target). ``events`` collects every event
    the page sent (method, params), in order."""

    def __init__(self, executable: str, profile: Path, timeout: float = 60.0):
        self.timeout = timeout
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire_pipes() -> None:  # in the child: the protocol's fds 3 (commands in) and 4 (replies out)
            ours = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child_r, from_child_w)]  # out of 3/4's way
            os.dup2(ours[0], 3)  # inheritable; every other fd Python opened is close-on-exec
            os.dup2(ours[1], 4)

        args = [executable, "--headless", "--remote-debugging-pipe", f"--user-data-dir={profile}"]
        args += ["--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-gpu"]
        args += ["--disable-background-networking", "--disable-sync", "--disable-component-update"]
        args += ["--no-sandbox"] if os.geteuid() == 0 else []  # the sandbox refuses root
        self.proc = subprocess.Popen(
            [*args, "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes,
            close_fds=False,  # it would close 3 and 4 after wire_pipes
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[tuple[str, dict]] = []
        self.session: str | None = None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise CDPError("timed out waiting for Chromium")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise CDPError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, **params: Any) -> dict:
        """Send a command (to the page's session once attached) and return its result; events read while waiting
        are kept in ``events``."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append((reply["method"], reply.get("params", {})))

    def wait_for(self, method: str, since: int = 0) -> dict:
        """The first event ``method`` at or after ``events[since]``, reading more until it arrives."""
        deadline = time.monotonic() + self.timeout
        while True:
            for name, params in self.events[since:]:
                if name == method:
                    return params
            reply = self._read(deadline)
            if "method" in reply:
                self.events.append((reply["method"], reply.get("params", {})))

    def open(self, url: str, width: int, height: int = 900) -> None:
        """Load ``url`` in a window ``width`` x ``height`` CSS px (device scale 1) and wait for its load event."""
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.resize(width, height)
        mark = len(self.events)
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired", since=mark)

    def resize(self, width: int, height: int = 900) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression (JSON-serialisable), or CDPError with the page's exception."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, x: float, y: float) -> None:
        """A left mouse click at viewport coordinates, as a person's."""
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path, height: float | None = None) -> Path:
        """A PNG of the page from its top, ``height`` CSS px tall (default: the whole page)."""
        width = self.eval("document.documentElement.clientWidth")
        full = self.eval("document.documentElement.scrollHeight")
        clip = {"x": 0, "y": 0, "width": width, "height": min(height or full, full), "scale": 1}
        shot = self.send("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        try:
            self.session = None
            self.send("Browser.close")
        except (CDPError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
