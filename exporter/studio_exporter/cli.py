"""`studio-exporter`: parses flags (Prometheus style) and runs the chosen command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta

from studio_exporter import __version__
from studio_exporter.config import (
    DEFAULT_ACCOUNT_REFRESH_INTERVAL,
    DEFAULT_BACKFILL_CONCURRENCY,
    DEFAULT_CONCURRENCY,
    DEFAULT_FLOW_REFRESH_INTERVAL,
    DEFAULT_HASH_PHONE_NUMBERS,
    DEFAULT_LEASE_DURATION,
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_LOOKBACK,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_SERIES,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_STATE_DIR,
    DEFAULT_TELEMETRY_PATH,
    DEFAULT_TWILIO_API_BASE_URL,
    DEFAULT_TWILIO_BASE_URL,
    DEMO_LISTEN_ADDRESS,
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
    with_secret_files,
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
        "--shard",
        help="this replica's shard, 0..--total-shards minus 1: it follows the (account, flow) "
        "units whose stable hash modulo --total-shards is this number (default 0)"
        + _env_help("shard"),
    )
    add(
        "--total-shards",
        dest="total_shards",
        help="replicas splitting the work, each with its own --state-dir (default 1: no "
        "sharding; poll mode only)" + _env_help("total_shards"),
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
        help=f"most API requests in flight (default {DEFAULT_CONCURRENCY}, backfill "
        f"{DEFAULT_BACKFILL_CONCURRENCY}); lowered on 429" + _env_help("concurrency"),
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
        "--state.postgres-url",
        dest="state_postgres_url",
        help="keep the state in this PostgreSQL database (postgresql://user@host/db), one schema "
        "per account, instead of SQLite files in --state-dir; a URL with a password only in the "
        "environment (or PGPASSWORD), never on the command line" + _env_help("state_postgres_url"),
    )
    add(
        "--lease-duration",
        dest="lease_duration",
        help="with --state.postgres-url in poll mode, replicas lease (account, flow) units for "
        "this long, renewed every third of it: the longest a dead replica's units wait before "
        f"others take them (default {format_duration(DEFAULT_LEASE_DURATION)}, at least 3s)"
        + _env_help("lease_duration"),
    )
    add(
        "--log.level",
        "--log-level",  # deprecated spelling, kept working
        dest="log_level",
        help=f"one of {', '.join(LOG_LEVELS)} (default info; --log-level is deprecated)"
        + _env_help("log_level"),
    )
    add(
        "--log.format",
        "--log-format",  # deprecated spelling, kept working
        dest="log_format",
        help=f"one of {', '.join(LOG_FORMATS)} (default text; --log-format is deprecated)"
        + _env_help("log_format"),
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
        help="phone numbers in allowed context values are replaced by a salted hash (default "
        f"{str(DEFAULT_HASH_PHONE_NUMBERS).lower()})" + _env_help("hash_phone_numbers"),
    )
    add(
        "--web.config.file",
        dest="web_config_file",
        help="TLS and basic auth for the web port, in Prometheus exporter-toolkit format"
        + _env_help("web_config_file"),
    )
    add(
        "--web.telemetry-path",
        dest="telemetry_path",
        help=f"where metrics are served (default {DEFAULT_TELEMETRY_PATH})"
        + _env_help("telemetry_path"),
    )
    add(
        "--web.max-connections",
        dest="max_connections",
        help=f"connections served at once (default {DEFAULT_MAX_CONNECTIONS}); past it "
        "/health/live still answers and the rest get a fast 503" + _env_help("max_connections"),
    )
    add(
        "--webhook.max-body-size",
        dest="webhook_max_body_size",
        help="largest webhook body, e.g. 1MiB (default 1MiB); a larger one gets 413 unread"
        + _env_help("webhook_max_body_size"),
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
    demo.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=None,
        help=f"address for /metrics and /health (default {DEMO_LISTEN_ADDRESS}: this machine "
        "only)" + _env_help("listen_address"),
    )
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
    demo.add_argument("--log.level", "--log-level", dest="log_level", default="warning")

    health = commands.add_parser(
        "healthcheck",
        help="exit 0 if the exporter on this host answers its health endpoint (for containers)",
    )
    health.add_argument(
        "--web.listen-address",
        dest="listen_address",
        help=f"where the exporter listens (default {DEFAULT_LISTEN_ADDRESS})"
        + _env_help("listen_address"),
    )
    health.add_argument(
        "--web.config.file",
        dest="web_config_file",
        help="the exporter's web config: with TLS the check speaks https"
        + _env_help("web_config_file"),
    )
    health.add_argument("--path", default="/health/live", choices=("/health/live", "/health/ready"))
    health.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")

    commands.add_parser(
        "simulate", help="run the Studio simulator alone (see `simulate --help`)", add_help=False
    )

    trace = commands.add_parser("trace", help="print an execution as a waterfall")
    trace.add_argument("flow_sid", metavar="FLOW_SID")
    trace.add_argument("execution_sid", metavar="EXECUTION_SID")
    trace.add_argument("--twilio-base-url", dest="twilio_base_url")
    trace.add_argument(
        "--request-timeout",
        dest="request_timeout",
        help="per request, as for run (default "
        f"{format_duration(DEFAULT_REQUEST_TIMEOUT)})" + _env_help("request_timeout"),
    )
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


#: Defaults that differ by command.
COMMAND_DEFAULTS: Mapping[str, Mapping[str, object]] = {
    "backfill": {"concurrency": DEFAULT_BACKFILL_CONCURRENCY},
}


def load_config(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    return config_from_mapping(_flag_values(args), env, defaults=COMMAND_DEFAULTS.get(args.command))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Sub-tools with their own parsers get the rest of the command line untouched.
    if argv and argv[0] == "simulate":
        from studio_exporter.simulator.cli import main as simulate_main

        return simulate_main(argv[1:])
    if argv and argv[0] == "spec-diff":
        from studio_exporter.spec.specdiff import main as specdiff_main

        return specdiff_main(argv[1:])

    args = build_parser().parse_args(argv)
    # Secrets given as files are read once; a file that cannot be read is reported by
    # config_from_mapping with every other mistake.
    env, _ = with_secret_files(os.environ)
    if args.command in ("run", "backfill", "demo"):
        from studio_exporter.signals import caught_early

        with caught_early():
            return _main(args, env)
    return _main(args, env)


def _main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.command == "demo":
        from studio_exporter.commands.demo import run_demo

        return run_demo(args, env)
    if args.command == "healthcheck":
        from studio_exporter.commands.healthcheck import run_healthcheck

        return run_healthcheck(args, env)
    if args.command == "trace":
        from studio_exporter.commands.trace_cmd import run_trace

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
    from studio_exporter.store.protocols import StateError

    configure_logging(config.log_level, config.log_format, _secrets(config, env))
    try:
        if args.command == "backfill":
            assert since is not None
            return asyncio.run(_backfill(config, since, env))
        return asyncio.run(_run(config, env))
    except StateError as error:
        print(f"studio-exporter: {error}", file=sys.stderr)
        return 3


def _secrets(config: Config, env: Mapping[str, str]) -> list[str]:
    from studio_exporter.sinks.span_sink import otlp_secrets

    secrets = [config.credentials.password.reveal(), *otlp_secrets(env)]
    if config.webhook_auth_token is not None:
        secrets.append(config.webhook_auth_token.reveal())
    if config.webhook_basic_auth is not None:
        secrets.append(config.webhook_basic_auth[1].reveal())
    if config.phone_hash_salt.reveal():
        secrets.append(config.phone_hash_salt.reveal())
    if config.state_postgres_url is not None:
        from studio_exporter.store.postgres import url_secrets

        secrets.extend(url_secrets(config.state_postgres_url.reveal()))
    return secrets


async def _run(config: Config, env: Mapping[str, str]) -> int:
    from studio_exporter.app import build_exporter
    from studio_exporter.signals import stop_on_signals

    stop = asyncio.Event()
    stop_on_signals(stop)  # before building: a SIGTERM during start-up stops it too
    exporter = build_exporter(config, env=env)
    if exporter.web_config is not None:
        # SIGHUP re-reads --web.config.file and its certificates (changes are also noticed alone).
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, exporter.web_config.reload)
    exporter.start()
    if exporter.web is not None:
        path = config.telemetry_path
        log.info("serving %s on %s%s", path, exporter.web.url, path)
    if exporter.spans_file is not None:
        log.info("no OTEL_EXPORTER_OTLP_ENDPOINT set: spans go to %s", exporter.spans_file)
    try:
        await exporter.serve(stop)
    finally:
        await exporter.aclose_apis()
        exporter.close()
        log.info("stopped: state committed, span outbox closed")
    return 0


async def _backfill(config: Config, since: timedelta, env: Mapping[str, str]) -> int:
    from studio_exporter.app import build_exporter
    from studio_exporter.progress import ProgressBar
    from studio_exporter.signals import stop_on_signals
    from studio_exporter.sources.poller import utc_now

    stop = asyncio.Event()
    stop_on_signals(stop)
    # Alone on the accounts' state, without leases: running replicas make it refuse to start.
    exporter = build_exporter(config, env=env, serve_web=False, leases=False)
    exporter.start()
    bar = ProgressBar(sys.stderr, label="backfill")
    accounts = exporter.accounts
    backfill = asyncio.ensure_future(
        accounts.backfill(utc_now() - since, progress=bar.update)
        if accounts is not None and accounts.multi
        else exporter.poller.backfill(utc_now() - since, progress=bar.update)
    )
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({backfill, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not backfill.done():
            backfill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await backfill
            print("backfill: stopped; what was committed stays, run it again to go on")
            return 1
        report = backfill.result()
    finally:
        stopping.cancel()
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
