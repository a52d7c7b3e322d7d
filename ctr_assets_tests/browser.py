"""Headless Chromium for the dashboard tests, driven over the DevTools protocol on a pipe (standard library only).

`--dump-dom` and `--screenshot` alone cannot tell whether a chart has a size on screen, which URLs the page
asked for or whether its script failed; the protocol can, and it lets a test use the page's filters. The browser runs with the network off (an unresolvable host map and the
protocol's offline mode) and records every request the page makes.
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

CHROMIUM = shutil.which("chromium")
TIMEOUT_SECONDS = 30


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, profile: Path, width: int = 1366, height: int = 768):
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()

        def connect_pipe() -> None:  # the protocol pipe is fds 3 (commands) and 4 (replies) in the browser
            commands, replies = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser))
            os.dup2(commands, 3)
            os.dup2(replies, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", "--remote-debugging-pipe",
             f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=connect_pipe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self._session = b"", 0, None
        self.events: list[dict] = []
        try:
            page = next(target for target in self._call("Target.getTargets")["targetInfos"] if target["type"] == "page")
            attached = self._call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})
            self._session = attached["sessionId"]
            self.viewport(width, height)
            self._call("Network.enable")
            self._call("Network.emulateNetworkConditions",
                       {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
            self._call("Page.enable")
            self._call("Runtime.enable")
        except BaseException:
            self._stop(graceful=False)
            raise

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *_) -> None:
        self._stop(graceful=True)

    def _stop(self, graceful: bool) -> None:
        try:
            if graceful:
                self._call("Browser.close")
                self.process.wait(timeout=TIMEOUT_SECONDS)
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            graceful = False
        finally:
            if not graceful:
                self.process.kill()
                self.process.wait()
            os.close(self._to_browser)
            os.close(self._from_browser)

    @property
    def requests(self) -> list[str]:
        """Every URL the page asked for since it was opened."""
        return [event["params"]["request"]["url"] for event in self.events
                if event.get("method") == "Network.requestWillBeSent"]

    @property
    def errors(self) -> list[str]:
        """Every uncaught script error since the page was opened."""
        return [event["params"]["exceptionDetails"].get("exception", {}).get("description", "")
                or event["params"]["exceptionDetails"]["text"]
                for event in self.events if event.get("method") == "Runtime.exceptionThrown"]

    def open(self, url: str) -> None:
        self.events.clear()
        self._call("Page.navigate", {"url": url})
        self._wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self._call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def viewport(self, width: int, height: int) -> None:
        self._call("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self._call("Page.captureScreenshot", {"format": "png"})["data"]))
        return path

    def _call(self, method: str, params: dict | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        reply = self._wait_for(self._next_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def _wait_for(self, wanted: int | str) -> dict:
        """The reply with id `wanted`, or the next event named `wanted`; other events are kept."""
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" not in message:
                    self.events.append(message)
                if message.get("id") == wanted or message.get("method") == wanted:
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._from_browser], [], [], remaining)[0]:
                raise RuntimeError(f"Chromium did not answer {wanted!r} within {TIMEOUT_SECONDS} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the protocol pipe")
            self._buffer += chunk
