"""Twilio SID patterns, and the check every SID passes before it reaches a URL path."""

from __future__ import annotations

import re

ACCOUNT_SID = "AC"
API_KEY_SID = "SK"
FLOW_SID = "FW"
EXECUTION_SID = "FN"
STEP_SID = "FT"

_PATTERNS = {
    prefix: re.compile(rf"^{prefix}[0-9a-fA-F]{{32}}\Z")
    for prefix in (ACCOUNT_SID, API_KEY_SID, FLOW_SID, EXECUTION_SID, STEP_SID)
}
_NAMES = {
    ACCOUNT_SID: "Account",
    API_KEY_SID: "API key",
    FLOW_SID: "Flow",
    EXECUTION_SID: "Execution",
    STEP_SID: "Step",
}


class InvalidSidError(ValueError):
    """A value that should be a Twilio SID of one kind is not."""


def is_sid(value: str, prefix: str) -> bool:
    """True when ``value`` is a SID of the kind ``prefix`` (two letters + 32 hex digits)."""
    return _PATTERNS[prefix].match(value) is not None


def require_sid(value: str, prefix: str) -> str:
    """Return ``value`` if it is a SID of the kind ``prefix``; raise InvalidSidError if not.

    Every SID is checked before it is put into a URL path, so a hostile or corrupt value can
    never change which resource is requested.
    """
    if not isinstance(value, str) or not is_sid(value, prefix):
        shown = repr(value)[:48]
        name = _NAMES[prefix]
        article = "an" if name[0] in "AEIOU" else "a"
        raise InvalidSidError(f"{shown} is not {article} {name} SID ({prefix} + 32 hex digits)")
    return value
