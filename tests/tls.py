"""Certificates made with openssl for the TLS tests: self-signed, or a private CA for mTLS."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` (valid one day, for 127.0.0.1) and return them."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass(frozen=True)
class Pki:
    """A private CA with a server certificate (127.0.0.1, ::1, localhost) and client ones."""

    ca: Path
    server_cert: Path
    server_key: Path
    directory: Path

    def client(self, name: str, san: str) -> tuple[Path, Path]:
        """A client certificate signed by the CA, with ``san`` (e.g. ``DNS:scraper``)."""
        return _signed(self.directory, name, san, self.ca, self.directory / "ca.key", client=True)


def private_ca(directory: Path) -> Pki:
    """A CA and a server certificate it signed, for mutual-TLS tests."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is needed to make test certificates")
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=test CA", "-keyout", str(ca_key), "-out", str(ca),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    cert, key = _signed(
        directory, "server", "IP:127.0.0.1,IP:::1,DNS:localhost", ca, ca_key, client=False
    )
    return Pki(ca=ca, server_cert=cert, server_key=key, directory=directory)


def _signed(
    directory: Path, name: str, san: str, ca: Path, ca_key: Path, *, client: bool
) -> tuple[Path, Path]:
    cert, key, request = (directory / f"{name}{suffix}" for suffix in (".pem", ".key", ".csr"))
    extensions = directory / f"{name}.ext"
    usage = "clientAuth" if client else "serverAuth"
    extensions.write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
    subprocess.run(
        [
            "openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", str(key), "-out", str(request),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [
            "openssl", "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "1", "-extfile", str(extensions), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
