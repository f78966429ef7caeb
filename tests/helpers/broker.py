"""A private Mosquitto for tests (:class:`roadside.core.testing.PrivateBroker`; a missing mosquitto fails
the test in CI and skips it elsewhere), test certificates, programs the tests need, ``wait_for``.

External programs (all from Debian packages; CI installs them, see edge/README_SERVICE.md):
``mosquitto`` (mosquitto), ``openssl`` (openssl), ``ffmpeg`` (ffmpeg), ``rtsp-server-perl`` (rtsp-server-perl).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from roadside.core.errors import RoadsideError
from roadside.core.testing import PrivateBroker, Recorder, free_port, wait_until  # noqa: F401  (for the tests)


def require_program(path_or_name: str, install: str) -> str:
    """The program's path; a missing program fails the test in CI and skips it (saying how to install) elsewhere."""
    found = path_or_name if os.path.isabs(path_or_name) and os.access(path_or_name, os.X_OK) else shutil.which(path_or_name)
    if found:
        return found
    _missing(f"{path_or_name} is not installed (install it with: {install})")


def _missing(msg: str):
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """The predicate's first truthy value; AssertionError naming ``what`` after ``timeout`` s."""
    try:
        return wait_until(predicate, timeout, what, interval)
    except TimeoutError as e:
        raise AssertionError(str(e)) from None


class Mosquitto(PrivateBroker):
    """A private broker on a free port; by default with persistence (a subscriber's session survives a
    restart). See :class:`roadside.core.testing.PrivateBroker` for the options."""

    def __init__(self, workdir: Path | None = None, persistence: bool = True, **options):
        try:
            super().__init__(workdir, persistence=persistence, **options)
        except RoadsideError as e:
            _missing(str(e))


def make_certificates(d: Path) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    openssl = require_program("openssl", "apt-get install -y openssl")
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=roadside test CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    for name, cn, ext in (("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1"), ("client", "edge-t", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.csr")
        (d / f"{name}.ext").write_text(ext + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return {k: d / v for k, v in {"ca": "ca.pem", "server_cert": "server.pem", "server_key": "server.key",
                                  "client_cert": "client.pem", "client_key": "client.key"}.items()}


def broker_tls(certs: dict[str, Path]) -> dict[str, str]:
    """The broker's TLS files from :func:`make_certificates`."""
    return {"cafile": str(certs["ca"]), "certfile": str(certs["server_cert"]), "keyfile": str(certs["server_key"])}
