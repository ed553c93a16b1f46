from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.list_account_response import ListAccountResponse
from ...models.twilio_error import TwilioError
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    friendly_name: str | Unset = UNSET,
    status: str | Unset = UNSET,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["FriendlyName"] = friendly_name

    params["Status"] = status

    params["PageSize"] = page_size

    params["Page"] = page

    params["PageToken"] = page_token

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/2010-04-01/Accounts.json",
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ListAccountResponse | TwilioError | None:
    if response.status_code == 200:
        response_200 = ListAccountResponse.from_dict(response.json())

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
) -> Response[ListAccountResponse | TwilioError]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    friendly_name: str | Unset = UNSET,
    status: str | Unset = UNSET,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> Response[ListAccountResponse | TwilioError]:
    """Retrieves a collection of Accounts belonging to the account used to make the request

     With a main account's credentials: the main account and its subaccounts. With a subaccount's
    credentials: that subaccount only.

    Args:
        friendly_name (str | Unset):
        status (str | Unset):
        page_size (int | Unset):
        page (int | Unset):
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ListAccountResponse | TwilioError]
    """

    kwargs = _get_kwargs(
        friendly_name=friendly_name,
        status=status,
        page_size=page_size,
        page=page,
        page_token=page_token,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    friendly_name: str | Unset = UNSET,
    status: str | Unset = UNSET,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> ListAccountResponse | TwilioError | None:
    """Retrieves a collection of Accounts belonging to the account used to make the request

     With a main account's credentials: the main account and its subaccounts. With a subaccount's
    credentials: that subaccount only.

    Args:
        friendly_name (str | Unset):
        status (str | Unset):
        page_size (int | Unset):
        page (int | Unset):
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ListAccountResponse | TwilioError
    """

    return sync_detailed(
        client=client,
        friendly_name=friendly_name,
        status=status,
        page_size=page_size,
        page=page,
        page_token=page_token,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    friendly_name: str | Unset = UNSET,
    status: str | Unset = UNSET,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> Response[ListAccountResponse | TwilioError]:
    """Retrieves a collection of Accounts belonging to the account used to make the request

     With a main account's credentials: the main account and its subaccounts. With a subaccount's
    credentials: that subaccount only.

    Args:
        friendly_name (str | Unset):
        status (str | Unset):
        page_size (int | Unset):
        page (int | Unset):
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ListAccountResponse | TwilioError]
    """

    kwargs = _get_kwargs(
        friendly_name=friendly_name,
        status=status,
        page_size=page_size,
        page=page,
        page_token=page_token,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    friendly_name: str | Unset = UNSET,
    status: str | Unset = UNSET,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> ListAccountResponse | TwilioError | None:
    """Retrieves a collection of Accounts belonging to the account used to make the request

     With a main account's credentials: the main account and its subaccounts. With a subaccount's
    credentials: that subaccount only.

    Args:
        friendly_name (str | Unset):
        status (str | Unset):
        page_size (int | Unset):
        page (int | Unset):
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ListAccountResponse | TwilioError
    """

    return (
        await asyncio_detailed(
            client=client,
            friendly_name=friendly_name,
            status=status,
            page_size=page_size,
            page=page,
            page_token=page_token,
        )
    ).parsed
