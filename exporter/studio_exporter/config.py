"""One frozen, validated Config built from flags, the environment and named defaults."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from studio_exporter.core.sharding import NO_SHARDING, Shard
from studio_exporter.core.sids import ACCOUNT_SID, API_KEY_SID, FLOW_SID, is_sid

DEFAULT_TWILIO_BASE_URL = "https://studio.twilio.com"
#: Twilio's v2010 API, where accounts and subaccounts are listed.
DEFAULT_TWILIO_API_BASE_URL = "https://api.twilio.com"
DEFAULT_ACCOUNT_REFRESH_INTERVAL = timedelta(minutes=10)
#: How long a replica's leases outlive its last renewal (renewed every third of it): the
#: longest a dead replica's units wait before other replicas take them.
DEFAULT_LEASE_DURATION = timedelta(seconds=30)
DEFAULT_LISTEN_ADDRESS = "0.0.0.0:9911"
#: The demo serves this machine only unless told otherwise (a container sets 0.0.0.0:9911).
DEMO_LISTEN_ADDRESS = "127.0.0.1:9911"
DEFAULT_LOOKBACK = timedelta(hours=1)
DEFAULT_POLL_INTERVAL = timedelta(seconds=30)
DEFAULT_FLOW_REFRESH_INTERVAL = timedelta(minutes=5)
DEFAULT_CONCURRENCY = 8
#: `backfill` reads thousands of executions once: more requests in flight by default. Twilio
#: does not publish the account's concurrency limit; over it, it answers 429 (20429), which
#: halves the limit and honours Retry-After (``throttle.AdaptiveLimiter``).
DEFAULT_BACKFILL_CONCURRENCY = 32
DEFAULT_REQUEST_TIMEOUT = timedelta(seconds=10)
DEFAULT_STATE_DIR = Path("state")
DEFAULT_MAX_SERIES = 10_000
DEFAULT_FAILURE_EVENTS = ("failed", "fail", "deliveryFailure", "error")
DEFAULT_TELEMETRY_PATH = "/metrics"
DEFAULT_MAX_CONNECTIONS = 1024
#: Twilio's Event Streams batches are far smaller; a larger declared body gets 413 unread.
DEFAULT_WEBHOOK_MAX_BODY_SIZE = 1024 * 1024
#: Personal data is protected by default: phone numbers in allowed context values are hashed.
DEFAULT_HASH_PHONE_NUMBERS = True
#: Studio keeps executions and their steps for 30 days after they started.
RETENTION = timedelta(days=30)
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
MODES = ("poll", "push", "hybrid")

_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|KB|MB)?")
_SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 * 1024, "KB": 1000, "MB": 1000 * 1000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ConfigError(ValueError):
    """Invalid configuration: one message per mistake, all reported at once."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


class Secret:
    """A credential that never shows itself in logs, reprs, tracebacks or metrics."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def parse_duration(text: str) -> timedelta:
    """Parse Prometheus-style durations: ``30s``, ``1h``, ``7d``, ``1h30m``, ``500ms``."""
    text = text.strip()
    position = 0
    seconds = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"{text!r} is not a duration (examples: 30s, 5m, 1h, 7d, 1h30m)")
    return timedelta(seconds=seconds)


def parse_size(text: str) -> int:
    """Parse a byte size: ``1048576``, ``512KiB``, ``1MiB``, ``1MB``."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size (examples: 1MiB, 512KiB, 1048576)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2) or "B"]


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class Credentials:
    """HTTP basic credentials for the Studio API: Account SID + auth token, or API key + secret."""

    account_sid: str
    username: str
    password: Secret

    @property
    def uses_api_key(self) -> bool:
        return self.username != self.account_sid


@dataclass(frozen=True, slots=True)
class Config:
    """Everything ``studio-exporter run`` needs, validated."""

    credentials: Credentials
    twilio_base_url: str = DEFAULT_TWILIO_BASE_URL
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    flows: tuple[str, ...] = ()
    lookback: timedelta = DEFAULT_LOOKBACK
    poll_interval: timedelta = DEFAULT_POLL_INTERVAL
    flow_refresh_interval: timedelta = DEFAULT_FLOW_REFRESH_INTERVAL
    concurrency: int = DEFAULT_CONCURRENCY
    request_timeout: timedelta = DEFAULT_REQUEST_TIMEOUT
    state_dir: Path = DEFAULT_STATE_DIR
    log_level: str = "info"
    log_format: str = "text"
    max_series_per_metric: int = DEFAULT_MAX_SERIES
    failure_events: frozenset[str] = frozenset(DEFAULT_FAILURE_EVENTS)
    context_allowlist: tuple[str, ...] = ()
    hash_phone_numbers: bool = DEFAULT_HASH_PHONE_NUMBERS
    phone_hash_salt: Secret = field(default_factory=lambda: Secret(""))
    mode: str = "poll"
    webhook_path: str = "/webhooks/event-streams"
    webhook_public_url: str | None = None
    web_config_file: Path | None = None
    telemetry_path: str = DEFAULT_TELEMETRY_PATH
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    webhook_max_body_size: int = DEFAULT_WEBHOOK_MAX_BODY_SIZE
    #: The account's auth token, to check Event Streams signatures (push and hybrid modes).
    webhook_auth_token: Secret | None = None
    #: Basic auth Twilio must send with webhooks (user, password), if the sink URL carries it.
    webhook_basic_auth: tuple[str, Secret] | None = None
    #: Follow every active subaccount of the account too (their credentials come from the
    #: v2010 Accounts list, read with the main account's credentials).
    include_subaccounts: bool = False
    #: Follow only these accounts (the main account and/or subaccounts); empty: all of them.
    accounts: tuple[str, ...] = ()
    account_refresh_interval: timedelta = DEFAULT_ACCOUNT_REFRESH_INTERVAL
    #: The v2010 API (accounts). None: https://api.twilio.com, or ``twilio_base_url`` when that
    #: was given, since a proxy or the simulator serves both APIs at one address.
    twilio_api_base_url: str | None = None
    #: The (account, flow) units this replica follows: those whose stable hash modulo
    #: ``--total-shards`` is ``--shard``. The default, 0 of 1, follows every unit.
    shard: Shard = NO_SHARDING
    #: Keep the state in this PostgreSQL database (one schema per account) instead of SQLite
    #: files in ``state_dir``. A secret: the URL may carry the password.
    state_postgres_url: Secret | None = None
    #: With PostgreSQL, replicas lease units for this long (``store.leases``).
    lease_duration: timedelta = DEFAULT_LEASE_DURATION

    @property
    def leases(self) -> bool:
        """True when this replica shares the work with others by leasing units: PostgreSQL
        state (``run``; ``backfill`` works alone)."""
        return self.state_postgres_url is not None

    @property
    def account_units(self) -> bool:
        """True when a leased unit is a whole account rather than one flow: push and hybrid
        modes, where an account's webhook events are one stream that cannot be routed to a
        flow's owner before the execution's flow is known (a subflow's step events name the
        subflow)."""
        return self.mode != "poll"

    @property
    def api_base_url(self) -> str:
        """Where the v2010 accounts API is read."""
        if self.twilio_api_base_url is not None:
            return self.twilio_api_base_url
        if self.twilio_base_url != DEFAULT_TWILIO_BASE_URL:
            return self.twilio_base_url
        return DEFAULT_TWILIO_API_BASE_URL

    @property
    def listen_host(self) -> str:
        return split_listen_address(self.listen_address)[0]

    @property
    def listen_port(self) -> int:
        return split_listen_address(self.listen_address)[1]


def split_listen_address(address: str) -> tuple[str, int]:
    """``host:port`` → (host, port). IPv6 addresses go in brackets (``[::1]:9911``); ``:port``
    and ``[::]:port`` mean every interface, IPv4 and IPv6 (host ``""`` and ``"::"``)."""
    host, separator, port_text = address.rpartition(":")
    if not separator or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{address!r} is not host:port (examples: 0.0.0.0:9911, [::]:9911)")
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]")):
            raise ValueError(f"{address!r}: unbalanced brackets around the IPv6 address")
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{address!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{address!r}: write an IPv6 address in brackets, as in [::1]:9911")
    return host, int(port_text)


# The flags that `run` (and `backfill`) accept, with the environment variable each may come from.
# Twilio's own variable names come first where Twilio's tools define them.
ENV_VARS: Mapping[str, tuple[str, ...]] = {
    "account_sid": ("TWILIO_ACCOUNT_SID",),
    "auth_token": ("TWILIO_AUTH_TOKEN",),
    "api_key": ("TWILIO_API_KEY",),
    "api_secret": ("TWILIO_API_SECRET",),
    "twilio_base_url": ("STUDIO_EXPORTER_TWILIO_BASE_URL",),
    "twilio_api_base_url": ("STUDIO_EXPORTER_TWILIO_API_BASE_URL",),
    "include_subaccounts": ("STUDIO_EXPORTER_INCLUDE_SUBACCOUNTS",),
    "accounts": ("STUDIO_EXPORTER_ACCOUNTS",),
    "account_refresh_interval": ("STUDIO_EXPORTER_ACCOUNT_REFRESH_INTERVAL",),
    "lease_duration": ("STUDIO_EXPORTER_LEASE_DURATION",),
    "shard": ("STUDIO_EXPORTER_SHARD",),
    "total_shards": ("STUDIO_EXPORTER_TOTAL_SHARDS",),
    "listen_address": ("STUDIO_EXPORTER_WEB_LISTEN_ADDRESS",),
    "flows": ("STUDIO_EXPORTER_FLOWS",),
    "lookback": ("STUDIO_EXPORTER_LOOKBACK",),
    "poll_interval": ("STUDIO_EXPORTER_POLL_INTERVAL",),
    "flow_refresh_interval": ("STUDIO_EXPORTER_FLOW_REFRESH_INTERVAL",),
    "concurrency": ("STUDIO_EXPORTER_CONCURRENCY",),
    "request_timeout": ("STUDIO_EXPORTER_REQUEST_TIMEOUT",),
    "state_dir": ("STUDIO_EXPORTER_STATE_DIR",),
    "state_postgres_url": ("STUDIO_EXPORTER_STATE_POSTGRES_URL",),
    "log_level": ("STUDIO_EXPORTER_LOG_LEVEL",),
    "log_format": ("STUDIO_EXPORTER_LOG_FORMAT",),
    "max_series_per_metric": ("STUDIO_EXPORTER_MAX_SERIES_PER_METRIC",),
    "failure_events": ("STUDIO_EXPORTER_FAILURE_EVENTS",),
    "context_allowlist": ("STUDIO_EXPORTER_CONTEXT_ALLOWLIST",),
    "hash_phone_numbers": ("STUDIO_EXPORTER_HASH_PHONE_NUMBERS",),
    "phone_hash_salt": ("STUDIO_EXPORTER_PHONE_HASH_SALT",),
    "mode": ("STUDIO_EXPORTER_MODE",),
    "webhook_path": ("STUDIO_EXPORTER_WEBHOOK_PATH",),
    "webhook_public_url": ("STUDIO_EXPORTER_WEBHOOK_PUBLIC_URL",),
    "web_config_file": ("STUDIO_EXPORTER_WEB_CONFIG_FILE",),
    "telemetry_path": ("STUDIO_EXPORTER_WEB_TELEMETRY_PATH",),
    "max_connections": ("STUDIO_EXPORTER_WEB_MAX_CONNECTIONS",),
    "webhook_max_body_size": ("STUDIO_EXPORTER_WEBHOOK_MAX_BODY_SIZE",),
    # A secret: read from the environment only, never a flag (it would show in `ps`).
    "webhook_basic_auth": ("STUDIO_EXPORTER_WEBHOOK_BASIC_AUTH",),
}

_RESERVED_PATHS = ("/health/live", "/health/ready")
# The secrets above may come from a file instead (Docker and Kubernetes secrets, systemd
# credentials): `<VAR>_FILE` names the file, whose content, less one final line break, is the
# value. The content is never logged; a problem names the variable and the path only.
SECRET_FILE_SETTINGS = (
    "auth_token",
    "api_secret",
    "phone_hash_salt",
    "webhook_basic_auth",
    "state_postgres_url",
)
#: Secrets read straight from the environment elsewhere (the OTLP sender's headers, which often
#: carry an API key), with the same `_FILE` twins.
SECRET_FILE_VARIABLES = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS")
FILE_SUFFIX = "_FILE"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def config_from_mapping(
    flags: Mapping[str, str | None],
    env: Mapping[str, str],
    *,
    defaults: Mapping[str, object] | None = None,
) -> Config:
    """Build a Config: an explicit flag wins, then the environment, then the default.

    ``flags`` maps the names of ``ENV_VARS`` to the raw text given on the command line (None or
    absent when not given); ``defaults`` replaces named defaults for one command (`backfill`
    has its own concurrency). Every mistake is collected and raised as one ConfigError.
    """
    env, problems = with_secret_files(env)

    def raw(name: str) -> str | None:
        given = flags.get(name)
        if given is not None:
            return given
        for var in ENV_VARS.get(name, ()):
            if var in env:
                return env[var]
        return None

    values: dict[str, object] = dict(defaults or {})

    def duration(name: str, flag: str, *, minimum: timedelta) -> None:
        text = raw(name)
        if text is None:
            return
        try:
            parsed = parse_duration(text)
        except ValueError as error:
            problems.append(f"--{flag}: {error}")
            return
        if parsed < minimum:
            problems.append(f"--{flag}: {text!r} is below the minimum {format_duration(minimum)}")
            return
        values[name] = parsed

    def integer(name: str, flag: str, *, minimum: int, maximum: int) -> None:
        text = raw(name)
        if text is None:
            return
        try:
            parsed = int(text)
        except ValueError:
            problems.append(f"--{flag}: {text!r} is not a whole number")
            return
        if not minimum <= parsed <= maximum:
            problems.append(f"--{flag}: {parsed} is outside {minimum}..{maximum}")
            return
        values[name] = parsed

    def choice(name: str, flag: str, options: Sequence[str]) -> None:
        text = raw(name)
        if text is None:
            return
        if text.lower() not in options:
            problems.append(f"--{flag}: {text!r} is not one of {', '.join(options)}")
            return
        values[name] = text.lower()

    credentials = _credentials(raw, problems)

    for name, flag in (
        ("twilio_base_url", "twilio-base-url"),
        ("twilio_api_base_url", "twilio-api-base-url"),
    ):
        base_url = raw(name)
        if base_url is None:
            continue
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append(f"--{flag}: {base_url!r} is not an http(s) URL")
        elif parts.query or parts.fragment or parts.username or parts.password:
            problems.append(
                f"--{flag}: give scheme://host[:port][/path] only, "
                "without credentials, query or fragment"
            )
        else:
            values[name] = base_url.rstrip("/")

    include_subaccounts = raw("include_subaccounts")
    if include_subaccounts is not None:
        if include_subaccounts.lower() in _TRUE:
            values["include_subaccounts"] = True
        elif include_subaccounts.lower() in _FALSE:
            values["include_subaccounts"] = False
        else:
            problems.append(f"--include-subaccounts: {include_subaccounts!r} is not true or false")
    accounts_text = raw("accounts")
    if accounts_text is not None:
        accounts = _list(accounts_text)
        bad_accounts = [sid for sid in accounts if not is_sid(sid, ACCOUNT_SID)]
        if bad_accounts:
            problems.append(
                f"--account: {', '.join(repr(sid) for sid in bad_accounts)} is not an "
                "Account SID (AC + 32 hex)"
            )
        values["accounts"] = tuple(dict.fromkeys(accounts))
    duration("account_refresh_interval", "account-refresh-interval", minimum=timedelta(seconds=1))
    duration("lease_duration", "lease-duration", minimum=timedelta(seconds=3))

    address = raw("listen_address")
    if address is not None:
        try:
            split_listen_address(address)
            values["listen_address"] = address
        except ValueError as error:
            problems.append(f"--web.listen-address: {error}")

    flows_text = raw("flows")
    if flows_text is not None:
        flows = _list(flows_text)
        bad = [sid for sid in flows if not is_sid(sid, FLOW_SID)]
        if bad:
            problems.append(
                f"--flow: {', '.join(repr(sid) for sid in bad)} is not a Flow SID (FW + 32 hex)"
            )
        values["flows"] = tuple(dict.fromkeys(flows))

    duration("lookback", "lookback", minimum=timedelta(0))
    if "lookback" in values and values["lookback"] > RETENTION:  # type: ignore[operator]
        problems.append("--lookback: Studio keeps executions for 30 days; use 30d or less")
    duration("poll_interval", "poll-interval", minimum=timedelta(milliseconds=100))
    duration("flow_refresh_interval", "flow-refresh-interval", minimum=timedelta(seconds=1))
    duration("request_timeout", "request-timeout", minimum=timedelta(milliseconds=100))
    integer("concurrency", "concurrency", minimum=1, maximum=100)
    integer("max_series_per_metric", "max-series-per-metric", minimum=10, maximum=10_000_000)
    choice("log_level", "log.level", LOG_LEVELS)
    choice("log_format", "log.format", LOG_FORMATS)
    integer("max_connections", "web.max-connections", minimum=1, maximum=1_000_000)
    body_size = raw("webhook_max_body_size")
    if body_size is not None:
        try:
            size = parse_size(body_size)
        except ValueError as error:
            problems.append(f"--webhook.max-body-size: {error}")
        else:
            if not 1024 <= size <= 64 * 1024 * 1024:
                problems.append("--webhook.max-body-size: give 1KiB..64MiB")
            else:
                values["webhook_max_body_size"] = size
    choice("mode", "mode", MODES)
    _sharding(raw("shard"), raw("total_shards"), values, problems)

    state_dir = raw("state_dir")
    if state_dir is not None:
        if not state_dir.strip():
            problems.append("--state-dir: must not be empty")
        else:
            values["state_dir"] = Path(state_dir)

    _postgres_url(
        flags.get("state_postgres_url") is not None, raw("state_postgres_url"), values, problems
    )

    failure_events = raw("failure_events")
    if failure_events is not None:
        values["failure_events"] = frozenset(_list(failure_events))
    allowlist = raw("context_allowlist")
    if allowlist is not None:
        values["context_allowlist"] = _list(allowlist)
    hash_phones = raw("hash_phone_numbers")
    if hash_phones is not None:
        if hash_phones.lower() in _TRUE:
            values["hash_phone_numbers"] = True
        elif hash_phones.lower() in _FALSE:
            values["hash_phone_numbers"] = False
        else:
            problems.append(f"--hash-phone-numbers: {hash_phones!r} is not true or false")
    salt = raw("phone_hash_salt")
    if salt is not None:
        values["phone_hash_salt"] = Secret(salt)

    webhook_path = raw("webhook_path")
    if webhook_path is not None:
        if not webhook_path.startswith("/"):
            problems.append(f"--webhook.path: {webhook_path!r} must start with /")
        else:
            values["webhook_path"] = webhook_path
    telemetry_path = raw("telemetry_path")
    if telemetry_path is not None:
        if not telemetry_path.startswith("/") or telemetry_path in ("/", *_RESERVED_PATHS):
            problems.append(
                f"--web.telemetry-path: {telemetry_path!r} must start with / and not be "
                f"/ or {', '.join(_RESERVED_PATHS)}"
            )
        elif telemetry_path == values.get("webhook_path", "/webhooks/event-streams"):
            problems.append("--web.telemetry-path: the same path as --webhook.path")
        else:
            values["telemetry_path"] = telemetry_path
    public_url = raw("webhook_public_url")
    if public_url is not None:
        if urlsplit(public_url).scheme not in ("http", "https"):
            problems.append(f"--webhook.public-url: {public_url!r} is not an http(s) URL")
        else:
            values["webhook_public_url"] = public_url

    web_config = raw("web_config_file")
    if web_config is not None:
        from studio_exporter.web.webconfig import WebConfigError, load_web_config

        try:
            load_web_config(Path(web_config)).ssl_context()  # certificates that do not load, too
            values["web_config_file"] = Path(web_config)
        except WebConfigError as error:
            problems.append(f"--web.config.file: {error}")

    if values.get("mode", "poll") != "poll":
        token = raw("auth_token")
        if not token:
            problems.append(
                "--mode push/hybrid: Event Streams signatures are checked with the account's "
                "auth token; set TWILIO_AUTH_TOKEN (also when the API is read with an API key)"
            )
        else:
            values["webhook_auth_token"] = Secret(token)
    basic_auth = raw("webhook_basic_auth")
    if basic_auth is not None:
        user, separator, password = basic_auth.partition(":")
        if not separator or not user or not password:
            problems.append("STUDIO_EXPORTER_WEBHOOK_BASIC_AUTH: give user:password")
        else:
            values["webhook_basic_auth"] = (user, Secret(password))

    if (
        credentials is not None
        and values.get("accounts")
        and not values.get("include_subaccounts")
        and values["accounts"] != (credentials.account_sid,)
    ):
        problems.append(
            "--account: naming subaccounts needs --include-subaccounts "
            "(without it only TWILIO_ACCOUNT_SID is followed)"
        )
    if problems or credentials is None:
        raise ConfigError(problems)
    return Config(credentials=credentials, **values)  # type: ignore[arg-type]


def _postgres_url(
    from_flag: bool, url: str | None, values: dict[str, object], problems: list[str]
) -> None:
    """--state.postgres-url: a postgresql:// URL, whose password stays out of the command line.

    The URL is never quoted in a problem: it may carry the password.
    """
    if url is None:
        return
    name = "--state.postgres-url" if from_flag else "STUDIO_EXPORTER_STATE_POSTGRES_URL"
    try:
        parts = urlsplit(url)
        password = parts.password
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        problems.append(f"{name}: not a valid URL")
        return
    if parts.scheme not in ("postgresql", "postgres"):
        problems.append(f"{name}: give a postgresql:// URL")
        return
    if from_flag and (password or "password=" in parts.query):
        problems.append(
            "--state.postgres-url: the URL carries a password, which `ps` would show: give the "
            "URL in STUDIO_EXPORTER_STATE_POSTGRES_URL (or _FILE), or the password in PGPASSWORD"
        )
        return
    if values.get("shard", NO_SHARDING) != NO_SHARDING:
        problems.append(
            f"{name} with --shard/--total-shards: sharded replicas keep their own SQLite state "
            "(replicas sharing PostgreSQL split the work by leases: give no --shard)"
        )
        return
    values["state_postgres_url"] = Secret(url)


#: Most replicas one deployment splits the work over (a bound on typos, not on the design).
MAX_TOTAL_SHARDS = 1000


def _sharding(
    shard_text: str | None,
    total_text: str | None,
    values: dict[str, object],
    problems: list[str],
) -> None:
    """--shard and --total-shards: whole numbers, 0 <= shard < total, poll mode only."""
    problems_before = len(problems)

    def whole(text: str | None, flag: str) -> int | None:
        if text is None:
            return None
        try:
            return int(text)
        except ValueError:
            problems.append(f"--{flag}: {text!r} is not a whole number")
            return None

    shard = whole(shard_text, "shard")
    total = whole(total_text, "total-shards")
    if (shard_text is None and total_text is None) or problems_before < len(problems):
        return
    shard = 0 if shard is None else shard
    total = 1 if total is None else total
    if not 1 <= total <= MAX_TOTAL_SHARDS:
        problems.append(f"--total-shards: {total} is outside 1..{MAX_TOTAL_SHARDS}")
    elif not 0 <= shard < total:
        problems.append(
            f"--shard: {shard} is outside 0..{total - 1} (shards are numbered from 0 to "
            f"--total-shards {total} minus 1)"
        )
    elif total > 1 and values.get("mode", "poll") != "poll":
        problems.append(
            f"--total-shards {total} with --mode {values['mode']}: a webhook delivery may "
            "reach any replica, and a replica with its own state has no way to hand the "
            "events of another shard's flows to that shard; shard in --mode poll only"
        )
    else:
        values["shard"] = Shard(shard, total)


def with_secret_files(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """``env`` with each secret given as ``<VAR>_FILE`` read into ``<VAR>``, and the problems.

    The ``_FILE`` entries read are removed, so resolving the result again changes nothing.
    """
    resolved = dict(env)
    problems: list[str] = []
    names = [var for name in SECRET_FILE_SETTINGS for var in ENV_VARS[name]]
    for var in (*names, *SECRET_FILE_VARIABLES):
        file_var = var + FILE_SUFFIX
        if file_var not in env:
            continue
        if var in env:
            problems.append(f"{var} and {file_var}: give one of them, not both")
            continue
        path = Path(env[file_var])
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            problems.append(f"{file_var}: cannot read {path}: {reason}")
            continue
        resolved[var] = content.removesuffix("\n").removesuffix("\r")
        del resolved[file_var]
    return resolved, problems


def _credentials(raw: Callable[[str], str | None], problems: list[str]) -> Credentials | None:
    account_sid = raw("account_sid")
    auth_token = raw("auth_token")
    api_key = raw("api_key")
    api_secret = raw("api_secret")
    if not account_sid:
        problems.append("TWILIO_ACCOUNT_SID (or --account-sid) is required")
        return None
    if not is_sid(account_sid, ACCOUNT_SID):
        problems.append("TWILIO_ACCOUNT_SID: not an Account SID (AC + 32 hex digits)")
        return None
    if api_key or api_secret:
        if not (api_key and api_secret):
            problems.append("TWILIO_API_KEY and TWILIO_API_SECRET must be given together")
            return None
        if not is_sid(api_key, API_KEY_SID):
            problems.append("TWILIO_API_KEY: not an API key SID (SK + 32 hex digits)")
            return None
        return Credentials(account_sid, api_key, Secret(api_secret))
    if not auth_token:
        problems.append("TWILIO_AUTH_TOKEN (or TWILIO_API_KEY + TWILIO_API_SECRET) is required")
        return None
    return Credentials(account_sid, account_sid, Secret(auth_token))
