"""The whole daemon: a policy over MQTT shows in /metrics and survives a config reload."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.exporter_helpers import http_get
from tests.mqtt_policy.support import Broker, Daemon, Watcher, daemon_toml
from tests.tools import free_port

ACK = "damond/hosts/h1/ack"
HOST_POLICY = "damond/hosts/h1/policy"

CONTEXTS = """
[[contexts]]
name = "node0"
node = 0
scheme = {{ target_nid = 1 }}
goal = {{ nid = 0, target_bp = 6000 }}
[[contexts]]
name = "node1"
node = 1
scheme = {{ target_nid = 0 }}
goal = {{ nid = 1, target_bp = {node1_target} }}
"""


def config(tmp_path: Path, broker_port: int, metrics_port: int, node1_target: int) -> str:
    toml = daemon_toml(tmp_path / "state", broker_port)
    toml = toml.replace(
        "[metrics]\nenabled = false", f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"'
    )
    return toml + CONTEXTS.format(node1_target=node1_target)


def samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body = http_get(f"http://127.0.0.1:{port}/metrics").body.decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def target_ratio(port: int, context: str) -> float:
    for (name, labels), value in samples(port).items():
        if name == "damond_goal_target_ratio" and ("context", context) in labels:
            return value
    raise AssertionError(f"no damond_goal_target_ratio for {context}")


async def test_policy_metrics_and_reload_keep_the_policy_on_top(
    broker: Broker, tmp_path: Path
) -> None:
    metrics_port = free_port()
    daemon = Daemon(tmp_path, config(tmp_path, broker.port, metrics_port, 4000))
    daemon.start()
    try:
        await asyncio.to_thread(daemon.wait_event, "mqtt connected")
        async with Watcher(broker.port, ACK) as w:
            doc = {"id": "p1", "generation": 1, "contexts": {"node0": {"target_bp": 5100}}}
            await w.publish(HOST_POLICY, doc, retain=True)
            ack = await w.next(ACK, wait_s=5.0)
        assert ack["status"] == "applied"
        await asyncio.to_thread(daemon.wait_event, "context reconfigured", context="node0")
        await asyncio.sleep(0.5)
        got = samples(metrics_port)
        assert got[("damond_mqtt_connected", frozenset())] == 1
        applied = frozenset({("scope", "host"), ("result", "applied")})
        assert got[("damond_policy_updates_total", applied)] == 1
        assert got[("damond_policy_generation", frozenset({("scope", "host")}))] == 1
        assert target_ratio(metrics_port, "node0") == 0.51

        # the operator edits the file: node1's target changes, node0's stays under the policy
        daemon.config.write_text(config(tmp_path, broker.port, metrics_port, 4100))
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        reloaded = await asyncio.to_thread(daemon.wait_event, "configuration reloaded")
        assert re.search("node1", str(reloaded))
        # a scrape may show the state of the last completed iteration: poll briefly
        deadline = asyncio.get_running_loop().time() + 5.0
        while target_ratio(metrics_port, "node1") != 0.41:
            assert asyncio.get_running_loop().time() < deadline, "node1's target stayed 0.4"
            await asyncio.sleep(0.1)
        assert target_ratio(metrics_port, "node0") == 0.51
    finally:
        assert daemon.stop() == 0
