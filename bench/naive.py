"""The baseline: a Studio exporter written the way people write one with an SDK.

Sequential, Twilio's default page size (50), following ``next_page_url``; every cycle it
re-lists every execution in the window and re-reads all of their steps, and counts a step once
by remembering every step sid it has seen. It uses plain httpx, synchronously.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx


@dataclass
class NaiveReport:
    """What one naive cycle did."""

    requests: int = 0
    executions: int = 0
    steps_seen: int = 0
    steps_new: int = 0


@dataclass
class NaiveExporter:
    """Polls every flow's whole window each cycle; steps are counted by (flow, widget, event)."""

    base_url: str
    account_sid: str
    auth_token: str
    lookback: timedelta = timedelta(days=3)
    seen: set[str] = field(default_factory=set)
    steps_total: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def cycle(self, now: datetime | None = None) -> NaiveReport:
        report = NaiveReport()
        since = (now or datetime.now(UTC)) - self.lookback
        with httpx.Client(
            base_url=self.base_url, auth=(self.account_sid, self.auth_token), timeout=30
        ) as client:
            for flow in self._pages(client, "/v2/Flows", {}, "flows", report):
                executions = self._pages(
                    client,
                    f"/v2/Flows/{flow['sid']}/Executions",
                    {"DateCreatedFrom": since.strftime("%Y-%m-%dT%H:%M:%SZ")},
                    "executions",
                    report,
                )
                for execution in executions:
                    report.executions += 1
                    steps_url = execution["links"]["steps"]
                    for step in self._pages(client, steps_url, {}, "steps", report):
                        report.steps_seen += 1
                        if step["sid"] in self.seen:
                            continue
                        self.seen.add(step["sid"])
                        key = (flow["sid"], step["transitioned_from"], step["name"])
                        self.steps_total[key] = self.steps_total.get(key, 0) + 1
                        report.steps_new += 1
        return report

    @staticmethod
    def _pages(
        client: httpx.Client, url: str, params: dict[str, str], key: str, report: NaiveReport
    ) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        next_url: str | None = url
        query: dict[str, str] | None = params
        while next_url:
            response = client.get(next_url, params=query)
            report.requests += 1
            response.raise_for_status()
            page = response.json()
            records.extend(page[key])
            next_url = page["meta"]["next_page_url"]
            query = None  # the next page URL carries every parameter
        return records
