"""Drains the span outbox to a SpanSender on its own thread; deletes spans only once sent."""

from __future__ import annotations

import logging
import threading
import time

from opentelemetry.sdk.resources import Resource

from studio_exporter.core.backoff import SPREAD, Backoff
from studio_exporter.sinks.otlp import encode_span, encode_spans_request
from studio_exporter.sinks.selfmetrics import ExporterMetrics
from studio_exporter.sinks.span_sink import SpanSender
from studio_exporter.sinks.spans import SpanRecord
from studio_exporter.store.protocols import StateStore

log = logging.getLogger(__name__)

#: Seconds ``stop()`` takes at most: the batch being sent, then one last flush. Spans not sent
#: by then stay in the outbox for the next start; a receiver that is down or never answers
#: must not hold the exporter past a container's stop grace period (Docker's is 10 s).
STOP_TIMEOUT = 3.0


class SpanShipper:
    """Sends queued spans in batches; on failure keeps them and retries with backoff.

    A span leaves the outbox only after the sender reported success, so a receiver that is
    down delays spans but does not lose them. The only way to get a duplicate is a crash
    between a successful send and the deletion that follows it.
    """

    def __init__(
        self,
        store: StateStore,
        sender: SpanSender,
        resource: Resource,
        health: ExporterMetrics,
        *,
        batch_size: int = 512,
        interval: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.store = store
        self.sender = sender
        self.resource = resource
        self.health = health
        self.batch_size = batch_size
        self.interval = interval
        self.max_backoff = max_backoff
        self.failing_since: float | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="span-shipper", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Ship now rather than at the next interval (called after a commit that queued spans)."""
        self._wake.set()

    def ship_once(self, timeout: float | None = None) -> tuple[int, bool]:
        """Send one batch, within ``timeout`` seconds if given. Returns (spans sent, ok)."""
        with self._lock:
            pending = self.store.pending_spans(self.batch_size)
            if not pending:
                self.health.set_spans_pending(0)
                return 0, True
            ids = [row_id for row_id, _ in pending]
            spans = [_outbox_span(payload) for _, payload in pending]
            payload = encode_spans_request(spans, self.resource)
            try:
                ok = self.sender.send(payload, len(spans), timeout)
            except Exception:
                log.exception("span sender raised")
                ok = False
            if ok:
                self.store.ack_spans(ids)
                self.health.spans_exported(len(ids))
                self.health.set_spans_pending(self.store.count_pending_spans())
                return len(ids), True
            self.health.span_export_failed()
            self.health.set_spans_pending(self.store.count_pending_spans())
            return 0, False

    def flush(self, max_batches: int = 1000) -> bool:
        """Ship until the outbox is empty or a send fails; True when empty."""
        for _ in range(max_batches):
            sent, ok = self.ship_once()
            if not ok:
                return False
            if sent == 0:
                return True
        return self.store.count_pending_spans() == 0

    def _loop(self) -> None:
        # After n failed batches in a row: the interval doubled n times, at most max_backoff.
        backoff = Backoff(base=self.interval, cap=self.max_backoff, jitter=SPREAD)
        failures = 0
        while not self._stopping.is_set():
            try:
                sent, ok = self.ship_once()
            except Exception:
                if self._stopping.is_set():
                    # stop() gave up on this batch and closed the store: it stays queued.
                    log.info("span batch interrupted by the stop; it stays queued")
                    return
                log.exception("span shipping failed")
                sent, ok = 0, False
            if ok:
                self.failing_since = None
                failures = 0
                if sent == self.batch_size:
                    continue  # more are waiting
            else:
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                failures += 1
            self._wake.wait(timeout=backoff.delay(failures) if not ok else self.interval)
            self._wake.clear()

    def request_stop(self) -> None:
        """Tell the thread to stop after its current batch, without waiting (see ``stop``).

        With many accounts every shipper is told first, so their batches in flight run out
        together and one shared deadline bounds the whole stop.
        """
        self._stopping.set()
        self._wake.set()

    def stop(
        self, *, flush: bool = True, timeout: float = STOP_TIMEOUT, deadline: float | None = None
    ) -> None:
        """Stop the thread and, with ``flush``, send what is queued; all within ``timeout`` s
        (or by ``deadline``, a ``time.monotonic()`` value shared with other shippers).

        A batch still in flight when the time is up (a receiver that accepts connections and
        never answers) is abandoned: the thread is a daemon, the batch stays in the outbox.
        """
        if deadline is None:
            deadline = time.monotonic() + timeout
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("span export still in flight at the stop deadline: queued spans wait")
        elif flush:
            try:
                if not self._flush_until(deadline):
                    log.warning("spans not flushed before stopping: they stay queued")
            except Exception:
                log.exception("final span flush failed; the spans stay queued for the next start")
        self.sender.shutdown()

    def _flush_until(self, deadline: float) -> bool:
        """Ship until the outbox is empty, a send fails or ``deadline`` passes; True when empty."""
        while (remaining := deadline - time.monotonic()) > 0:
            sent, ok = self.ship_once(timeout=remaining)
            if not ok:
                return False
            if sent == 0:
                return True
        return self.store.count_pending_spans() == 0


def _outbox_span(payload: bytes) -> bytes:
    """The encoded OTLP span of an outbox row.

    The poller queues encoded spans; a span queued as a JSON record (by an earlier version,
    before an upgrade) is encoded here. An encoded Span starts with its trace id's tag, 0x0a.
    """
    if payload[:1] == b"{":
        return encode_span(SpanRecord.from_json(payload))
    return payload
