"""Twilio's JSON for flows, executions, steps and contexts, built on demand from records."""

from __future__ import annotations

from typing import Any

from .clock import iso
from .flows import FlowSpec
from .traffic import (
    END,
    ENDED,
    EVENT,
    EVENTS,
    FLOW,
    FROM,
    PARENT,
    TO,
    ExecutionRecord,
    Traffic,
    mix64,
    step_sid,
)

_REPLIES = (
    "YES",
    "yes please",
    "5",
    "4",
    "1",
    "C",
    "X",
    "The wait was too long, call me back on +15555550123",
    "Great service, thanks Maria!",
    "NO",
)
_FLOWS_CREATED_DAYS_BEFORE_START = 60


def _hex32(seed: int, value: int, salt: int) -> str:
    return f"{mix64(seed, value, salt):016x}{mix64(seed, value, salt + 1):016x}"


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class Renderer:
    """Materialises API resources; ``base`` is the absolute origin taken from the request."""

    def __init__(self, traffic: Traffic, account_sid: str, subflow_parent: str = "into") -> None:
        self.traffic = traffic
        self.account_sid = account_sid
        #: Which step a subflow step's parent_step_sid names (traffic.SUBFLOW_PARENT_READINGS).
        self.subflow_parent = subflow_parent
        self.seed = traffic.config.seed
        flows = traffic.flows
        self.flow_created = traffic.config.start - _FLOWS_CREATED_DAYS_BEFORE_START * 86400
        sids = dict(zip((f.key for f in flows), traffic.flow_sids, strict=True))
        self.definitions = [f.definition(sids) for f in flows]
        self.widget_names = [tuple(w.name for w in f.widgets) for f in flows]
        self.widget_types = [tuple(w.type for w in f.widgets) for f in flows]

    # Flows -------------------------------------------------------------------------------
    def flow(self, base: str, index: int, with_definition: bool) -> dict[str, Any]:
        spec: FlowSpec = self.traffic.flows[index]
        sid = self.traffic.flow_sids[index]
        url = f"{base}/v2/Flows/{sid}"
        author = f"US{mix64(self.seed, index, 77):016x}{mix64(self.seed, index, 78):016x}"
        return {
            "sid": sid,
            "account_sid": self.account_sid,
            "author_sid": author,
            "friendly_name": spec.name,
            "definition": self.definitions[index] if with_definition else None,
            "status": "published",
            "revision": 3,
            "commit_message": "Published from the simulator",
            "valid": True,
            "errors": [],
            "warnings": [],
            "webhook_url": f"https://webhooks.twilio.com/v1/Accounts/{self.account_sid}/Flows/{sid}",
            "date_created": iso(self.flow_created),
            "date_updated": iso(self.flow_created + 3600),
            "url": url,
            "links": {
                "test_users": f"{url}/TestUsers",
                "revisions": f"{url}/Revisions",
                "executions": f"{url}/Executions",
            },
        }

    # Executions --------------------------------------------------------------------------
    def phone(self, record: ExecutionRecord) -> str:
        return f"+1555{record.contact:07d}"

    def execution(self, base: str, record: ExecutionRecord, now: float) -> dict[str, Any]:
        flow_sid = self.traffic.flow_sids[record.flow]
        url = f"{base}/v2/Flows/{flow_sid}/Executions/{record.sid}"
        visible = record.visible_steps(now)
        ended = visible == record.step_count
        updated = record.step_time(visible - 1) if visible else record.created
        channel = self.traffic.flows[record.flow].channel
        prefix = {"voice": "CA", "sms": "SM", "api": "RQ"}[channel]
        hexa = _hex32(self.seed, record.serial, 11)
        contact = _hex32(self.seed, record.contact, 13)
        return {
            "sid": record.sid,
            "account_sid": self.account_sid,
            "flow_sid": flow_sid,
            "contact_sid": "FC" + contact,
            "contact_channel_address": self.phone(record),
            "flow_version": 3,
            "context": {
                "flow": {"channel": {"address": "+15550100100"}},
                "contact": {"channel": {"address": self.phone(record)}},
            },
            "status": "ended" if ended else "active",
            "date_created": iso(record.created),
            "date_updated": iso(updated),
            "initiated_by": prefix + hexa,
            "url": url,
            "links": {"steps": f"{url}/Steps", "execution_context": f"{url}/Context"},
        }

    def execution_context(self, base: str, record: ExecutionRecord, now: float) -> dict[str, Any]:
        flow_sid = self.traffic.flow_sids[record.flow]
        return {
            "account_sid": self.account_sid,
            "context": self._full_context(record, record.visible_steps(now)),
            "flow_sid": flow_sid,
            "execution_sid": record.sid,
            "url": f"{base}/v2/Flows/{flow_sid}/Executions/{record.sid}/Context",
        }

    # Steps -------------------------------------------------------------------------------
    def step(self, base: str, record: ExecutionRecord, index: int) -> dict[str, Any]:
        flow = record.field(index, FLOW)
        origin = record.field(index, FROM)
        target = record.field(index, TO)
        parent = record.field(index, PARENT)
        if parent >= 0 and self.subflow_parent == "out":
            parent = record.step_out_of(parent)
        names = self.widget_names[flow]
        sid = step_sid(self.seed, record.serial, index)
        url = (
            f"{base}/v2/Flows/{self.traffic.flow_sids[record.flow]}"
            f"/Executions/{record.sid}/Steps/{sid}"
        )
        return {
            "sid": sid,
            "account_sid": self.account_sid,
            "flow_sid": self.traffic.flow_sids[flow],
            "execution_sid": record.sid,
            "parent_step_sid": None if parent < 0 else step_sid(self.seed, record.serial, parent),
            "name": EVENTS[record.field(index, EVENT)],
            "context": self._step_output(record, index),
            "transitioned_from": names[origin],
            "transitioned_to": ENDED if target == END else names[target],
            "type": self.widget_types[flow][origin],
            "date_created": iso(record.step_time(index)),
            "date_updated": None,
            "url": url,
            "links": {"step_context": f"{url}/Context"},
        }

    def step_context(self, base: str, record: ExecutionRecord, index: int) -> dict[str, Any]:
        flow_sid = self.traffic.flow_sids[record.flow]
        sid = step_sid(self.seed, record.serial, index)
        return {
            "account_sid": self.account_sid,
            "context": self._full_context(record, index + 1),
            "execution_sid": record.sid,
            "flow_sid": flow_sid,
            "step_sid": sid,
            "url": f"{base}/v2/Flows/{flow_sid}/Executions/{record.sid}/Steps/{sid}/Context",
        }

    def find_step(self, record: ExecutionRecord, sid: str) -> int | None:
        for index in range(record.step_count):
            if step_sid(self.seed, record.serial, index) == sid:
                return index
        return None

    # Contexts carry fake personal data on purpose: redaction is tested against them.
    def _step_output(self, record: ExecutionRecord, index: int) -> dict[str, Any]:
        flow = record.field(index, FLOW)
        kind = self.widget_types[flow][record.field(index, FROM)]
        event = EVENTS[record.field(index, EVENT)]
        phone = self.phone(record)
        if kind == "trigger":
            if event == "incomingCall":
                return {"call": {"From": phone, "To": "+15550100100", "CallStatus": "ringing"}}
            if event == "incomingMessage":
                return {"message": {"From": phone, "To": "+15550100100", "Body": "Hi"}}
            if event == "incomingParent":
                return {"parent": {"parameters": {"caller": phone}}}
            return {"request": {"parameters": {"appointment_id": str(record.contact % 9973)}}}
        if kind == "send-and-wait-for-reply" and event == "incomingMessage":
            body = _REPLIES[mix64(self.seed, record.serial, index, 21) % len(_REPLIES)]
            return {"inbound": {"Body": body, "From": phone}}
        if kind == "gather-input-on-call" and event == "keypress":
            return {"Digits": str(mix64(self.seed, record.serial, index, 22) % 4 + 1)}
        if kind == "make-http-request":
            return {"status_code": 200 if event == "success" else 504}
        return {}

    def _full_context(self, record: ExecutionRecord, upto: int) -> dict[str, Any]:
        widgets: dict[str, Any] = {}
        trigger: dict[str, Any] = {}
        for index in range(upto):
            output = self._step_output(record, index)
            name = self.widget_names[record.field(index, FLOW)][record.field(index, FROM)]
            if name == "Trigger":
                trigger.update(output)
            elif output:
                widgets[name] = output
        return {
            "flow": {
                "flow_sid": self.traffic.flow_sids[record.flow],
                "channel": {"address": "+15550100100"},
                "sid": record.sid,
            },
            "contact": {"channel": {"address": self.phone(record)}},
            "trigger": trigger,
            "widgets": widgets,
        }
