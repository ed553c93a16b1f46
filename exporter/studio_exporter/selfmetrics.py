"""The exporter's own health metrics: API calls, poll cycles, rate limits, lag and span export."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Twilio answers within a few hundred milliseconds; the tail covers the client's timeouts.
API_DURATION_BUCKETS: Final = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: From "exported in the poll right after the step" to "caught up after an outage or backfill".
EXPORT_LAG_BUCKETS: Final = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                             21600.0, 86400.0, 604800.0)  # fmt: skip

POLL_RESULTS: Final = ("ok", "error")


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
    """

    def __init__(self, registry: CollectorRegistry, *, version: str = "unknown") -> None:
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
        self._last_successful_poll = Gauge(
            "twilio_studio_exporter_last_successful_poll_timestamp_seconds",
            "Unix time of the end of the last successful poll cycle.",
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
        # Present from the first scrape, so rate() and alerts see a 0 rather than no series.
        for result in POLL_RESULTS:
            self._poll_cycles.labels(result=result)

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
        self._last_successful_poll.set(at.timestamp())

    def export_lag(self, seconds: float) -> None:
        self._export_lag.observe(max(seconds, 0.0))

    def spans_exported(self, count: int) -> None:
        self._spans_exported.inc(count)

    def spans_dropped(self, count: int) -> None:
        self._spans_dropped.inc(count)

    def span_export_failed(self) -> None:
        self._span_export_failures.inc()

    def set_spans_pending(self, count: int) -> None:
        self._spans_pending.set(count)
