"""Tests for config: flags beat the environment, which beats defaults; one message per mistake."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from studio_exporter.config import (
    ConfigError,
    Secret,
    config_from_mapping,
    format_duration,
    parse_duration,
    split_listen_address,
)

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
        "--log-level",
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
        pytest.param(":9911", ("0.0.0.0", 9911), id="all-interfaces"),
        pytest.param("127.0.0.1:0", ("127.0.0.1", 0), id="loopback-any-port"),
        pytest.param("[::1]:80", ("::1", 80), id="ipv6"),
    ],
)
def test_split_listen_address(address: str, expected: tuple[str, int]) -> None:
    assert split_listen_address(address) == expected


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
