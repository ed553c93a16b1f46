"""Tests for the lean transport: real sockets, against the simulator and tiny scripted servers."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from studio_exporter.config import Credentials, Secret
from studio_exporter.simulator import Faults, Simulator, SimulatorConfig
from studio_exporter.sources.studio_api import StudioApi, _target
from studio_exporter.sources.transport import (
    LeanTransport,
    PreparedGet,
    ResponseTooLarge,
    _encode_request,
    proxies_in_environment,
)
from tests.tls import self_signed_certificate

pytestmark = pytest.mark.integration

Scenario = Callable[[httpx.AsyncClient, LeanTransport], Awaitable[Any]]


def run(scenario: Scenario, **transport_options: Any) -> Any:
    """Runs ``scenario`` with a client over a fresh LeanTransport, closed afterwards."""

    async def main() -> Any:
        transport = LeanTransport(**transport_options)
        async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
            return await scenario(client, transport)

    return asyncio.run(main())


# -- against the simulator ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=11, history_executions=20, history_days=1)) as sim:
        yield sim


@pytest.fixture(autouse=True)
def no_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    if "simulator" not in request.fixturenames:
        yield
        return
    simulator: Simulator = request.getfixturevalue("simulator")
    simulator.set_faults(Faults())
    yield
    simulator.set_faults(Faults())


def flows_url(sim: Simulator) -> str:
    return f"{sim.url}/v2/Flows?PageSize=50"


def auth(sim: Simulator) -> httpx.BasicAuth:
    return httpx.BasicAuth(sim.account_sid, sim.auth_token)


def test_sequential_requests_reuse_one_connection(simulator: Simulator) -> None:
    async def scenario(client: httpx.AsyncClient, transport: LeanTransport) -> tuple[Any, ...]:
        statuses = [
            (await client.get(flows_url(simulator), auth=auth(simulator))).status_code
            for _ in range(20)
        ]
        return statuses, transport.connections_opened

    assert run(scenario) == ([200] * 20, 1)


def test_concurrent_requests_stay_within_the_bound_and_are_reused(simulator: Simulator) -> None:
    simulator.set_faults(Faults(latency_ms=20))

    async def scenario(client: httpx.AsyncClient, transport: LeanTransport) -> tuple[Any, ...]:
        async def one() -> int:
            response = await client.get(flows_url(simulator), auth=auth(simulator))
            return response.status_code

        first = await asyncio.gather(*(one() for _ in range(16)))
        opened = transport.connections_opened
        second = await asyncio.gather(*(one() for _ in range(16)))
        return first + second, opened, transport.connections_opened

    statuses, after_first, after_second = run(scenario, max_connections=4)
    assert statuses == [200] * 32
    assert after_first <= 4
    assert after_second == after_first


def test_429_keeps_its_retry_after_header(simulator: Simulator) -> None:
    simulator.set_faults(Faults(fail_429=1.0, retry_after_seconds=3))

    async def scenario(client: httpx.AsyncClient, transport: LeanTransport) -> httpx.Response:
        return await client.get(flows_url(simulator), auth=auth(simulator))

    response = run(scenario)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["code"] == 20429


def test_a_reset_is_a_transport_error_after_one_retry_of_a_pooled_connection(
    simulator: Simulator,
) -> None:
    async def scenario(client: httpx.AsyncClient, transport: LeanTransport) -> tuple[Any, ...]:
        await client.get(flows_url(simulator), auth=auth(simulator))
        simulator.set_faults(Faults(reset=1.0))
        with pytest.raises(httpx.TransportError) as caught:
            await client.get(flows_url(simulator), auth=auth(simulator))
        return caught.value, transport.connections_opened, transport.open_connections

    error, opened, still_open = run(scenario)
    assert isinstance(error, httpx.ReadError | httpx.RemoteProtocolError)
    assert error.request.url.path == "/v2/Flows"
    assert opened == 2  # the pooled connection, then one fresh one: retried once, not more
    assert still_open == 0


def test_latency_beyond_the_read_timeout_is_a_read_timeout(simulator: Simulator) -> None:
    simulator.set_faults(Faults(latency_ms=2000))

    async def scenario(client: httpx.AsyncClient, transport: LeanTransport) -> tuple[Any, ...]:
        with pytest.raises(httpx.ReadTimeout) as caught:
            await client.get(flows_url(simulator), auth=auth(simulator), timeout=0.1)
        return caught.value, transport.open_connections

    error, still_open = run(scenario)
    assert isinstance(error, httpx.TimeoutException)
    assert still_open == 0  # a connection with a response still on its way is never pooled


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param(Faults(truncated_json=1.0), id="truncated"),
        pytest.param(Faults(malformed_json=1.0), id="malformed"),
    ],
)
def test_broken_json_is_returned_as_bytes(simulator: Simulator, faults: Faults) -> None:
    simulator.set_faults(faults)

    async def scenario(client: httpx.AsyncClient, transport: LeanTransport) -> httpx.Response:
        return await client.get(flows_url(simulator), auth=auth(simulator))

    response = run(scenario)
    assert response.status_code == 200
    assert response.content
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_studio_api_uses_the_lean_transport_unless_a_proxy_is_configured(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials(simulator.account_sid, simulator.account_sid, Secret("token"))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    direct = StudioApi(simulator.url, credentials)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    proxied = StudioApi(simulator.url, credentials)

    async def close() -> None:
        await direct.aclose()
        await proxied.aclose()

    assert isinstance(direct._http._transport, LeanTransport)
    assert not isinstance(proxied._http._transport, LeanTransport)
    asyncio.run(close())


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, False, id="none"),
        pytest.param({"HTTPS_PROXY": "http://proxy:3128"}, True, id="https-upper"),
        pytest.param({"http_proxy": "proxy:3128"}, True, id="http-lower"),
        pytest.param({"ALL_PROXY": "socks5://proxy"}, True, id="all"),
        pytest.param({"HTTPS_PROXY": ""}, False, id="empty"),
        pytest.param({"HTTPS_PROXY": "http://proxy", "NO_PROXY": "*"}, False, id="no-proxy-star"),
        pytest.param({"FTP_PROXY": "http://proxy"}, False, id="ftp-only"),
    ],
)
def test_proxies_in_environment(environ: dict[str, str], expected: bool) -> None:
    assert proxies_in_environment(environ) is expected


# -- against scripted servers -------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Scripted:
    """A loopback server answering each request on a connection with the next canned reply.

    A reply of ``None`` closes the connection without answering; ``close_after`` closes it
    after the given reply has been sent.
    """

    def __init__(self, *replies: bytes | None, close_after: bool = False) -> None:
        self.replies = list(replies)
        self.close_after = close_after
        self.connections = 0
        self.bodies: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self.bodies.append(await reader.readexactly(length))
                reply = self.replies.pop(0)
                if reply is None:
                    return
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@asynccontextmanager
async def serving(handler: Handler, context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def reply(status: bytes, *headers: bytes, body: bytes = b"", length: bool = True) -> bytes:
    lines = [b"HTTP/1.1 " + status, *headers]
    if length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(body: bytes, size: int = 7) -> bytes:
    pieces = [body[at : at + size] for at in range(0, len(body), size)]
    encoded = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return encoded + b"0\r\nX-Trailer: yes\r\n\r\n"


def against(server: Scripted, scenario: Callable[[httpx.AsyncClient, str], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with serving(server.handle) as url:
            transport = LeanTransport()
            async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
                return await scenario(client, url)

    return asyncio.run(main())


def get_twice(client: httpx.AsyncClient, url: str) -> Awaitable[list[httpx.Response]]:
    async def twice() -> list[httpx.Response]:
        return [await client.get(url + "/a?x=1"), await client.get(url + "/b")]

    return twice()


PAYLOAD = json.dumps({"flows": [{"sid": "FW" + "0" * 32}] * 20}).encode()


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(
            reply(b"200 OK", b"Transfer-Encoding: chunked", body=chunked(PAYLOAD), length=False),
            id="chunked",
        ),
        pytest.param(
            reply(b"200 OK", b"Content-Encoding: gzip", body=gzip.compress(PAYLOAD)),
            id="gzip",
        ),
        pytest.param(
            reply(
                b"200 OK",
                b"Content-Encoding: gzip",
                b"Transfer-Encoding: chunked",
                body=chunked(gzip.compress(PAYLOAD)),
                length=False,
            ),
            id="gzip-chunked",
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\n" + reply(b"200 OK", body=PAYLOAD), id="after-100"
        ),
    ],
)
def test_bodies_are_decoded_and_the_connection_kept(first: bytes) -> None:
    server = Scripted(first, reply(b"200 OK", body=b"{}"))
    first_response, second_response = against(server, get_twice)
    assert first_response.json() == json.loads(PAYLOAD)
    assert second_response.content == b"{}"
    assert server.connections == 1


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(reply(b"200 OK", b"Connection: close", body=PAYLOAD), id="connection-close"),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + PAYLOAD,
            id="http-1.0-until-close",
        ),
    ],
)
def test_a_closing_response_is_read_whole_and_not_reused(first: bytes) -> None:
    server = Scripted(first, reply(b"200 OK", body=b"{}"), close_after=True)
    first_response, second_response = against(server, get_twice)
    assert first_response.content == PAYLOAD
    assert second_response.content == b"{}"
    assert server.connections == 2


def test_a_connection_the_server_dropped_is_retried_once_on_a_fresh_one() -> None:
    # The second request reaches a connection the server is closing: no byte comes back.
    server = Scripted(reply(b"200 OK", body=b"1"), None, reply(b"200 OK", body=b"2"))
    responses = against(server, get_twice)
    assert [response.content for response in responses] == [b"1", b"2"]
    assert server.connections == 2


def test_an_idle_connection_closed_by_the_server_is_not_reused() -> None:
    server = Scripted(reply(b"200 OK", body=b"1"), reply(b"200 OK", body=b"2"), close_after=True)

    async def scenario(client: httpx.AsyncClient, url: str) -> list[bytes]:
        first = await client.get(url)
        await asyncio.sleep(0.05)  # the server's FIN arrives while the connection is idle
        second = await client.get(url)
        return [first.content, second.content]

    assert against(server, scenario) == [b"1", b"2"]
    assert server.connections == 2


def test_an_idle_connection_with_unsolicited_bytes_is_not_reused() -> None:
    # Some servers announce a 408 on an idle connection before closing it; read as the answer
    # to the next request, it would be the wrong response.
    server = Scripted(
        reply(b"200 OK", body=b"1") + reply(b"408 Request Timeout"),
        reply(b"200 OK", body=b"2"),
    )

    async def scenario(client: httpx.AsyncClient, url: str) -> list[bytes]:
        first = await client.get(url)
        await asyncio.sleep(0.05)
        second = await client.get(url)
        return [first.content, second.content]

    assert against(server, scenario) == [b"1", b"2"]
    assert server.connections == 2


def test_a_post_on_a_dropped_connection_is_not_retried() -> None:
    server = Scripted(reply(b"200 OK", body=b"1"), None, reply(b"200 OK", body=b"2"))

    async def scenario(client: httpx.AsyncClient, url: str) -> bytes:
        await client.get(url)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"not idempotent")
        return (await client.post(url, content=b"again")).content

    assert against(server, scenario) == b"2"
    assert server.bodies == [b"", b"not idempotent", b"again"]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", id="status-not-a-number"),
        pytest.param(b"ICY 200 OK\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", id="header-without-colon"),
        pytest.param(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", id="space-in-header-name"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", id="bad-length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            id="conflicting-lengths",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk-size"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", id="unsupported-coding"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", id="body-cut-short"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Le", id="head-cut-short"),
    ],
)
def test_malformed_responses_are_protocol_errors(answer: bytes) -> None:
    server = Scripted(answer, close_after=True)

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url)

    against(server, scenario)


def test_a_response_head_over_the_limit_is_a_protocol_error() -> None:
    server = Scripted(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", close_after=True)

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(httpx.RemoteProtocolError, match="larger than"):
            await client.get(url)

    against(server, scenario)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(reply(b"200 OK", body=b"x" * 2000), id="content-length"),
        pytest.param(
            reply(b"200 OK", b"Transfer-Encoding: chunked", body=chunked(b"x" * 2000, 100),
                  length=False),
            id="chunked",
        ),
        pytest.param(reply(b"200 OK", body=b"x" * 2000, length=False), id="until-close"),
    ],
)  # fmt: skip
def test_a_response_body_over_the_cap_is_a_clear_error(answer: bytes) -> None:
    server = Scripted(answer, close_after=True)

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(ResponseTooLarge, match="larger than 1000 bytes"):
            await client.get(url)

    async def main() -> None:
        async with serving(server.handle) as url:
            transport = LeanTransport(max_response_bytes=1000)
            async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
                await scenario(client, url)
                # At the cap exactly is fine.
                server.replies.append(reply(b"200 OK", body=b"y" * 1000))
                assert len((await client.get(url)).content) == 1000

    asyncio.run(main())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("X-Note", "a\r\nX-Injected: 1", id="crlf-in-value"),
        pytest.param("X-Note", "a\nb", id="lf-in-value"),
        pytest.param("X-Note", "a\rb", id="cr-in-value"),
        pytest.param("X-Note", "a\0b", id="nul-in-value"),
        pytest.param("X-A\r\nX-B", "1", id="crlf-in-name"),
        pytest.param("X-A\0", "1", id="nul-in-name"),
    ],
)
def test_headers_with_cr_lf_or_nul_are_refused_before_sending(name: str, value: str) -> None:
    server = Scripted(reply(b"200 OK"))

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        request = client.build_request("GET", url, headers={name: value})
        with pytest.raises(httpx.LocalProtocolError, match="CR, LF and NUL"):
            await client.send(request)

    against(server, scenario)
    assert server.bodies == []  # nothing reached the server


def test_a_refused_port_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario(client: httpx.AsyncClient, transport: LeanTransport) -> None:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")

    run(scenario)


def test_waiting_for_a_connection_beyond_the_pool_timeout_is_a_pool_timeout() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.5)
        writer.write(reply(b"200 OK", body=b"late"))
        await writer.drain()
        writer.close()

    async def main() -> tuple[bytes, BaseException]:
        async with serving(slow) as url:
            transport = LeanTransport(max_connections=1)
            timeout = httpx.Timeout(5.0, pool=0.05)
            async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
                holder = asyncio.create_task(client.get(url))
                await asyncio.sleep(0.05)
                with pytest.raises(httpx.PoolTimeout) as caught:
                    await client.get(url)
                return (await holder).content, caught.value

    content, error = asyncio.run(main())
    assert content == b"late"
    assert isinstance(error, httpx.TimeoutException)


def test_aclose_closes_every_connection() -> None:
    server = Scripted(reply(b"200 OK", body=b"1"), reply(b"200 OK", body=b"2"))

    async def main() -> tuple[int, int]:
        async with serving(server.handle) as url:
            transport = LeanTransport()
            client = httpx.AsyncClient(transport=transport)
            await asyncio.gather(client.get(url), client.get(url))
            opened = transport.open_connections
            await client.aclose()
            return opened, transport.open_connections

    opened, after = asyncio.run(main())
    assert opened == 2
    assert after == 0


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    return key, cert


def tls_exchange(certificate: tuple[Path, Path], verify: ssl.SSLContext | bool) -> Any:
    key, cert = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server = Scripted(reply(b"200 OK", body=b"secure"), reply(b"200 OK", body=b"again"))

    async def main() -> tuple[list[bytes], int]:
        async with serving(server.handle, server_context) as url:
            transport = LeanTransport(verify=verify)
            async with httpx.AsyncClient(transport=transport) as client:
                responses = [await client.get(url), await client.get(url)]
                return [response.content for response in responses], server.connections

    return asyncio.run(main())


def test_tls_with_a_trusted_certificate(certificate: tuple[Path, Path]) -> None:
    trusting = ssl.create_default_context(cafile=str(certificate[1]))
    assert tls_exchange(certificate, trusting) == ([b"secure", b"again"], 1)


def test_tls_with_an_untrusted_certificate_is_a_connect_error(
    certificate: tuple[Path, Path],
) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        tls_exchange(certificate, True)


def test_unsupported_schemes_are_refused() -> None:
    async def main() -> None:
        with pytest.raises(httpx.UnsupportedProtocol):
            await LeanTransport().handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/"))

    asyncio.run(main())


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({}, id="no-params"),
        pytest.param({"PageSize": 1000}, id="int"),
        pytest.param(
            {"DateCreatedFrom": "2026-01-01T00:00:00+00:00", "PageToken": "PT a+b/c&d=e"},
            id="needs-quoting",
        ),
        pytest.param({"Flag": True, "Other": False, "Empty": None}, id="primitives"),
        pytest.param({"Status": ["active", "ended"]}, id="repeated"),
    ],
)
@pytest.mark.parametrize(
    "base",
    [pytest.param("http://127.0.0.1:8080", id="root"), pytest.param("https://h/p", id="path")],
)
def test_studio_api_builds_the_request_httpx_would(base: str, params: dict[str, Any]) -> None:
    # StudioApi builds the target once instead of letting httpx parse the URL three times, and
    # the lean transport writes the head encoded once with that target: the same bytes.
    path = "/v2/Flows/FW%20x/Executions"
    headers = httpx.Headers({"User-Agent": "t", "Authorization": "Basic dTpw"})
    request = httpx.AsyncClient(base_url=base).build_request(
        "get", path, params=params, headers=headers
    )
    request.headers = headers
    target = _target(path, params)
    assert httpx.URL(base + target) == request.url
    prepared = PreparedGet(httpx.URL(base), headers)
    assert prepared.encode(target) == asyncio.run(_encode_request(request))


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/v2/Flows\r\nX-Injected: 1", id="crlf"),
        pytest.param("/v2/Flows HTTP/1.0", id="space"),
        pytest.param("/v2/Flöws", id="non-ascii"),
        pytest.param("v2/Flows", id="not-absolute"),
    ],
)
def test_a_prepared_get_refuses_a_target_that_is_not_one_token(target: str) -> None:
    prepared = PreparedGet(httpx.URL("http://127.0.0.1:8080"), httpx.Headers())
    with pytest.raises(httpx.LocalProtocolError):
        prepared.encode(target)


def test_a_prepared_get_refuses_headers_with_line_breaks() -> None:
    with pytest.raises(httpx.LocalProtocolError):
        PreparedGet(httpx.URL("http://127.0.0.1:8080"), httpx.Headers({"X-A": "1\r\nX-B: 2"}))
