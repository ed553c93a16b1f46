"""A throw-away PostgreSQL server for the tests: Debian's binaries, a temporary directory.

One server per test session (``postgres_server``, registered for every module by
``tests/conftest.py``), one fresh database per test (``postgres_url``). initdb refuses to run
as root, and the tests may: then the server is initialised, started and stopped as ``nobody``
(``runuser``) in a directory that user owns; otherwise as the current user.

The server listens on a free TCP port of 127.0.0.1, where it asks for a password (SCRAM), so
the URLs the tests use carry one, as a user's would; and on a unix socket inside its
directory, where it trusts the local superuser (the fixture's own administration).

Where the binaries are missing the tests skip with the reason; under CI (``CI=true``) they are
always installed (``.ci/run``), so their absence fails instead.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

#: Where Debian's ``postgresql-15`` package puts the server binaries (not on PATH).
BIN_DIR = Path(os.environ.get("STUDIO_EXPORTER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "studio"
#: The unprivileged user that owns the server when the tests run as root.
UNPRIVILEGED_USER = "nobody"
_START_ATTEMPTS = 3
_databases = count(1)


@dataclass(frozen=True, slots=True)
class PostgresServer:
    """A running server: where it listens, and its superuser's password."""

    directory: Path
    port: int
    password: str

    @property
    def socket_dir(self) -> Path:
        return self.directory / "socket"

    def url(self, database: str = "postgres") -> str:
        """A URL over TCP with the password, as ``--state.postgres-url`` would be given."""
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def admin_url(self) -> str:
        """The local socket, trusted: for creating and dropping the tests' databases."""
        return f"postgresql:///postgres?host={self.socket_dir}&port={self.port}&user={SUPERUSER}"


def _binaries() -> Path:
    if (BIN_DIR / "initdb").is_file() and (BIN_DIR / "pg_ctl").is_file():
        return BIN_DIR
    reason = f"PostgreSQL server binaries not found in {BIN_DIR} (apt-get install postgresql)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; required when CI=true")
    pytest.skip(f"{reason}; required when CI=true")


def _as_owner() -> list[str]:
    # initdb refuses root ("cannot be run as root"), and a server must not run as root anyway.
    return ["runuser", "-u", UNPRIVILEGED_USER, "--"] if os.geteuid() == 0 else []


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(command: list[str], directory: Path) -> None:
    done = subprocess.run(
        [*_as_owner(), *command],
        check=False,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{command[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


def start_server() -> PostgresServer:
    """initdb into a new temporary directory and start a server there; ``stop_server`` ends it."""
    binaries = _binaries()
    # Not under pytest's tmp_path: that lives in a 0700 directory of the user running the
    # tests, which ``nobody`` could not enter.
    directory = Path(tempfile.mkdtemp(prefix="studio-exporter-pg-"))
    password = secrets.token_urlsafe(18)
    try:
        data, sockets = directory / "data", directory / "socket"
        sockets.mkdir()
        password_file = directory / "password"
        password_file.write_text(password + "\n")
        if os.geteuid() == 0:
            owner = pwd.getpwnam(UNPRIVILEGED_USER)
            for path in (directory, sockets, password_file):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        _run(
            [
                str(binaries / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(password_file),
                "--auth-host",
                "scram-sha-256",
                "--auth-local",
                "trust",
                "--encoding",
                "UTF8",
                "--no-instructions",
            ],
            directory,
        )
        password_file.unlink()
        for attempt in range(_START_ATTEMPTS):
            # Another process may take the port between probing and listening: try another.
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={port} "
                f"-c unix_socket_directories={sockets} -c fsync=off -c max_connections=50"
            )
            try:
                _run(
                    [
                        str(binaries / "pg_ctl"),
                        "--pgdata",
                        str(data),
                        "--log",
                        str(directory / "server.log"),
                        "--options",
                        options,
                        "--wait",
                        "--timeout",
                        "60",
                        "start",
                    ],
                    directory,
                )
            except RuntimeError:
                if attempt == _START_ATTEMPTS - 1:
                    log = directory / "server.log"
                    raise RuntimeError(
                        f"PostgreSQL did not start:\n{log.read_text() if log.exists() else ''}"
                    ) from None
                continue
            return PostgresServer(directory, port, password)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    raise AssertionError("unreachable")  # the loop returns or raises


def stop_server(server: PostgresServer) -> None:
    try:
        _run(
            [
                str(BIN_DIR / "pg_ctl"),
                "--pgdata",
                str(server.directory / "data"),
                "--mode",
                "immediate",
                "--wait",
                "stop",
            ],
            server.directory,
        )
    finally:
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A URL (with its password) of a fresh, empty database, dropped after the test."""
    name = f"test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres_server.admin_url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield postgres_server.url(name)
    finally:
        with psycopg.connect(postgres_server.admin_url(), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
