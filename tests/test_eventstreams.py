"""Tests for eventstreams: Twilio's webhook signature and CloudEvents to domain types."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from studio_exporter.core.eventstreams import (
    EXECUTION_ENDED,
    EXECUTION_STARTED,
    STEP_ENDED,
    CloudEvent,
    EventError,
    complete_step,
    compute_signature,
    decode_event,
    execution_event,
    parse_delivery,
    parse_time,
    sign_request,
    step_event,
    url_variants,
    verify_signature,
    with_body_hash,
)
from tests.factories import ACCOUNT_SID, EXECUTION_SID, FLOW_SID, make_step, step_sid
from tests.twilio_examples import (
    EXAMPLE_EXECUTION_SID,
    EXAMPLE_FLOW_SID,
    EXAMPLE_STEP_SID,
    EXECUTION_ENDED_EXAMPLE,
    EXECUTION_STARTED_EXAMPLE,
    STEP_ENDED_EXAMPLE,
)

TOKEN = "12345"
SINK = "https://exporter.example.com/webhooks/event-streams"

# twilio-python's published vector (tests/unit/test_request_validator.py, validate body).
PUBLISHED_BODY = b'{"property": "value", "boolean": true}'
PUBLISHED_BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
PUBLISHED_URL = f"https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={PUBLISHED_BODY_HASH}"
PUBLISHED_SIGNATURE = "a9nBmqA0ju/hNViExpshrM61xv4="


def twilio_signature(token: str, sink_url: str, body: bytes) -> tuple[str, str]:
    """Twilio's published algorithm, step by step, without the code under test."""
    body_hash = hashlib.sha256(body).hexdigest()  # 1. hex SHA-256 of the raw body
    separator = "&" if "?" in sink_url else "?"
    request_url = f"{sink_url}{separator}bodySHA256={body_hash}"  # 2. into the query string
    mac = hmac.new(token.encode("utf-8"), request_url.encode("utf-8"), hashlib.sha1)  # 3.
    return request_url, base64.b64encode(mac.digest()).decode()  # 4. Base64


def event(event_type: str, data: dict[str, Any], event_id: str = "EV1") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": event_type,
        "source": "/v2/Flows",
        "id": event_id,
        "dataschema": "https://events-schemas.twilio.com/Studio.FlowStepEvent/1",
        "datacontenttype": "application/json",
        "time": "2017-11-06T12:00:05.123Z",
        "data": data,
    }


def step_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "step_sid": step_sid(7),
        "account_sid": ACCOUNT_SID,
        "flow_sid": FLOW_SID,
        "execution_sid": EXECUTION_SID,
        "parent_step_sid": None,
        "name": "incomingMessage",
        "transitioned_from": "Trigger",
        "transitioned_to": "ask",
        "date_created": "2017-11-06T12:00:05.123Z",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not ...}


def cloud(event_type: str, data: dict[str, Any]) -> CloudEvent:
    return decode_event(json.dumps(event(event_type, data)).encode())


# -- signatures -----------------------------------------------------------------------------


def test_published_vector_verifies() -> None:
    assert hashlib.sha256(PUBLISHED_BODY).hexdigest() == PUBLISHED_BODY_HASH
    assert verify_signature(TOKEN, PUBLISHED_URL, PUBLISHED_BODY, PUBLISHED_SIGNATURE)
    sink = PUBLISHED_URL.rsplit("&bodySHA256=", 1)[0]
    assert sign_request(TOKEN, sink, PUBLISHED_BODY) == (PUBLISHED_URL, PUBLISHED_SIGNATURE)


@pytest.mark.parametrize(
    "sink",
    [
        pytest.param(SINK, id="no-query"),
        pytest.param(SINK + "?tenant=a", id="with-query"),
        pytest.param("http://127.0.0.1:9464/webhooks/event-streams", id="http-with-port"),
    ],
)
def test_signature_matches_independent_computation(sink: str) -> None:
    body = json.dumps([event(STEP_ENDED, step_data())]).encode()
    request_url, expected = twilio_signature(TOKEN, sink, body)
    assert compute_signature(TOKEN, sink, body) == expected
    assert sign_request(TOKEN, sink, body) == (request_url, expected)
    assert verify_signature(TOKEN, request_url, body, expected)
    # Without bodySHA256 in the URL (a configured public URL), the hash is added as Twilio does.
    assert verify_signature(TOKEN, sink, body, expected)


@pytest.mark.parametrize(
    ("token", "signature"),
    [
        pytest.param("54321", None, id="other-token"),
        pytest.param(TOKEN, "", id="empty"),
        pytest.param(TOKEN, "a9nBmqA0ju/hNViExpshrM61xv5=", id="one-character-off"),
        pytest.param(TOKEN, "not base64 at all é", id="garbage"),
    ],
)
def test_wrong_signature_is_refused(token: str, signature: str | None) -> None:
    given = PUBLISHED_SIGNATURE if signature is None else signature
    assert not verify_signature(token, PUBLISHED_URL, PUBLISHED_BODY, given)


@pytest.mark.parametrize("position", [0, 10, len(PUBLISHED_BODY) - 1])
def test_replayed_body_with_one_changed_byte_is_refused(position: int) -> None:
    tampered = bytearray(PUBLISHED_BODY)
    tampered[position] ^= 0x01
    assert not verify_signature(TOKEN, PUBLISHED_URL, bytes(tampered), PUBLISHED_SIGNATURE)
    # Nor with the hash recomputed by the attacker: the URL is signed.
    forged_url = with_body_hash(PUBLISHED_URL.rsplit("&bodySHA256=", 1)[0], bytes(tampered))
    assert not verify_signature(TOKEN, forged_url, bytes(tampered), PUBLISHED_SIGNATURE)


@pytest.mark.parametrize(
    ("signed_sink", "received_sink"),
    [
        pytest.param(
            "https://mycompany.com/hook", "https://mycompany.com:443/hook", id="https-port-added"
        ),
        pytest.param(
            "https://mycompany.com:443/hook", "https://mycompany.com/hook", id="https-port-removed"
        ),
        pytest.param("http://mycompany.com:80/hook", "http://mycompany.com/hook", id="http-80"),
        pytest.param(
            "https://mycompany.com/hook", "https://mycompany.com:8443/hook", id="odd-port-removed"
        ),
        pytest.param(
            "https://mycompany.com/hook", "https://user:pass@mycompany.com/hook", id="userinfo"
        ),
    ],
)
def test_url_with_and_without_port_verifies(signed_sink: str, received_sink: str) -> None:
    body = b'[{"id":"EV1","type":"x"}]'
    _, signature = twilio_signature(TOKEN, signed_sink, body)
    received = with_body_hash(received_sink, body)
    assert verify_signature(TOKEN, received, body, signature)


def test_other_host_or_path_does_not_verify() -> None:
    body = b"[]"
    _, signature = twilio_signature(TOKEN, "https://mycompany.com/hook", body)
    assert not verify_signature(
        TOKEN, with_body_hash("https://evil.com/hook", body), body, signature
    )
    assert not verify_signature(
        TOKEN, with_body_hash("https://mycompany.com/hook2", body), body, signature
    )


def test_url_variants_keep_the_rest_of_the_url_byte_for_byte() -> None:
    url = "HTTPS://Host.example:8443/a%20b?x=1&x=2#frag"
    assert url_variants(url) == (
        "HTTPS://Host.example/a%20b?x=1&x=2#frag",
        "HTTPS://Host.example:8443/a%20b?x=1&x=2#frag",
    )
    assert url_variants("https://[::1]/p") == ("https://[::1]/p", "https://[::1]:443/p")


def test_two_body_hashes_are_refused() -> None:
    url = PUBLISHED_URL + f"&bodySHA256={PUBLISHED_BODY_HASH}"
    _, signature = twilio_signature(TOKEN, url.split("?")[0], PUBLISHED_BODY)
    assert not verify_signature(TOKEN, url, PUBLISHED_BODY, signature)


# -- deliveries -----------------------------------------------------------------------------


def test_batched_delivery_is_split_into_compact_events() -> None:
    body = json.dumps(
        [event(STEP_ENDED, step_data(), "EV1"), event(EXECUTION_STARTED, {}, "EV2")], indent=2
    ).encode()
    delivery = parse_delivery(body)
    assert [(e.id, e.type) for e in delivery.events] == [
        ("EV1", STEP_ENDED),
        ("EV2", EXECUTION_STARTED),
    ]
    assert delivery.rejected == 0
    assert json.loads(delivery.events[0].payload) == event(STEP_ENDED, step_data(), "EV1")
    assert b"\n" not in delivery.events[0].payload


def test_single_event_delivery() -> None:
    delivery = parse_delivery(json.dumps(event("com.twilio.messaging.x", {})).encode())
    assert [(e.id, e.type) for e in delivery.events] == [("EV1", "com.twilio.messaging.x")]


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("text", id="not-an-object"),
        pytest.param({"type": STEP_ENDED}, id="no-id"),
        pytest.param({"id": "", "type": STEP_ENDED}, id="empty-id"),
        pytest.param({"id": "EV9"}, id="no-type"),
    ],
)
def test_unusable_entries_are_rejected_and_the_rest_kept(entry: object) -> None:
    delivery = parse_delivery(json.dumps([entry, event(STEP_ENDED, step_data())]).encode())
    assert delivery.rejected == 1
    assert [e.id for e in delivery.events] == ["EV1"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="broken"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"42", id="number"),
        pytest.param(b'"event"', id="string"),
    ],
)
def test_malformed_delivery_raises(body: bytes) -> None:
    with pytest.raises(EventError):
        parse_delivery(body)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "2017-11-06T12:00:05.123Z",
            datetime(2017, 11, 6, 12, 0, 5, 123000, tzinfo=UTC),
            id="milliseconds",
        ),
        pytest.param(
            "2017-11-06T12:00:05Z", datetime(2017, 11, 6, 12, 0, 5, tzinfo=UTC), id="rest"
        ),
        pytest.param(
            "2017-11-06T14:00:05+02:00", datetime(2017, 11, 6, 12, 0, 5, tzinfo=UTC), id="offset"
        ),
        pytest.param("yesterday", None, id="garbage"),
        pytest.param(None, None, id="null"),
    ],
)
def test_parse_time(text: str | None, expected: datetime | None) -> None:
    assert parse_time(text) == expected


# -- executions -----------------------------------------------------------------------------


def execution_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "execution_sid": EXECUTION_SID,
        "account_sid": ACCOUNT_SID,
        "flow_sid": FLOW_SID,
        "contact_channel_address": "+15555550100",
        "status": "active",
        "ended_reason": None,
        "date_created": "2017-11-06T12:00:00.250Z",
        "date_updated": "2017-11-06T12:00:00.250Z",
        "started_by": "SM" + "0" * 32,
        "flow_revision": 3,
    }
    data.update(overrides)
    return data


def test_execution_started_event() -> None:
    info = execution_event(cloud(EXECUTION_STARTED, execution_data()))
    execution = info.execution()
    assert not info.ended
    assert execution.sid == EXECUTION_SID
    assert execution.flow_sid == FLOW_SID
    assert execution.status == "active"
    assert execution.flow_version == 3
    assert execution.date_created == datetime(2017, 11, 6, 12, 0, 0, 250000, tzinfo=UTC)
    assert execution.contact_channel_address is None  # personal data is not carried over


def test_execution_ended_event_is_ended_whatever_its_status_says() -> None:
    info = execution_event(
        cloud(EXECUTION_ENDED, execution_data(status="active", ended_reason="FLOW_END"))
    )
    assert info.ended
    assert info.ended_reason == "FLOW_END"
    assert info.execution().is_ended


def test_started_event_without_date_uses_the_event_time() -> None:
    info = execution_event(cloud(EXECUTION_STARTED, execution_data(date_created=None)))
    assert info.date_created == datetime(2017, 11, 6, 12, 0, 5, 123000, tzinfo=UTC)


def test_ended_event_without_date_needs_one_from_elsewhere() -> None:
    info = execution_event(cloud(EXECUTION_ENDED, execution_data(date_created=None)))
    assert info.date_created is None
    with pytest.raises(EventError):
        info.execution()
    known = datetime(2017, 11, 6, 12, 0, tzinfo=UTC)
    assert info.execution(known).date_created == known


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"execution_sid": None}, id="no-execution"),
        pytest.param({"flow_sid": "FW../../Accounts"}, id="hostile-flow-sid"),
    ],
)
def test_execution_event_that_cannot_be_located_raises(overrides: dict[str, Any]) -> None:
    with pytest.raises(EventError):
        execution_event(cloud(EXECUTION_STARTED, execution_data(**overrides)))


# -- steps ----------------------------------------------------------------------------------


def test_complete_step_event() -> None:
    pushed = step_event(cloud(STEP_ENDED, step_data()))
    assert pushed.missing == ()
    assert pushed.step is not None
    assert pushed.step.sid == step_sid(7)
    assert pushed.step.event == "incomingMessage"
    assert pushed.step.widget_type == ""  # Twilio's step events carry no type
    assert pushed.step.parent_step_sid is None
    assert pushed.step.date_created.microsecond == 123000


def test_rest_shaped_step_is_read_too() -> None:
    data = step_data(step_sid=..., type="trigger")
    data["sid"] = step_sid(8)
    pushed = step_event(cloud(STEP_ENDED, data))
    assert pushed.step is not None
    assert (pushed.step.sid, pushed.step.widget_type) == (step_sid(8), "trigger")


def test_subflow_step_keeps_its_parent() -> None:
    pushed = step_event(cloud(STEP_ENDED, step_data(parent_step_sid=step_sid(3))))
    assert pushed.step is not None
    assert pushed.step.parent_step_sid == step_sid(3)


def test_absent_parent_key_reads_as_top_level() -> None:
    # A serializer that omits nulls: the end-of-execution REST read would show otherwise.
    pushed = step_event(cloud(STEP_ENDED, step_data(parent_step_sid=...)))
    assert pushed.step is not None
    assert pushed.step.parent_step_sid is None


def test_twilio_documented_step_example() -> None:
    pushed = step_event(decode_event(json.dumps(STEP_ENDED_EXAMPLE).encode()))
    assert pushed.missing == ()
    assert pushed.step is not None
    assert pushed.step.sid == EXAMPLE_STEP_SID
    assert (pushed.step.transitioned_from, pushed.step.transitioned_to) == (
        "Trigger",
        "say_hello",
    )
    assert pushed.step.date_created == datetime(2025, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("document", "ended"),
    [
        pytest.param(EXECUTION_STARTED_EXAMPLE, False, id="started"),
        pytest.param(EXECUTION_ENDED_EXAMPLE, True, id="ended"),
    ],
)
def test_twilio_documented_execution_examples(document: dict[str, Any], ended: bool) -> None:
    cloud_event = decode_event(json.dumps(document).encode())
    assert cloud_event.time is None  # the examples carry no time
    info = execution_event(cloud_event)
    execution = info.execution()
    assert info.ended is ended
    # The published started example says "ended": the event's type decides.
    assert execution.is_ended is ended
    assert execution.sid == EXAMPLE_EXECUTION_SID
    assert execution.flow_sid == EXAMPLE_FLOW_SID
    assert execution.flow_version == 1196
    assert execution.date_created == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        pytest.param({"name": ...}, ("name",), id="no-name"),
        pytest.param({"date_created": "soon"}, ("date_created",), id="bad-date"),
        pytest.param({"parent_step_sid": "FTnope"}, ("parent_step_sid",), id="bad-parent"),
        pytest.param(
            {"transitioned_from": ..., "transitioned_to": ""},
            ("transitioned_from", "transitioned_to"),
            id="no-transition",
        ),
    ],
)
def test_missing_step_fields_are_reported(
    overrides: dict[str, Any], missing: tuple[str, ...]
) -> None:
    pushed = step_event(cloud(STEP_ENDED, step_data(**overrides)))
    assert pushed.step is None
    assert pushed.missing == missing
    assert (pushed.sid, pushed.execution_sid, pushed.flow_sid) == (
        step_sid(7),
        EXECUTION_SID,
        FLOW_SID,
    )


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"step_sid": ...}, id="no-sid"),
        pytest.param({"execution_sid": "FN1"}, id="bad-execution"),
        pytest.param({"flow_sid": ...}, id="no-flow"),
    ],
)
def test_step_event_that_cannot_be_located_raises(overrides: dict[str, Any]) -> None:
    with pytest.raises(EventError):
        step_event(cloud(STEP_ENDED, step_data(**overrides)))


def test_complete_step_keeps_the_pushed_values_and_milliseconds() -> None:
    pushed = step_event(cloud(STEP_ENDED, step_data(parent_step_sid="FTnope")))
    fetched = make_step(
        "Trigger", "other", 5, number=7, widget_type="trigger", parent_step_sid=step_sid(2)
    )
    step = complete_step(pushed, fetched)
    assert step.widget_type == "trigger"  # from REST: the event has none
    assert step.parent_step_sid == step_sid(2)  # from REST: the event's was unusable
    assert step.transitioned_to == "ask"  # from the event
    assert step.date_created.microsecond == 123000


def test_complete_step_refuses_another_step() -> None:
    pushed = step_event(cloud(STEP_ENDED, step_data(name=...)))
    with pytest.raises(EventError):
        complete_step(pushed, make_step("Trigger", "ask", 5, number=8))


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"nope", id="not-json"),
        pytest.param(b"[]", id="not-object"),
        pytest.param(b'{"id": "EV1"}', id="no-type"),
    ],
)
def test_decode_event_refuses_unusable_payloads(payload: bytes) -> None:
    with pytest.raises(EventError):
        decode_event(payload)
