"""A policy and a reload at the same moment: the reload must not be undone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path

from damond.policy.channel import PolicyChannel
from damond.policy.document import Address, Scope
from damond.policy.merge import Policies
from damond.policy.store import PolicyStore
from damond.runtime.configsource import ConfigSource
from damond.runtime.daemon import make_backend, node_capacity
from damond.runtime.reload import Reloader
from damond.runtime.sdnotify import Notifier
from damond.runtime.supervisor import Supervisor
from tests.mqtt_policy.support import Broker, Watcher, daemon_toml

ACK = "damond/hosts/h1/ack"
STATE = "damond/hosts/h1/state"
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


class HeldStore(PolicyStore):
    """Holds each write until the test lets it go: a slow fsync, made deterministic."""

    entered: threading.Event
    release: threading.Event

    def save(self, policies: Policies, mark: tuple[Scope, str, int] | None = None) -> None:
        self.entered.set()
        assert self.release.wait(10), "the test never released the write"
        super().save(policies, mark)


def write_config(path: Path, port: int, node1_target: int) -> None:
    toml = daemon_toml(path.parent / "state", port)
    path.write_text(toml + CONTEXTS.format(node1_target=node1_target))


def targets(supervisor: Supervisor) -> Mapping[str, int]:
    return {name: loop.cfg.goal.target_bp for name, loop in supervisor.loops.items()}


async def test_a_reload_during_a_policy_write_is_not_undone(broker: Broker, tmp_path: Path) -> None:
    path = tmp_path / "damond.toml"
    write_config(path, broker.port, 4000)
    source = ConfigSource(path)
    settings = source.load()
    store = HeldStore.load(settings.state_dir, Address("h1", "g1"))
    store.entered, store.release = threading.Event(), threading.Event()
    supervisor = Supervisor(settings, make_backend(settings))
    channel = PolicyChannel(
        settings.mqtt,
        store,
        settings.contexts,
        supervisor.apply_contexts,
        lambda: supervisor.statuses,
        node_capacity(settings, supervisor),
    )
    supervisor.services.append(channel.run)
    reloader = Reloader(supervisor, source, Notifier(None), channel.rebase)
    async with Watcher(broker.port, ACK, STATE) as w:
        run = asyncio.create_task(supervisor.run())
        try:
            await w.next(STATE)
            await w.publish(
                HOST_POLICY,
                {"id": "p", "generation": 1, "contexts": {"node0": {"target_bp": 5500}}},
            )
            assert await asyncio.to_thread(store.entered.wait, 10)
            # the operator's reload lands while the policy is being written
            write_config(path, broker.port, 4100)
            assert await reloader.reload()
            assert targets(supervisor) == {"node0": 6000, "node1": 4100}
            store.release.set()
            ack = await w.next(ACK)
            assert ack["status"] == "applied"
            assert targets(supervisor) == {"node0": 5500, "node1": 4100}
            assert ack["effective"]["node1"]["target_bp"] == 4100
        finally:
            store.release.set()
            supervisor.stop()
            await asyncio.wait_for(run, 15)
