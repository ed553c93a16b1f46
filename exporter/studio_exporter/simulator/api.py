"""Studio's read API over the simulated account: routing, auth, errors, paging and faults.

Transport-free: ``StudioApi.handle`` takes a parsed request and returns a ``Response``; the
HTTP server (``server.py``) only moves bytes. Faults are applied here, in this order: auth,
concurrency limit, latency, 429, 5xx, reset, then the body mutations of a 200.

Besides the reads, Studio's two deletions are served so that a test can delete what the
exporter follows, with Twilio's own SDK: ``DELETE /v2/Flows/{Sid}`` (DeleteFlow) and
``DELETE /v2/Flows/{FlowSid}/Executions/{Sid}`` (DeleteExecution) answer 204 with no body,
and 404 afterwards, as does every read of what they deleted. Faults do not apply to them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import random
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .clock import parse_iso
from .faults import FaultDice, Faults
from .paging import PagingError, page_meta, parse_page_request, select_page
from .resources import Renderer, error_body
from .traffic import Traffic, served_steps

_FLOW = r"(?P<flow>[^/]+)"
_EXECUTION = r"(?P<execution>[^/]+)"
_STEP = r"(?P<step>[^/]+)"
_EXECUTIONS = rf"/v2/Flows/{_FLOW}/Executions"
ROUTES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(f"^{pattern}$"), operation)
    for pattern, operation in (
        ("/v2/Flows", "ListFlow"),
        (f"/v2/Flows/{_FLOW}", "FetchFlow"),
        (_EXECUTIONS, "ListExecution"),
        (f"{_EXECUTIONS}/{_EXECUTION}", "FetchExecution"),
        (f"{_EXECUTIONS}/{_EXECUTION}/Context", "FetchExecutionContext"),
        (f"{_EXECUTIONS}/{_EXECUTION}/Steps", "ListExecutionStep"),
        (f"{_EXECUTIONS}/{_EXECUTION}/Steps/{_STEP}", "FetchExecutionStep"),
        (f"{_EXECUTIONS}/{_EXECUTION}/Steps/{_STEP}/Context", "FetchExecutionStepContext"),
        ("/_simulator/truth", "SimulatorTruth"),
    )
)
SID_PATTERNS = {
    "flow": re.compile(r"^FW[0-9a-fA-F]{32}$"),
    "execution": re.compile(r"^FN[0-9a-fA-F]{32}$"),
    "step": re.compile(r"^FT[0-9a-fA-F]{32}$"),
}
_JSON = "application/json; charset=utf-8"
#: The read operation whose path a DELETE shares, and the operation the DELETE is.
_DELETIONS = {"FetchFlow": "DeleteFlow", "FetchExecution": "DeleteExecution"}


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    reset: bool = False  # close the connection without answering


def _json(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, (("Content-Type", _JSON), *headers))


def _error(
    status: int, code: int, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    return _json(status, error_body(status, code, message), headers)


class _ApiError(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _not_found(path: str) -> _ApiError:
    return _ApiError(_error(404, 20404, f"The requested resource {path} was not found"))


def _bad_request(code: int, message: str) -> _ApiError:
    return _ApiError(_error(400, code, message))


class StudioApi:
    """Answers Studio's read operations for one simulated account."""

    def __init__(
        self,
        traffic: Traffic,
        renderer: Renderer,
        clock: Callable[[], float],
        credentials: dict[str, str],
        faults: Faults,
        truth: Callable[[], dict[str, Any]],
    ) -> None:
        self.traffic = traffic
        self.renderer = renderer
        self.clock = clock
        self.faults = faults
        self.dice = FaultDice(traffic.config.seed)
        self._credentials = credentials
        self._truth = truth
        self._lock = threading.Lock()
        self._in_flight = 0
        self.by_operation: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()

    def request_counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                "by_operation": dict(sorted(self.by_operation.items())),
                "by_status": dict(sorted(self.by_status.items())),
            }

    def add_credentials(self, user: str, password: str) -> None:
        """Accept another credential pair for this account (an API key and its secret)."""
        self._credentials[user] = password

    def set_truth(self, truth: Callable[[], dict[str, Any]]) -> None:
        """What ``GET /_simulator/truth`` answers (set once the account exists)."""
        self._truth = truth

    def count(self, operation: str, status: str) -> None:
        """Count a request served for this account outside this API (the v2010 accounts)."""
        self._record(operation, status)

    def _record(self, operation: str, status: str) -> None:
        with self._lock:
            self.by_operation[operation] += 1
            self.by_status[status] += 1

    def _authorized(self, header: str | None) -> bool:
        if header is None or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = self._credentials.get(user)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    async def handle(self, method: str, target: str, headers: dict[str, str]) -> Response:
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        if not self._authorized(headers.get("authorization")):
            # Unauthenticated requests are not counted: they never reached the account.
            return _error(
                401, 20003, "Authenticate", (("WWW-Authenticate", 'Basic realm="Twilio API"'),)
            )
        operation, params = "Unknown", {}
        for pattern, name in ROUTES:
            match = pattern.match(path)
            if match:
                operation, params = name, match.groupdict()
                break
        if operation == "SimulatorTruth":
            return _json(200, self._truth())
        if operation == "Unknown":
            response = _error(404, 20404, f"The requested resource {path} was not found")
            self._record(operation, "404")
            return response
        if method == "DELETE" and operation in _DELETIONS:
            response = self._delete(operation, params, path)
            self._record(_DELETIONS[operation], str(response.status))
            return response
        if method != "GET":
            response = _error(405, 20004, "Method not allowed")
            self._record(operation, "405")
            return response
        with self._lock:
            self._in_flight += 1
            in_flight = self._in_flight
        try:
            response = await self._with_faults(operation, params, parts, target, in_flight, headers)
        finally:
            with self._lock:
                self._in_flight -= 1
        self._record(operation, "reset" if response.reset else str(response.status))
        return response

    async def _with_faults(
        self,
        operation: str,
        params: dict[str, str],
        parts: Any,
        target: str,
        in_flight: int,
        headers: dict[str, str],
    ) -> Response:
        faults = self.faults
        dice = self.dice
        key = f"GET {target}"
        attempt = dice.attempt(key)
        concurrency = (("Twilio-Concurrent-Requests", str(in_flight)),)
        if faults.max_concurrency and in_flight > faults.max_concurrency:
            dice.count("concurrency_429")
            return _too_many(faults, concurrency)
        if faults.latency_ms > 0:
            dice.count("latency")
            await asyncio.sleep(faults.latency_ms / 1000.0)
        if dice.hits("fail_429", faults.fail_429, key, attempt):
            dice.count("fail_429")
            return _too_many(faults, concurrency)
        if dice.hits("fail_5xx", faults.fail_5xx, key, attempt):
            status = 503 if dice.roll("5xx_kind", key, attempt) < 0.5 else 500
            dice.count(f"fail_{status}")
            message = "Service Unavailable" if status == 503 else "Internal Server Error"
            return _error(status, 20500 if status == 500 else 20503, message, concurrency)
        if dice.hits("reset", faults.reset, key, attempt):
            dice.count("reset")
            return Response(0, reset=True)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        base = "http://" + headers.get("host", "127.0.0.1")
        try:
            payload = self._dispatch(operation, params, query, base, parts.path)
        except _ApiError as error:
            return error.response
        self._mutate(operation, payload, key, attempt)
        response = _json(200, payload, concurrency)
        if dice.hits("malformed_json", faults.malformed_json, key, attempt):
            dice.count("malformed_json")
            response.body = response.body.replace(b'":', b'"=', 1)
        elif dice.hits("truncated_json", faults.truncated_json, key, attempt):
            dice.count("truncated_json")
            response.body = response.body[: len(response.body) // 2]
        return response

    def _delete(self, operation: str, params: dict[str, str], path: str) -> Response:
        """DeleteFlow or DeleteExecution: 204 once, then 404 like any unknown resource."""
        for name, value in params.items():
            if not SID_PATTERNS[name].match(value):
                return _error(400, 20001, f"Invalid {name} SID: {value!r}")
        now = self.clock()
        traffic = self.traffic
        traffic.advance(now)
        flow = traffic.live_flow(params["flow"])
        if flow is None:
            return _not_found(path).response
        if operation == "FetchFlow":
            traffic.delete_flow(flow)
            return Response(204)
        record = traffic.find(flow, params["execution"], now)
        if record is None:
            return _not_found(path).response
        traffic.delete_execution(record)
        return Response(204)

    def _mutate(self, operation: str, payload: dict[str, Any], key: str, attempt: int) -> None:
        dice = self.dice
        records: list[dict[str, Any]]
        if operation in {"ListExecution", "ListExecutionStep"}:
            records = payload["executions" if operation == "ListExecution" else "steps"]
        elif operation in {"FetchExecution", "FetchExecutionStep"}:
            records = [payload]
        else:
            return
        if operation == "ListExecutionStep" and dice.hits(
            "out_of_order", self.faults.out_of_order, key, attempt
        ):
            dice.count("out_of_order")
            random.Random(dice.roll("shuffle", key, attempt)).shuffle(records)
        if not records or not dice.hits("unexpected", self.faults.unexpected_values, key, attempt):
            return
        dice.count("unexpected_values")
        pick = dice.roll("unexpected_pick", key, attempt)
        record = records[int(pick * len(records))]
        variant = int(dice.roll("unexpected_kind", key, attempt) * 2)
        if "status" in record:  # an execution
            if variant == 0:
                record["status"] = "paused"  # a status value Twilio might add one day
            else:
                record["date_updated"] = None
                record["contact_channel_address"] = None
        elif variant == 0:
            record["type"] = "ai-assistant"  # a widget type the exporter has never seen
        else:
            record["type"] = None

    def _dispatch(
        self, operation: str, params: dict[str, str], query: dict[str, str], base: str, path: str
    ) -> dict[str, Any]:
        for name, value in params.items():
            if not SID_PATTERNS[name].match(value):
                raise _bad_request(20001, f"Invalid {name} SID: {value!r}")
        now = self.clock()
        traffic = self.traffic
        traffic.advance(now)
        try:
            request = parse_page_request(query) if operation.startswith("List") else None
        except PagingError as error:
            raise _bad_request(error.code, str(error)) from error
        renderer = self.renderer
        if operation == "ListFlow":
            assert request is not None
            page = select_page(traffic.live_flows(), request)
            return {
                "meta": page_meta(base, path, [], request, page, "flows"),
                "flows": [renderer.flow(base, index, False) for index in page.keys],
            }
        flow = traffic.live_flow(params["flow"])
        if flow is None:
            raise _not_found(path)
        if operation == "FetchFlow":
            return renderer.flow(base, flow, True)
        if operation == "ListExecution":
            assert request is not None
            return self._list_executions(flow, query, request, base, path, now)
        record = traffic.find(flow, params["execution"], now)
        if record is None:
            raise _not_found(path)
        if operation == "FetchExecution":
            return renderer.execution(base, record, now)
        if operation == "FetchExecutionContext":
            return renderer.execution_context(base, record, now)
        served = served_steps(
            traffic.config.seed,
            record,
            now,
            self.faults.missing_steps,
            self.faults.missing_end_steps,
        )
        if operation == "ListExecutionStep":
            assert request is not None
            page = select_page(served, request)
            return {
                "meta": page_meta(base, path, [], request, page, "steps"),
                "steps": [renderer.step(base, record, index) for index in page.keys],
            }
        index = renderer.find_step(record, params["step"])
        if index is None or index not in served:
            raise _not_found(path)
        if operation == "FetchExecutionStep":
            return renderer.step(base, record, index)
        return renderer.step_context(base, record, index)

    def _list_executions(
        self, flow: int, query: dict[str, str], request: Any, base: str, path: str, now: float
    ) -> dict[str, Any]:
        filters: list[tuple[str, str]] = []
        bounds: list[float | None] = []
        for name in ("DateCreatedFrom", "DateCreatedTo"):
            text = query.get(name)
            if text is None:
                bounds.append(None)
                continue
            try:
                bounds.append(parse_iso(text))
            except ValueError as error:
                raise _bad_request(20001, f"Invalid {name}: {text!r}") from error
            filters.append((name, text))
        status = query.get("Status", query.get("status"))
        if status is not None and status not in {"active", "ended"}:
            raise _bad_request(20001, f"Invalid status: {status!r}")
        records = self.traffic.by_flow[flow]
        lo, hi = self.traffic.window(flow, now, bounds[0], bounds[1])
        deleted = self.traffic.deleted_executions
        want_ended: bool | None = None
        if status is not None:
            filters.append(("status", status))
            want_ended = status == "ended"

        def kept(position: int) -> bool:
            record = records[position]
            if record.sid in deleted:
                return False
            return want_ended is None or (record.ended_at <= now) == want_ended

        keep = kept if deleted or want_ended is not None else None

        page = select_page(range(lo, hi), request, keep)
        return {
            "meta": page_meta(base, path, filters, request, page, "executions"),
            "executions": [self.renderer.execution(base, records[p], now) for p in page.keys],
        }


def _too_many(faults: Faults, headers: tuple[tuple[str, str], ...]) -> Response:
    return _error(
        429,
        20429,
        "Too Many Requests",
        (("Retry-After", str(faults.retry_after_seconds)), *headers),
    )
