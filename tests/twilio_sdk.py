"""Twilio's official Python SDK pointed at the simulator: tests act as a user's code would."""

from __future__ import annotations

from typing import Any

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from studio_exporter.simulator import Simulator

#: Where the SDK sends Studio requests; the simulator stands in for it.
STUDIO_BASE = "https://studio.twilio.com"


class _SimulatorHttpClient(TwilioHttpClient):  # type: ignore[misc]  # the SDK is untyped
    """The SDK's own HTTP client, with Studio's host replaced by the simulator's address.

    Everything else (paths, methods, auth, headers, status handling) is the SDK's.
    """

    def __init__(self, base_url: str) -> None:
        super().__init__(timeout=10)
        self._base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith(STUDIO_BASE):
            url = self._base_url + url[len(STUDIO_BASE) :]
        return super().request(method, url, *args, **kwargs)


def twilio_client(sim: Simulator) -> Any:
    """A ``twilio.rest.Client`` for the simulated account (typed ``Any``: the SDK is untyped)."""
    return Client(sim.account_sid, sim.auth_token, http_client=_SimulatorHttpClient(sim.url))
