"""`studio-exporter trace FLOW_SID EXECUTION_SID`: one execution as a terminal waterfall."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping

from studio_exporter.config import ConfigError, config_from_mapping
from studio_exporter.core.sids import EXECUTION_SID, FLOW_SID, InvalidSidError, require_sid
from studio_exporter.core.transform import build_path
from studio_exporter.core.waterfall import render_waterfall
from studio_exporter.sources.studio_api import ApiError, StudioApi


def run_trace(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        flow_sid = require_sid(args.flow_sid, FLOW_SID)
        execution_sid = require_sid(args.execution_sid, EXECUTION_SID)
        config = config_from_mapping(
            {"twilio_base_url": args.twilio_base_url, "request_timeout": args.request_timeout},
            env,
        )
    except InvalidSidError as error:
        print(f"studio-exporter trace: {error}", file=sys.stderr)
        return 2
    except ConfigError as error:
        for problem in error.problems:
            print(f"studio-exporter trace: {problem}", file=sys.stderr)
        return 2

    async def fetch() -> str:
        api = StudioApi(
            config.twilio_base_url,
            config.credentials,
            timeout=config.request_timeout.total_seconds(),
        )
        try:
            flow = await api.fetch_flow(flow_sid)
            execution = await api.fetch_execution(flow_sid, execution_sid)
            steps = await api.list_steps(flow_sid, execution_sid)
        finally:
            await api.aclose()
        path = build_path(execution, steps, flow)
        return render_waterfall(path, flow_name=flow.name, width=args.width)

    try:
        print(asyncio.run(fetch()))
    except ApiError as error:
        print(f"studio-exporter trace: {error}", file=sys.stderr)
        return 1
    return 0
