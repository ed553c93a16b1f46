"""Tests for signals: a SIGTERM sent before the event loop runs still stops the exporter."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from studio_exporter.signals import caught_early, stop_on_signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_before_the_loop_runs_stops_it_at_once(signum: signal.Signals) -> None:
    async def started_after_the_signal() -> bool:
        stop = asyncio.Event()
        stop_on_signals(stop)
        return stop.is_set()

    with caught_early():
        os.kill(os.getpid(), signum)  # during "start-up": no loop yet
        assert asyncio.run(started_after_the_signal())


def test_a_signal_while_the_loop_runs_sets_stop() -> None:
    async def scenario() -> bool:
        stop = asyncio.Event()
        stop_on_signals(stop)
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), timeout=5)
        return stop.is_set()

    with caught_early():
        assert asyncio.run(scenario())


def test_the_previous_handlers_come_back() -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with caught_early():
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    assert {signum: signal.getsignal(signum) for signum in before} == before
