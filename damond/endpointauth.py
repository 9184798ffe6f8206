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
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

HASH_SCHEME = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 600_000


@dataclass(frozen=True)
class PasswordHash:
    iterations: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """Parse ``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``; ValueError says why not."""
        parts = text.split("$")
        if len(parts) != 4 or parts[0] != HASH_SCHEME:
            raise ValueError(f"must look like {HASH_SCHEME}$<iterations>$<salt hex>$<hash hex>")
        try:
            iterations = int(parts[1])
            salt = bytes.fromhex(parts[2])
            digest = bytes.fromhex(parts[3])
        except ValueError:
            raise ValueError("iterations must be an integer and salt and hash hex digits") from None
        if iterations < 1 or not salt or len(digest) != hashlib.sha256().digest_size:
            raise ValueError("needs at least 1 iteration, a salt and a 32-byte hash")
        return cls(iterations, salt, digest)

    def matches(self, password: bytes) -> bool:
        derived = hashlib.pbkdf2_hmac("sha256", password, self.salt, self.iterations)
        return hmac.compare_digest(derived, self.digest)

    def __str__(self) -> str:
        return f"{HASH_SCHEME}${self.iterations}${self.salt.hex()}${self.digest.hex()}"


def hash_password(password: str, iterations: int = DEFAULT_ITERATIONS) -> str:
    """The config value ``metrics.basic_auth.password_hash`` for ``password``."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return str(PasswordHash(iterations, salt, digest))


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
