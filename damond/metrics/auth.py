"""Protection of the metrics endpoint: a TLS server context and HTTP basic auth.

Passwords are given either in a file (read once at start) or as a PBKDF2-SHA256
hash (``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``, see
:func:`hash_password`), so that no clear password needs to sit in the config.
Verifying a hash is deliberately slow, so the last accepted ``Authorization``
header is remembered (as its SHA-256) and a scraper presenting it again costs
one hash, not a key derivation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ssl
from collections.abc import Callable
from functools import partial
from pathlib import Path

from damond.config.passwordhash import PasswordHash
from damond.config.service import MetricsConfig


def read_password_file(path: Path) -> bytes:
    """The password in ``path``, without its trailing newline; OSError/ValueError on trouble."""
    password = path.read_bytes().rstrip(b"\r\n")
    if not password:
        raise ValueError("is empty")
    return password


class BasicAuth:
    """Checks ``Authorization: Basic ...`` headers against one user."""

    def __init__(self, user: str, password: bytes | None, password_hash: PasswordHash | None):
        if password is not None and password_hash is None:
            self._password_ok: Callable[[bytes], bool] = partial(hmac.compare_digest, password)
        elif password_hash is not None and password is None:
            self._password_ok = password_hash.matches
        else:
            raise ValueError("give exactly one of password and password_hash")
        self._user = user.encode()
        self._accepted: bytes | None = None

    def allows(self, header: str | None) -> bool:
        if header is None:
            return False
        fingerprint = hashlib.sha256(header.encode(errors="surrogateescape")).digest()
        if self._accepted is not None and hmac.compare_digest(fingerprint, self._accepted):
            return True
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        if not sep:
            return False
        user_ok = hmac.compare_digest(user, self._user)
        if self._password_ok(password) and user_ok:
            self._accepted = fingerprint
            return True
        return False


def server_ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context; ssl.SSLError/OSError if the files do not load."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def endpoint_file_errors(metrics: MetricsConfig) -> list[str]:
    """Why the files ``[metrics]`` names cannot serve the endpoint (empty when they can):
    the TLS certificate and key load as a pair, the password file has a password."""
    if not metrics.enabled:
        return []
    errors: list[str] = []
    if metrics.tls is not None:
        missing = False
        for field in ("cert_file", "key_file"):
            path: Path = getattr(metrics.tls, field)
            if not path.is_file():
                errors.append(f"metrics.tls.{field}: {path} is not a readable file")
                missing = True
        if not missing:
            try:
                server_ssl_context(metrics.tls.cert_file, metrics.tls.key_file)
            except (OSError, ssl.SSLError) as exc:
                errors.append(
                    f"metrics.tls: {metrics.tls.cert_file} and {metrics.tls.key_file} do not "
                    f"load as a PEM certificate and its private key: {exc}"
                )
    auth = metrics.basic_auth
    if auth is not None and auth.password_file is not None and auth.password_hash is None:
        try:
            read_password_file(auth.password_file)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            errors.append(f"metrics.basic_auth.password_file: {auth.password_file}: {reason}")
    return errors
