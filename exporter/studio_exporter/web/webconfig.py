"""`--web.config.file`: TLS and basic auth for the web port, in Prometheus' exporter-toolkit format.

The same YAML file a Prometheus exporter takes works here, with the toolkit's meaning::

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt, e.g. `htpasswd -nBC 10 "" | tr -d ':\\n'`

Keys Python's ``ssl`` cannot honour (``RequestClientCert``, ``RequireAnyClientCert``: OpenSSL
always verifies a certificate it is given; ``rate_limit``; ``http2: true``; more than one curve)
are refused by name, as is any unknown key, so a typo cannot leave /metrics open. Relative file
paths are relative to the config file. ``WebConfigWatcher`` rebuilds the TLS context and the
users when the config file or a file it names changes, or on demand (SIGHUP).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

log = logging.getLogger(__name__)

_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TLS_KEYS = {
    "cert",
    "key",
    "cert_file",
    "key_file",
    "client_ca",
    "client_ca_file",
    "client_auth_type",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
}
_HTTP_KEYS = {"headers", "http2"}
#: The response headers the toolkit lets a config set (others are refused there too).
_HEADER_NAMES = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
)
#: The toolkit's key names that Python's ssl cannot honour, with the reason given to the user.
_UNSUPPORTED = {
    "rate_limit": "rate limiting is not implemented; put a proxy in front if you need it",
}
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
#: client_auth_type (Go's tls.ClientAuthType names) -> OpenSSL verify mode.
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_CLIENT_AUTH_REFUSED = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
#: Go's cipher suite names (crypto/tls CipherSuites(), TLS 1.0-1.2) -> OpenSSL's names.
_CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
#: TLS 1.3 suites are not configurable in Go either: listed, they are accepted and have no effect.
_TLS13_CIPHERS = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)
#: Go's curve names -> OpenSSL's group names.
_CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
#: The subjectAltName kinds the toolkit matches (DNS, IP, e-mail, URI), as Python names them.
_SAN_KINDS = frozenset({"DNS", "IP Address", "email", "URI"})


class WebConfigError(ValueError):
    """A web config file that cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class WebConfig:
    cert_file: Path | None = None
    key_file: Path | None = None
    cert_pem: str | None = field(default=None, repr=False)
    key_pem: str | None = field(default=None, repr=False)
    client_ca_file: Path | None = None
    client_ca_pem: str | None = None
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    client_allowed_sans: frozenset[str] = frozenset()
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    ciphers: tuple[str, ...] = ()
    prefer_server_ciphers: bool = True
    curve: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    basic_auth_users: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def tls(self) -> bool:
        return self.cert_file is not None or self.cert_pem is not None

    @property
    def files(self) -> tuple[Path, ...]:
        """The files this config reads, whose changes call for a reload."""
        named = (self.cert_file, self.key_file, self.client_ca_file)
        return tuple(path for path in named if path is not None)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = self.min_version
        context.maximum_version = self.max_version
        if self.prefer_server_ciphers:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            if self.ciphers:
                context.set_ciphers(":".join(self.ciphers))
            if self.curve is not None:
                context.set_ecdh_curve(self.curve)
            self._load_chain(context)
            if self.client_ca_file is not None or self.client_ca_pem is not None:
                context.load_verify_locations(cafile=self.client_ca_file, cadata=self.client_ca_pem)
            elif self.client_auth != ssl.CERT_NONE:
                # Go verifies client certificates against the system roots when no CA is given.
                context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
            context.verify_mode = self.client_auth
        except (OSError, ssl.SSLError, ValueError) as error:
            raise WebConfigError(f"tls_server_config: cannot load certificates: {error}") from error
        return context

    def _load_chain(self, context: ssl.SSLContext) -> None:
        if self.cert_pem is None and self.key_pem is None:
            assert self.cert_file is not None
            assert self.key_file is not None
            context.load_cert_chain(self.cert_file, self.key_file)
            return
        # ssl loads a chain from files only: inline PEM goes through a private temporary file.
        with tempfile.TemporaryDirectory(prefix="studio-exporter-tls-") as directory:
            cert = self.cert_file if self.cert_pem is None else None
            key = self.key_file if self.key_pem is None else None
            cert = cert or _private_file(Path(directory) / "cert.pem", self.cert_pem or "")
            key = key or _private_file(Path(directory) / "key.pem", self.key_pem or "")
            context.load_cert_chain(cert, key)

    def peer_allowed(self, peer_certificate: Mapping[str, Any] | None) -> bool:
        """Whether a client certificate passes ``client_allowed_sans`` (always, when unset)."""
        if not self.client_allowed_sans:
            return True
        if not peer_certificate:
            return False
        names = peer_certificate.get("subjectAltName", ())
        return any(
            kind in _SAN_KINDS and str(value) in self.client_allowed_sans for kind, value in names
        )


def _private_file(path: Path, text: str) -> Path:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def load_web_config(path: Path) -> WebConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise WebConfigError(f"{path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise WebConfigError(f"{path}: not valid YAML: {error}") from error
    return web_config_from_mapping(raw or {}, base=path.parent)


def _unknown(section: str, given: Mapping[Any, Any], known: set[str]) -> None:
    for key in sorted(map(str, given)):
        if key in _UNSUPPORTED:
            raise WebConfigError(f"{section}{key}: not supported: {_UNSUPPORTED[key]}")
    unknown = set(map(str, given)) - known
    if unknown:
        raise WebConfigError(f"{section}unknown key(s): {', '.join(sorted(unknown))}")


def _strings(tls: Mapping[str, Any], key: str) -> list[str]:
    value = tls.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise WebConfigError(f"tls_server_config.{key} must be a list of strings")
    return value


def web_config_from_mapping(raw: Any, *, base: Path) -> WebConfig:
    if not isinstance(raw, dict):
        raise WebConfigError("the web config must be a mapping")
    _unknown("", raw, _TOP_KEYS)
    tls = raw.get("tls_server_config") or {}
    if not isinstance(tls, dict):
        raise WebConfigError("tls_server_config must be a mapping")
    _unknown("tls_server_config: ", tls, _TLS_KEYS)

    def file(key: str) -> Path | None:
        value = tls.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise WebConfigError(f"tls_server_config.{key} must be a file path")
        candidate = Path(value)
        resolved = candidate if candidate.is_absolute() else base / candidate
        if not resolved.is_file():
            raise WebConfigError(f"tls_server_config.{key}: {resolved} does not exist")
        return resolved

    def inline(key: str) -> str | None:
        value = tls.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise WebConfigError(f"tls_server_config.{key} must be PEM text")
        return value

    cert_file, key_file = file("cert_file"), file("key_file")
    cert_pem, key_pem = inline("cert"), inline("key")
    for file_key, inline_key in (("cert_file", "cert"), ("key_file", "key")):
        if tls.get(file_key) and tls.get(inline_key):
            raise WebConfigError(f"tls_server_config: give {file_key} or {inline_key}, not both")
    if (cert_file is None and cert_pem is None) != (key_file is None and key_pem is None):
        raise WebConfigError("tls_server_config needs a certificate and its key")
    client_ca_file, client_ca_pem = file("client_ca_file"), inline("client_ca")
    if client_ca_file is not None and client_ca_pem is not None:
        raise WebConfigError("tls_server_config: give client_ca_file or client_ca, not both")

    auth_type = tls.get("client_auth_type") or "NoClientCert"
    if auth_type in _CLIENT_AUTH_REFUSED:
        raise WebConfigError(
            f"tls_server_config.client_auth_type {auth_type} is not supported: OpenSSL verifies "
            "every client certificate it is given; use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert"
        )
    if auth_type not in _CLIENT_AUTH:
        raise WebConfigError(
            f"tls_server_config.client_auth_type must be one of {', '.join(_CLIENT_AUTH)}"
        )
    client_auth = _CLIENT_AUTH[auth_type]
    if (client_ca_file or client_ca_pem) and client_auth == ssl.CERT_NONE:
        # The toolkit refuses this too: a CA alone would look like client auth without being it.
        raise WebConfigError(
            "tls_server_config: client_ca_file is set but client_auth_type is NoClientCert; "
            "set client_auth_type: RequireAndVerifyClientCert"
        )
    sans = _strings(tls, "client_allowed_sans")
    if sans and client_auth != ssl.CERT_REQUIRED:
        raise WebConfigError(
            "tls_server_config.client_allowed_sans needs client_auth_type: "
            "RequireAndVerifyClientCert"
        )

    versions = {}
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        text = tls.get(key) or default
        if text not in _VERSIONS:
            raise WebConfigError(f"tls_server_config.{key} must be one of {', '.join(_VERSIONS)}")
        versions[key] = _VERSIONS[text]
    if versions["min_version"] > versions["max_version"]:
        raise WebConfigError("tls_server_config: min_version is above max_version")

    ciphers = []
    for name in _strings(tls, "cipher_suites"):
        if name in _TLS13_CIPHERS:
            continue
        if name not in _CIPHERS:
            raise WebConfigError(
                f"tls_server_config.cipher_suites: {name} is not one of Go's secure suites"
            )
        ciphers.append(_CIPHERS[name])
    prefer = tls.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError("tls_server_config.prefer_server_cipher_suites must be true or false")
    curves = _strings(tls, "curve_preferences")
    unknown_curves = [name for name in curves if name not in _CURVES]
    if unknown_curves:
        raise WebConfigError(
            f"tls_server_config.curve_preferences: unknown curve(s) {', '.join(unknown_curves)} "
            f"(known: {', '.join(_CURVES)})"
        )
    if len(curves) > 1:
        raise WebConfigError(
            "tls_server_config.curve_preferences: Python's ssl can restrict the handshake to "
            "one curve, not order several; list one"
        )

    headers = _http_headers(raw.get("http_server_config"))
    users = _users(raw.get("basic_auth_users"))
    return WebConfig(
        cert_file=cert_file,
        key_file=key_file,
        cert_pem=cert_pem,
        key_pem=key_pem,
        client_ca_file=client_ca_file,
        client_ca_pem=client_ca_pem,
        client_auth=client_auth,
        client_allowed_sans=frozenset(sans),
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        ciphers=tuple(ciphers),
        prefer_server_ciphers=prefer,
        curve=_CURVES[curves[0]] if curves else None,
        headers=headers,
        basic_auth_users=users,
    )


def _http_headers(http: Any) -> dict[str, str]:
    http = http or {}
    if not isinstance(http, dict):
        raise WebConfigError("http_server_config must be a mapping")
    _unknown("http_server_config: ", http, _HTTP_KEYS)
    if http.get("http2", False) is True:
        raise WebConfigError(
            "http_server_config.http2: HTTP/2 is not served (clients fall back to HTTP/1.1); "
            "remove the key or set it to false"
        )
    given = http.get("headers") or {}
    if not isinstance(given, dict):
        raise WebConfigError("http_server_config.headers must be a mapping")
    headers: dict[str, str] = {}
    for name, value in given.items():
        if name not in _HEADER_NAMES:
            raise WebConfigError(
                f"http_server_config.headers: {name} cannot be set (allowed: "
                f"{', '.join(_HEADER_NAMES)})"
            )
        if not isinstance(value, str) or any(char in value for char in "\r\n\0"):
            raise WebConfigError(f"http_server_config.headers.{name} must be a one-line string")
        if value:
            headers[name] = value
    return headers


def _users(users_raw: Any) -> dict[str, bytes]:
    users_raw = users_raw or {}
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
    return users


@dataclass(frozen=True)
class WebSecurity:
    """What the web server applies to each connection: built from one version of the config."""

    tls: ssl.SSLContext | None = None
    auth: BasicAuthChecker | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    config: WebConfig = field(default_factory=WebConfig)

    @classmethod
    def from_config(cls, config: WebConfig) -> WebSecurity:
        return cls(
            tls=config.ssl_context(),
            auth=BasicAuthChecker(config.basic_auth_users) if config.basic_auth_users else None,
            headers=dict(config.headers),
            config=config,
        )


class WebConfigWatcher:
    """The current ``WebSecurity`` of a config file, rebuilt when it or a file it names changes.

    ``current()`` looks at the files' modification times at most once per ``check_every``
    seconds, so certificates renewed on disk (cert-manager, certbot) are served without a
    restart; ``reload()`` rebuilds at once (SIGHUP). A file that no longer loads is logged and
    the previous version is kept: a half-written certificate never takes the port down.
    """

    def __init__(self, path: Path, *, check_every: float = 1.0) -> None:
        self.path = path
        self.check_every = check_every
        self._lock = threading.Lock()
        config = load_web_config(path)
        self._security = WebSecurity.from_config(config)
        self._stamps = self._stamp(config)
        self._checked = time.monotonic()

    def _stamp(self, config: WebConfig) -> tuple[tuple[int, int], ...]:
        stamps = []
        for path in (self.path, *config.files):
            try:
                status = path.stat()
                stamps.append((status.st_mtime_ns, status.st_size))
            except OSError:
                stamps.append((-1, -1))
        return tuple(stamps)

    def current(self) -> WebSecurity:
        now = time.monotonic()
        with self._lock:
            if now - self._checked < self.check_every:
                return self._security
            self._checked = now
            if self._stamp(self._security.config) == self._stamps:
                return self._security
        self.reload()
        return self._security

    def reload(self) -> bool:
        """Rebuild from the files now; False (and the old version kept) if they do not load."""
        try:
            config = load_web_config(self.path)
            security = WebSecurity.from_config(config)
        except WebConfigError as error:
            log.error("web config %s not reloaded, keeping the previous one: %s", self.path, error)
            with self._lock:
                self._stamps = self._stamp(self._security.config)
            return False
        with self._lock:
            self._security = security
            self._stamps = self._stamp(config)
        log.info("web config %s reloaded", self.path)
        return True


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
