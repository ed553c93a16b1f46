"""`studio-exporter`: parses flags (Prometheus style) and runs the chosen command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta

from studio_exporter import __version__
from studio_exporter.config import (
    DEFAULT_ACCOUNT_REFRESH_INTERVAL,
    DEFAULT_CONCURRENCY,
    DEFAULT_FLOW_REFRESH_INTERVAL,
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_LOOKBACK,
    DEFAULT_MAX_SERIES,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_STATE_DIR,
    DEFAULT_TWILIO_API_BASE_URL,
    DEFAULT_TWILIO_BASE_URL,
    ENV_VARS,
    LOG_FORMATS,
    LOG_LEVELS,
    MODES,
    RETENTION,
    Config,
    ConfigError,
    config_from_mapping,
    format_duration,
    parse_duration,
)

log = logging.getLogger("studio_exporter")


def _env_help(name: str) -> str:
    return f" [env {', '.join(ENV_VARS[name])}]"


def _add_exporter_flags(parser: argparse.ArgumentParser) -> None:
    """Flags shared by `run` and `backfill`. Defaults are applied by config_from_mapping."""
    add = parser.add_argument
    add("--account-sid", dest="account_sid", help="Twilio Account SID" + _env_help("account_sid"))
    add(
        "--twilio-base-url",
        dest="twilio_base_url",
        help=f"Studio API base URL (default {DEFAULT_TWILIO_BASE_URL})"
        + _env_help("twilio_base_url"),
    )
    add(
        "--twilio-api-base-url",
        dest="twilio_api_base_url",
        help=f"Twilio v2010 API base URL, where accounts are listed (default "
        f"{DEFAULT_TWILIO_API_BASE_URL}, or --twilio-base-url when given)"
        + _env_help("twilio_api_base_url"),
    )
    add(
        "--include-subaccounts",
        dest="include_subaccounts",
        nargs="?",
        const="true",
        help="follow every active subaccount of TWILIO_ACCOUNT_SID too, each with its own "
        "credentials (read from the Accounts list)" + _env_help("include_subaccounts"),
    )
    add(
        "--account",
        dest="accounts",
        action="append",
        help="follow only this Account SID, the main account or a subaccount (repeatable; "
        "default: every account)" + _env_help("accounts"),
    )
    add(
        "--account-refresh-interval",
        dest="account_refresh_interval",
        help="time between re-reads of the Accounts list (default "
        f"{format_duration(DEFAULT_ACCOUNT_REFRESH_INTERVAL)})"
        + _env_help("account_refresh_interval"),
    )
    add(
        "--web.listen-address",
        dest="listen_address",
        help=f"address for /metrics and /health (default {DEFAULT_LISTEN_ADDRESS})"
        + _env_help("listen_address"),
    )
    add(
        "--flow",
        dest="flows",
        action="append",
        help="follow only this Flow SID (repeatable; default: every flow)" + _env_help("flows"),
    )
    add(
        "--lookback",
        help=f"how far back the first start reads (default {format_duration(DEFAULT_LOOKBACK)})"
        + _env_help("lookback"),
    )
    add(
        "--poll-interval",
        dest="poll_interval",
        help=f"time between poll cycles (default {format_duration(DEFAULT_POLL_INTERVAL)})"
        + _env_help("poll_interval"),
    )
    add(
        "--flow-refresh-interval",
        dest="flow_refresh_interval",
        help="time between re-reads of the flow list and definitions (default "
        f"{format_duration(DEFAULT_FLOW_REFRESH_INTERVAL)})" + _env_help("flow_refresh_interval"),
    )
    add(
        "--concurrency",
        help=f"most API requests in flight (default {DEFAULT_CONCURRENCY}); lowered on 429"
        + _env_help("concurrency"),
    )
    add(
        "--request-timeout",
        dest="request_timeout",
        help=f"per-request timeout (default {format_duration(DEFAULT_REQUEST_TIMEOUT)})"
        + _env_help("request_timeout"),
    )
    add(
        "--state-dir",
        dest="state_dir",
        help="where the state database and the default span file live "
        f"(default {DEFAULT_STATE_DIR})" + _env_help("state_dir"),
    )
    add(
        "--log-level",
        dest="log_level",
        help=f"one of {', '.join(LOG_LEVELS)} (default info)" + _env_help("log_level"),
    )
    add(
        "--log-format",
        dest="log_format",
        help=f"one of {', '.join(LOG_FORMATS)} (default text)" + _env_help("log_format"),
    )
    add(
        "--max-series-per-metric",
        dest="max_series_per_metric",
        help=f"cardinality cap per metric (default {DEFAULT_MAX_SERIES})"
        + _env_help("max_series_per_metric"),
    )
    add(
        "--failure-events",
        dest="failure_events",
        help="comma-separated events that mark a span as an error (default failed,fail,"
        "deliveryFailure,error)" + _env_help("failure_events"),
    )
    add(
        "--context-allowlist",
        dest="context_allowlist",
        help="comma-separated step-context keys (e.g. flow.data.score) to add to spans; "
        "personal data is exported only if you list it" + _env_help("context_allowlist"),
    )
    add(
        "--hash-phone-numbers",
        dest="hash_phone_numbers",
        help="true: phone numbers in allowed context values are replaced by a salted hash"
        + _env_help("hash_phone_numbers"),
    )
    add(
        "--web.config.file",
        dest="web_config_file",
        help="TLS and basic auth for /metrics, in Prometheus exporter-toolkit format"
        + _env_help("web_config_file"),
    )
    add(
        "--mode",
        help=f"one of {', '.join(MODES)} (default poll): push receives Event Streams webhooks; "
        "hybrid adds a slow polling sweep that fills what push lost" + _env_help("mode"),
    )
    add(
        "--webhook.path",
        dest="webhook_path",
        help="where Event Streams deliveries are received (default /webhooks/event-streams)"
        + _env_help("webhook_path"),
    )
    add(
        "--webhook.public-url",
        dest="webhook_public_url",
        help="the sink URL as Twilio calls it, when a proxy sits in front (signatures are over "
        "that URL)" + _env_help("webhook_public_url"),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="studio-exporter",
        description="Twilio Studio executions as OpenTelemetry traces and Prometheus metrics. "
        "Credentials come from TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN (or TWILIO_API_KEY + "
        "TWILIO_API_SECRET); they are never accepted as flags, so they stay out of `ps`.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="follow Studio and export (the long-running service)")
    _add_exporter_flags(run)

    backfill = commands.add_parser(
        "backfill", help="export history since a time in one go, with progress, then exit"
    )
    _add_exporter_flags(backfill)
    backfill.add_argument(
        "--since", default="7d", help="how far back, up to 30d (default 7d), e.g. 36h, 7d"
    )

    demo = commands.add_parser(
        "demo", help="the simulator in-process with the exporter following it (make run)"
    )
    demo.add_argument("--web.listen-address", dest="listen_address", default="127.0.0.1:9911")
    demo.add_argument(
        "--state-dir", dest="state_dir", default=None, help="default: a fresh temporary directory"
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--history-executions", type=int, default=1000)
    demo.add_argument("--rate", type=float, default=6.0, help="new executions per simulated minute")
    demo.add_argument(
        "--speed",
        type=float,
        default=20.0,
        help="how much faster than real time the simulated traffic runs",
    )
    demo.add_argument("--poll-interval", dest="poll_interval", default="5s")
    demo.add_argument(
        "--duration", default=None, help="stop after this long (default: until Ctrl-C)"
    )
    demo.add_argument("--log-level", dest="log_level", default="warning")

    commands.add_parser(
        "simulate", help="run the Studio simulator alone (see `simulate --help`)", add_help=False
    )

    trace = commands.add_parser("trace", help="print an execution as a waterfall")
    trace.add_argument("flow_sid", metavar="FLOW_SID")
    trace.add_argument("execution_sid", metavar="EXECUTION_SID")
    trace.add_argument("--twilio-base-url", dest="twilio_base_url")
    trace.add_argument("--width", type=int, default=100)

    commands.add_parser(
        "spec-diff",
        help="what changed between two versions of Twilio's Studio spec (see `spec-diff --help`)",
        add_help=False,
    )
    return parser


def _flag_values(args: argparse.Namespace) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for name in ENV_VARS:
        value = getattr(args, name, None)
        if isinstance(value, list):
            value = ",".join(value)
        values[name] = value
    return values


def load_config(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    return config_from_mapping(_flag_values(args), env)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Sub-tools with their own parsers get the rest of the command line untouched.
    if argv and argv[0] == "simulate":
        from studio_exporter.simulator.cli import main as simulate_main

        return simulate_main(argv[1:])
    if argv and argv[0] == "spec-diff":
        from studio_exporter.specdiff import main as specdiff_main

        return specdiff_main(argv[1:])

    args = build_parser().parse_args(argv)
    env = dict(os.environ)
    if args.command == "demo":
        from studio_exporter.demo import run_demo

        return run_demo(args)
    if args.command == "trace":
        from studio_exporter.trace_cmd import run_trace

        return run_trace(args, env)
    try:
        config = load_config(args, env)
        since = None
        if args.command == "backfill":
            since = parse_duration(args.since)
            if since > RETENTION:
                raise ConfigError(["--since: Studio keeps executions for 30 days; use 30d or less"])
    except ConfigError as error:
        for problem in error.problems:
            print(f"studio-exporter: {problem}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"studio-exporter: --since: {error}", file=sys.stderr)
        return 2
    from studio_exporter.logs import configure_logging
    from studio_exporter.state import StateError

    configure_logging(config.log_level, config.log_format, _secrets(config))
    try:
        if args.command == "backfill":
            assert since is not None
            return asyncio.run(_backfill(config, since))
        return asyncio.run(_run(config))
    except StateError as error:
        print(f"studio-exporter: {error}", file=sys.stderr)
        return 3


def _secrets(config: Config) -> list[str]:
    secrets = [config.credentials.password.reveal()]
    if config.webhook_auth_token is not None:
        secrets.append(config.webhook_auth_token.reveal())
    if config.webhook_basic_auth is not None:
        secrets.append(config.webhook_basic_auth[1].reveal())
    if config.phone_hash_salt.reveal():
        secrets.append(config.phone_hash_salt.reveal())
    return secrets


def _install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


async def _run(config: Config) -> int:
    from studio_exporter.app import build_exporter

    exporter = build_exporter(config)
    stop = asyncio.Event()
    _install_stop_handlers(stop)
    exporter.start()
    if exporter.web is not None:
        log.info("serving /metrics on %s/metrics", exporter.web.url)
    if exporter.spans_file is not None:
        log.info("no OTEL_EXPORTER_OTLP_ENDPOINT set: spans go to %s", exporter.spans_file)
    try:
        await exporter.run(stop)
    finally:
        await exporter.aclose_apis()
        exporter.close()
        log.info("stopped: state committed, spans flushed")
    return 0


async def _backfill(config: Config, since: timedelta) -> int:
    from studio_exporter.app import build_exporter
    from studio_exporter.poller import utc_now
    from studio_exporter.progress import ProgressBar

    exporter = build_exporter(config, serve_web=False)
    exporter.start()
    bar = ProgressBar(sys.stderr, label="backfill")
    try:
        if exporter.accounts is not None and exporter.accounts.multi:
            report = await exporter.accounts.backfill(utc_now() - since, progress=bar.update)
        else:
            report = await exporter.poller.backfill(utc_now() - since, progress=bar.update)
    finally:
        bar.close()
        await exporter.aclose_apis()
        exporter.close()
    print(
        f"backfill: {report.flows} flows, {report.executions_read} executions, "
        f"{report.steps_exported} steps exported"
        + (f"; failed flows: {', '.join(report.failed_flows)}" if report.failed_flows else "")
    )
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
