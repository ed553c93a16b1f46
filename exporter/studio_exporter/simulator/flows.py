"""The simulated account's Studio flows: real-format definitions plus how long each widget takes.

Each widget lists every transition its type has in Twilio's Widget Library (as Studio writes
them into a flow definition, unconnected ones without ``next``), and for each transition a
weight (how often that event fires) and a distribution of the time spent in the widget before
it fires. An event with no ``next`` ends the flow, as in Studio.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import Any

#: Event names by widget type, in the order Studio writes them into a definition.
WIDGET_EVENTS: dict[str, tuple[str, ...]] = {
    "trigger": (
        "incomingMessage",
        "incomingCall",
        "incomingConversationMessage",
        "incomingRequest",
        "incomingParent",
    ),
    "say-play": ("audioComplete",),
    "gather-input-on-call": ("keypress", "speech", "timeout"),
    "split-based-on": ("noMatch", "match"),
    "connect-call-to": ("callCompleted", "hangup"),
    "enqueue-call": ("callComplete", "failedToEnqueue", "callFailure"),
    "send-message": ("sent", "failed"),
    "send-and-wait-for-reply": ("incomingMessage", "timeout", "deliveryFailure"),
    "set-variables": ("next",),
    "make-http-request": ("success", "failed"),
    "run-function": ("success", "fail"),
    "run-subflow": ("completed", "failed"),
}


@dataclass(frozen=True, slots=True)
class Duration:
    """Seconds spent in a widget before an event: ``low`` + a log-normal tail, capped.

    ``median`` 0 gives a uniform draw in [low, high]; otherwise a log-normal with that median
    and ``sigma``, clamped to [low, high].
    """

    low: float
    high: float
    median: float = 0.0
    sigma: float = 1.0

    def sample(self, rng: random.Random) -> float:
        if self.median <= 0:
            return rng.uniform(self.low, self.high)
        value = self.median * math.exp(rng.gauss(0.0, self.sigma))
        return min(self.high, max(self.low, value))


def fixed(seconds: float) -> Duration:
    return Duration(seconds, seconds)


def between(low: float, high: float) -> Duration:
    return Duration(low, high)


def lognormal(median: float, sigma: float, low: float, high: float) -> Duration:
    return Duration(low, high, median, sigma)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One transition of a widget: ``event`` leads to ``next`` (None ends the flow)."""

    event: str
    next: str | None
    weight: float
    duration: Duration
    conditions: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class WidgetSpec:
    name: str
    type: str
    outcomes: tuple[Outcome, ...]
    properties: dict[str, Any] = field(default_factory=dict)
    #: For ``run-subflow``: the key of the flow it runs.
    subflow: str | None = None

    def definition(self, offset: tuple[int, int], flow_sids: dict[str, str]) -> dict[str, Any]:
        transitions: list[dict[str, Any]] = []
        for outcome in self.outcomes:
            transition: dict[str, Any] = {"event": outcome.event}
            if outcome.next is not None:
                transition["next"] = outcome.next
            if outcome.conditions:
                transition["conditions"] = list(outcome.conditions)
            transitions.append(transition)
        properties = {**self.properties, "offset": {"x": offset[0], "y": offset[1]}}
        if self.subflow is not None:
            properties["flow_sid"] = flow_sids[self.subflow]
            properties["flow_revision"] = "LatestPublished"
        return {
            "name": self.name,
            "type": self.type,
            "transitions": transitions,
            "properties": properties,
        }


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """A flow: its key (stable across runs), name, widgets, and its share of new executions."""

    key: str
    name: str
    description: str
    widgets: tuple[WidgetSpec, ...]
    share: float  # 0 for a flow that only runs as a subflow
    channel: str  # "voice", "sms" or "api": what kind of contact starts it

    def widget(self, name: str) -> WidgetSpec:
        for widget in self.widgets:
            if widget.name == name:
                return widget
        raise KeyError(name)

    def definition(self, flow_sids: dict[str, str]) -> dict[str, Any]:
        """The flow's definition JSON exactly as FetchFlow returns it."""
        return {
            "description": self.description,
            "states": [
                widget.definition((index % 3 * 400, index * 220), flow_sids)
                for index, widget in enumerate(self.widgets)
            ],
            "initial_state": "Trigger",
            "flags": {"allow_concurrent_calls": True},
        }


def flow_sid(account_sid: str, key: str) -> str:
    """A flow's SID, stable for an account: dashboards keep working across simulator runs."""
    digest = hashlib.blake2b(f"{account_sid}|flow|{key}".encode(), digest_size=16).hexdigest()
    return "FW" + digest


def _trigger(event: str, first: str) -> WidgetSpec:
    outcomes = tuple(
        Outcome(name, first if name == event else None, 1.0 if name == event else 0.0, fixed(0))
        for name in WIDGET_EVENTS["trigger"]
    )
    return WidgetSpec("Trigger", "trigger", outcomes)


def _equal_to(argument: str, value: str) -> tuple[dict[str, Any], ...]:
    return (
        {
            "friendly_name": f"If value equal_to {value}",
            "arguments": [argument],
            "type": "equal_to",
            "value": value,
        },
    )


_INSTANT = between(0, 0.9)
_SAY = between(3, 15)
_SMS_SEND = between(0, 2)
_HTTP_OK = lognormal(0.4, 0.8, 0.05, 4)
_HTTP_TIMEOUT = fixed(10)
_REPLY = lognormal(90, 1.2, 5, 3599)  # people answer in a minute or two, some in an hour
_REPLY_TIMEOUT = fixed(3600)


def _ivr() -> FlowSpec:
    menu = "{{widgets.main_menu.Digits}}"
    return FlowSpec(
        key="ivr",
        name="IVR Main Menu",
        description="Greets callers and routes them to sales, support or opening hours",
        share=0.35,
        channel="voice",
        widgets=(
            _trigger("incomingCall", "greeting"),
            WidgetSpec(
                "greeting",
                "say-play",
                (Outcome("audioComplete", "main_menu", 1, _SAY),),
                {"say": "Thanks for calling Example Corp.", "loop": 1, "voice": "alice"},
            ),
            WidgetSpec(
                "main_menu",
                "gather-input-on-call",
                (
                    Outcome("keypress", "menu_split", 0.8, between(2, 12)),
                    Outcome("speech", "menu_split", 0.1, between(3, 15)),
                    Outcome("timeout", "goodbye", 0.1, fixed(5)),
                ),
                {
                    "say": "Press 1 for sales, 2 for support, 3 for our opening hours.",
                    "timeout": 5,
                    "number_of_digits": 1,
                    "speech_timeout": "auto",
                    "finish_on_key": "#",
                    "stop_gather": True,
                },
            ),
            WidgetSpec(
                "menu_split",
                "split-based-on",
                (
                    Outcome("noMatch", "main_menu", 0.1, _INSTANT),
                    Outcome("match", "connect_sales", 0.35, _INSTANT, _equal_to(menu, "1")),
                    Outcome("match", "enqueue_support", 0.4, _INSTANT, _equal_to(menu, "2")),
                    Outcome("match", "opening_hours", 0.15, _INSTANT, _equal_to(menu, "3")),
                ),
                {"input": menu},
            ),
            WidgetSpec(
                "connect_sales",
                "connect-call-to",
                (
                    Outcome("callCompleted", None, 0.85, lognormal(240, 0.9, 20, 3600)),
                    Outcome("hangup", None, 0.15, lognormal(30, 1.0, 2, 600)),
                ),
                {
                    "noun": "number",
                    "to": "+15550100200",
                    "caller_id": "{{contact.channel.address}}",
                },
            ),
            WidgetSpec(
                "enqueue_support",
                "enqueue-call",
                (
                    Outcome("callComplete", None, 0.8, lognormal(300, 1.0, 20, 3600)),
                    Outcome("failedToEnqueue", "sorry", 0.1, between(0, 2)),
                    Outcome("callFailure", None, 0.1, lognormal(60, 1.0, 5, 1200)),
                ),
                {"queue_name": "support", "priority": "0", "timeout": "3600"},
            ),
            WidgetSpec(
                "opening_hours",
                "say-play",
                (Outcome("audioComplete", None, 1, between(8, 20)),),
                {"say": "We are open Monday to Friday, 9 to 5.", "loop": 1},
            ),
            WidgetSpec(
                "sorry",
                "say-play",
                (Outcome("audioComplete", None, 1, _SAY),),
                {"say": "Sorry, all our agents are busy. Please call again later.", "loop": 1},
            ),
            WidgetSpec(
                "goodbye",
                "say-play",
                (Outcome("audioComplete", None, 1, between(2, 6)),),
                {"say": "Goodbye.", "loop": 1},
            ),
        ),
    )


def _sms_survey() -> FlowSpec:
    consent = "{{widgets.ask_consent.inbound.Body}}"
    rating = "{{flow.variables.rating}}"
    return FlowSpec(
        key="survey",
        name="SMS Satisfaction Survey",
        description="Asks customers by SMS to rate their last visit",
        share=0.25,
        channel="sms",
        widgets=(
            _trigger("incomingMessage", "ask_consent"),
            WidgetSpec(
                "ask_consent",
                "send-and-wait-for-reply",
                (
                    Outcome("incomingMessage", "consent_split", 0.75, _REPLY),
                    Outcome("timeout", None, 0.2, _REPLY_TIMEOUT),
                    Outcome("deliveryFailure", None, 0.05, between(1, 20)),
                ),
                {
                    "body": "Hi! Would you answer two quick questions? Reply YES or NO.",
                    "from": "{{flow.channel.address}}",
                    "timeout": "3600",
                },
            ),
            WidgetSpec(
                "consent_split",
                "split-based-on",
                (
                    Outcome("noMatch", "send_goodbye", 0.3, _INSTANT),
                    Outcome("match", "ask_rating", 0.7, _INSTANT, _equal_to(consent, "YES")),
                ),
                {"input": consent},
            ),
            WidgetSpec(
                "ask_rating",
                "send-and-wait-for-reply",
                (
                    Outcome("incomingMessage", "save_rating", 0.85, _REPLY),
                    Outcome("timeout", "send_goodbye", 0.12, _REPLY_TIMEOUT),
                    Outcome("deliveryFailure", None, 0.03, between(1, 20)),
                ),
                {
                    "body": "How would you rate us from 1 to 5?",
                    "from": "{{flow.channel.address}}",
                    "timeout": "3600",
                },
            ),
            WidgetSpec(
                "save_rating",
                "set-variables",
                (Outcome("next", "rating_split", 1, _INSTANT),),
                {"variables": [{"key": "rating", "value": "{{widgets.ask_rating.inbound.Body}}"}]},
            ),
            WidgetSpec(
                "rating_split",
                "split-based-on",
                (
                    Outcome("noMatch", "send_thanks", 0.7, _INSTANT),
                    Outcome("match", "ask_comment", 0.3, _INSTANT, _equal_to(rating, "1")),
                ),
                {"input": rating},
            ),
            WidgetSpec(
                "ask_comment",
                "send-and-wait-for-reply",
                (
                    Outcome("incomingMessage", "send_thanks", 0.6, _REPLY),
                    Outcome("timeout", "send_thanks", 0.38, _REPLY_TIMEOUT),
                    Outcome("deliveryFailure", None, 0.02, between(1, 20)),
                ),
                {
                    "body": "Sorry to hear that. What went wrong?",
                    "from": "{{flow.channel.address}}",
                    "timeout": "3600",
                },
            ),
            WidgetSpec(
                "send_thanks",
                "send-message",
                (Outcome("sent", None, 0.97, _SMS_SEND), Outcome("failed", None, 0.03, _SMS_SEND)),
                {"body": "Thank you for your feedback!", "from": "{{flow.channel.address}}"},
            ),
            WidgetSpec(
                "send_goodbye",
                "send-message",
                (Outcome("sent", None, 0.97, _SMS_SEND), Outcome("failed", None, 0.03, _SMS_SEND)),
                {"body": "No problem, have a nice day.", "from": "{{flow.channel.address}}"},
            ),
        ),
    )


def _reminder() -> FlowSpec:
    answer = "{{widgets.ask_confirmation.inbound.Body}}"
    return FlowSpec(
        key="reminder",
        name="Appointment Reminder",
        description="Reminds patients of tomorrow's appointment and records their answer",
        share=0.25,
        channel="api",
        widgets=(
            _trigger("incomingRequest", "fetch_appointment"),
            WidgetSpec(
                "fetch_appointment",
                "make-http-request",
                (
                    Outcome("success", "send_reminder", 0.95, _HTTP_OK),
                    Outcome("failed", "notify_ops", 0.05, _HTTP_TIMEOUT),
                ),
                {
                    "method": "GET",
                    "content_type": "application/json;charset=utf-8",
                    "url": "https://clinic.example.com/appointments/{{flow.data.appointment_id}}",
                },
            ),
            WidgetSpec(
                "send_reminder",
                "send-message",
                (
                    Outcome("sent", "ask_confirmation", 0.96, _SMS_SEND),
                    Outcome("failed", "notify_ops", 0.04, _SMS_SEND),
                ),
                {
                    "body": "Reminder: your appointment is tomorrow at {{widgets.fetch_appointment"
                    ".parsed.time}}.",
                    "from": "{{flow.channel.address}}",
                    "to": "{{contact.channel.address}}",
                },
            ),
            WidgetSpec(
                "ask_confirmation",
                "send-and-wait-for-reply",
                (
                    Outcome("incomingMessage", "confirm_split", 0.7, _REPLY),
                    Outcome("timeout", None, 0.27, _REPLY_TIMEOUT),
                    Outcome("deliveryFailure", "notify_ops", 0.03, between(1, 20)),
                ),
                {"body": "Reply C to confirm or X to cancel.", "timeout": "3600"},
            ),
            WidgetSpec(
                "confirm_split",
                "split-based-on",
                (
                    Outcome("noMatch", None, 0.2, _INSTANT),
                    Outcome("match", "update_appointment", 0.8, _INSTANT, _equal_to(answer, "C")),
                ),
                {"input": answer},
            ),
            WidgetSpec(
                "update_appointment",
                "make-http-request",
                (
                    Outcome("success", "send_confirmation", 0.97, _HTTP_OK),
                    Outcome("failed", "notify_ops", 0.03, _HTTP_TIMEOUT),
                ),
                {
                    "method": "POST",
                    "content_type": "application/json;charset=utf-8",
                    "url": "https://clinic.example.com/appointments/confirm",
                },
            ),
            WidgetSpec(
                "send_confirmation",
                "send-message",
                (Outcome("sent", None, 0.98, _SMS_SEND), Outcome("failed", None, 0.02, _SMS_SEND)),
                {"body": "Thanks, see you tomorrow!", "to": "{{contact.channel.address}}"},
            ),
            WidgetSpec(
                "notify_ops",
                "make-http-request",
                (
                    Outcome("success", None, 0.9, _HTTP_OK),
                    Outcome("failed", None, 0.1, _HTTP_TIMEOUT),
                ),
                {"method": "POST", "url": "https://ops.example.com/alerts"},
            ),
        ),
    )


def _identity_check() -> FlowSpec:
    return FlowSpec(
        key="identity",
        name="Identity Check (subflow)",
        description="Asks the caller for their PIN and verifies it; run as a subflow",
        share=0.0,
        channel="voice",
        widgets=(
            _trigger("incomingParent", "ask_pin"),
            WidgetSpec(
                "ask_pin",
                "gather-input-on-call",
                (
                    Outcome("keypress", "verify_pin", 0.9, between(3, 15)),
                    Outcome("speech", None, 0.0, between(3, 15)),
                    Outcome("timeout", None, 0.1, fixed(5)),
                ),
                {"say": "Please enter your four digit PIN.", "timeout": 5, "number_of_digits": 4},
            ),
            WidgetSpec(
                "verify_pin",
                "run-function",
                (
                    Outcome("success", "pin_ok", 0.92, _HTTP_OK),
                    Outcome("fail", None, 0.08, _HTTP_OK),
                ),
                {
                    "service_sid": "ZS00000000000000000000000000000000",
                    "function_sid": "ZH00000000000000000000000000000000",
                    "url": "https://identity-0000.twil.io/verify",
                },
            ),
            WidgetSpec(
                "pin_ok",
                "set-variables",
                (Outcome("next", None, 1, _INSTANT),),
                {"variables": [{"key": "verified", "value": "true"}]},
            ),
        ),
    )


def _support_line() -> FlowSpec:
    return FlowSpec(
        key="support",
        name="Account Support Line",
        description="Checks the caller's identity with a subflow, then queues them for an agent",
        share=0.15,
        channel="voice",
        widgets=(
            _trigger("incomingCall", "welcome"),
            WidgetSpec(
                "welcome",
                "say-play",
                (Outcome("audioComplete", "verify_identity", 1, _SAY),),
                {"say": "Welcome to account support.", "loop": 1},
            ),
            WidgetSpec(
                "verify_identity",
                "run-subflow",
                # The time spent here is the subflow's; these durations are the few seconds
                # Studio takes to return to the parent after the subflow ends.
                (
                    Outcome("completed", "queue_agent", 0.95, between(0, 1.5)),
                    Outcome("failed", "goodbye", 0.05, between(0, 1.5)),
                ),
                {"parameters": [{"key": "caller", "value": "{{contact.channel.address}}"}]},
                subflow="identity",
            ),
            WidgetSpec(
                "queue_agent",
                "enqueue-call",
                (
                    Outcome("callComplete", None, 0.85, lognormal(420, 0.9, 30, 3600)),
                    Outcome("failedToEnqueue", "goodbye", 0.05, between(0, 2)),
                    Outcome("callFailure", None, 0.1, lognormal(60, 1.0, 5, 1200)),
                ),
                {"queue_name": "account-support", "timeout": "3600"},
            ),
            WidgetSpec(
                "goodbye",
                "say-play",
                (Outcome("audioComplete", None, 1, between(2, 6)),),
                {"say": "We could not help you right now. Goodbye.", "loop": 1},
            ),
        ),
    )


def build_flows() -> tuple[FlowSpec, ...]:
    """The account's flows, in listing order (the subflow is a flow of its own)."""
    return (_ivr(), _sms_survey(), _reminder(), _support_line(), _identity_check())
