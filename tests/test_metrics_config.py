"""``[metrics]`` validation, and the web configuration file it names: every error names
its field (and the file) and says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from damond.config import ConfigError
from damond.runtime.configsource import load_daemon_settings as load_settings
from tests.exporter_helpers import bcrypt_hash, make_certificate, write_web_config


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
    assert metrics.web_config_file is None
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
    web = write_web_config(tmp_path / "web.yml", {"basic_auth_users": {"p": bcrypt_hash("x")}})
    base = '[metrics]\nlisten = "0.0.0.0:9464"\n'
    assert errors_for(tmp_path, base + "allow_insecure_remote = true\n") == []
    assert errors_for(tmp_path, base + f'web_config_file = "{web}"\n') == []


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


@pytest.mark.parametrize("table", ["tls", "basic_auth"])
def test_inline_tls_and_basic_auth_point_to_the_web_config_file(tmp_path: Path, table: str) -> None:
    errors = errors_for(tmp_path, f'[metrics.{table}]\nuser = "p"\n')
    assert len(errors) == 1
    assert errors[0].startswith(f"metrics: [metrics.{table}] is no longer read: put TLS")
    assert "metrics.web_config_file" in errors[0]


def web_errors(tmp_path: Path, body: object) -> list[str]:
    web = tmp_path / "web.yml"
    web.write_text(body if isinstance(body, str) else yaml.safe_dump(body))
    errors = errors_for(tmp_path, f'[metrics]\nweb_config_file = "{web}"\n')
    prefix = f"metrics.web_config_file: {web}: "
    assert all(e.startswith(prefix) for e in errors), errors
    return [e.removeprefix(prefix) for e in errors]


def test_web_config_file_must_exist_and_parse(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    errors = errors_for(tmp_path, f'[metrics]\nweb_config_file = "{missing}"\n')
    assert errors == [f"metrics.web_config_file: {missing}: No such file or directory"]
    assert web_errors(tmp_path, "tls_server_config: [unclosed\n")[0].startswith("not valid YAML")
    assert web_errors(tmp_path, "") == []  # an empty file: plain HTTP, no auth


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"tls_server_config": {"cert_file": "c.pem"}}, [
            "tls_server_config.cert_file: DIR/c.pem is not a readable file",
            "tls_server_config.key_file: required with the other of cert_file and key_file",
        ]),
        ({"tls_server_config": {"cert_file": "nope.pem", "key_file": "nokey.pem"}}, [
            "tls_server_config.cert_file: DIR/nope.pem is not a readable file",
            "tls_server_config.key_file: DIR/nokey.pem is not a readable file",
        ]),
        ({"tls_server_config": {"client_auth_type": "Sometimes"}}, [
            "tls_server_config.client_auth_type: input should be 'NoClientCert', "
            "'RequestClientCert', 'RequireAnyClientCert', 'VerifyClientCertIfGiven' or "
            "'RequireAndVerifyClientCert', got 'Sometimes'",
        ]),
        ({"tls_server_config": {"cert_file": "c.pem", "key_file": "k.pem", "min_version": "TLS9"}},
         ["tls_server_config.min_version: input should be 'TLS10', 'TLS11', 'TLS12' or 'TLS13', "
          "got 'TLS9'"]),
        ({"tls_server_config": {"cipher_suites": ["x"]}}, [
            "tls_server_config.cipher_suites: unknown field",
        ]),
        ({"basic_auth_users": {"p": "plaintext"}}, [
            "basic_auth_users.p: must be a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters; "
            "docs/metrics.md says how to make one)",
        ]),
        ({"basic_auth_users": ["p"]}, ["basic_auth_users: input should be a valid dictionary"]),
        ({"tls_server_config": "on"}, [
            "tls_server_config: input should be a valid dictionary, got 'on'",
        ]),
        ("- a list\n", ["must be a YAML mapping of sections, got a list"]),
    ],
)  # fmt: skip
def test_web_config_errors_name_the_file_and_the_field(
    tmp_path: Path, body: object, expected: list[str]
) -> None:
    errors = web_errors(tmp_path, body)
    assert errors == [e.replace("DIR", str(tmp_path)) for e in expected]


def test_web_config_tls_rules(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    pair = {"cert_file": cert.name, "key_file": key.name}
    assert web_errors(tmp_path, {"tls_server_config": pair}) == []
    ca_without_policy = {**pair, "client_ca_file": cert.name}
    assert web_errors(tmp_path, {"tls_server_config": ca_without_policy}) == [
        "tls_server_config.client_ca_file: set, but client_auth_type 'NoClientCert' does not "
        "verify client certificates (use VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
    ]
    verify_without_ca = {**pair, "client_auth_type": "RequireAndVerifyClientCert"}
    assert web_errors(tmp_path, {"tls_server_config": verify_without_ca}) == [
        "tls_server_config.client_ca_file: required with RequireAndVerifyClientCert"
    ]
    unverified = {**pair, "client_auth_type": "RequireAnyClientCert"}
    assert web_errors(tmp_path, {"tls_server_config": unverified})[0].startswith(
        "tls_server_config.client_auth_type: damond cannot accept client certificates without "
        "verifying them"
    )
    inverted = {**pair, "min_version": "TLS13", "max_version": "TLS12"}
    assert web_errors(tmp_path, {"tls_server_config": inverted}) == [
        "tls_server_config.min_version: must not be above max_version (TLS12), got TLS13"
    ]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    swapped = {"cert_file": garbage.name, "key_file": garbage.name}
    errors = web_errors(tmp_path, {"tls_server_config": swapped})
    assert len(errors) == 1 and errors[0].startswith("tls_server_config: the files do not load")


def test_damond_check_validates_the_web_config_file(tmp_path: Path) -> None:
    web = write_web_config(tmp_path / "web.yml", {"basic_auth_users": {"p": "not-a-hash"}})
    (tmp_path / "x.toml").write_text(f'[metrics]\nweb_config_file = "{web}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
    env |= {"DAMOND_CONFIG": str(tmp_path / "x.toml")}
    result = subprocess.run(
        [sys.executable, "-m", "damond", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert f"metrics.web_config_file: {web}: basic_auth_users.p: must be a bcrypt hash" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


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


def test_the_example_web_config_file_loads(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "web-config.yml"
    (tmp_path / "tls").mkdir()
    make_certificate(tmp_path / "tls", "damond")
    assert web_errors(tmp_path, example.read_text()) == []
