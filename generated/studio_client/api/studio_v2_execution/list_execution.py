import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.list_execution_response import ListExecutionResponse
from ...models.studio_error import StudioError
from ...types import UNSET, Response, Unset


def _get_kwargs(
    flow_sid: str,
    *,
    status: str | Unset = UNSET,
    date_created_from: datetime.datetime | Unset = UNSET,
    date_created_to: datetime.datetime | Unset = UNSET,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["status"] = status

    json_date_created_from: str | Unset = UNSET
    if not isinstance(date_created_from, Unset):
        json_date_created_from = date_created_from.isoformat()
    params["DateCreatedFrom"] = json_date_created_from

    json_date_created_to: str | Unset = UNSET
    if not isinstance(date_created_to, Unset):
        json_date_created_to = date_created_to.isoformat()
    params["DateCreatedTo"] = json_date_created_to

    params["PageSize"] = page_size

    params["Page"] = page

    params["PageToken"] = page_token

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v2/Flows/{flow_sid}/Executions".format(
            flow_sid=quote(str(flow_sid), safe=""),
        ),
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ListExecutionResponse | StudioError | None:
    if response.status_code == 200:
        response_200 = ListExecutionResponse.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = StudioError.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = StudioError.from_dict(response.json())

        return response_401

    if response.status_code == 404:
        response_404 = StudioError.from_dict(response.json())

        return response_404

    if response.status_code == 429:
        response_429 = StudioError.from_dict(response.json())

        return response_429

    if 500 <= response.status_code <= 599:
        response_5xx = StudioError.from_dict(response.json())

        return response_5xx

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[ListExecutionResponse | StudioError]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    flow_sid: str,
    *,
    client: AuthenticatedClient,
    status: str | Unset = UNSET,
    date_created_from: datetime.datetime | Unset = UNSET,
    date_created_to: datetime.datetime | Unset = UNSET,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> Response[ListExecutionResponse | StudioError]:
    """Retrieve a list of all Executions for the Flow.

     Executions are listed newest first.

    Args:
        flow_sid (str):
        status (str | Unset):
        date_created_from (datetime.datetime | Unset):
        date_created_to (datetime.datetime | Unset):
        page_size (int | Unset):
        page (int | Unset):
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ListExecutionResponse | StudioError]
    """

    kwargs = _get_kwargs(
        flow_sid=flow_sid,
        status=status,
        date_created_from=date_created_from,
        date_created_to=date_created_to,
        page_size=page_size,
        page=page,
        page_token=page_token,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    flow_sid: str,
    *,
    client: AuthenticatedClient,
    status: str | Unset = UNSET,
    date_created_from: datetime.datetime | Unset = UNSET,
    date_created_to: datetime.datetime | Unset = UNSET,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> ListExecutionResponse | StudioError | None:
    """Retrieve a list of all Executions for the Flow.

     Executions are listed newest first.

    Args:
        flow_sid (str):
        status (str | Unset):
        date_created_from (datetime.datetime | Unset):
        date_created_to (datetime.datetime | Unset):
        page_size (int | Unset):
        page (int | Unset):
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ListExecutionResponse | StudioError
    """

    return sync_detailed(
        flow_sid=flow_sid,
        client=client,
        status=status,
        date_created_from=date_created_from,
        date_created_to=date_created_to,
        page_size=page_size,
        page=page,
        page_token=page_token,
    ).parsed


async def asyncio_detailed(
    flow_sid: str,
    *,
    client: AuthenticatedClient,
    status: str | Unset = UNSET,
    date_created_from: datetime.datetime | Unset = UNSET,
    date_created_to: datetime.datetime | Unset = UNSET,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> Response[ListExecutionResponse | StudioError]:
    """Retrieve a list of all Executions for the Flow.

     Executions are listed newest first.

    Args:
        flow_sid (str):
        status (str | Unset):
        date_created_from (datetime.datetime | Unset):
        date_created_to (datetime.datetime | Unset):
        page_size (int | Unset):
        page (int | Unset):
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ListExecutionResponse | StudioError]
    """

    kwargs = _get_kwargs(
        flow_sid=flow_sid,
        status=status,
        date_created_from=date_created_from,
        date_created_to=date_created_to,
        page_size=page_size,
        page=page,
        page_token=page_token,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    flow_sid: str,
    *,
    client: AuthenticatedClient,
    status: str | Unset = UNSET,
    date_created_from: datetime.datetime | Unset = UNSET,
    date_created_to: datetime.datetime | Unset = UNSET,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> ListExecutionResponse | StudioError | None:
    """Retrieve a list of all Executions for the Flow.

     Executions are listed newest first.

    Args:
        flow_sid (str):
        status (str | Unset):
        date_created_from (datetime.datetime | Unset):
        date_created_to (datetime.datetime | Unset):
        page_size (int | Unset):
        page (int | Unset):
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ListExecutionResponse | StudioError
    """

    return (
        await asyncio_detailed(
            flow_sid=flow_sid,
            client=client,
            status=status,
            date_created_from=date_created_from,
            date_created_to=date_created_to,
            page_size=page_size,
            page=page,
            page_token=page_token,
        )
    ).parsed
