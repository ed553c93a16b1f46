"""The simulator as an object: configure, start on a port, read the truth, change faults, stop."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

from .api import StudioApi
from .clock import Clock, epoch_seconds, system_clock
from .eventstreams import DeliveryOptions, EventFeed, EventStreamSender, EventStreamsPusher
from .faults import Faults
from .flows import build_flows
from .resources import Renderer
from .server import HttpServer
from .traffic import SUBFLOW_PARENT_READINGS, Traffic, TrafficConfig
from .truth import compute_truth

DEFAULT_ACCOUNT_SID = "AC" + "51a7" * 8
DEFAULT_AUTH_TOKEN = "0badc0de" * 4
_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")


@dataclass(frozen=True)
class SimulatorConfig:
    """What to simulate. ``rate`` is new executions per simulated minute; ``speed`` divides the
    durations of live executions (60: a one-minute wait lasts one second). History executions
    are ended before ``start`` (default: the clock's time when the simulator is built), spread
    over ``history_days``, with real-life durations."""

    seed: int = 0
    history_executions: int = 1000
    history_days: float = 7.0
    rate: float = 0.0
    speed: float = 1.0
    faults: Faults = field(default_factory=Faults)
    clock: Clock = system_clock
    start: datetime | None = None
    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = DEFAULT_AUTH_TOKEN
    api_key_sid: str | None = None
    api_key_secret: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    #: What a subflow step's ``parent_step_sid`` names: "into" (the step into the run-subflow
    #: widget) or "out" (the step out of it). Twilio's documentation fits both.
    subflow_parent: str = "into"

    def __post_init__(self) -> None:
        if not _ACCOUNT_SID.match(self.account_sid):
            raise ValueError(
                f"account_sid must match ^AC[0-9a-fA-F]{{32}}$, got {self.account_sid!r}"
            )
        if self.history_executions < 0 or self.history_days < 0 or self.rate < 0:
            raise ValueError("history_executions, history_days and rate must not be negative")
        if self.speed <= 0:
            raise ValueError(f"speed must be positive, got {self.speed}")
        if self.subflow_parent not in SUBFLOW_PARENT_READINGS:
            raise ValueError(
                f"subflow_parent must be one of {', '.join(SUBFLOW_PARENT_READINGS)}, "
                f"got {self.subflow_parent!r}"
            )
        if (self.api_key_sid is None) != (self.api_key_secret is None):
            raise ValueError("api_key_sid and api_key_secret go together")


class Simulator:
    """A Twilio Studio look-alike over real HTTP. Usable as a context manager."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        cfg = self.config
        start = math.floor(epoch_seconds(cfg.start or cfg.clock()))
        traffic_config = TrafficConfig(
            seed=cfg.seed,
            start=start,
            history_executions=cfg.history_executions,
            history_days=cfg.history_days,
            rate=cfg.rate,
            speed=cfg.speed,
        )
        self.traffic = Traffic(traffic_config, build_flows(), cfg.account_sid)
        self.renderer = Renderer(self.traffic, cfg.account_sid, cfg.subflow_parent)
        credentials = {cfg.account_sid: cfg.auth_token}
        if cfg.api_key_sid is not None and cfg.api_key_secret is not None:
            credentials[cfg.api_key_sid] = cfg.api_key_secret
        self.api = StudioApi(
            self.traffic, self.renderer, self._now, credentials, cfg.faults, self.truth
        )
        self._server: HttpServer | None = None
        self._pushers: list[EventStreamsPusher] = []
        self.url = ""

    @property
    def account_sid(self) -> str:
        return self.config.account_sid

    @property
    def auth_token(self) -> str:
        return self.config.auth_token

    @property
    def flow_sids(self) -> tuple[str, ...]:
        return self.traffic.flow_sids

    def _now(self) -> float:
        return epoch_seconds(self.config.clock())

    def start(self) -> str:
        """Listen (on a free port unless configured) in a background thread; the base URL."""
        if self._server is None:
            self._server = HttpServer(self.api.handle, self.config.host, self.config.port)
            port = self._server.start()
            host = "127.0.0.1" if self.config.host in {"", "0.0.0.0"} else self.config.host  # noqa: S104
            self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        for pusher in self._pushers:
            pusher.stop()
        self._pushers.clear()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def push_events_to(
        self,
        url: str,
        options: DeliveryOptions | None = None,
        *,
        interval: float = 0.2,
        since: datetime | None = None,
        omit_null_parent: bool = False,
    ) -> EventStreamsPusher:
        """Deliver the traffic as signed Event Streams webhooks to ``url``.

        Like a real subscription, only executions created from now on are pushed, unless
        ``since`` replays older ones (tests use it to push a finished history). The pusher
        runs on its own thread until ``stop()`` (of the pusher or of the simulator).
        ``omit_null_parent``: top-level steps leave ``parent_step_sid`` out instead of null.
        """
        start = self._now() if since is None else epoch_seconds(since)
        feed = EventFeed(
            self.traffic, self.renderer, since=start, omit_null_parent=omit_null_parent
        )
        sender = EventStreamSender(url, self.config.auth_token, options or DeliveryOptions())
        pusher = EventStreamsPusher(feed, sender, self._now, interval=interval)
        pusher.start()
        self._pushers.append(pusher)
        return pusher

    def set_faults(self, faults: Faults) -> None:
        """Change the injected faults from now on (counts so far are kept)."""
        self.api.faults = faults

    @property
    def faults(self) -> Faults:
        return self.api.faults

    def truth(self) -> dict[str, Any]:
        """What has been generated and served up to the clock's now (see ``truth.py``)."""
        now = self._now()
        self.traffic.advance(now)
        return compute_truth(
            self.traffic,
            self.renderer,
            now,
            self.api.faults.missing_steps,
            self.api.request_counts(),
            self.api.dice.snapshot(),
            missing_end_steps=self.api.faults.missing_end_steps,
        )

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
