"""Tests for shipper: spans leave the outbox only once the sender took them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry

from studio_exporter.sinks.otlp import encode_span
from studio_exporter.sinks.selfmetrics import ExporterMetrics
from studio_exporter.sinks.shipper import SpanShipper
from studio_exporter.sinks.spans import SpanRecord
from studio_exporter.store.sqlite import Store


class Sender:
    """A sender that accepts or refuses, and keeps what it accepted (decoded)."""

    def __init__(self) -> None:
        self.accepting = True
        self.received: list[str] = []
        self.attempts = 0

    def send(self, payload: bytes, count: int, timeout: float | None = None) -> bool:
        self.attempts += 1
        if not self.accepting:
            return False
        request = ExportTraceServiceRequest.FromString(payload)
        names = [
            span.name
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]
        assert len(names) == count
        self.received.extend(names)
        return True

    def shutdown(self) -> None:
        return None


def record(number: int) -> SpanRecord:
    return SpanRecord(
        trace_id=0xABC,
        span_id=number,
        parent_span_id=None if number == 1 else 1,
        name=f"widget-{number}",
        start_ns=1_000,
        end_ns=2_000,
        attributes={"twilio.studio.widget.name": f"widget-{number}"},
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state.sqlite3") as opened:
        yield opened


def queue(store: Store, count: int) -> None:
    """Spans queued as the poller queues them: encoded OTLP spans."""
    with store.batch() as batch:
        batch.enqueue_spans(encode_span(record(n)) for n in range(1, count + 1))


def make_shipper(store: Store, sender: Sender, registry: CollectorRegistry) -> SpanShipper:
    health = ExporterMetrics(registry)
    return SpanShipper(store, sender, Resource.create({}), health, batch_size=4)


def test_flush_sends_everything_in_batches_and_empties_the_outbox(store: Store) -> None:
    registry = CollectorRegistry()
    sender = Sender()
    queue(store, 10)
    assert make_shipper(store, sender, registry).flush()
    assert sender.received == [f"widget-{n}" for n in range(1, 11)]
    assert sender.attempts == 3  # 4 + 4 + 2
    assert store.count_pending_spans() == 0
    assert registry.get_sample_value("twilio_studio_exporter_spans_exported_total") == 10


def test_a_refused_batch_stays_queued_and_is_counted(store: Store) -> None:
    registry = CollectorRegistry()
    sender = Sender()
    sender.accepting = False
    queue(store, 3)
    shipper = make_shipper(store, sender, registry)
    assert shipper.ship_once() == (0, False)
    assert store.count_pending_spans() == 3
    assert registry.get_sample_value("twilio_studio_exporter_span_export_failures_total") == 1
    assert registry.get_sample_value("twilio_studio_exporter_spans_pending") == 3
    sender.accepting = True
    assert shipper.flush()
    assert sender.received == ["widget-1", "widget-2", "widget-3"]
    assert store.count_pending_spans() == 0


def test_the_thread_ships_when_woken(store: Store) -> None:
    sender = Sender()
    shipper = make_shipper(store, sender, CollectorRegistry())
    shipper.interval = 60.0  # only a wake-up can make it ship within the test
    shipper.start()
    try:
        queue(store, 2)
        shipper.wake()
        for _ in range(200):
            if store.count_pending_spans() == 0:
                break
            time.sleep(0.01)
    finally:
        shipper.stop(flush=False)
    assert sender.received == ["widget-1", "widget-2"]


class StuckSender(Sender):
    """Takes each send and never returns from it until released (a receiver that never answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.timeouts: list[float | None] = []

    def send(self, payload: bytes, count: int, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        self.attempts += 1
        self.release.wait(30)
        return False


def test_stop_gives_up_on_a_send_in_flight_within_its_timeout(store: Store) -> None:
    sender = StuckSender()
    queue(store, 3)
    shipper = make_shipper(store, sender, CollectorRegistry())
    shipper.start()
    try:
        for _ in range(200):
            if sender.attempts:
                break
            time.sleep(0.01)
        started = time.monotonic()
        shipper.stop(flush=True, timeout=0.5)
        took = time.monotonic() - started
    finally:
        sender.release.set()
    assert took < 2.0, f"stop took {took:.1f}s"
    assert sender.attempts == 1, "a last flush waited on the stuck batch"
    assert store.count_pending_spans() == 3


def test_the_last_flush_gives_each_send_only_the_time_left(store: Store) -> None:
    sender = Sender()
    sender.accepting = False
    queue(store, 3)
    shipper = make_shipper(store, sender, CollectorRegistry())
    seen: list[float | None] = []
    original = sender.send

    def recording(payload: bytes, count: int, timeout: float | None = None) -> bool:
        seen.append(timeout)
        return original(payload, count, timeout)

    sender.send = recording  # type: ignore[method-assign]
    shipper.stop(flush=True, timeout=2.0)
    assert len(seen) == 1
    assert seen[0] is not None
    assert 0 < seen[0] <= 2.0
    assert store.count_pending_spans() == 3


def test_spans_queued_as_json_records_before_an_upgrade_still_ship(store: Store) -> None:
    sender = Sender()
    with store.batch() as batch:
        batch.enqueue_spans([record(1).to_json(), encode_span(record(2)), record(3).to_json()])
    assert make_shipper(store, sender, CollectorRegistry()).flush()
    assert sender.received == ["widget-1", "widget-2", "widget-3"]
    assert store.count_pending_spans() == 0


def test_shippers_told_together_stop_by_one_shared_deadline(tmp_path: Path) -> None:
    """Many accounts' shippers, every send stuck: the stop takes one timeout, not one each."""
    senders = [StuckSender() for _ in range(4)]
    stores = [Store.open(tmp_path / f"{n}.sqlite3") for n in range(len(senders))]
    shippers = [
        make_shipper(store, sender, CollectorRegistry())
        for store, sender in zip(stores, senders, strict=True)
    ]
    try:
        for store, shipper in zip(stores, shippers, strict=True):
            queue(store, 2)
            shipper.start()
        for _ in range(200):
            if all(sender.attempts for sender in senders):
                break
            time.sleep(0.01)
        started = time.monotonic()
        deadline = started + 0.5
        for shipper in shippers:
            shipper.request_stop()
        for shipper in shippers:
            shipper.stop(flush=True, deadline=deadline)
        took = time.monotonic() - started
    finally:
        for sender in senders:
            sender.release.set()
        for store in stores:
            store.close()
    # Each alone would wait 0.5 s for its stuck batch; told together they wait once.
    assert took < 1.5, f"stopping four stuck shippers took {took:.1f}s"
    assert [sender.attempts for sender in senders] == [1, 1, 1, 1]
