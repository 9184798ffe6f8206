"""Shared by the exporter's tests: HTTP requests, web configuration files, certificates."""

from __future__ import annotations

import base64
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import parser as openmetrics_parser

from tests.tools import require_binary


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def http_get(
    url: str,
    *,
    method: str = "GET",
    auth: tuple[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request; HTTP error statuses are returned, not raised."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return Reply(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers.items()), err.read())


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash as ``basic_auth_users`` takes it (cost 4: tests need no strength)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def write_web_config(path: Path, body: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(body))
    return path


def make_certificate(
    directory: Path, name: str = "server", ca: tuple[Path, Path] | None = None
) -> tuple[Path, Path]:
    """A PEM certificate for 127.0.0.1 and its key, self-signed or signed by ``ca``."""
    openssl = require_binary("openssl", "openssl")
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    base = [
        openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "1", "-subj", f"/CN={name}",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    if ca is None:
        subprocess.run([*base, "-x509"], check=True, capture_output=True)
    else:
        request = directory / f"{name}.csr"
        subprocess.run([*base[:-2], "-out", str(request)], check=True, capture_output=True)
        subprocess.run(
            [openssl, "x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "1", "-copy_extensions", "copy", "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
    return cert, key


def openmetrics_families(text: str) -> list[Metric]:
    """prometheus-client's strict OpenMetrics parser: raises on anything invalid."""
    parse: Callable[[str], Iterable[Metric]] = openmetrics_parser.text_string_to_metric_families
    return list(parse(text))
