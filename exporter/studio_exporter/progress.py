"""A dependency-free progress bar for the terminal (plain lines when not a TTY)."""

from __future__ import annotations

import time
from typing import TextIO


class ProgressBar:
    """Shows executions done out of listed, steps exported and the rate, on one line."""

    def __init__(self, stream: TextIO, *, label: str, width: int = 30) -> None:
        self.stream = stream
        self.label = label
        self.width = width
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._interactive = stream.isatty()
        self._last_position: tuple[int, int, int] | None = None

    def update(self, done: int, total: int, steps: int) -> None:
        now = time.monotonic()
        if self._interactive and now - self._last_draw < 0.1 and done < total:
            return
        self._last_draw = now
        fraction = done / total if total else 1.0
        filled = int(self.width * min(1.0, fraction))
        elapsed = max(now - self.started, 1e-9)
        line = (
            f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{done}/{total} executions, {steps} steps, {steps / elapsed:,.0f} steps/s"
        )
        if self._interactive:
            self.stream.write("\r" + line)
        elif (done, total, steps) != self._last_position:
            # In a log, one line per change of position: the rate alone is no news.
            self.stream.write(line + "\n")
        self._last_position = (done, total, steps)
        self.stream.flush()

    def close(self) -> None:
        if self._interactive:
            self.stream.write("\n")
            self.stream.flush()
