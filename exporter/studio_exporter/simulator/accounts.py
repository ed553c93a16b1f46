"""A main account and its subaccounts: each its own credentials, flows and traffic; the v2010 API.

Twilio's rules, as its subaccount documentation states them: the main account's credentials
list (``GET /2010-04-01/Accounts.json``) and fetch (``/2010-04-01/Accounts/{Sid}.json``) the main
account and every subaccount; a subaccount's credentials see only that subaccount; Studio
answers each account's own credentials with that account's flows only (the main account's
credentials do not reach a subaccount's Studio). Where the documentation is silent, the
simulator's reading is stated here: a suspended or closed account's own credentials are refused
with 401 and Twilio's error 20005 ("Account not active"); an account the caller may not see is
a 404; the list is served newest first, keyset-paged like Studio's lists, with v2010's relative
``next_page_uri``. Requests to the v2010 API are counted with the caller's account and get no
injected faults.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from .api import Response, StudioApi
from .flows import FlowSpec, build_flows
from .paging import PagingError, parse_page_request, select_page
from .resources import Renderer, error_body
from .traffic import Traffic, mix64

#: The statuses Twilio documents for an account.
ACCOUNT_STATUSES = ("active", "suspended", "closed")
_V2010 = "/2010-04-01"
_LIST = f"{_V2010}/Accounts.json"
_FETCH_PREFIX = f"{_V2010}/Accounts/"
_JSON = "application/json; charset=utf-8"
_SUBRESOURCES = ("calls", "messages", "incoming_phone_numbers", "usage")
_SALT_SUB_SEED = 0x5AB5EED


def _digest(*parts: object) -> str:
    text = "|".join(str(part) for part in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def subaccount_sid(main_sid: str, number: int) -> str:
    """The SID of subaccount ``number`` (1, 2, ...) of ``main_sid``: stable across runs."""
    return "AC" + _digest(main_sid, "subaccount", number)


def subaccount_token(main_sid: str, number: int, seed: int) -> str:
    """A subaccount's auth token: 32 hex digits, like Twilio's, different for every account."""
    return _digest(main_sid, "auth-token", number, seed)


def subaccount_seed(seed: int, number: int) -> int:
    """The traffic seed of subaccount ``number``; the main account (0) keeps ``seed``."""
    return seed if number == 0 else mix64(seed, number, _SALT_SUB_SEED) & 0x7FFF_FFFF


def account_flows(seed: int, number: int) -> tuple[FlowSpec, ...]:
    """The default flows, varied per account: the main account (0) has them all.

    A subaccount keeps each flow that starts executions with probability 3/4 (at least one),
    the subflow only with the flow that runs it, and each share is scaled by 0.5..1.5, so
    accounts differ in which flows they have and how busy each is.
    """
    flows = build_flows()
    if number == 0:
        return flows
    runs = {w.subflow for f in flows for w in f.widgets if w.subflow is not None}
    starters = [f for f in flows if f.share > 0]
    kept = [f for i, f in enumerate(starters) if mix64(seed, number, i, 1) % 4 != 0]
    if not kept:
        kept = [starters[mix64(seed, number, 2) % len(starters)]]
    needed = {w.subflow for f in kept for w in f.widgets if w.subflow is not None}
    chosen: list[FlowSpec] = []
    for index, flow in enumerate(flows):
        if flow in kept:
            scale = 0.5 + (mix64(seed, number, index, 3) % 1000) / 1000
            chosen.append(replace(flow, share=flow.share * scale))
        elif flow.key in runs and flow.key in needed:
            chosen.append(flow)
    return tuple(chosen)


def rfc2822(epoch: float) -> str:
    """v2010's timestamp format: ``Thu, 30 Jul 2015 20:00:00 +0000``."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


@dataclass(eq=False)
class SimAccount:
    """One simulated account: its identity, status, and its own Studio (traffic and API)."""

    sid: str
    auth_token: str
    friendly_name: str
    owner_sid: str
    created: float
    traffic: Traffic
    renderer: Renderer
    api: StudioApi
    status: str = "active"
    updated: float = 0.0
    api_key_sid: str | None = None
    api_key_secret: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __repr__(self) -> str:  # never the token
        return f"SimAccount(sid={self.sid!r}, status={self.status!r})"

    def resource(self) -> dict[str, Any]:
        """The account as v2010 renders it (the auth token included, as Twilio does)."""
        uri = f"{_V2010}/Accounts/{self.sid}.json"
        return {
            "auth_token": self.auth_token,
            "date_created": rfc2822(self.created),
            "date_updated": rfc2822(max(self.created, self.updated)),
            "friendly_name": self.friendly_name,
            "owner_account_sid": self.owner_sid,
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                name: f"{_V2010}/Accounts/{self.sid}/{name.title().replace('_', '')}.json"
                for name in _SUBRESOURCES
            },
            "type": "Full",
            "uri": uri,
        }


def _json(status: int, payload: Any) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, (("Content-Type", _JSON),))


def _error(status: int, code: int, message: str) -> Response:
    headers: tuple[tuple[str, str], ...] = ()
    if status == 401:
        headers = (("WWW-Authenticate", 'Basic realm="Twilio API"'),)
    response = _json(status, error_body(status, code, message))
    response.headers = (*response.headers, *headers)
    return response


class AccountsApi:
    """The simulator's HTTP entry point: finds the caller's account, then serves v2010 itself
    or hands the request to that account's Studio API."""

    def __init__(self, main: SimAccount, clock: Callable[[], float]) -> None:
        self.main = main
        self.clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, SimAccount] = {main.sid: main}
        self._keys: dict[str, str] = {}
        if main.api_key_sid is not None:
            self._keys[main.api_key_sid] = main.sid

    def add(self, account: SimAccount) -> None:
        with self._lock:
            self._accounts[account.sid] = account

    def accounts(self) -> list[SimAccount]:
        """Every account, the main one first, then subaccounts in creation order."""
        with self._lock:
            return list(self._accounts.values())

    def get(self, sid: str) -> SimAccount | None:
        with self._lock:
            return self._accounts.get(sid)

    def _caller(self, header: str | None) -> SimAccount | None:
        """The account whose credentials these are; None when unknown or wrong (both 401)."""
        if header is None or not header.startswith("Basic "):
            return None
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        with self._lock:
            account = self._accounts.get(user)
            if account is None and user in self._keys:
                account = self._accounts[self._keys[user]]
                expected = account.api_key_secret or ""
            else:
                expected = account.auth_token if account is not None else ""
        if account is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return account

    async def handle(self, method: str, target: str, headers: dict[str, str]) -> Response:
        caller = self._caller(headers.get("authorization"))
        if caller is None:
            return _error(401, 20003, "Authenticate")
        if caller.status != "active":
            return _error(401, 20005, "Account not active")
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        if path.startswith(f"{_V2010}/"):
            response = self._v2010(caller, method, path, parts.query)
            caller.api.count(_operation(path), str(response.status))
            return response
        if path == "/_simulator/truth":
            query = dict(parse_qsl(parts.query))
            wanted = query.get("AccountSid")
            if wanted is not None and caller is self.main and wanted != caller.sid:
                other = self.get(wanted)
                if other is None:
                    return _error(404, 20404, f"No account {wanted}")
                return await other.api.handle(method, "/_simulator/truth", _own(other, headers))
        # The caller's own credentials are also those its account's Studio API accepts.
        return await caller.api.handle(method, target, headers)

    def _visible(self, caller: SimAccount) -> list[SimAccount]:
        if caller is self.main:
            return self.accounts()
        return [caller]

    def _v2010(self, caller: SimAccount, method: str, path: str, query_text: str) -> Response:
        if method != "GET":
            return _error(405, 20004, "Method not allowed")
        if path == _LIST:
            return self._list(caller, dict(parse_qsl(query_text, keep_blank_values=True)))
        if path.startswith(_FETCH_PREFIX) and path.endswith(".json"):
            sid = path[len(_FETCH_PREFIX) : -len(".json")]
            if "/" not in sid:
                for account in self._visible(caller):
                    if account.sid == sid:
                        return _json(200, account.resource())
        return _error(404, 20404, f"The requested resource {path} was not found")

    def _list(self, caller: SimAccount, query: dict[str, str]) -> Response:
        status = query.get("Status")
        if status is not None and status not in ACCOUNT_STATUSES:
            return _error(400, 20001, f"Invalid Status: {status!r}")
        name = query.get("FriendlyName")
        try:
            request = parse_page_request(query)
        except PagingError as error:
            return _error(400, error.code, str(error))
        visible = self._visible(caller)
        keys = [
            index
            for index, account in enumerate(visible)
            if (status is None or account.status == status)
            and (name is None or account.friendly_name == name)
        ]
        page = select_page(keys, request)
        filters = [(k, v) for k, v in (("FriendlyName", name), ("Status", status)) if v]

        def uri(number: int, token: str | None) -> str:
            params = [*filters, ("PageSize", str(request.size)), ("Page", str(number))]
            if token is not None:
                params.append(("PageToken", token))
            return f"{_LIST}?{urlencode(params)}"

        start = request.page * request.size
        return _json(
            200,
            {
                "accounts": [visible[key].resource() for key in page.keys],
                "end": start + max(len(page.keys) - 1, 0),
                "first_page_uri": uri(0, None),
                "next_page_uri": None
                if page.next_token is None
                else uri(request.page + 1, page.next_token),
                "page": request.page,
                "page_size": request.size,
                "previous_page_uri": None
                if page.previous_token is None
                else uri(request.page - 1, page.previous_token),
                "start": start,
                "uri": uri(request.page, request.token),
            },
        )


def _operation(path: str) -> str:
    return "ListAccount" if path == _LIST else "FetchAccount"


def _own(account: SimAccount, headers: dict[str, str]) -> dict[str, str]:
    """The request's headers with the account's own credentials, for a main-account caller
    asking for a subaccount's truth (its own credentials were checked above)."""
    raw = f"{account.sid}:{account.auth_token}".encode()
    return {**headers, "authorization": "Basic " + base64.b64encode(raw).decode()}
