"""The baseline a Twilio user would write first: Twilio's official Python SDK, read sequentially.

``twilio`` (the ``bench`` extra) with its own HTTP client and default page sizes: list the
flows, each flow's executions since a time, each execution's steps. The only change is the
host: requests for ``https://studio.twilio.com`` go to the simulator instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

TWILIO_STUDIO = "https://studio.twilio.com"


class _SimulatorHttpClient(TwilioHttpClient):
    """The SDK's own client (a keep-alive requests session), pointed at the simulator."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.requests = 0

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith(TWILIO_STUDIO):
            url = self.base_url + url[len(TWILIO_STUDIO) :]
        self.requests += 1
        return super().request(method, url, *args, **kwargs)


@dataclass
class SdkReport:
    """What the SDK read."""

    requests: int = 0
    flows: int = 0
    executions: int = 0
    steps: int = 0


def read_all(base_url: str, account_sid: str, auth_token: str, since: datetime) -> SdkReport:
    """Every flow, every execution created since ``since`` and every step, one by one."""
    http = _SimulatorHttpClient(base_url)
    client = Client(account_sid, auth_token, http_client=http)
    report = SdkReport()
    for flow in client.studio.v2.flows.list():
        report.flows += 1
        executions = client.studio.v2.flows(flow.sid).executions
        for execution in executions.list(date_created_from=since):
            report.executions += 1
            report.steps += len(executions(execution.sid).steps.list())
    report.requests = http.requests
    return report
