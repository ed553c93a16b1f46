from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.list_execution_step_response import ListExecutionStepResponse
from ...models.studio_error import StudioError
from ...types import UNSET, Response, Unset


def _get_kwargs(
    flow_sid: str,
    execution_sid: str,
    *,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["PageSize"] = page_size

    params["Page"] = page

    params["PageToken"] = page_token

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v2/Flows/{flow_sid}/Executions/{execution_sid}/Steps".format(
            flow_sid=quote(str(flow_sid), safe=""),
            execution_sid=quote(str(execution_sid), safe=""),
        ),
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ListExecutionStepResponse | StudioError | None:
    if response.status_code == 200:
        response_200 = ListExecutionStepResponse.from_dict(response.json())

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
) -> Response[ListExecutionStepResponse | StudioError]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    flow_sid: str,
    execution_sid: str,
    *,
    client: AuthenticatedClient,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> Response[ListExecutionStepResponse | StudioError]:
    """Retrieve a list of all Steps for an Execution.

     Steps are listed in reverse chronological order (most recent first). An execution ends after 1,000
    steps, so one page of `PageSize=1000` always holds all of them.

    Args:
        flow_sid (str):
        execution_sid (str):
        page_size (int | Unset):
        page (int | Unset):
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ListExecutionStepResponse | StudioError]
    """

    kwargs = _get_kwargs(
        flow_sid=flow_sid,
        execution_sid=execution_sid,
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
    execution_sid: str,
    *,
    client: AuthenticatedClient,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> ListExecutionStepResponse | StudioError | None:
    """Retrieve a list of all Steps for an Execution.

     Steps are listed in reverse chronological order (most recent first). An execution ends after 1,000
    steps, so one page of `PageSize=1000` always holds all of them.

    Args:
        flow_sid (str):
        execution_sid (str):
        page_size (int | Unset):
        page (int | Unset):
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ListExecutionStepResponse | StudioError
    """

    return sync_detailed(
        flow_sid=flow_sid,
        execution_sid=execution_sid,
        client=client,
        page_size=page_size,
        page=page,
        page_token=page_token,
    ).parsed


async def asyncio_detailed(
    flow_sid: str,
    execution_sid: str,
    *,
    client: AuthenticatedClient,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> Response[ListExecutionStepResponse | StudioError]:
    """Retrieve a list of all Steps for an Execution.

     Steps are listed in reverse chronological order (most recent first). An execution ends after 1,000
    steps, so one page of `PageSize=1000` always holds all of them.

    Args:
        flow_sid (str):
        execution_sid (str):
        page_size (int | Unset):
        page (int | Unset):
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ListExecutionStepResponse | StudioError]
    """

    kwargs = _get_kwargs(
        flow_sid=flow_sid,
        execution_sid=execution_sid,
        page_size=page_size,
        page=page,
        page_token=page_token,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    flow_sid: str,
    execution_sid: str,
    *,
    client: AuthenticatedClient,
    page_size: int | Unset = UNSET,
    page: int | Unset = UNSET,
    page_token: str | Unset = UNSET,
) -> ListExecutionStepResponse | StudioError | None:
    """Retrieve a list of all Steps for an Execution.

     Steps are listed in reverse chronological order (most recent first). An execution ends after 1,000
    steps, so one page of `PageSize=1000` always holds all of them.

    Args:
        flow_sid (str):
        execution_sid (str):
        page_size (int | Unset):
        page (int | Unset):
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ListExecutionStepResponse | StudioError
    """

    return (
        await asyncio_detailed(
            flow_sid=flow_sid,
            execution_sid=execution_sid,
            client=client,
            page_size=page_size,
            page=page,
            page_token=page_token,
        )
    ).parsed
