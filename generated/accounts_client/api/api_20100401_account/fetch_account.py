from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.account import Account
from ...models.twilio_error import TwilioError
from ...types import Response


def _get_kwargs(
    sid: str,
) -> dict[str, Any]:

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/2010-04-01/Accounts/{sid}.json".format(
            sid=quote(str(sid), safe=""),
        ),
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Account | TwilioError | None:
    if response.status_code == 200:
        response_200 = Account.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = TwilioError.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = TwilioError.from_dict(response.json())

        return response_401

    if response.status_code == 404:
        response_404 = TwilioError.from_dict(response.json())

        return response_404

    if response.status_code == 429:
        response_429 = TwilioError.from_dict(response.json())

        return response_429

    if 500 <= response.status_code <= 599:
        response_5xx = TwilioError.from_dict(response.json())

        return response_5xx

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[Account | TwilioError]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    sid: str,
    *,
    client: AuthenticatedClient,
) -> Response[Account | TwilioError]:
    """Fetch the account specified by the provided Account Sid

     A main account's credentials fetch the main account or any of its subaccounts; a subaccount's
    credentials fetch that subaccount only (another SID answers 404).

    Args:
        sid (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Account | TwilioError]
    """

    kwargs = _get_kwargs(
        sid=sid,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    sid: str,
    *,
    client: AuthenticatedClient,
) -> Account | TwilioError | None:
    """Fetch the account specified by the provided Account Sid

     A main account's credentials fetch the main account or any of its subaccounts; a subaccount's
    credentials fetch that subaccount only (another SID answers 404).

    Args:
        sid (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Account | TwilioError
    """

    return sync_detailed(
        sid=sid,
        client=client,
    ).parsed


async def asyncio_detailed(
    sid: str,
    *,
    client: AuthenticatedClient,
) -> Response[Account | TwilioError]:
    """Fetch the account specified by the provided Account Sid

     A main account's credentials fetch the main account or any of its subaccounts; a subaccount's
    credentials fetch that subaccount only (another SID answers 404).

    Args:
        sid (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Account | TwilioError]
    """

    kwargs = _get_kwargs(
        sid=sid,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    sid: str,
    *,
    client: AuthenticatedClient,
) -> Account | TwilioError | None:
    """Fetch the account specified by the provided Account Sid

     A main account's credentials fetch the main account or any of its subaccounts; a subaccount's
    credentials fetch that subaccount only (another SID answers 404).

    Args:
        sid (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Account | TwilioError
    """

    return (
        await asyncio_detailed(
            sid=sid,
            client=client,
        )
    ).parsed
