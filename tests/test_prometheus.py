"""damond against a real Prometheus server (Debian's ``prometheus`` package).

One ``damond run`` (simulated backend) and one Prometheus scraping it every
second are shared by the module: every dashboard query must return data and
every alert rule must evaluate cleanly. promtool checks the scraped text, the
rules (and their unit tests) and the example scrape configuration.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from damond.backend.simulated.backend import SimBackend
from damond.config import SimulationConfig
from tests.exporter_helpers import (
    bcrypt_hash,
    http_get,
    make_certificate,
    openmetrics_families,
    write_web_config,
)
from tests.tools import free_port, require_binary

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana" / "damond.json"
RULES = REPO / "deploy" / "prometheus" / "damond-rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "damond-rules.test.yml"
SCRAPE_EXAMPLE = REPO / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = {
    "DamondDown",
    "DamondContextNotIterating",
    "DamondGoalMissed",
    "DamondMigrationPingPong",
    "DamondMqttDisconnected",
    "DamondContextRestarting",
}
# What Grafana substitutes, as it would with "All" selected.
DASHBOARD_VARIABLES = {
    "$__rate_interval": "1m",
    "${host}": ".+",
    "$host": ".+",
    "${context}": ".+",
    "$context": ".+",
    "${cgroup}": ".+",
    "$cgroup": ".+",
}
WORKLOAD_CONFIG = """
[[simulation.sets]]
name = "hot"
bytes = 30_064_771_072
access_rate = 0.9
cgroup = "/system.slice/db.service"

[[simulation.sets]]
name = "warm"
bytes = 1_073_741_824
access_rate = 0.05
placement = 0

[[simulation.sets]]
name = "idle"
bytes = 1_073_741_824
access_rate = 0.0
placement = 0

[[simulation.sets]]
name = "cold"
bytes = 8_589_934_592
access_rate = 0.01
placement = 1

[[contexts]]
name = "node0"
node = 0
scheme = { target_nid = 1 }
goal = { nid = 0, target_bp = 6000 }

[[contexts]]
name = "node1"
node = 1
scheme = { target_nid = 0 }
goal = { nid = 1, target_bp = 4000 }

[[contexts]]
name = "db-promote"
node = 1
scheme = { target_nid = 0, filters = [{ type = "memcg", memcg_path = "/system.slice/db.service" }] }

[contexts.goal]
metric = "node_memcg_used_bp"
nid = 0
path = "/system.slice/db.service"
target_bp = 3000
"""
"""The default (simulated) configuration with its hot set in a cgroup, and a workload's
context on it beside the default two: what the per-workload panel shows."""


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def reachable(url: str) -> bool:
    try:
        return http_get(url, timeout=1.0).status == 200
    except OSError:
        return False


@contextmanager
def running_damond(tmp: Path, config: str = "", scheme: str = "http") -> Iterator[str]:
    """A running ``damond run`` on the default (simulated) configuration plus ``config``;
    its URL."""
    (tmp / "damond.toml").write_text(config)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
    env |= {
        "DAMOND_CONFIG": str(tmp / "damond.toml"),
        "DAMOND_STATE_DIR": str(tmp / "state"),
        "DAMOND_METRICS__LISTEN": f"127.0.0.1:{port}",
        "DAMOND_MQTT__ENABLED": "false",
    }
    log = (tmp / "damond.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "damond", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for("damond's listener", lambda: proc.poll() is None and listening(port))
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        log.close()
    assert code == 0, (tmp / "damond.log").read_text()


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def damond_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running ``damond run`` with the default (simulated) configuration and a
    workload's context (:data:`WORKLOAD_CONFIG`)."""
    with running_damond(tmp_path_factory.mktemp("damond"), WORKLOAD_CONFIG) as url:
        wait_for("damond's /healthz", lambda: reachable(url + "/healthz"))
        yield url


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        reply = http_get(f"{self.url}/api/v1/{path}?{query}")
        payload = json.loads(reply.body)
        assert payload["status"] == "success", (path, params, payload)
        return payload["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result


@contextmanager
def running_prometheus(tmp: Path, scrape_config: str) -> Iterator[Prometheus]:
    """A real Prometheus scraping every second with ``scrape_config`` (YAML of one job,
    indented as a list item), with damond's alert rules loaded."""
    binary = require_binary("prometheus", "prometheus")
    (tmp / "prometheus.yml").write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        f"rule_files: [{json.dumps(str(RULES))}]\n"
        "scrape_configs:\n" + scrape_config
    )
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        wait_for("Prometheus to be ready", lambda: reachable(server.url + "/-/ready"))
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def prometheus(damond_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus scraping damond every second, with damond's alert rules loaded."""
    target = damond_url.removeprefix("http://")
    job = f"  - job_name: damond\n    static_configs: [{{targets: [{json.dumps(target)}]}}]\n"
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), job) as server:
        # A rate needs two scrapes; the ping-pong panel's subquery (1 s steps,
        # aligned to whole seconds) needs a third to be sure of two points.
        def scraped_thrice() -> bool:
            result = server.query('count_over_time(up{job="damond"}[5m])')
            return bool(result) and float(result[0]["value"][1]) >= 3

        wait_for("three scrapes of damond", scraped_thrice)
        yield server


def substitute(expr: str) -> str:
    for name, value in DASHBOARD_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def simulated_tiering_counters() -> set[str]:
    """The vmstat counters the simulated machine has (its own, never the host's)."""
    return set(SimBackend(SimulationConfig(), (), lambda: 0.0).tiering_counters())


def test_up_is_one(prometheus: Prometheus) -> None:
    result = prometheus.query('up{job="damond"}')
    assert [r["value"][1] for r in result] == ["1"]


def test_every_dashboard_panel_query_returns_data(prometheus: Prometheus) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20
    vmstat = simulated_tiering_counters()
    empty = []
    for title, expr in queries:
        result = prometheus.query(substitute(expr))
        counter = re.search(r"damond_vmstat_(\w+)_total", expr)
        if counter and counter.group(1) not in vmstat:
            assert result == [], f"{title}: {expr} has data the machine cannot have"
            continue
        if not result:
            empty.append(f"{title}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_dashboard_template_variables_have_values(prometheus: Prometheus) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    found = {}
    for name in ("host", "context", "cgroup"):
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", variables[name]["definition"])
        assert match, variables[name]["definition"]
        selector, label = substitute(match.group(1)), match.group(2)
        found[name] = prometheus.api(f"label/{label}/values", **{"match[]": selector})
    assert found["context"] == ["db-promote", "node0", "node1"]
    assert found["cgroup"] == ["/system.slice/db.service"]
    assert len(found["host"]) == 1


def test_every_panel_uses_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_every_alert_rule_evaluates_without_error(prometheus: Prometheus) -> None:
    def rules() -> list[dict[str, Any]]:
        groups = prometheus.api("rules", type="alert")["groups"]
        return [rule for group in groups for rule in group["rules"]]

    wait_for(
        "every rule to be evaluated",
        lambda: all(not r["lastEvaluation"].startswith("0001") for r in rules()),
    )
    loaded = rules()
    assert {r["name"] for r in loaded} == ALERTS
    for rule in loaded:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        prometheus.query(rule["query"])  # asserts status "success"


def promtool_check_metrics(body: bytes) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool", "prometheus")
    return subprocess.run(
        [promtool, "check", "metrics"],
        input=body.decode(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_scraped_text_passes_promtool_check_metrics(damond_url: str) -> None:
    reply = http_get(damond_url + "/metrics", headers={"Accept": "text/plain;version=0.0.4"})
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    result = promtool_check_metrics(reply.body)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_scraped_openmetrics_passes_promtool_check_metrics(damond_url: str) -> None:
    """promtool lints with the text format's rules, where a counter's HELP names its
    ``_total`` samples; OpenMetrics puts it on the family. Those are its only findings."""
    accept = "application/openmetrics-text;version=1.0.0"
    reply = http_get(damond_url + "/metrics", headers={"Accept": accept})
    assert reply.headers["Content-Type"].startswith("application/openmetrics-text")
    body = reply.body.decode()
    families = {f.name: f for f in openmetrics_families(body)}  # strict: raises if invalid
    result = promtool_check_metrics(reply.body)
    assert result.returncode in (0, 3), result.stdout + result.stderr  # 3: lint findings
    findings = (result.stdout + result.stderr).splitlines()
    for finding in findings:
        name, _, problem = finding.partition(" ")
        assert problem == "no help text" and name.endswith("_total"), finding
        family = families[name.removesuffix("_total")]
        assert family.type == "counter" and family.documentation, finding
    assert {f.removesuffix(" no help text") for f in findings} == {
        f"{name}_total" for name, f in families.items() if f.type == "counter"
    }


def test_process_series_are_exported(prometheus: Prometheus) -> None:
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        assert prometheus.query(f'{name}{{job="damond"}}'), name


def test_prometheus_scrapes_over_tls_with_basic_auth(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The web configuration file node_exporter would read protects the endpoint, and
    Prometheus scrapes it with its usual tls_config and basic_auth."""
    tmp = tmp_path_factory.mktemp("protected")
    cert, key = make_certificate(tmp)
    web = write_web_config(
        tmp / "web.yml",
        {
            "tls_server_config": {"cert_file": cert.name, "key_file": key.name},
            "basic_auth_users": {"prometheus": bcrypt_hash("s3cret")},
        },
    )
    (tmp / "password").write_text("s3cret\n")
    with running_damond(tmp, f'[metrics]\nweb_config_file = "{web}"\n', "https") as url:
        target = url.removeprefix("https://")
        job = (
            "  - job_name: damond\n"
            "    scheme: https\n"
            f"    tls_config: {{ca_file: {json.dumps(str(cert))}}}\n"
            "    basic_auth:\n"
            "      username: prometheus\n"
            f"      password_file: {json.dumps(str(tmp / 'password'))}\n"
            f"    static_configs: [{{targets: [{json.dumps(target)}]}}]\n"
            "  - job_name: anonymous\n"
            "    scheme: https\n"
            f"    tls_config: {{ca_file: {json.dumps(str(cert))}}}\n"
            f"    static_configs: [{{targets: [{json.dumps(target)}]}}]\n"
        )
        with running_prometheus(tmp, job) as server:

            def scraped() -> bool:
                return bool(server.query('damond_context_up{job="damond"} == 1'))

            wait_for("an authenticated scrape over TLS", scraped)
            assert [r["value"][1] for r in server.query('up{job="damond"}')] == ["1"]
            wait_for("the anonymous scrape", lambda: bool(server.query('up{job="anonymous"}')))
            assert [r["value"][1] for r in server.query('up{job="anonymous"}')] == ["0"]
        # damond status honours the same TLS and basic auth
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
        status = subprocess.run(
            [sys.executable, "-m", "damond", "status", "--url", url + "/status",
             "--cacert", str(cert), "--user", "prometheus",
             "--password-file", str(tmp / "password")],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert [row.split()[0] for row in status.stdout.splitlines()] == [
            "CONTEXT",
            "node0",
            "node1",
        ]


def test_promtool_check_rules() -> None:
    promtool = require_binary("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_rule_unit_tests() -> None:
    promtool = require_binary("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == ALERTS


def test_promtool_check_scrape_config_example() -> None:
    promtool = require_binary("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "check", "config", str(SCRAPE_EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
