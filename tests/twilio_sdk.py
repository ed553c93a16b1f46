"""Twilio's official Python SDK pointed at a simulator: only the host of each URL changes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from studio_exporter.simulator import Simulator

_TWILIO_HOSTS = {"api.twilio.com", "studio.twilio.com"}


class SimulatorHttpClient(TwilioHttpClient):  # type: ignore[misc]  # the SDK is untyped
    """Sends what the SDK addresses to api.twilio.com or studio.twilio.com to ``base_url``.

    Every other part of the request (path, query, auth, paging links the SDK follows) is the
    SDK's own, so a test reads the simulator exactly the way a user's code reads Twilio.
    """

    def __init__(self, base_url: str) -> None:
        super().__init__(timeout=10)
        parts = urlsplit(base_url)
        self._scheme, self._netloc = parts.scheme, parts.netloc

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        parts = urlsplit(url)
        if parts.hostname in _TWILIO_HOSTS:
            url = urlunsplit((self._scheme, self._netloc, parts.path, parts.query, ""))
        return super().request(method, url, params, data, headers, auth, timeout, allow_redirects)


def sdk_client(base_url: str, account_sid: str, auth_token: str) -> Client:
    """A ``twilio.rest.Client`` with these credentials, talking to the simulator."""
    return Client(account_sid, auth_token, http_client=SimulatorHttpClient(base_url))


def twilio_client(sim: Simulator) -> Any:
    """A ``twilio.rest.Client`` for the simulated main account (typed ``Any``: the SDK is
    untyped)."""
    return sdk_client(sim.url, sim.account_sid, sim.auth_token)
