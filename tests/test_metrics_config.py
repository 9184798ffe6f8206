"""``[metrics]`` validation: every error names its field and says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from damond.config import ConfigError
from damond.config.passwordhash import PasswordHash, hash_password
from damond.runtime.configsource import load_daemon_settings as load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("DAMOND_")]:
        monkeypatch.delenv(key)


def errors_for(tmp_path: Path, toml: str) -> list[str]:
    path = tmp_path / "damond.toml"
    path.write_text(toml)
    try:
        load_settings(path)
    except ConfigError as exc:
        return exc.errors
    return []


def test_defaults(tmp_path: Path) -> None:
    path = tmp_path / "damond.toml"
    path.write_text("")
    metrics = load_settings(path).metrics
    assert metrics.listen == "127.0.0.1:9464"
    assert metrics.tls is None and metrics.basic_auth is None
    assert metrics.allow_insecure_remote is False


@pytest.mark.parametrize("listen", ["127.0.0.1:9464", "[::1]:9464", "localhost:1", "127.1.2.3:80"])
def test_loopback_needs_no_protection(tmp_path: Path, listen: str) -> None:
    assert errors_for(tmp_path, f'[metrics]\nlisten = "{listen}"\n') == []


@pytest.mark.parametrize("listen", ["0.0.0.0:9464", "[::]:9464", "192.0.2.7:9464", "host:9464"])
def test_remote_address_refused_without_protection(tmp_path: Path, listen: str) -> None:
    errors = errors_for(tmp_path, f'[metrics]\nlisten = "{listen}"\n')
    assert len(errors) == 1
    assert errors[0].startswith(f"metrics.listen: {listen!r} is not a loopback address")
    assert "metrics.allow_insecure_remote" in errors[0]


def test_remote_address_allowed_explicitly_or_protected(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("x")
    base = '[metrics]\nlisten = "0.0.0.0:9464"\n'
    assert errors_for(tmp_path, base + "allow_insecure_remote = true\n") == []
    auth = f'[metrics.basic_auth]\nuser = "p"\npassword_file = "{password}"\n'
    assert errors_for(tmp_path, base + auth) == []


def test_disabled_endpoint_is_not_checked(tmp_path: Path) -> None:
    assert errors_for(tmp_path, '[metrics]\nenabled = false\nlisten = "0.0.0.0:1"\n') == []


@pytest.mark.parametrize(
    ("listen", "reason"),
    [
        ("9464", "must be HOST:PORT or [IPV6]:PORT"),
        (":9464", "must be HOST:PORT or [IPV6]:PORT"),
        ("::1:9464", "an IPv6 address must be in brackets, as [::1]:9464"),
        ("127.0.0.1:http", "port must be a number"),
        ("127.0.0.1:70000", "port must be between 1 and 65535"),
    ],
)
def test_bad_listen_address(tmp_path: Path, listen: str, reason: str) -> None:
    errors = errors_for(tmp_path, f'[metrics]\nlisten = "{listen}"\n')
    assert errors == [f"metrics.listen: {reason}, got {listen!r}"]


def test_env_override_is_validated_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAMOND_METRICS__LISTEN", "0.0.0.0:9464")
    errors = errors_for(tmp_path, "")
    assert errors and errors[0].startswith("metrics.listen:")


def test_tls_files_must_exist_and_load(tmp_path: Path) -> None:
    missing = errors_for(
        tmp_path,
        f'[metrics.tls]\ncert_file = "{tmp_path}/nope.pem"\nkey_file = "{tmp_path}/nokey.pem"\n',
    )
    assert missing == [
        f"metrics.tls.cert_file: {tmp_path}/nope.pem is not a readable file",
        f"metrics.tls.key_file: {tmp_path}/nokey.pem is not a readable file",
    ]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    bad = errors_for(tmp_path, f'[metrics.tls]\ncert_file = "{garbage}"\nkey_file = "{garbage}"\n')
    assert len(bad) == 1
    assert bad[0].startswith(f"metrics.tls: {garbage} and {garbage} do not load as a PEM")
    no_key = errors_for(tmp_path, f'[metrics.tls]\ncert_file = "{garbage}"\n')
    assert no_key == ["metrics.tls.key_file: required field is missing"]


@pytest.mark.parametrize(
    ("auth", "error"),
    [
        ({"user": "p"}, "metrics.basic_auth: set exactly one of password_file and password_hash"),
        (
            {"user": "p", "password_file": "PW", "password_hash": "HASH"},
            "metrics.basic_auth: set exactly one of password_file and password_hash",
        ),
        (
            {"user": "a:b", "password_file": "PW"},
            "metrics.basic_auth.user: must be non-empty and without ':', got 'a:b'",
        ),
        (
            {"user": "p", "password_hash": "md5$abc"},
            "metrics.basic_auth.password_hash: must look like "
            "pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>, got 'md5$abc'",
        ),
        (
            {"user": "p", "password_file": "EMPTY"},
            "metrics.basic_auth.password_file: EMPTY: is empty",
        ),
        (
            {"user": "p", "password_file": "MISSING"},
            "metrics.basic_auth.password_file: MISSING: No such file or directory",
        ),
        ({"password_file": "PW"}, "metrics.basic_auth.user: required field is missing"),
    ],
)
def test_basic_auth_errors(tmp_path: Path, auth: dict[str, str], error: str) -> None:
    files = {"PW": tmp_path / "pw", "EMPTY": tmp_path / "empty", "MISSING": tmp_path / "missing"}
    files["PW"].write_text("secret\n")
    files["EMPTY"].write_text("\n")
    hashed = hash_password("secret", iterations=10)
    values: dict[str, Any] = {}
    for key, val in auth.items():
        values[key] = str(files[val]) if val in files else (hashed if val == "HASH" else val)
    body = "".join(f'{k} = "{v}"\n' for k, v in values.items())
    for name, path in files.items():
        error = error.replace(f": {name}:", f": {path}:")
    assert errors_for(tmp_path, "[metrics.basic_auth]\n" + body) == [error]


def test_password_hash_round_trip() -> None:
    text = hash_password("pa55", iterations=10)
    parsed = PasswordHash.parse(text)
    assert str(parsed) == text
    assert parsed.matches(b"pa55") and not parsed.matches(b"pa56")
    with pytest.raises(ValueError, match="salt and hash hex digits"):
        PasswordHash.parse("pbkdf2_sha256$ten$00$00")


def test_damond_check_refuses_an_unprotected_remote_endpoint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
    env |= {"DAMOND_METRICS__LISTEN": "0.0.0.0:9464", "DAMOND_CONFIG": str(tmp_path / "x.toml")}
    (tmp_path / "x.toml").write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "damond", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "metrics.listen: '0.0.0.0:9464' is not a loopback address" in result.stderr
