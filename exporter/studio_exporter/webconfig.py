"""`--web.config.file`: TLS and basic auth for /metrics, in Prometheus' exporter-toolkit format.

The same YAML file a Prometheus exporter takes works here::

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt, e.g. `htpasswd -nBC 10 "" | tr -d ':\\n'`

Only these keys are read; any other key is an error rather than silently ignored, so a typo
cannot leave /metrics open. Relative file paths are relative to the config file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

_TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "min_version"}
_TOP_KEYS = {"tls_server_config", "basic_auth_users"}
_MIN_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


class WebConfigError(ValueError):
    """A web config file that cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class WebConfig:
    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    basic_auth_users: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.cert_file is None or self.key_file is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = self.min_version
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
            if self.client_ca_file is not None:
                context.load_verify_locations(self.client_ca_file)
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as error:
            raise WebConfigError(f"tls_server_config: cannot load certificates: {error}") from error
        return context


def load_web_config(path: Path) -> WebConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise WebConfigError(f"{path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise WebConfigError(f"{path}: not valid YAML: {error}") from error
    return web_config_from_mapping(raw or {}, base=path.parent)


def web_config_from_mapping(raw: Any, *, base: Path) -> WebConfig:
    if not isinstance(raw, dict):
        raise WebConfigError("the web config must be a mapping")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise WebConfigError(f"unknown key(s): {', '.join(sorted(map(str, unknown)))}")
    tls = raw.get("tls_server_config") or {}
    if not isinstance(tls, dict):
        raise WebConfigError("tls_server_config must be a mapping")
    unknown_tls = set(tls) - _TLS_KEYS
    if unknown_tls:
        raise WebConfigError(
            f"tls_server_config: unknown key(s): {', '.join(sorted(map(str, unknown_tls)))}"
        )

    def file(key: str) -> Path | None:
        value = tls.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise WebConfigError(f"tls_server_config.{key} must be a file path")
        candidate = Path(value)
        resolved = candidate if candidate.is_absolute() else base / candidate
        if not resolved.is_file():
            raise WebConfigError(f"tls_server_config.{key}: {resolved} does not exist")
        return resolved

    cert_file, key_file = file("cert_file"), file("key_file")
    if (cert_file is None) != (key_file is None):
        raise WebConfigError("tls_server_config needs both cert_file and key_file")
    min_version_text = tls.get("min_version", "TLS12")
    if min_version_text not in _MIN_VERSIONS:
        raise WebConfigError(
            f"tls_server_config.min_version must be one of {sorted(_MIN_VERSIONS)}"
        )

    users_raw = raw.get("basic_auth_users") or {}
    if not isinstance(users_raw, dict):
        raise WebConfigError("basic_auth_users must map user names to bcrypt hashes")
    users: dict[str, bytes] = {}
    for user, hashed in users_raw.items():
        if not isinstance(user, str) or ":" in user or not user:
            raise WebConfigError(f"basic_auth_users: {user!r} is not a valid user name")
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(
                f"basic_auth_users.{user}: not a bcrypt hash (plain passwords are not accepted)"
            )
        users[user] = hashed.encode()
    return WebConfig(
        cert_file=cert_file,
        key_file=key_file,
        client_ca_file=file("client_ca_file"),
        min_version=_MIN_VERSIONS[min_version_text],
        basic_auth_users=users,
    )


class BasicAuthChecker:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, remembering successes.

    bcrypt is deliberately slow (tens of milliseconds); Prometheus sends the same header on
    every scrape, so a header that verified once is remembered by its SHA-256 (never in clear).
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def check(self, header: str | None) -> bool:
        if not self._users:
            return True
        if header is None or not header.startswith("Basic "):
            return False
        fingerprint = hashlib.sha256(header.encode()).digest()
        with self._lock:
            if fingerprint in self._verified:
                return True
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, separator, password = decoded.partition(":")
        hashed = self._users.get(user)
        if not separator or hashed is None:
            # Spend the same effort as a real check, so timing does not reveal user names.
            bcrypt.checkpw(b"x", next(iter(self._users.values())))
            return False
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            self._verified.add(fingerprint)
        return True
