"""SIGTERM and SIGINT caught from the process's first moment, then handed to the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_requested = threading.Event()


def _remember(signum: int, frame: FrameType | None) -> None:
    _requested.set()


@contextlib.contextmanager
def caught_early() -> Iterator[None]:
    """Remember a stop signal from now on, before anything slow is built.

    As PID 1 in a container a signal without a handler is ignored, so a SIGTERM sent while the
    exporter is starting would be lost and the container killed at the end of its grace
    period. The previous handlers come back on exit.
    """
    _requested.clear()
    previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}
    for signum in STOP_SIGNALS:
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, _remember)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def stop_on_signals(stop: asyncio.Event) -> None:
    """From now on a stop signal sets ``stop``; one that came earlier sets it at once."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    if _requested.is_set():
        stop.set()
