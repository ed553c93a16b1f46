"""Twilio's documented Event Streams examples for Studio, as test fixtures.

From docs/events/event-types/studio/flow. Kept as published except that the example SIDs,
33 characters there, are padded to the 34 of a real SID (``FN`` + 32 hex digits). Published
oddities kept on purpose: no ``time``, ``datacontenttype`` holding a timestamp, and a
``started`` example whose data says ``"status": "ended"`` and ``"ended_reason": "FLOW_END"``.

The page's step section was not retrievable; ``STEP_ENDED_EXAMPLE`` is built from the
documented ``Studio.FlowStepEvent`` field list (``account_sid``, ``date_created``,
``execution_sid``, ``flow_sid``, ``name``, ``parent_step_sid``, ``step_sid``,
``transitioned_from``, ``transitioned_to``) in the style of the execution examples.
"""

from __future__ import annotations

import copy
from typing import Any

EXAMPLE_EXECUTION_SID = "FN" + "0" * 31 + "1"
EXAMPLE_ACCOUNT_SID = "AC" + "0" * 31 + "1"
EXAMPLE_FLOW_SID = "FW" + "0" * 31 + "1"
EXAMPLE_STEP_SID = "FT" + "0" * 31 + "1"
EXAMPLE_CALL_SID = "CA" + "0" * 31 + "1"

_EXECUTION_DATA: dict[str, Any] = {
    "execution_sid": EXAMPLE_EXECUTION_SID,
    "account_sid": EXAMPLE_ACCOUNT_SID,
    "flow_sid": EXAMPLE_FLOW_SID,
    "contact_channel_address": "+11234567890",
    "status": "ended",
    "ended_reason": "FLOW_END",
    "date_created": "2025-01-01T00:00:00.000Z",
    "date_updated": "2025-01-01T00:00:01.000Z",
    "started_by": EXAMPLE_CALL_SID,
    "flow_revision": 1196,
}

EXECUTION_ENDED_EXAMPLE: dict[str, Any] = {
    "specversion": "1.0",
    "type": "com.twilio.studio.flow.execution.ended",
    "source": "AB00000000000000000000000001",
    "id": "NO00000000000000000000000001",
    "dataschema": "https://events-schemas.twilio.com/Studio.FlowExecutionEvent/2",
    "datacontenttype": "2025-10-08T07:17:02.363Z",
    "data": _EXECUTION_DATA,
}

EXECUTION_STARTED_EXAMPLE: dict[str, Any] = {
    **EXECUTION_ENDED_EXAMPLE,
    "type": "com.twilio.studio.flow.execution.started",
    "data": dict(_EXECUTION_DATA),
}

STEP_ENDED_EXAMPLE: dict[str, Any] = {
    "specversion": "1.0",
    "type": "com.twilio.studio.flow.step.ended",
    "source": "AB00000000000000000000000001",
    "id": "NO00000000000000000000000002",
    "dataschema": "https://events-schemas.twilio.com/Studio.FlowStepEvent/1",
    "datacontenttype": "application/json",
    "data": {
        "account_sid": EXAMPLE_ACCOUNT_SID,
        "date_created": "2025-01-01T00:00:00.500Z",
        "execution_sid": EXAMPLE_EXECUTION_SID,
        "flow_sid": EXAMPLE_FLOW_SID,
        "name": "incomingCall",
        "parent_step_sid": None,
        "step_sid": EXAMPLE_STEP_SID,
        "transitioned_from": "Trigger",
        "transitioned_to": "say_hello",
    },
}

#: The keys of each documented shape, for tests of what the simulator sends.
ENVELOPE_KEYS = frozenset(STEP_ENDED_EXAMPLE)
EXECUTION_DATA_KEYS = frozenset(_EXECUTION_DATA) | {"ended_reason", "date_updated"}
EXECUTION_REQUIRED_DATA_KEYS = frozenset(_EXECUTION_DATA) - {"ended_reason", "date_updated"}
STEP_DATA_KEYS = frozenset(STEP_ENDED_EXAMPLE["data"])


def example(document: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of an example, so that a test can change it freely."""
    return copy.deepcopy(document)
