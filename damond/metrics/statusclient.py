"""``damond status``: fetch a running daemon's ``/status`` and print it as a table.

The URL comes from ``--url`` or from the configuration (``metrics.listen``, and
HTTPS when its web configuration file sets TLS); credentials and certificates come
from flags, because the web configuration holds only password hashes.
"""

from __future__ import annotations

import argparse
import base64
import json
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damond.config import MetricsConfig, config_path, load_settings, parse_listen
from damond.metrics.auth import endpoint_file_errors
from damond.metrics.statusdoc import status_table
from damond.metrics.webconfig import load_web_config

WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class StatusUnavailable(Exception):
    """The daemon's ``/status`` could not be read; the message says why."""


class StatusUsageError(Exception):
    """A flag's value cannot be used; the message names the flag."""


@dataclass(frozen=True)
class StatusRequest:
    url: str
    user: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    timeout_s: float = 5.0


def status_url(metrics: MetricsConfig) -> str:
    """Where the configured endpoint answers ``/status`` on this host."""
    host, port = parse_listen(metrics.listen)
    host = WILDCARDS.get(host, host)
    tls = (
        metrics.web_config_file is not None
        and load_web_config(metrics.web_config_file).tls is not None
    )
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}/status"


def fetch_status(request: StatusRequest) -> dict[str, Any]:
    """The JSON of ``/status``; StatusUnavailable says why not, StatusUsageError which
    flag is wrong."""
    headers = {"Accept": "application/json"}
    if request.user is not None:
        password = b""
        if request.password_file is not None:
            try:
                password = request.password_file.read_bytes().splitlines()[0]
            except (OSError, IndexError) as exc:
                reason = "is empty" if isinstance(exc, IndexError) else exc.strerror
                message = f"--password-file: {request.password_file}: {reason}"
                raise StatusUsageError(message) from None
        token = base64.b64encode(request.user.encode() + b":" + password).decode()
        headers["Authorization"] = f"Basic {token}"
    context = None
    if request.url.startswith("https:"):
        try:
            context = _client_context(request)
        except (OSError, ssl.SSLError) as exc:
            raise StatusUsageError(f"--cacert, --cert or --key: cannot be loaded: {exc}") from None
    try:
        http_request = urllib.request.Request(request.url, headers=headers)
        with urllib.request.urlopen(http_request, timeout=request.timeout_s, context=context) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:
        hint = {401: "; give --user and --password-file", 429: "; too many failed logins"}
        raise StatusUnavailable(
            f"{request.url}: HTTP {exc.code} {exc.reason}{hint.get(exc.code, '')}"
        ) from None
    except (urllib.error.URLError, OSError, ssl.SSLError, ValueError) as exc:
        reason = str(exc.reason if isinstance(exc, urllib.error.URLError) else exc)
        raise StatusUnavailable(
            f"cannot reach damond at {request.url}: {reason} (is damond running and "
            "listening there? --url names another address)"
        ) from None
    try:
        document: dict[str, Any] = json.loads(body)
    except ValueError:
        raise StatusUnavailable(f"{request.url}: the answer is not JSON") from None
    return document


def _client_context(request: StatusRequest) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=request.ca_file)
    if request.cert_file is not None:
        context.load_cert_chain(request.cert_file, request.key_file)
    return context


def _configured_endpoint(path: Path | None) -> MetricsConfig:
    """``[metrics]`` of the configuration, its web configuration file checked as at start."""
    settings = load_settings(
        config_path(path), extra_checks=(lambda s: endpoint_file_errors(s.metrics),)
    )
    return settings.metrics


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """``damond status``'s flags (besides ``-c``)."""
    parser.add_argument(
        "--url", help="the daemon's /status (default: from metrics.listen and web_config_file)"
    )
    parser.add_argument("--user", help="basic auth user of the endpoint's web configuration")
    parser.add_argument(
        "--password-file", type=Path, metavar="FILE", help="the --user's password (first line)"
    )
    parser.add_argument("--cacert", type=Path, metavar="FILE", help="CA to verify HTTPS with")
    parser.add_argument("--cert", type=Path, metavar="FILE", help="client certificate (PEM)")
    parser.add_argument("--key", type=Path, metavar="FILE", help="the client certificate's key")
    parser.add_argument("--json", action="store_true", help="print the JSON as received")


def status_command(args: argparse.Namespace) -> int:
    """``damond status``: print ``/status``; the exit code: 0, 1 (not reachable or
    refused), 2 (a bad flag; ConfigError for a bad configuration)."""
    url = args.url or status_url(_configured_endpoint(args.config))
    request = StatusRequest(url, args.user, args.password_file, args.cacert, args.cert, args.key)
    try:
        document = fetch_status(request)
    except StatusUsageError as exc:
        print(f"damond: {exc}", file=sys.stderr)
        return 2
    except StatusUnavailable as exc:
        print(f"damond: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(document, indent=1) if args.json else status_table(document))
    return 0
