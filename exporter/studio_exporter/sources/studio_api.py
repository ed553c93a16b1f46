"""The Studio API as the exporter sees it: the one module that imports the generated client.

It pages (following ``next_page_url``), retries what may pass (429, 5xx, timeouts, resets,
malformed bodies), adapts its concurrency to Twilio's limits, counts every request, and turns the
generated models into the project's domain types. Nothing outside this module knows the
generated names.

Requests are sent with the generated operation's own ``_get_kwargs`` and parsed with its
``_build_response``, not ``asyncio_detailed``: the status must be classified before the body is
parsed, because a 502 from a proxy or a truncated 200 is not JSON.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from studio_client.api.studio_v2_execution import fetch_execution, list_execution
from studio_client.api.studio_v2_execution_step import fetch_execution_step, list_execution_step
from studio_client.api.studio_v2_flow import fetch_flow, list_flow
from studio_client.client import AuthenticatedClient
from studio_client.models.execution import Execution as ApiExecution
from studio_client.models.execution_step import ExecutionStep as ApiStep
from studio_client.models.flow import Flow as ApiFlow
from studio_client.models.list_execution_response import ListExecutionResponse
from studio_client.models.list_execution_step_response import ListExecutionStepResponse
from studio_client.models.list_flow_response import ListFlowResponse
from studio_client.models.page_meta import PageMeta
from studio_client.models.studio_error import StudioError
from studio_client.types import Unset
from studio_exporter.config import DEFAULT_CONCURRENCY, DEFAULT_REQUEST_TIMEOUT, Credentials
from studio_exporter.core.backoff import parse_retry_after
from studio_exporter.core.domain import TRIGGER, Execution, Flow, Step, Transition, Widget
from studio_exporter.core.sids import (
    ACCOUNT_SID,
    EXECUTION_SID,
    FLOW_SID,
    STEP_SID,
    InvalidSidError,
    is_sid,
    require_sid,
)
from studio_exporter.sources.throttle import AdaptiveLimiter, RetryPolicy
from studio_exporter.sources.transport import LeanTransport, PreparedGet, proxies_in_environment

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
#: A runaway ``next_page_url`` loop is cut off here: 1,000 pages of 1,000 is Studio's whole
#: 30-day history of a very busy flow.
MAX_PAGES = 1000

T = TypeVar("T")
P = TypeVar("P")
R = TypeVar("R")


class RequestObserver(Protocol):
    """Where request outcomes are counted (the exporter's health metrics)."""

    def api_request(self, operation: str, code: str, seconds: float) -> None: ...

    def rate_limit_wait(self, seconds: float) -> None: ...

    def set_concurrency_limit(self, limit: int) -> None: ...


class ApiError(Exception):
    """A Studio request that failed for good (after retries, or not retryable).

    ``reason`` is a short, stable word for metrics labels: ``unauthorized``, ``not_found``,
    ``rate_limited``, ``server_error``, ``timeout``, ``connection_error``, ``malformed``,
    ``client_error``, ``invalid_sid``.
    """

    def __init__(self, operation: str, reason: str, detail: str, status: int | None = None):
        super().__init__(f"{operation}: {detail}")
        self.operation = operation
        self.reason = reason
        self.status = status


class MalformedError(ValueError):
    """A response body or record that does not have what the exporter needs."""


class _RetryableError(Exception):
    def __init__(self, code: str, reason: str, detail: str, wait: float | None = None):
        super().__init__(detail)
        self.code = code
        self.reason = reason
        self.wait = wait


class StudioApi:
    """Async access to the Studio v2 read API, returning domain types."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        timeout: float = DEFAULT_REQUEST_TIMEOUT.total_seconds(),
        limiter: AdaptiveLimiter | None = None,
        retry: RetryPolicy | None = None,
        health: RequestObserver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        keep_context: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.account_sid = credentials.account_sid
        self.limiter = limiter or AdaptiveLimiter(DEFAULT_CONCURRENCY)
        self.retry = retry or RetryPolicy()
        self.health = health
        self.keep_context = keep_context
        self._rng = rng or random.Random()
        self.requests_sent = 0
        if transport is None and not proxies_in_environment(os.environ):
            # httpx's default transport spent 4-7 ms of CPU per request in its connection pool;
            # the lean one does no per-request work that grows with the pool. A proxy in the
            # environment keeps httpx's transport, which is the one that knows proxies.
            transport = LeanTransport(max_connections=self.limiter.maximum)
        http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=httpx.BasicAuth(credentials.username, credentials.password.reveal()),
            timeout=httpx.Timeout(timeout),
            # As many connections as requests may be in flight: httpcore's pool scans every
            # connection on every request, so idle extras cost CPU and buy nothing.
            limits=httpx.Limits(
                max_connections=self.limiter.maximum,
                max_keepalive_connections=self.limiter.maximum,
            ),
            headers={"User-Agent": "twilio-studio-exporter"},
            transport=transport,
            follow_redirects=False,
        )
        # The generated client would add a bearer header; the httpx client we give it carries
        # HTTP basic auth instead, which is what Twilio wants.
        self._client = AuthenticatedClient(base_url=self.base_url, token="")
        self._client.set_async_httpx_client(http)
        self._http = http
        # Requests go straight to the lean transport with headers made once: the client's own
        # path (URL merging, the auth flow, cookie extraction) cost as much CPU per request as
        # the transport itself, for nothing a GET of a JSON page needs. Through a proxy, the
        # client sends them (it holds the proxy-aware transports).
        self._transport = transport
        basic = f"{credentials.username}:{credentials.password.reveal()}".encode()
        self._headers = httpx.Headers(http.headers)
        self._headers["Authorization"] = "Basic " + base64.b64encode(basic).decode("ascii")
        self._timeouts = httpx.Timeout(timeout).as_dict()
        # With the lean transport, the request head is encoded once and only the target
        # (path and query) changes: no httpx.Request, whose URL parsing cost 7% of a backfill.
        self._lean: tuple[LeanTransport, PreparedGet] | None = (
            (transport, PreparedGet(httpx.URL(self.base_url), self._headers))
            if isinstance(transport, LeanTransport)
            else None
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- operations ---------------------------------------------------------------------------

    async def list_flows(self) -> list[Flow]:
        return await self._pages(
            "ListFlow",
            list_flow,
            ListFlowResponse,
            {"page_size": MAX_PAGE_SIZE},
            lambda page: ([flow_from_api(record) for record in _items(page.flows)], page.meta),
        )

    async def fetch_flow(self, flow_sid: str) -> Flow:
        sid = self._sid(flow_sid, FLOW_SID, "FetchFlow")
        return await self._call("FetchFlow", fetch_flow, ApiFlow, {"sid": sid}, flow_from_api)

    async def list_executions(
        self,
        flow_sid: str,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        status: str | None = None,
    ) -> list[Execution]:
        """Every execution of the flow in the window, newest first, following every page."""
        sid = self._sid(flow_sid, FLOW_SID, "ListExecution")
        params: dict[str, Any] = {"flow_sid": sid, "page_size": MAX_PAGE_SIZE}
        if created_from is not None:
            params["date_created_from"] = created_from.astimezone(UTC)
        if created_to is not None:
            params["date_created_to"] = created_to.astimezone(UTC)
        if status is not None:
            params["status"] = status
        return await self._pages(
            "ListExecution",
            list_execution,
            ListExecutionResponse,
            params,
            lambda page: (
                [execution_from_api(record, sid) for record in _items(page.executions)],
                page.meta,
            ),
        )

    async def fetch_execution(self, flow_sid: str, execution_sid: str) -> Execution:
        params = {
            "flow_sid": self._sid(flow_sid, FLOW_SID, "FetchExecution"),
            "sid": self._sid(execution_sid, EXECUTION_SID, "FetchExecution"),
        }
        return await self._call(
            "FetchExecution",
            fetch_execution,
            ApiExecution,
            params,
            lambda record: execution_from_api(record, flow_sid),
        )

    async def list_steps(self, flow_sid: str, execution_sid: str) -> list[Step]:
        """All steps of an execution: Studio caps an execution at 1,000, so one page."""
        params: dict[str, Any] = {
            "flow_sid": self._sid(flow_sid, FLOW_SID, "ListExecutionStep"),
            "execution_sid": self._sid(execution_sid, EXECUTION_SID, "ListExecutionStep"),
            "page_size": MAX_PAGE_SIZE,
        }
        keep = self.keep_context
        return await self._pages(
            "ListExecutionStep",
            list_execution_step,
            ListExecutionStepResponse,
            params,
            lambda page: (
                [
                    step_from_api(record, flow_sid, execution_sid, keep)
                    for record in _items(page.steps)
                ],
                page.meta,
            ),
        )

    async def fetch_step(self, flow_sid: str, execution_sid: str, step_sid: str) -> Step:
        params = {
            "flow_sid": self._sid(flow_sid, FLOW_SID, "FetchExecutionStep"),
            "execution_sid": self._sid(execution_sid, EXECUTION_SID, "FetchExecutionStep"),
            "sid": self._sid(step_sid, STEP_SID, "FetchExecutionStep"),
        }
        keep = self.keep_context
        return await self._call(
            "FetchExecutionStep",
            fetch_execution_step,
            ApiStep,
            params,
            lambda record: step_from_api(record, flow_sid, execution_sid, keep),
        )

    # -- machinery ----------------------------------------------------------------------------

    @staticmethod
    def _sid(value: str, prefix: str, operation: str) -> str:
        try:
            return require_sid(value, prefix)
        except InvalidSidError as error:
            raise ApiError(operation, "invalid_sid", str(error)) from error

    async def _pages(
        self,
        operation: str,
        module: ModuleType,
        page_type: type[P],
        params: dict[str, Any],
        convert: Callable[[P], tuple[list[R], PageMeta | Unset]],
    ) -> list[R]:
        """Every record of every page, following ``meta.next_page_url`` until it is null."""
        records: list[R] = []
        current = dict(params)
        seen_tokens: set[str] = set()
        for _ in range(MAX_PAGES):
            items, meta = await self._call(operation, module, page_type, current, convert)
            records.extend(items)
            next_url = None if isinstance(meta, Unset) else meta.next_page_url
            if not isinstance(next_url, str) or not next_url:
                return records
            query = parse_qs(urlsplit(next_url).query)
            token = next(iter(query.get("PageToken", ())), None)
            if token is None or token in seen_tokens:
                raise ApiError(
                    operation, "malformed", "next_page_url without a new PageToken; stopping"
                )
            seen_tokens.add(token)
            current = dict(params)
            current["page_token"] = token
            page_number = next(iter(query.get("Page", ())), None)
            if page_number is not None and page_number.isdigit():
                current["page"] = int(page_number)
        raise ApiError(operation, "malformed", f"more than {MAX_PAGES} pages; stopping")

    async def _call(
        self,
        operation: str,
        module: ModuleType,
        expected: type[P],
        params: Mapping[str, Any],
        convert: Callable[[P], R],
    ) -> R:
        attempt = 0
        while True:
            try:
                return await self._attempt(operation, module, expected, params, convert)
            except _RetryableError as retry:
                attempt += 1
                if attempt >= self.retry.max_attempts:
                    raise ApiError(
                        operation,
                        retry.reason,
                        f"{retry} (gave up after {attempt} attempts)",
                        int(retry.code) if retry.code.isdigit() else None,
                    ) from None
                delay = (
                    retry.wait if retry.wait is not None else self.retry.delay(attempt, self._rng)
                )
                log.debug("%s: %s; retrying in %.2fs", operation, retry, delay)
                await asyncio.sleep(delay)

    async def _attempt(
        self,
        operation: str,
        module: ModuleType,
        expected: type[P],
        params: Mapping[str, Any],
        convert: Callable[[P], R],
    ) -> R:
        kwargs = module._get_kwargs(**params)
        target = _target(kwargs["url"], kwargs.get("params"))
        async with self.limiter.slot():
            started = time.monotonic()
            self.requests_sent += 1
            try:
                if self._lean is not None and kwargs["method"] == "get":
                    lean, prepared = self._lean
                    response = await lean.get(prepared, target, self._timeouts)
                    await response.aread()
                else:
                    request = httpx.Request(
                        kwargs["method"],
                        self.base_url + target,
                        headers=self._headers,
                        extensions={"timeout": self._timeouts},
                    )
                    if self._transport is None:
                        response = await self._http.send(request)
                    else:
                        response = await self._transport.handle_async_request(request)
                        response.request = request
                        await response.aread()
            except httpx.TimeoutException as error:
                self._observe(operation, "timeout", started)
                detail = f"timed out ({type(error).__name__})"
                raise _RetryableError("timeout", "timeout", detail) from None
            except httpx.TransportError as error:
                self._observe(operation, "connection_error", started)
                raise _RetryableError(
                    "connection_error", "connection_error", f"{type(error).__name__}: {error}"
                ) from None
        # The place just freed is taken by a request that waited for it: give it a turn of the
        # event loop to go on the wire before this answer is parsed, rather than after.
        await asyncio.sleep(0)
        status = response.status_code
        if status == 429:
            self._observe(operation, "429", started)
            wait = self.limiter.on_throttled(parse_retry_after(response.headers.get("Retry-After")))
            if self.health is not None:
                self.health.rate_limit_wait(wait)
                self.health.set_concurrency_limit(self.limiter.limit)
            raise _RetryableError("429", "rate_limited", "429 Too Many Requests", wait)
        if status >= 500:
            self._observe(operation, str(status), started)
            raise _RetryableError(str(status), "server_error", f"HTTP {status}")
        if status != 200:
            self._observe(operation, str(status), started)
            message = _error_message(response)
            reason = {401: "unauthorized", 403: "unauthorized", 404: "not_found"}.get(
                status, "client_error"
            )
            raise ApiError(operation, reason, f"HTTP {status}: {message}", status)
        try:
            parsed = module._build_response(client=self._client, response=response).parsed
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            self._observe(operation, "malformed", started)
            raise _RetryableError("malformed", "malformed", f"malformed body: {error}") from None
        if not isinstance(parsed, expected):
            self._observe(operation, "malformed", started)
            detail = f"unexpected body type {type(parsed).__name__}"
            raise _RetryableError("malformed", "malformed", detail)
        try:
            converted = convert(parsed)
        except MalformedError as error:
            # A record without what the exporter needs (a null sid, a missing date) is treated
            # like a malformed body: retried, and if it persists the execution waits a cycle.
            self._observe(operation, "malformed", started)
            raise _RetryableError("malformed", "malformed", f"malformed record: {error}") from None
        self._observe(operation, "200", started)
        self.limiter.on_success()
        if self.health is not None:
            self.health.set_concurrency_limit(self.limiter.limit)
        return converted

    def _observe(self, operation: str, code: str, started: float) -> None:
        if self.health is not None:
            self.health.api_request(operation, code, time.monotonic() - started)


def _target(path: str, params: Mapping[str, Any] | None) -> str:
    """The request target (path and query) as httpx would build it from path and params.

    httpx parses a relative URL against the base URL, then again to merge the params: three
    parses of the whole URL, a third of the client's CPU per request once the transport is lean.
    The path from ``_get_kwargs`` is already quoted; the query is encoded as httpx encodes it.
    """
    if not params:
        return path
    items: list[tuple[str, str]] = []
    for name, value in params.items():
        for item in value if isinstance(value, list | tuple) else (value,):
            items.append((name, _query_value(item)))
    return f"{path}?{urlencode(items)}"


def _query_value(value: object) -> str:
    # httpx's rendering of primitives: JSON-style booleans, None as empty.
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)


def _error_message(response: httpx.Response) -> str:
    try:
        body = StudioError.from_dict(response.json())
    except (ValueError, TypeError, KeyError, AttributeError):
        return "(no Twilio error body)"
    code = body.code if isinstance(body.code, int) else "?"
    message = body.message if isinstance(body.message, str) else ""
    return f"Twilio error {code}: {message}"[:300]


def _items(value: list[T] | Unset | None) -> list[T]:
    if isinstance(value, Unset) or value is None:
        raise MalformedError("the page has no list of records")
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _when(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _required(value: str | None, what: str) -> str:
    if value is None:
        raise MalformedError(f"record without {what}")
    return value


# -- conversions at the boundary --------------------------------------------------------------


def flow_from_api(record: ApiFlow) -> Flow:
    sid = _required(_text(record.sid), "sid")
    if not is_sid(sid, FLOW_SID):
        raise MalformedError(f"flow sid {sid[:40]!r} is not a Flow SID")
    definition = record.definition
    widgets: tuple[Widget, ...] = ()
    initial = TRIGGER
    if definition is not None and not isinstance(definition, Unset):
        widgets, initial = widgets_from_definition(definition.to_dict())
    revision = record.revision if isinstance(record.revision, int) else 0
    return Flow(
        sid=sid,
        account_sid=_text(record.account_sid) or "",
        name=_text(record.friendly_name) or sid,
        status=_text(record.status) or "unknown",
        revision=revision,
        widgets=widgets,
        initial_widget=initial,
    )


def widgets_from_definition(definition: Mapping[str, Any]) -> tuple[tuple[Widget, ...], str]:
    """The widgets of a Studio flow definition JSON, tolerating anything unexpected."""
    initial = definition.get("initial_state")
    states = definition.get("states")
    widgets: list[Widget] = []
    if isinstance(states, list):
        for state in states:
            if not isinstance(state, dict) or not isinstance(state.get("name"), str):
                continue
            transitions = tuple(
                Transition(
                    str(t.get("event", "")),
                    t.get("next") if isinstance(t.get("next"), str) else None,
                )
                for t in state.get("transitions") or ()
                if isinstance(t, dict)
            )
            widgets.append(Widget(state["name"], str(state.get("type") or "unknown"), transitions))
    return tuple(widgets), initial if isinstance(initial, str) else TRIGGER


def execution_from_api(record: ApiExecution, flow_sid: str) -> Execution:
    sid = _required(_text(record.sid), "sid")
    if not is_sid(sid, EXECUTION_SID):
        raise MalformedError(f"execution sid {sid[:40]!r} is not an Execution SID")
    created = _when(record.date_created)
    if created is None:
        raise MalformedError(f"execution {sid} without date_created")
    account = _text(record.account_sid) or ""
    return Execution(
        sid=sid,
        flow_sid=_text(record.flow_sid) or flow_sid,
        account_sid=account if is_sid(account, ACCOUNT_SID) else "",
        # An unknown or missing status is kept as given: only "ended" ends an execution.
        status=_text(record.status) or "unknown",
        date_created=created,
        date_updated=_when(record.date_updated),
        contact_channel_address=_text(record.contact_channel_address),
        flow_version=record.flow_version if isinstance(record.flow_version, int) else None,
    )


def step_from_api(record: ApiStep, flow_sid: str, execution_sid: str, keep_context: bool) -> Step:
    sid = _required(_text(record.sid), "sid")
    if not is_sid(sid, STEP_SID):
        raise MalformedError(f"step sid {sid[:40]!r} is not a Step SID")
    created = _when(record.date_created)
    if created is None:
        raise MalformedError(f"step {sid} without date_created")
    parent = _text(record.parent_step_sid)
    context = None
    if keep_context and record.context is not None and not isinstance(record.context, Unset):
        context = record.context.to_dict()
    return Step(
        sid=sid,
        flow_sid=_text(record.flow_sid) or flow_sid,
        execution_sid=_text(record.execution_sid) or execution_sid,
        event=_text(record.name) or "unknown",
        transitioned_from=_required(
            _text(record.transitioned_from), f"step {sid} transitioned_from"
        ),
        transitioned_to=_required(_text(record.transitioned_to), f"step {sid} transitioned_to"),
        widget_type=_text(record.type_) or "unknown",
        date_created=created,
        parent_step_sid=parent if parent is not None and is_sid(parent, STEP_SID) else None,
        account_sid=_text(record.account_sid) or "",
        context=context,
    )
