"""``studio-exporter simulate``: run the Studio simulator in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence

from .faults import Faults
from .service import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, Simulator, SimulatorConfig
from .traffic import SUBFLOW_PARENT_READINGS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="studio-exporter simulate",
        description="A Twilio Studio look-alike (REST API v2) with simulated traffic.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (printed)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same traffic")
    parser.add_argument("--history-executions", type=int, default=2000, metavar="N")
    parser.add_argument("--history-days", type=float, default=7.0, metavar="D")
    parser.add_argument(
        "--rate", type=float, default=6.0, help="new executions per simulated minute"
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="60 makes a one-minute wait last one second"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fail-429", type=float, default=0.0, metavar="P")
    parser.add_argument("--fail-5xx", type=float, default=0.0, metavar="P")
    parser.add_argument("--max-concurrency", type=int, default=0, metavar="N", help="0: no limit")
    parser.add_argument(
        "--subflow-parent",
        choices=SUBFLOW_PARENT_READINGS,
        default="into",
        help="what a subflow step's parent_step_sid names: the step into the run-subflow "
        "widget or the step out of it (Twilio's docs fit both; default %(default)s)",
    )
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    parser.add_argument(
        "--subaccounts",
        type=int,
        default=0,
        metavar="N",
        help="N subaccounts of the main account, each with its own token, flows and traffic",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    try:
        faults = Faults(
            latency_ms=args.latency_ms,
            fail_429=args.fail_429,
            fail_5xx=args.fail_5xx,
            max_concurrency=args.max_concurrency,
        )
        config = SimulatorConfig(
            seed=args.seed,
            history_executions=args.history_executions,
            history_days=args.history_days,
            rate=args.rate,
            speed=args.speed,
            faults=faults,
            account_sid=args.account_sid,
            auth_token=args.auth_token,
            host=args.host,
            port=args.port,
            subflow_parent=args.subflow_parent,
            subaccounts=args.subaccounts,
        )
    except ValueError as error:
        parser.error(str(error))
    simulator = Simulator(config)
    try:
        url = simulator.start()
    except OSError as error:
        print(f"studio-exporter simulate: cannot listen on {args.host}:{args.port}: {error}")
        return 1
    print(f"Twilio Studio simulator listening on {url}", flush=True)
    print(f"  TWILIO_ACCOUNT_SID={simulator.account_sid}")
    print(f"  TWILIO_AUTH_TOKEN={simulator.auth_token}")
    print(f"  try: curl -u {simulator.account_sid}:{simulator.auth_token} {url}/v2/Flows")
    if args.subaccounts:
        print(
            f"  {args.subaccounts} subaccounts, each with its own auth token: "
            f"curl -u {simulator.account_sid}:{simulator.auth_token} {url}/2010-04-01/Accounts.json"
        )
    print(f"  ground truth: {url}/_simulator/truth   (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0
