"""`studio-exporter healthcheck`: asks the running exporter's health endpoint, for containers.

It reads the listen address and web config the way `run` does (flag, then environment), so a
health check keeps working when the port moves or TLS is turned on.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from studio_exporter.config import DEFAULT_LISTEN_ADDRESS, ENV_VARS, split_listen_address
from studio_exporter.web.webconfig import WebConfigError, load_web_config


def _setting(name: str, flag: str | None, env: Mapping[str, str]) -> str | None:
    if flag is not None:
        return flag
    return next((env[var] for var in ENV_VARS[name] if env.get(var)), None)


def health_url(listen_address: str, tls: bool, path: str) -> str:
    """Where the exporter listening on ``listen_address`` answers, seen from the same host."""
    host, port = split_listen_address(listen_address)
    if host in ("0.0.0.0", ""):  # noqa: S104 - every interface includes loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}{path}"


def run_healthcheck(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """0 when the endpoint answers 2xx, 1 when it does not, 2 for a configuration mistake."""
    address = _setting("listen_address", args.listen_address, env) or DEFAULT_LISTEN_ADDRESS
    web_config_file = _setting("web_config_file", args.web_config_file, env)
    try:
        tls = web_config_file is not None and load_web_config(Path(web_config_file)).tls
        url = health_url(address, tls, args.path)
    except (ValueError, WebConfigError) as error:
        print(f"studio-exporter healthcheck: {error}", file=sys.stderr)
        return 2
    # Our own process on this host: its certificate names the public host name, not loopback.
    verify = ssl.create_default_context()
    verify.check_hostname = False
    verify.verify_mode = ssl.CERT_NONE
    try:
        response = httpx.get(url, timeout=args.timeout, verify=verify)
    except httpx.HTTPError as error:
        print(f"{url}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"{url}: {response.status_code} {response.text.strip()}")
    return 0 if response.is_success else 1
