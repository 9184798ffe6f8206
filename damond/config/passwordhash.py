"""The format of ``metrics.basic_auth.password_hash``: PBKDF2-SHA256 with its parameters.

``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``; :func:`hash_password` makes one."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

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
