"""The endpoint's web configuration file, in the Prometheus exporter-toolkit format.

The file that ``metrics.web_config_file`` names is the one node_exporter and the
other exporters read (``--web.config.file``): ``tls_server_config`` (HTTPS, and
optionally client certificates) and ``basic_auth_users`` (user -> bcrypt hash).
Relative paths in it resolve against the file's directory, as exporter-toolkit
resolves them. Every problem is reported with the file and the field.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from damond.config.wording import pydantic_errors

CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode | None] = {
    "NoClientCert": ssl.CERT_NONE,
    # asks for a certificate and does not verify it: access is as with NoClientCert,
    # and Python's TLS cannot request without verifying, so none is requested
    "RequestClientCert": ssl.CERT_NONE,
    "RequireAnyClientCert": None,  # Python's TLS cannot require a certificate unverified
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_MODEL_NAME = re.compile(r" or instance of _\w+")
"""How pydantic names the schema's classes in its messages; operators know sections."""
BCRYPT_HASH = re.compile(r"^\$2[aby]\$[0-3][0-9]\$[./A-Za-z0-9]{53}$")

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TlsVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TlsServerSection(_Section):
    cert_file: str = ""
    key_file: str = ""
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: str = ""
    min_version: TlsVersionName = "TLS12"
    max_version: TlsVersionName = "TLS13"


class _HttpServerSection(_Section):
    http2: bool = True
    """Accepted for compatibility; damond serves HTTP/1.1."""
    headers: dict[str, str] = {}


class _WebConfigFile(_Section):
    tls_server_config: _TlsServerSection | None = None
    http_server_config: _HttpServerSection | None = None
    basic_auth_users: dict[str, str] | None = None


@dataclass(frozen=True)
class TlsServer:
    """HTTPS settings with absolute paths."""

    cert_file: Path
    key_file: Path
    client_auth: ssl.VerifyMode
    client_ca_file: Path | None
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion


@dataclass(frozen=True)
class WebConfig:
    """What the endpoint serves with: TLS (or None for plain HTTP), users, extra headers."""

    tls: TlsServer | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    """User name -> bcrypt hash; empty: no basic auth."""
    headers: Mapping[str, str] = field(default_factory=dict)


class WebConfigError(Exception):
    """The file cannot serve the endpoint; ``errors`` name the file and the field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def load_web_config(path: Path) -> WebConfig:
    """Read, check and load ``path`` (certificates included); raise WebConfigError."""
    where = f"metrics.web_config_file: {path}"
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise WebConfigError([f"{where}: {exc.strerror or exc}"]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise WebConfigError([f"{where}: not valid YAML: {reason}"]) from None
    if raw is not None and not isinstance(raw, dict):
        kind = type(raw).__name__
        raise WebConfigError([f"{where}: must be a YAML mapping of sections, got a {kind}"])
    try:
        parsed = _WebConfigFile.model_validate(raw or {})
    except ValidationError as exc:
        lines = [_MODEL_NAME.sub("", line) for line in pydantic_errors(exc)]
        raise WebConfigError([f"{where}: {line}" for line in lines]) from None
    errors: list[str] = []
    tls = _tls(parsed.tls_server_config, path.parent, errors)
    users = _users(parsed.basic_auth_users or {}, errors)
    if not errors and tls is not None:
        try:
            server_ssl_context(tls)
        except (OSError, ssl.SSLError) as exc:
            errors.append(f"tls_server_config: the files do not load: {exc}")
    if errors:
        raise WebConfigError([f"{where}: {line}" for line in errors])
    headers = parsed.http_server_config.headers if parsed.http_server_config else {}
    return WebConfig(tls, users, headers)


def _resolve(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base / path


def _tls(section: _TlsServerSection | None, base: Path, errors: list[str]) -> TlsServer | None:
    if section is None:
        return None
    where = "tls_server_config"
    if not section.cert_file and not section.key_file:
        if section.client_ca_file or section.client_auth_type != "NoClientCert":
            errors.append(f"{where}: client certificates need cert_file and key_file")
        return None
    for name in ("cert_file", "key_file"):
        value = getattr(section, name)
        if not value:
            errors.append(f"{where}.{name}: required with the other of cert_file and key_file")
        elif not _resolve(base, value).is_file():
            errors.append(f"{where}.{name}: {_resolve(base, value)} is not a readable file")
    mode = CLIENT_AUTH_TYPES[section.client_auth_type]
    if mode is None:
        errors.append(
            f"{where}.client_auth_type: damond cannot accept client certificates without "
            "verifying them; use VerifyClientCertIfGiven or RequireAndVerifyClientCert "
            "with client_ca_file, got 'RequireAnyClientCert'"
        )
    verifies = mode in (ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED)
    ca_file = _resolve(base, section.client_ca_file) if section.client_ca_file else None
    if verifies and ca_file is None:
        errors.append(f"{where}.client_ca_file: required with {section.client_auth_type}")
    if ca_file is not None and not verifies:
        errors.append(
            f"{where}.client_ca_file: set, but client_auth_type {section.client_auth_type!r} "
            "does not verify client certificates (use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert)"
        )
    elif ca_file is not None and not ca_file.is_file():
        errors.append(f"{where}.client_ca_file: {ca_file} is not a readable file")
    low, high = TLS_VERSIONS[section.min_version], TLS_VERSIONS[section.max_version]
    if low > high:
        errors.append(
            f"{where}.min_version: must not be above max_version ({section.max_version}), "
            f"got {section.min_version}"
        )
    return TlsServer(
        _resolve(base, section.cert_file),
        _resolve(base, section.key_file),
        mode or ssl.CERT_NONE,
        ca_file,
        low,
        high,
    )


def _users(users: Mapping[str, str], errors: list[str]) -> dict[str, bytes]:
    for user, hashed in users.items():
        if not user or ":" in user:
            errors.append(
                f"basic_auth_users: user names must be non-empty without ':', got {user!r}"
            )
        if not BCRYPT_HASH.match(hashed):
            errors.append(
                f"basic_auth_users.{user}: must be a bcrypt hash ($2a$, $2b$ or $2y$, "
                "60 characters; docs/metrics.md says how to make one)"
            )
    return {user: hashed.encode() for user, hashed in users.items()}


def server_ssl_context(tls: TlsServer) -> ssl.SSLContext:
    """The server's TLS context; OSError or ssl.SSLError if the files do not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = tls.min_version
    context.maximum_version = tls.max_version
    context.load_cert_chain(tls.cert_file, tls.key_file)
    context.verify_mode = tls.client_auth
    if tls.client_ca_file is not None:
        context.load_verify_locations(cafile=tls.client_ca_file)
    return context
