"""The exporter's own health metrics: API calls, poll cycles, rate limits, lag, spans and push."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from studio_exporter.core.sharding import NO_SHARDING, Shard

#: Twilio answers within a few hundred milliseconds; the tail covers the client's timeouts.
API_DURATION_BUCKETS: Final = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: From "exported in the poll right after the step" to "caught up after an outage or backfill".
EXPORT_LAG_BUCKETS: Final = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                             21600.0, 86400.0, 604800.0)  # fmt: skip

POLL_RESULTS: Final = ("ok", "error")
#: The ways the exporter learns of Studio's executions: ``--mode`` runs one or both.
SOURCES: Final = ("poll", "push")
#: Why the web port refused a connection or a request (web/server.py reports them).
HTTP_REFUSAL_REASONS: Final = (
    "over_capacity",  # past --web.max-connections: closed, or 503 unless /health/live
    "busy",  # too many request bodies in memory at once: 503
    "timeout",  # TLS handshake, request head or body not received in time
    "too_large",  # body over --webhook.max-body-size, or request head too large
    "malformed",  # not HTTP/1.x as the exporter serves it
    "tls",  # handshake failed, or a client certificate outside client_allowed_sans
)
#: What ``twilio_studio_exporter_anomalies_total{kind}`` counts: data that cannot be right,
#: exported as Studio gave it (or left out of a histogram) rather than smoothed over.
ANOMALY_KINDS: Final = ("negative_visit_duration", "negative_execution_duration")


#: The reasons studio_api.ApiError reports (its docstring lists them).
POLL_ERROR_REASONS = (
    "unauthorized",
    "not_found",
    "rate_limited",
    "server_error",
    "timeout",
    "connection_error",
    "malformed",
    "client_error",
    "invalid_sid",
)


class ExporterMetrics:
    """The health metrics, registered in the given registry; the poller and sinks call the methods.

    ``twilio_studio_exporter_series_overflow_total`` is not here: the cardinality cap lives in
    ``metrics.StudioMetrics``, which exposes that counter itself.

    A sample of the exposition::

        # TYPE twilio_studio_exporter_api_requests_total counter
        twilio_studio_exporter_api_requests_total{code="200",operation="list_steps"} 1520.0
        twilio_studio_exporter_api_requests_total{code="429",operation="list_steps"} 3.0
        # TYPE twilio_studio_exporter_poll_cycles_total counter
        twilio_studio_exporter_poll_cycles_total{result="ok"} 120.0
        twilio_studio_exporter_poll_cycles_total{result="error"} 0.0
        # TYPE twilio_studio_exporter_concurrency_limit gauge
        twilio_studio_exporter_concurrency_limit 8.0
        # TYPE twilio_studio_exporter_build_info gauge
        twilio_studio_exporter_build_info{version="0.1.0"} 1.0
        # TYPE twilio_studio_exporter_shard_info gauge
        twilio_studio_exporter_shard_info{shard="0",total_shards="1"} 1.0
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str = "unknown",
        sources: tuple[str, ...] = ("poll",),
        shard: Shard = NO_SHARDING,
    ) -> None:
        unknown = set(sources) - set(SOURCES)
        if unknown:
            raise ValueError(f"unknown sources {sorted(unknown)}; expected some of {SOURCES}")
        self._api_requests = Counter(
            "twilio_studio_exporter_api_requests",
            "Requests to the Studio API, by operation and HTTP status code (or timeout, "
            "connection_error, malformed).",
            ("operation", "code"),
            registry=registry,
        )
        self._api_request_duration = Histogram(
            "twilio_studio_exporter_api_request_duration_seconds",
            "Duration of requests to the Studio API.",
            ("operation",),
            buckets=API_DURATION_BUCKETS,
            registry=registry,
        )
        self._poll_cycles = Counter(
            "twilio_studio_exporter_poll_cycles",
            "Poll cycles, by result.",
            ("result",),
            registry=registry,
        )
        self._poll_errors = Counter(
            "twilio_studio_exporter_poll_errors",
            "Errors met while polling, by reason.",
            ("reason",),
            registry=registry,
        )
        # Every reason the API wrapper reports starts at 0, so rate() and alerts see a series
        # before the first error rather than an absent one.
        for reason in POLL_ERROR_REASONS:
            self._poll_errors.labels(reason=reason)
        self._rate_limit_waits = Counter(
            "twilio_studio_exporter_rate_limit_waits",
            "Times the exporter waited because Studio rate-limited it (HTTP 429).",
            registry=registry,
        )
        self._rate_limit_wait_seconds = Counter(
            "twilio_studio_exporter_rate_limit_wait_seconds",
            "Time spent waiting because Studio rate-limited the exporter.",
            registry=registry,
        )
        self._concurrency_limit = Gauge(
            "twilio_studio_exporter_concurrency_limit",
            "The adaptive limit on concurrent Studio API requests, now.",
            registry=registry,
        )
        # One freshness gauge per source the mode runs, and only those: a gauge that can never
        # move (the poll gauge in push mode) would read as a stalled exporter. Both start at 0
        # ("not yet") and are restored from the state at start-up (``restore_last_success``).
        self._last_success: dict[str, Gauge] = {}
        if "poll" in sources:
            self._last_success["poll"] = Gauge(
                "twilio_studio_exporter_last_successful_poll_timestamp_seconds",
                "Unix time of the end of the last successful poll cycle (0: none yet).",
                registry=registry,
            )
        if "push" in sources:
            self._last_success["push"] = Gauge(
                "twilio_studio_exporter_last_successful_push_timestamp_seconds",
                "Unix time of the end of the last pass over the Event Streams inbox that "
                "processed everything due without failure (0: none yet).",
                registry=registry,
            )
        self._export_lag = Histogram(
            "twilio_studio_exporter_export_lag_seconds",
            "Time from a step's creation in Studio to its export.",
            buckets=EXPORT_LAG_BUCKETS,
            registry=registry,
        )
        self._spans_exported = Counter(
            "twilio_studio_exporter_spans_exported",
            "Spans the span sink accepted.",
            registry=registry,
        )
        self._spans_dropped = Counter(
            "twilio_studio_exporter_spans_dropped",
            "Spans given up on after the span sink kept failing.",
            registry=registry,
        )
        self._span_export_failures = Counter(
            "twilio_studio_exporter_span_export_failures",
            "Failed attempts to hand a batch of spans to the span sink.",
            registry=registry,
        )
        self._spans_pending = Gauge(
            "twilio_studio_exporter_spans_pending",
            "Spans waiting in the outbox for export.",
            registry=registry,
        )
        self._executions_vanished = Counter(
            "twilio_studio_exporter_executions_vanished",
            "Followed or listed executions that Studio answered 404 for (deleted, or their flow "
            "was): forgotten, their metrics kept.",
            registry=registry,
        )
        self._anomalies = Counter(
            "twilio_studio_exporter_anomalies",
            "Impossible data from Studio, by kind (a visit or execution that ends before it "
            "starts): kept out of the duration histograms, logged once per execution.",
            ("kind",),
            registry=registry,
        )
        for kind in ANOMALY_KINDS:
            self._anomalies.labels(kind=kind)
        self._account_errors = Counter(
            "twilio_studio_exporter_account_errors",
            "Failures of one followed account that the others do not share: its credentials "
            "refused (unauthorized), its Studio or Accounts entry unreadable, or no auth token "
            "listed for it (no_auth_token). The account is retried at the next account refresh.",
            ("account_sid", "reason"),
            registry=registry,
        )
        self._build_info = Gauge(
            "twilio_studio_exporter_build_info",
            "Always 1; the version label says which build runs.",
            ("version",),
            registry=registry,
        )
        self._build_info.labels(version=version).set(1)
        # Its own family, not labels on build_info: which build runs and which part of the
        # work a replica follows change independently, and queries on either stay simple.
        self._shard_info = Gauge(
            "twilio_studio_exporter_shard_info",
            "Always 1; this replica follows the (account, flow) units whose stable hash modulo "
            "total_shards is shard (--shard, --total-shards; 0 of 1: every unit).",
            ("shard", "total_shards"),
            registry=registry,
        )
        self._shard_info.labels(shard=str(shard.index), total_shards=str(shard.total)).set(1)
        # process_start_time_seconds shows restarts (a dashboard annotation) and lets the
        # Stalled alert age a source that never succeeded from the start of the process.
        ProcessCollector(registry=registry)
        self._http_refused = Counter(
            "twilio_studio_exporter_http_refused",
            "Connections and requests the web port refused, by reason (over_capacity, busy, "
            "timeout, too_large, malformed, tls).",
            ("reason",),
            registry=registry,
        )
        # Present from the first scrape, so rate() and alerts see a 0 rather than no series.
        for result in POLL_RESULTS:
            self._poll_cycles.labels(result=result)
        for reason in HTTP_REFUSAL_REASONS:
            self._http_refused.labels(reason=reason)

    def api_request(self, operation: str, code: int | str, seconds: float) -> None:
        """One Studio API request: ``code`` is the HTTP status or a failure word (timeout...)."""
        self._api_requests.labels(operation=operation, code=str(code)).inc()
        self._api_request_duration.labels(operation=operation).observe(seconds)

    def poll_cycle(self, ok: bool) -> None:
        self._poll_cycles.labels(result="ok" if ok else "error").inc()

    def account_error(self, account_sid: str, reason: str) -> None:
        self._account_errors.labels(account_sid, reason).inc()

    def poll_error(self, reason: str) -> None:
        self._poll_errors.labels(reason=reason).inc()

    def rate_limit_wait(self, seconds: float) -> None:
        self._rate_limit_waits.inc()
        self._rate_limit_wait_seconds.inc(max(seconds, 0.0))

    def set_concurrency_limit(self, limit: int) -> None:
        self._concurrency_limit.set(limit)

    def poll_succeeded(self, at: datetime) -> None:
        self.succeeded("poll", at)

    def succeeded(self, source: str, at: datetime) -> None:
        """``source`` (poll, push) finished a round without failure at ``at``."""
        gauge = self._last_success.get(source)
        if gauge is not None:
            gauge.set(at.timestamp())

    def restore_last_success(self, source: str, at: datetime | None) -> None:
        """Start from the last success recorded before a restart, not from 0."""
        if at is not None:
            self.succeeded(source, at)

    def export_lag(self, seconds: float) -> None:
        self._export_lag.observe(max(seconds, 0.0))

    def executions_vanished(self, count: int = 1) -> None:
        self._executions_vanished.inc(count)

    def anomaly(self, kind: str, count: int = 1) -> None:
        self._anomalies.labels(kind=kind).inc(count)

    def spans_exported(self, count: int) -> None:
        self._spans_exported.inc(count)

    def spans_dropped(self, count: int) -> None:
        self._spans_dropped.inc(count)

    def span_export_failed(self) -> None:
        self._span_export_failures.inc()

    def set_spans_pending(self, count: int) -> None:
        self._spans_pending.set(count)

    def http_refused(self, reason: str) -> None:
        """The web port refused a connection or a request (``HTTP_REFUSAL_REASONS``)."""
        self._http_refused.labels(reason=reason).inc()


#: The step fields compared between a pushed step and Studio's REST copy, by Twilio's names.
DISAGREEMENT_FIELDS: Final = (
    "name",
    "transitioned_from",
    "transitioned_to",
    "parent_step_sid",
    "flow_sid",
    "type",
    "date_created",
)


class EventRestDisagreements:
    """Counts, by field, pushed steps that Studio's REST list gives differently (REST wins).

    Twilio describes a step event's ``name`` as "Name of Step from Event" and REST's as "the
    event that caused the Flow to transition to the Step": whether they ever differ, a real
    deployment shows here. ``type`` differs when the flow definition the exporter read names
    another type than Studio's step record (an execution on an older revision of the flow).

    A sample of the exposition::

        # TYPE twilio_studio_exporter_event_rest_disagreements_total counter
        twilio_studio_exporter_event_rest_disagreements_total{field="name"} 0.0
        twilio_studio_exporter_event_rest_disagreements_total{field="type"} 2.0
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._counter = Counter(
            "twilio_studio_exporter_event_rest_disagreements",
            "Pushed steps whose field differs from Studio's REST copy of the step (REST wins), "
            "by field.",
            ("field",),
            registry=registry,
        )
        for name in DISAGREEMENT_FIELDS:
            self._counter.labels(field=name)

    def count(self, field: str) -> None:
        self._counter.labels(field=field).inc()


#: Why an inbox event is given up (``twilio_studio_exporter_events_dropped_total{reason}``).
DROP_REASONS: Final = ("malformed", "api_error")


class PushMetrics:
    """Push mode's families (``--mode push`` and ``hybrid``): one set however many accounts
    have a webhook path, so every account's receiver and inbox processor count into the same
    instance. Registered in the order the processor and the receiver registered them before
    they lived here, so ``/metrics`` lists them as it did.

    A sample of the exposition::

        # TYPE twilio_studio_exporter_push_rest_reads_total counter
        twilio_studio_exporter_push_rest_reads_total{reason="end_list"} 120.0
        # TYPE twilio_studio_exporter_events_dropped_total counter
        twilio_studio_exporter_events_dropped_total{reason="malformed"} 0.0
        twilio_studio_exporter_events_dropped_total{reason="api_error"} 0.0
        # TYPE twilio_studio_exporter_events_pending gauge
        twilio_studio_exporter_events_pending 3.0
        # TYPE twilio_studio_exporter_events_received_total counter
        twilio_studio_exporter_events_received_total{result="accepted",type="other"} 2.0
        # TYPE twilio_studio_exporter_webhook_requests_total counter
        twilio_studio_exporter_webhook_requests_total{code="200"} 41.0
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._rest_reads = Counter(
            "twilio_studio_exporter_push_rest_reads",
            "REST reads made in push mode, by reason (step_fetch: a step event lacked a "
            "field; end_list, gap_list, seed_list, idle_list: an execution's steps; "
            "execution_fetch).",
            ["reason"],
            registry=registry,
        )
        self._events_dropped = Counter(
            "twilio_studio_exporter_events_dropped",
            "Inbox events given up, by reason (malformed, api_error).",
            ["reason"],
            registry=registry,
        )
        # Both reasons exist from the start: a panel or alert reads 0 rather than nothing.
        for reason in DROP_REASONS:
            self._events_dropped.labels(reason)
        self._events_pending = Gauge(
            "twilio_studio_exporter_events_pending",
            "Webhook events committed to the inbox and not yet processed.",
            registry=registry,
        )
        self.disagreements = EventRestDisagreements(registry)
        self._events_received = Counter(
            "twilio_studio_exporter_events_received",
            "Event Streams events received, by CloudEvent type (other: not a Studio type) and "
            "result (accepted, duplicate, ignored, rejected).",
            ["type", "result"],
            registry=registry,
        )
        self._webhook_requests = Counter(
            "twilio_studio_exporter_webhook_requests",
            "Event Streams webhook deliveries, by HTTP status answered.",
            ["code"],
            registry=registry,
        )

    def webhook_answered(self, status: int) -> None:
        """One delivery answered with HTTP ``status``."""
        self._webhook_requests.labels(str(status)).inc()

    def events_received(self, event_type: str, result: str, count: int = 1) -> None:
        self._events_received.labels(event_type, result).inc(count)

    def events_dropped(self, reason: str, count: int = 1) -> None:
        """``count`` inbox events given up (``DROP_REASONS``)."""
        self._events_dropped.labels(reason).inc(count)

    def set_events_pending(self, count: int) -> None:
        self._events_pending.set(count)

    def rest_read(self, reason: str) -> None:
        self._rest_reads.labels(reason).inc()


#: Directions of ``twilio_studio_exporter_unit_moves_total``.
UNIT_MOVES = ("acquired", "released", "expired")


class LeaseMetrics:
    """Replicas sharing PostgreSQL (``--state.postgres-url`` in poll mode): the units this
    replica leases, what it sees of the others, and the units that moved. Domain series are
    served by the replica that holds their unit, so Prometheus scrapes every replica.

    A sample of the exposition::

        # TYPE twilio_studio_exporter_units_leased gauge
        twilio_studio_exporter_units_leased 4.0
        # TYPE twilio_studio_exporter_units gauge
        twilio_studio_exporter_units 12.0
        # TYPE twilio_studio_exporter_replicas gauge
        twilio_studio_exporter_replicas 3.0
        # TYPE twilio_studio_exporter_unit_moves_total counter
        twilio_studio_exporter_unit_moves_total{direction="acquired"} 4.0
        # TYPE twilio_studio_exporter_lease_errors_total counter
        twilio_studio_exporter_lease_errors_total 0.0
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._leased = Gauge(
            "twilio_studio_exporter_units_leased",
            "Work units (account, flow) this replica holds a lease on, and so polls and serves.",
            registry=registry,
        )
        self._units = Gauge(
            "twilio_studio_exporter_units",
            "Work units known to every replica (the same on each replica).",
            registry=registry,
        )
        self._replicas = Gauge(
            "twilio_studio_exporter_replicas",
            "Replicas whose heartbeat is current, this one included.",
            registry=registry,
        )
        self._moves = Counter(
            "twilio_studio_exporter_unit_moves",
            "Units this replica took (acquired), gave up to balance the load (released), or "
            "dropped because it could not renew its leases in time (expired).",
            ["direction"],
            registry=registry,
        )
        for direction in UNIT_MOVES:
            self._moves.labels(direction)
        self._errors = Counter(
            "twilio_studio_exporter_lease_errors",
            "Lease ticks that failed (the database did not answer or refused).",
            registry=registry,
        )

    def leased(self, units: int) -> None:
        self._leased.set(units)

    def ticked(self, *, leased: int, units: int, replicas: int) -> None:
        self._leased.set(leased)
        self._units.set(units)
        self._replicas.set(replicas)

    def moved(self, direction: str, count: int) -> None:
        if count:
            self._moves.labels(direction).inc(count)

    def failed(self) -> None:
        self._errors.inc()
