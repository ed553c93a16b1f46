"""The simulator as an object: configure, start on a port, read the truth, change faults, stop."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

from .accounts import (
    ACCOUNT_STATUSES,
    AccountsApi,
    SimAccount,
    account_flows,
    subaccount_seed,
    subaccount_sid,
    subaccount_token,
)
from .api import StudioApi
from .clock import Clock, epoch_seconds, system_clock
from .eventstreams import DeliveryOptions, EventFeed, EventStreamSender, EventStreamsPusher
from .faults import Faults
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
    over ``history_days``, with real-life durations. ``subaccounts`` adds that many subaccounts
    of the main account, each with its own credentials, flows (the default ones, varied) and
    traffic of the same size and rate as the main account's (see ``accounts.py``)."""

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
    subaccounts: int = 0

    def __post_init__(self) -> None:
        if not _ACCOUNT_SID.match(self.account_sid):
            raise ValueError(
                f"account_sid must match ^AC[0-9a-fA-F]{{32}}$, got {self.account_sid!r}"
            )
        if (
            self.history_executions < 0
            or self.history_days < 0
            or self.rate < 0
            or self.subaccounts < 0
        ):
            raise ValueError(
                "history_executions, history_days, rate and subaccounts must not be negative"
            )
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
        self._start = math.floor(epoch_seconds(cfg.start or cfg.clock()))
        main = self._account(
            0, cfg.account_sid, cfg.auth_token, "Main account", self._start - 365 * 86400
        )
        main.api_key_sid, main.api_key_secret = cfg.api_key_sid, cfg.api_key_secret
        if cfg.api_key_sid is not None and cfg.api_key_secret is not None:
            main.api.add_credentials(cfg.api_key_sid, cfg.api_key_secret)
        self.traffic = main.traffic
        self.renderer = main.renderer
        self.api = main.api
        self.accounts_api = AccountsApi(main, self._now)
        self._subaccounts = 0
        for _ in range(cfg.subaccounts):
            self.add_subaccount(created=self._start - 86400)
        self._server: HttpServer | None = None
        self._pushers: list[EventStreamsPusher] = []
        self.url = ""

    def _account(self, number: int, sid: str, token: str, name: str, created: float) -> SimAccount:
        cfg = self.config
        seed = subaccount_seed(cfg.seed, number)
        traffic_config = TrafficConfig(
            seed=seed,
            start=self._start,
            history_executions=cfg.history_executions,
            history_days=cfg.history_days,
            rate=cfg.rate,
            speed=cfg.speed,
        )
        traffic = Traffic(traffic_config, account_flows(cfg.seed, number), sid)
        renderer = Renderer(traffic, sid, cfg.subflow_parent)
        api = StudioApi(traffic, renderer, self._now, {sid: token}, cfg.faults, dict)
        owner = cfg.account_sid
        account = SimAccount(sid, token, name, owner, created, traffic, renderer, api)
        api.set_truth(lambda: self.truth(sid))
        return account

    def add_subaccount(
        self, friendly_name: str | None = None, *, created: float | None = None
    ) -> SimAccount:
        """Create a subaccount (as Twilio's CreateAccount would) with its own credentials,
        flows and traffic; its history is generated like the main account's."""
        self._subaccounts += 1
        number = self._subaccounts
        cfg = self.config
        account = self._account(
            number,
            subaccount_sid(cfg.account_sid, number),
            subaccount_token(cfg.account_sid, number, cfg.seed),
            friendly_name or f"Customer {number}",
            self._now() if created is None else created,
        )
        self.accounts_api.add(account)
        return account

    @property
    def accounts(self) -> list[SimAccount]:
        """The main account first, then its subaccounts in creation order."""
        return self.accounts_api.accounts()

    def account(self, sid: str) -> SimAccount:
        found = self.accounts_api.get(sid)
        if found is None:
            raise KeyError(sid)
        return found

    def rotate_auth_token(self, sid: str) -> str:
        """Give a subaccount a new auth token (the old one stops working); returns it."""
        account = self.account(sid)
        if account is self.accounts_api.main:
            raise ValueError("the main account's token is the configured one")
        token = hashlib.blake2b(f"{account.auth_token}|rotated".encode(), digest_size=16)
        account.auth_token = token.hexdigest()
        account.api.add_credentials(sid, account.auth_token)
        account.updated = self._now()
        return account.auth_token

    def set_account_status(self, sid: str, status: str) -> None:
        """Suspend, close or reactivate a subaccount (the main account stays active)."""
        if status not in ACCOUNT_STATUSES:
            raise ValueError(f"status must be one of {ACCOUNT_STATUSES}, got {status!r}")
        account = self.account(sid)
        if account is self.accounts_api.main:
            raise ValueError("the main account's status is not simulated")
        account.status = status
        account.updated = self._now()

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
            self._server = HttpServer(self.accounts_api.handle, self.config.host, self.config.port)
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
        account_sid: str | None = None,
    ) -> EventStreamsPusher:
        """Deliver the traffic as signed Event Streams webhooks to ``url``.

        Like a real subscription, only executions created from now on are pushed, unless
        ``since`` replays older ones (tests use it to push a finished history). The pusher
        runs on its own thread until ``stop()`` (of the pusher or of the simulator).
        ``omit_null_parent``: top-level steps leave ``parent_step_sid`` out instead of null.
        ``account_sid`` picks the account whose traffic is pushed, signed with its auth token
        (default: the main account).
        """
        start = self._now() if since is None else epoch_seconds(since)
        account = self.account(account_sid or self.config.account_sid)
        feed = EventFeed(
            account.traffic, account.renderer, since=start, omit_null_parent=omit_null_parent
        )
        sender = EventStreamSender(url, account.auth_token, options or DeliveryOptions())
        pusher = EventStreamsPusher(feed, sender, self._now, interval=interval)
        pusher.start()
        self._pushers.append(pusher)
        return pusher

    def set_faults(self, faults: Faults) -> None:
        """Change the injected faults of every account from now on (counts so far are kept)."""
        for account in self.accounts:
            account.api.faults = faults

    @property
    def faults(self) -> Faults:
        return self.api.faults

    def truth(self, account_sid: str | None = None) -> dict[str, Any]:
        """What has been generated and served up to the clock's now (see ``truth.py``), for
        one account (default: the main account)."""
        account = self.account(account_sid or self.config.account_sid)
        now = self._now()
        account.traffic.advance(now)
        return compute_truth(
            account.traffic,
            account.renderer,
            now,
            account.api.faults.missing_steps,
            account.api.request_counts(),
            account.api.dice.snapshot(),
            missing_end_steps=account.api.faults.missing_end_steps,
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
