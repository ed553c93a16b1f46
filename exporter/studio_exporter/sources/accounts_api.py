"""Twilio's v2010 accounts API as the exporter sees it: the one module that imports accounts_client.

The main account's credentials list (``ListAccount``) and fetch (``FetchAccount``) the main
account and its subaccounts; each account arrives with its own auth token, which Studio needs
(the main account's credentials do not reach a subaccount's Studio). The token becomes a
``Secret`` here and is held in memory only. Requests go through ``StudioApi``'s machinery:
the same retries, adaptive limiter and request counting, under the operation names
``ListAccount`` and ``FetchAccount``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from accounts_client.api.api_20100401_account import fetch_account, list_account
from accounts_client.models.account import Account as ApiAccount
from accounts_client.models.list_account_response import ListAccountResponse
from studio_exporter.config import Secret
from studio_exporter.core.sids import ACCOUNT_SID, is_sid
from studio_exporter.sources.studio_api import (
    MAX_PAGE_SIZE,
    MAX_PAGES,
    ApiError,
    MalformedError,
    StudioApi,
)

#: Twilio's documented account statuses; only ``active`` accounts are followed.
ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class Account:
    """A Twilio account as the exporter needs it. ``auth_token`` prints as ``********``."""

    sid: str
    friendly_name: str
    status: str
    owner_account_sid: str | None
    auth_token: Secret | None

    @property
    def is_active(self) -> bool:
        return self.status == ACTIVE


class AccountsApi(StudioApi):
    """Async access to the v2010 Accounts list and fetch, returning :class:`Account`."""

    async def list_accounts(
        self, *, status: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> list[Account]:
        """Every account these credentials may see (main: itself and its subaccounts; a
        subaccount: itself), following ``next_page_uri`` until it is null."""
        params: dict[str, Any] = {"page_size": page_size}
        if status is not None:
            params["status"] = status
        accounts: list[Account] = []
        seen_tokens: set[str] = set()
        current = dict(params)
        for _ in range(MAX_PAGES):
            records, next_uri = await self._call(
                "ListAccount", list_account, ListAccountResponse, current, _page
            )
            accounts.extend(records)
            if not next_uri:
                return accounts
            query = parse_qs(urlsplit(next_uri).query)
            token = next(iter(query.get("PageToken", ())), None)
            if token is None or token in seen_tokens:
                raise ApiError(
                    "ListAccount", "malformed", "next_page_uri without a new PageToken; stopping"
                )
            seen_tokens.add(token)
            current = {**params, "page_token": token}
            page_number = next(iter(query.get("Page", ())), None)
            if page_number is not None and page_number.isdigit():
                current["page"] = int(page_number)
        raise ApiError("ListAccount", "malformed", f"more than {MAX_PAGES} pages; stopping")

    async def fetch_account(self, account_sid: str) -> Account:
        sid = self._sid(account_sid, ACCOUNT_SID, "FetchAccount")
        return await self._call(
            "FetchAccount", fetch_account, ApiAccount, {"sid": sid}, account_from_api
        )


def _page(page: ListAccountResponse) -> tuple[list[Account], str | None]:
    if not isinstance(page.accounts, list):
        raise MalformedError("the page has no list of accounts")
    next_uri = page.next_page_uri if isinstance(page.next_page_uri, str) else None
    return [account_from_api(record) for record in page.accounts], next_uri


def account_from_api(record: ApiAccount) -> Account:
    sid = record.sid if isinstance(record.sid, str) else None
    if sid is None or not is_sid(sid, ACCOUNT_SID):
        raise MalformedError("an account without a valid sid")
    owner = record.owner_account_sid if isinstance(record.owner_account_sid, str) else None
    token = record.auth_token if isinstance(record.auth_token, str) and record.auth_token else None
    name = record.friendly_name if isinstance(record.friendly_name, str) else sid
    status = record.status if isinstance(record.status, str) else "unknown"
    return Account(
        sid=sid,
        friendly_name=name,
        status=status,
        owner_account_sid=owner if owner is not None and is_sid(owner, ACCOUNT_SID) else None,
        auth_token=None if token is None else Secret(token),
    )
