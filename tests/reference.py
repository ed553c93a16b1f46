"""Twilio's published specs, read from ../shared/reference beside the project when present.

They live outside the project (a user's fresh clone has none), so a test that needs one skips
with the reason there; under CI (``CI=true``) the copy is always laid out, so its absence
fails the test instead of letting a whole check pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"


def reference_path(name: str) -> Path:
    """The path of Twilio's spec ``name`` (e.g. ``twilio_studio_v2.json``), or skip/fail."""
    path = REFERENCE_DIR / name
    if path.is_file():
        return path
    reason = (
        f"Twilio's reference spec is not at {path} (it lives outside the project; a fresh "
        "clone has no ../shared)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI always has it, so its absence is an error there")
    pytest.skip(f"{reason}. `make spec-check SPEC=<downloaded spec>` runs the same checks")
