"""Tests for config: flags beat the environment, which beats defaults; one message per mistake."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from studio_exporter.config import (
    DEFAULT_HASH_PHONE_NUMBERS,
    DEFAULT_MAX_CONNECTIONS,
    Config,
    ConfigError,
    Secret,
    config_from_mapping,
    format_duration,
    parse_duration,
    parse_size,
    split_listen_address,
    with_secret_files,
)
from studio_exporter.core.sharding import Shard
from studio_exporter.sinks.spans import SpanOptions

ACCOUNT = "AC" + "1" * 32
TOKEN = "tok-" + "9" * 28
ENV = {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("30s", 30, id="seconds"),
        pytest.param("5m", 300, id="minutes"),
        pytest.param("1h30m", 5400, id="compound"),
        pytest.param("7d", 604800, id="days"),
        pytest.param("500ms", 0.5, id="milliseconds"),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "-5s", "5 s", "1x", "s5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for text in ("30s", "5m", "1h", "7d"):
        assert format_duration(parse_duration(text)) == text


def test_defaults_with_credentials_from_env() -> None:
    config = config_from_mapping({}, ENV)
    assert config.credentials.account_sid == ACCOUNT
    assert config.credentials.username == ACCOUNT
    assert config.credentials.password.reveal() == TOKEN
    assert config.lookback == timedelta(hours=1)
    assert config.mode == "poll"


def test_flag_beats_environment() -> None:
    env = {**ENV, "STUDIO_EXPORTER_POLL_INTERVAL": "1m", "STUDIO_EXPORTER_STATE_DIR": "/env"}
    config = config_from_mapping({"poll_interval": "10s"}, env)
    assert config.poll_interval == timedelta(seconds=10)
    assert config.state_dir == Path("/env")


@pytest.mark.parametrize(
    ("flags", "env", "concurrency"),
    [
        pytest.param({}, ENV, 32, id="command-default"),
        pytest.param({}, {**ENV, "STUDIO_EXPORTER_CONCURRENCY": "4"}, 4, id="env-beats-it"),
        pytest.param({"concurrency": "2"}, ENV, 2, id="flag-beats-it"),
    ],
)
def test_a_command_default_loses_to_environment_and_flag(
    flags: dict[str, str | None], env: dict[str, str], concurrency: int
) -> None:
    config = config_from_mapping(flags, env, defaults={"concurrency": 32})
    assert config.concurrency == concurrency


def test_api_key_credentials() -> None:
    key = "SK" + "2" * 32
    config = config_from_mapping(
        {}, {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_API_KEY": key, "TWILIO_API_SECRET": "s3cret"}
    )
    assert config.credentials.username == key
    assert config.credentials.uses_api_key


def test_every_mistake_is_reported_at_once() -> None:
    flags = {
        "flows": "FW123,not-a-sid",
        "poll_interval": "-5s",
        "lookback": "60d",
        "listen_address": "nowhere",
        "twilio_base_url": "ftp://example",
        "concurrency": "0",
        "log_level": "loud",
        "mode": "pull",
    }
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(flags, ENV)
    problems = caught.value.problems
    for flag in (
        "--flow",
        "--poll-interval",
        "--lookback",
        "--web.listen-address",
        "--twilio-base-url",
        "--concurrency",
        "--log.level",
        "--mode",
    ):
        assert any(problem.startswith(flag) for problem in problems), flag
    assert len(problems) == 8


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({}, "TWILIO_ACCOUNT_SID", id="no-account"),
        pytest.param({"TWILIO_ACCOUNT_SID": "AC12"}, "not an Account SID", id="bad-account"),
        pytest.param({"TWILIO_ACCOUNT_SID": ACCOUNT}, "TWILIO_AUTH_TOKEN", id="no-token"),
        pytest.param(
            {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_API_KEY": "SK" + "2" * 32},
            "together",
            id="key-without-secret",
        ),
    ],
)
def test_credential_mistakes(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping({}, env)


def test_secret_never_shows_itself() -> None:
    config = config_from_mapping({}, ENV)
    assert TOKEN not in repr(config)
    assert TOKEN not in str(config.credentials.password)
    assert Secret("a") == Secret("a")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param(":9911", ("", 9911), id="all-interfaces-dual-stack"),
        pytest.param("0.0.0.0:9911", ("0.0.0.0", 9911), id="all-ipv4"),
        pytest.param("[::]:9911", ("::", 9911), id="all-ipv6-dual-stack"),
        pytest.param("127.0.0.1:0", ("127.0.0.1", 0), id="loopback-any-port"),
        pytest.param("[::1]:80", ("::1", 80), id="ipv6"),
        pytest.param("localhost:9911", ("localhost", 9911), id="name"),
    ],
)
def test_split_listen_address(address: str, expected: tuple[str, int]) -> None:
    assert split_listen_address(address) == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        pytest.param("::1:9911", "in brackets", id="ipv6-without-brackets"),
        pytest.param("[::1:9911", "unbalanced", id="unbalanced"),
        pytest.param("[nope]:9911", "not an IPv6 address", id="not-ipv6"),
        pytest.param("host:99999", "not host:port", id="port-too-large"),
    ],
)
def test_split_listen_address_rejects(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_listen_address(address)


def test_web_flags() -> None:
    config = config_from_mapping(
        {
            "telemetry_path": "/prometheus",
            "max_connections": "50",
            "webhook_max_body_size": "256KiB",
        },
        ENV,
    )
    assert config.telemetry_path == "/prometheus"
    assert config.max_connections == 50
    assert config.webhook_max_body_size == 256 * 1024
    defaults = config_from_mapping({}, ENV)
    assert defaults.telemetry_path == "/metrics"
    assert defaults.max_connections == DEFAULT_MAX_CONNECTIONS
    assert defaults.webhook_max_body_size == 1024 * 1024


SUBACCOUNT = "AC" + "2" * 32


def test_account_flags_default_to_one_account_and_twilios_api() -> None:
    config = config_from_mapping({}, ENV)
    assert (config.include_subaccounts, config.accounts) == (False, ())
    assert config.account_refresh_interval == timedelta(minutes=10)
    assert config.api_base_url == "https://api.twilio.com"


def test_account_flags_from_flags_and_environment() -> None:
    env = {
        **ENV,
        "STUDIO_EXPORTER_INCLUDE_SUBACCOUNTS": "true",
        "STUDIO_EXPORTER_ACCOUNTS": f"{ACCOUNT},{SUBACCOUNT},{SUBACCOUNT}",
        "STUDIO_EXPORTER_ACCOUNT_REFRESH_INTERVAL": "1m",
    }
    config = config_from_mapping({"twilio_api_base_url": "http://127.0.0.1:1/"}, env)
    assert config.include_subaccounts is True
    assert config.accounts == (ACCOUNT, SUBACCOUNT)
    assert config.account_refresh_interval == timedelta(minutes=1)
    assert config.api_base_url == "http://127.0.0.1:1"


def test_the_api_base_url_follows_a_given_studio_base_url() -> None:
    config = config_from_mapping({"twilio_base_url": "http://127.0.0.1:9/"}, ENV)
    assert config.api_base_url == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param({"telemetry_path": "metrics"}, "--web.telemetry-path", id="relative-path"),
        pytest.param({"telemetry_path": "/health/live"}, "--web.telemetry-path", id="probe"),
        pytest.param({"max_connections": "0"}, "--web.max-connections", id="no-connections"),
        pytest.param({"webhook_max_body_size": "1GB"}, "--webhook.max-body-size", id="unit"),
        pytest.param({"webhook_max_body_size": "100"}, "1KiB..64MiB", id="too-small"),
    ],
)
def test_web_flag_mistakes(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(flags, ENV)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        pytest.param("1048576", 1048576, id="bytes"),
        pytest.param("1MiB", 1048576, id="mebibytes"),
        pytest.param("512KiB", 524288, id="kibibytes"),
        pytest.param("1MB", 1000000, id="megabytes"),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_one_default_for_hashing_phone_numbers() -> None:
    """The CLI and SpanOptions agree, so the entry point does not decide what is exported."""
    assert config_from_mapping({}, ENV).hash_phone_numbers is DEFAULT_HASH_PHONE_NUMBERS
    assert SpanOptions().hash_phone_numbers is DEFAULT_HASH_PHONE_NUMBERS is True


@pytest.mark.parametrize(
    ("variable", "content", "read"),
    [
        pytest.param(
            "TWILIO_AUTH_TOKEN",
            TOKEN + "\n",
            lambda config: config.credentials.password.reveal(),
            id="auth-token",
        ),
        pytest.param(
            "TWILIO_API_SECRET",
            "secret-from-file\r\n",
            lambda config: config.credentials.password.reveal(),
            id="api-secret-crlf",
        ),
        pytest.param(
            "STUDIO_EXPORTER_PHONE_HASH_SALT",
            "salt",
            lambda config: config.phone_hash_salt.reveal(),
            id="phone-hash-salt",
        ),
        pytest.param(
            "STUDIO_EXPORTER_WEBHOOK_BASIC_AUTH",
            "twilio:pw\n",
            lambda config: (
                f"{config.webhook_basic_auth[0]}:{config.webhook_basic_auth[1].reveal()}"
            ),
            id="webhook-basic-auth",
        ),
        pytest.param(
            "STUDIO_EXPORTER_STATE_POSTGRES_URL",
            "postgresql://exporter:pw@db/state\n",
            lambda config: config.state_postgres_url.reveal(),
            id="state-postgres-url",
        ),
    ],
)
def test_a_secret_can_come_from_a_file(
    tmp_path: Path, variable: str, content: str, read: Callable[[Config], str]
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(content, encoding="utf-8")
    env = {"TWILIO_ACCOUNT_SID": ACCOUNT, f"{variable}_FILE": str(secret_file)}
    if variable == "TWILIO_API_SECRET":
        env["TWILIO_API_KEY"] = "SK" + "2" * 32
    elif variable != "TWILIO_AUTH_TOKEN":
        env["TWILIO_AUTH_TOKEN"] = TOKEN
    assert read(config_from_mapping({}, env)) == content.rstrip("\r\n")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_AUTH_TOKEN_FILE": "/dev/null"},
            "TWILIO_AUTH_TOKEN and TWILIO_AUTH_TOKEN_FILE: give one of them, not both",
            id="both",
        ),
        pytest.param(
            {"TWILIO_AUTH_TOKEN_FILE": "/nonexistent/token"},
            "TWILIO_AUTH_TOKEN_FILE: cannot read /nonexistent/token: No such file or directory",
            id="missing-file",
        ),
    ],
)
def test_secret_file_mistakes_name_the_variable_not_the_secret(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        config_from_mapping({}, {"TWILIO_ACCOUNT_SID": ACCOUNT, **env})
    assert message in raised.value.problems
    assert all(TOKEN not in problem for problem in raised.value.problems)


def test_secret_files_are_read_once_and_their_variables_dropped(tmp_path: Path) -> None:
    headers = tmp_path / "headers"
    headers.write_text("authorization=Bearer abc\n")
    env = {"OTEL_EXPORTER_OTLP_HEADERS_FILE": str(headers), "OTHER": "kept"}
    resolved, problems = with_secret_files(env)
    assert problems == []
    assert resolved == {"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer abc", "OTHER": "kept"}
    assert with_secret_files(resolved) == (resolved, [])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param({"include_subaccounts": "maybe"}, "--include-subaccounts", id="bool"),
        pytest.param({"accounts": "AC123"}, "--account: 'AC123'", id="account-sid"),
        pytest.param({"accounts": SUBACCOUNT}, "needs --include-subaccounts", id="sub-alone"),
        pytest.param({"account_refresh_interval": "0s"}, "--account-refresh", id="refresh"),
        pytest.param({"twilio_api_base_url": "ftp://x"}, "--twilio-api-base-url", id="url"),
    ],
)
def test_account_flag_mistakes(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(flags, ENV)
    assert any(message in problem for problem in caught.value.problems), caught.value.problems


def test_no_sharding_by_default() -> None:
    assert config_from_mapping({}, ENV).shard == Shard(0, 1)


@pytest.mark.parametrize(
    ("flags", "env", "shard"),
    [
        pytest.param({"shard": "1", "total_shards": "2"}, {}, Shard(1, 2), id="flags"),
        pytest.param(
            {},
            {"STUDIO_EXPORTER_SHARD": "2", "STUDIO_EXPORTER_TOTAL_SHARDS": "5"},
            Shard(2, 5),
            id="environment",
        ),
        pytest.param(
            {"shard": "0"},
            {"STUDIO_EXPORTER_SHARD": "3", "STUDIO_EXPORTER_TOTAL_SHARDS": "4"},
            Shard(0, 4),
            id="flag-beats-environment",
        ),
        pytest.param({"total_shards": "3"}, {}, Shard(0, 3), id="shard-defaults-to-0"),
        pytest.param({"shard": "0"}, {}, Shard(0, 1), id="total-defaults-to-1"),
        pytest.param(
            {"total_shards": "1", "mode": "push"}, {}, Shard(0, 1), id="one-shard-in-push"
        ),
    ],
)
def test_sharding_flags(flags: dict[str, str], env: dict[str, str], shard: Shard) -> None:
    assert config_from_mapping(flags, {**ENV, **env}).shard == shard


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(
            {"shard": "one", "total_shards": "2"}, "--shard: 'one' is not a whole number", id="word"
        ),
        pytest.param(
            {"shard": "0", "total_shards": "2.5"},
            "--total-shards: '2.5' is not a whole number",
            id="fraction",
        ),
        pytest.param({"total_shards": "0"}, "--total-shards: 0 is outside 1..1000", id="zero"),
        pytest.param(
            {"total_shards": "-2"}, "--total-shards: -2 is outside 1..1000", id="negative"
        ),
        pytest.param(
            {"shard": "2", "total_shards": "2"},
            "--shard: 2 is outside 0..1 (shards are numbered from 0 to --total-shards 2 minus 1)",
            id="shard-equals-total",
        ),
        pytest.param(
            {"shard": "-1", "total_shards": "2"}, "--shard: -1 is outside 0..1", id="negative-shard"
        ),
        pytest.param({"shard": "1"}, "--shard: 1 is outside 0..0", id="shard-without-total"),
        pytest.param(
            {"shard": "0", "total_shards": "2", "mode": "push"},
            "--total-shards 2 with --mode push: a webhook delivery may reach any replica",
            id="push",
        ),
        pytest.param(
            {"shard": "1", "total_shards": "3", "mode": "hybrid"},
            "--total-shards 3 with --mode hybrid",
            id="hybrid",
        ),
    ],
)
def test_sharding_mistakes(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(flags, ENV)
    sharding = [problem for problem in caught.value.problems if "shard" in problem]
    assert len(sharding) == 1, caught.value.problems
    assert sharding[0].startswith(message), sharding


def test_both_sharding_numbers_wrong_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"shard": "x", "total_shards": "y"}, ENV)
    assert caught.value.problems == (
        "--shard: 'x' is not a whole number",
        "--total-shards: 'y' is not a whole number",
    )


# ---- --state.postgres-url -----------------------------------------------------------------

POSTGRES_PASSWORD = "pg-" + "7" * 20


def test_sqlite_state_by_default() -> None:
    assert config_from_mapping({}, ENV).state_postgres_url is None


@pytest.mark.parametrize(
    ("flags", "env"),
    [
        pytest.param(
            {},
            {"STUDIO_EXPORTER_STATE_POSTGRES_URL": f"postgresql://x:{POSTGRES_PASSWORD}@db/s"},
            id="env-with-password",
        ),
        pytest.param({"state_postgres_url": "postgresql://x@db/s"}, {}, id="flag-without-password"),
        pytest.param({"state_postgres_url": "postgres://x@db:5433/s"}, {}, id="postgres-scheme"),
    ],
)
def test_the_postgres_url_is_kept_as_a_secret(flags: dict[str, str], env: dict[str, str]) -> None:
    config = config_from_mapping(flags, {**ENV, **env})
    url = flags.get("state_postgres_url") or env["STUDIO_EXPORTER_STATE_POSTGRES_URL"]
    assert config.state_postgres_url is not None
    assert config.state_postgres_url.reveal() == url
    assert POSTGRES_PASSWORD not in repr(config)


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        pytest.param(
            {"state_postgres_url": f"postgresql://x:{POSTGRES_PASSWORD}@db/s"},
            {},
            "--state.postgres-url: the URL carries a password, which `ps` would show",
            id="password-on-the-command-line",
        ),
        pytest.param(
            {"state_postgres_url": f"postgresql://x@db/s?password={POSTGRES_PASSWORD}"},
            {},
            "--state.postgres-url: the URL carries a password",
            id="password-parameter-on-the-command-line",
        ),
        pytest.param(
            {},
            {"STUDIO_EXPORTER_STATE_POSTGRES_URL": f"mysql://x:{POSTGRES_PASSWORD}@db/s"},
            "STUDIO_EXPORTER_STATE_POSTGRES_URL: give a postgresql:// URL",
            id="other-database",
        ),
        pytest.param(
            {},
            {"STUDIO_EXPORTER_STATE_POSTGRES_URL": f"postgresql://x:{POSTGRES_PASSWORD}@db:x/s"},
            "STUDIO_EXPORTER_STATE_POSTGRES_URL: not a valid URL",
            id="bad-port",
        ),
        pytest.param(
            {"state_postgres_url": "postgresql://x@db/s", "shard": "0", "total_shards": "2"},
            {},
            "--state.postgres-url with --shard/--total-shards",
            id="with-shards",
        ),
    ],
)
def test_postgres_url_mistakes_never_quote_the_url(
    flags: dict[str, str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(flags, {**ENV, **env})
    [problem] = caught.value.problems
    assert problem.startswith(message)
    assert POSTGRES_PASSWORD not in problem
    assert "@db" not in problem
