"""A Twilio Studio look-alike over real HTTP: the default backend and the test backbone."""

from .clock import FakeClock, system_clock
from .eventstreams import DeliveryOptions, EventStreamsPusher
from .faults import Faults
from .service import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, Simulator, SimulatorConfig

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "DeliveryOptions",
    "EventStreamsPusher",
    "FakeClock",
    "Faults",
    "Simulator",
    "SimulatorConfig",
    "system_clock",
]
