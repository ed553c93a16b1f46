"""Twilio-style paging: PageSize, Page, an opaque PageToken, and absolute page URLs.

Pages are keyset-based: a token names the key of the record a page stopped at, so records
created while a client pages do not shift the pages it has not read yet.
"""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class PagingError(ValueError):
    """A paging parameter Twilio would refuse: carries the Twilio error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class PageRequest:
    size: int
    page: int
    token: str | None
    older_than: int | None  # key a "next" token stopped at
    newer_than: int | None  # key a "previous" token stopped at


def encode_token(direction: str, key: int) -> str:
    raw = f"{direction}:{key}".encode()
    return "P" + direction + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[str, int]:
    if len(token) < 3 or token[0] != "P" or token[1] not in "TB":
        raise PagingError(20001, f"Invalid PageToken: {token!r}")
    body = token[2:]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        direction, key = raw.split(":", 1)
        value = int(key)
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise PagingError(20001, f"Invalid PageToken: {token!r}") from error
    if direction != token[1] or value < 0:
        raise PagingError(20001, f"Invalid PageToken: {token!r}")
    return direction, value


def parse_page_request(query: dict[str, str]) -> PageRequest:
    """Validate PageSize (1..1000, default 50), Page and PageToken.

    A PageSize over 1000 is refused with Twilio's error 20007 ("Page size too large").
    """
    size_text = query.get("PageSize")
    size = DEFAULT_PAGE_SIZE
    if size_text is not None:
        try:
            size = int(size_text)
        except ValueError as error:
            raise PagingError(20001, f"Invalid PageSize: {size_text!r}") from error
        if size < 1:
            raise PagingError(20001, f"Invalid PageSize: {size_text!r}")
        if size > MAX_PAGE_SIZE:
            raise PagingError(20007, "Page size too large. The maximum page size is 1000.")
    page_text = query.get("Page", "0")
    try:
        page = int(page_text)
    except ValueError as error:
        raise PagingError(20001, f"Invalid Page: {page_text!r}") from error
    if page < 0:
        raise PagingError(20001, f"Invalid Page: {page_text!r}")
    token = query.get("PageToken")
    older = newer = None
    if token is not None:
        direction, key = _decode_token(token)
        if direction == "T":
            older = key
        else:
            newer = key
    return PageRequest(size, page, token, older, newer)


@dataclass(frozen=True, slots=True)
class Page:
    keys: list[int]  # newest first
    next_token: str | None
    previous_token: str | None


def select_page(
    keys: Sequence[int], request: PageRequest, keep: Callable[[int], bool] | None = None
) -> Page:
    """One page of ``keys`` (ascending = oldest first), served newest first."""
    size = request.size
    collected: list[int] = []
    if request.newer_than is not None:
        index = bisect.bisect_right(keys, request.newer_than)
        while index < len(keys) and len(collected) <= size:
            key = keys[index]
            if keep is None or keep(key):
                collected.append(key)
            index += 1
        more_newer = len(collected) > size
        chosen = list(reversed(collected[:size]))
        return Page(
            chosen,
            encode_token("T", chosen[-1]) if chosen else None,
            encode_token("B", chosen[0]) if chosen and more_newer and request.page > 0 else None,
        )
    if request.older_than is not None:
        index = bisect.bisect_left(keys, request.older_than) - 1
        skip = 0
    else:
        index = len(keys) - 1
        skip = request.page * size  # Page without a token: plain offset paging
    while index >= 0 and len(collected) <= size:
        key = keys[index]
        if keep is None or keep(key):
            if skip:
                skip -= 1
            else:
                collected.append(key)
        index -= 1
    chosen = collected[:size]
    return Page(
        chosen,
        encode_token("T", chosen[-1]) if len(collected) > size else None,
        encode_token("B", chosen[0]) if chosen and request.page > 0 else None,
    )


def page_meta(
    base: str, path: str, filters: list[tuple[str, str]], request: PageRequest, page: Page, key: str
) -> dict[str, object]:
    """Twilio's ``meta`` object; every URL is absolute, built from the request's host."""

    def url(number: int, token: str | None) -> str:
        params = [*filters, ("PageSize", str(request.size)), ("Page", str(number))]
        if token is not None:
            params.append(("PageToken", token))
        return f"{base}{path}?{urlencode(params)}"

    return {
        "page": request.page,
        "page_size": request.size,
        "first_page_url": url(0, None),
        "previous_page_url": None
        if page.previous_token is None
        else url(request.page - 1, page.previous_token),
        "url": url(request.page, request.token),
        "next_page_url": None
        if page.next_token is None
        else url(request.page + 1, page.next_token),
        "key": key,
    }
