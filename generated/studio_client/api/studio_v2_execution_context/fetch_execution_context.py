from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.execution_context import ExecutionContext
from ...models.studio_error import StudioError
from ...types import Response


def _get_kwargs(
    flow_sid: str,
    execution_sid: str,
) -> dict[str, Any]:

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v2/Flows/{flow_sid}/Executions/{execution_sid}/Context".format(
            flow_sid=quote(str(flow_sid), safe=""),
            execution_sid=quote(str(execution_sid), safe=""),
        ),
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ExecutionContext | StudioError | None:
    if response.status_code == 200:
        response_200 = ExecutionContext.from_dict(response.json())

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
) -> Response[ExecutionContext | StudioError]:
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
) -> Response[ExecutionContext | StudioError]:
    """Retrieve the most recent context for an Execution.

     The context holds personal data; read it only for keys the user opted in to.

    Args:
        flow_sid (str):
        execution_sid (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ExecutionContext | StudioError]
    """

    kwargs = _get_kwargs(
        flow_sid=flow_sid,
        execution_sid=execution_sid,
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
) -> ExecutionContext | StudioError | None:
    """Retrieve the most recent context for an Execution.

     The context holds personal data; read it only for keys the user opted in to.

    Args:
        flow_sid (str):
        execution_sid (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ExecutionContext | StudioError
    """

    return sync_detailed(
        flow_sid=flow_sid,
        execution_sid=execution_sid,
        client=client,
    ).parsed


async def asyncio_detailed(
    flow_sid: str,
    execution_sid: str,
    *,
    client: AuthenticatedClient,
) -> Response[ExecutionContext | StudioError]:
    """Retrieve the most recent context for an Execution.

     The context holds personal data; read it only for keys the user opted in to.

    Args:
        flow_sid (str):
        execution_sid (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ExecutionContext | StudioError]
    """

    kwargs = _get_kwargs(
        flow_sid=flow_sid,
        execution_sid=execution_sid,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    flow_sid: str,
    execution_sid: str,
    *,
    client: AuthenticatedClient,
) -> ExecutionContext | StudioError | None:
    """Retrieve the most recent context for an Execution.

     The context holds personal data; read it only for keys the user opted in to.

    Args:
        flow_sid (str):
        execution_sid (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ExecutionContext | StudioError
    """

    return (
        await asyncio_detailed(
            flow_sid=flow_sid,
            execution_sid=execution_sid,
            client=client,
        )
    ).parsed
