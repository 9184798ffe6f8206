"""Ed25519 signatures over a policy's canonical JSON.

With keys configured, a host applies only what a key holder signed, so write
access to the broker alone cannot steer its memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from damond.config import ConfigError, MqttConfig
from damond.policy.document import PolicyError, canonical_bytes

UNSIGNED = "unsigned"
"""The signer of every document on a host that has no policy keys."""


class PolicyKeyError(Exception):
    """A key file that cannot be used; the message names the file and the reason."""


def load_public_keys(paths: Sequence[Path]) -> list[Ed25519PublicKey]:
    """Read PEM Ed25519 public keys; raise PolicyKeyError naming the first bad file."""
    keys: list[Ed25519PublicKey] = []
    for path in paths:
        try:
            key = load_pem_public_key(path.read_bytes())
        except OSError as exc:
            raise PolicyKeyError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise PolicyKeyError(f"{path}: not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise PolicyKeyError(f"{path}: not an Ed25519 key ({type(key).__name__})")
        keys.append(key)
    return keys


def configured_keys(cfg: MqttConfig) -> list[Ed25519PublicKey]:
    """The keys of ``mqtt.policy_keys``; an unusable one is a configuration error."""
    errors: list[str] = []
    keys: list[Ed25519PublicKey] = []
    for i, path in enumerate(cfg.policy_keys):
        try:
            keys.extend(load_public_keys([path]))
        except PolicyKeyError as exc:
            errors.append(f"mqtt.policy_keys[{i}]: {exc}")
    if errors:
        raise ConfigError(errors)
    return keys


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise PolicyKeyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise PolicyKeyError(f"{path}: not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PolicyKeyError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    return key


def sign(raw: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """``raw`` with its ``signature`` set (any previous one replaced)."""
    signed = {k: v for k, v in raw.items() if k != "signature"}
    signed["signature"] = base64.b64encode(key.sign(canonical_bytes(raw))).decode()
    return signed


def key_id(key: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: generations are counted per signer."""
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def signer_of(
    raw: Mapping[str, Any], keys: Sequence[Ed25519PublicKey]
) -> tuple[str | None, list[PolicyError]]:
    """Which key signed ``raw`` (its :func:`key_id`; UNSIGNED when no keys are set), or
    None and why it is not signed by one of ``keys``."""
    if not keys:
        return UNSIGNED, []
    signature = raw.get("signature")
    if signature is None:
        return None, [PolicyError("signature", "required: this host accepts only signed policies")]
    if not isinstance(signature, str) or len(signature) > 256:
        return None, [PolicyError("signature", "must be a base64 string of at most 256 characters")]
    try:
        sig = base64.b64decode(signature, validate=True)
    except binascii.Error:
        return None, [PolicyError("signature", "is not valid base64")]
    message = canonical_bytes(raw)
    for key in keys:
        try:
            key.verify(sig, message)
        except InvalidSignature:
            continue
        return key_id(key), []
    return None, [
        PolicyError(
            "signature", f"does not verify with any of the {len(keys)} configured policy keys"
        )
    ]
