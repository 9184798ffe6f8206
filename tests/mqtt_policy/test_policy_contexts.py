"""Policies that add and remove whole contexts, within the host's ``[policy]`` limits.

The rules are checked on the pure decision functions; the daemon's side (the added
context runs, shows in ``/status`` and ``/metrics``, survives a restart, goes when
removed) with the real daemon on the simulated backend and a real mosquitto.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from damond.config import GoalConfig, load_settings
from damond.control.status import ContextStatus
from damond.policy.applier import PolicyApplier
from damond.policy.decision import Verdict, decide, screen
from damond.policy.document import Address, Scope, validate_document
from damond.policy.merge import effective_contexts
from damond.policy.observer import NoPolicyMetrics
from damond.policy.store import STATE_FILE, PolicyStore
from damond.policy.workloads import HostLimits
from damond.runtime.daemon import with_policy_spares
from damond.runtime.policylimits import host_limits, load_check
from tests.mqtt_policy.support import Broker, Daemon, Watcher
from tests.tools import free_port

ACK = "damond/hosts/h1/ack"
HOST_POLICY = "damond/hosts/h1/policy"
FLEET_POLICY = "damond/fleet/policy"
DB = "/system.slice/db.service"
WEB = "/system.slice/web.service"

WORKLOADS_TOML = """
backend = "simulated"
interval_s = 0.2
state_dir = {state}
log_level = "info"

[metrics]
listen = "127.0.0.1:{metrics_port}"

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
host_id = "h1"
group = "g1"
reconnect_max_s = 1.0
state_interval_s = 1.0

[policy]
{policy}

[simulation]
shifts = []

[[simulation.nodes]]
id = 0
capacity_bytes = 8_589_934_592

[[simulation.nodes]]
id = 1
capacity_bytes = 17_179_869_184

[[simulation.sets]]
name = "db"
bytes = 4_294_967_296
access_rate = 0.5
placement = 1
cgroup = "/system.slice/db.service"

[[simulation.sets]]
name = "web"
bytes = 2_147_483_648
access_rate = 0.5
placement = 1
cgroup = "/system.slice/web.service"

[[contexts]]
name = "db-promote"
node = 1

[contexts.scheme]
action = "migrate_hot"
target_nid = 0
filters = [{{ type = "memcg", memcg_path = "/system.slice/db.service" }}]

[contexts.goal]
metric = "node_memcg_used_bp"
nid = 0
path = "/system.slice/db.service"
target_bp = 3000
"""

ALLOW = 'allow_new_contexts = true\nmax_new_contexts = 1\ncgroup_prefixes = ["/system.slice"]'


def promoter(name: str, cgroup: str, target_bp: int = 2500) -> dict[str, Any]:
    """A workload's promoter as a ``[[contexts]]`` entry reads in JSON."""
    return {
        "name": name,
        "node": 1,
        "scheme": {
            "action": "migrate_hot",
            "target_nid": 0,
            "filters": [{"type": "memcg", "memcg_path": cgroup, "matching": True, "allow": True}],
        },
        "goal": {"metric": "node_memcg_used_bp", "nid": 0, "path": cgroup, "target_bp": target_bp},
    }


def settings_for(tmp_path: Path, policy: str = ALLOW) -> Any:
    toml = tmp_path / "damond.toml"
    toml.write_text(
        WORKLOADS_TOML.format(
            state=json.dumps(str(tmp_path / "state")),
            metrics_port=free_port(),
            mqtt_port=free_port(),
            policy=policy,
        )
    )
    return load_settings(toml)


def check(
    settings: Any,
    doc: dict[str, Any],
    scope: Scope = Scope.HOST,
    policies: dict[Scope, Any] | None = None,
) -> Verdict:
    """Screen ``doc`` as the daemon does on arrival, then decide on it."""
    payload = json.dumps({"id": "t", "generation": 1, **doc}).encode()
    screened = screen(
        scope,
        payload,
        address=Address("h1", "g1"),
        base=settings.contexts,
        policies=policies or {},
        limits=host_limits(settings),
        keys=(),
        capacity_of=lambda _: None,
        max_bytes=1 << 20,
    )
    if isinstance(screened, Verdict):
        return screened
    return decide(
        scope,
        screened,
        policies=policies or {},
        high_water=None,
        base=settings.contexts,
        limits=host_limits(settings),
        capacity_of=lambda _: None,
    )


def errors(result: Verdict) -> dict[str, str]:
    assert result.status == "rejected", result
    return {e.loc: e.msg for e in result.errors}


def test_an_added_context_is_checked_as_a_config_entry(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    bad = promoter("web", WEB, target_bp=20_000)
    bad["node"] = "1"
    bad["scheme"]["target_nid"] = 1
    found = errors(check(settings, {"add_contexts": [bad]}))
    assert found["add_contexts[0].goal.target_bp"] == "must be between 0 and 10000, got 20000"
    assert found["add_contexts[0].node"].startswith("input should be a valid integer")

    same_node = promoter("web", WEB)
    same_node["scheme"]["target_nid"] = 1
    found = errors(check(settings, {"add_contexts": [same_node]}))
    assert found == {
        "add_contexts[0].scheme.target_nid": "must differ from the context's node (1), got 1"
    }
    unknown_node = promoter("web", WEB)
    unknown_node["node"] = 7
    found = errors(check(settings, {"add_contexts": [unknown_node]}))
    assert found["add_contexts[0].node"] == "unknown node 7, the simulated machine has nodes 0, 1"


def test_the_host_limits_name_what_they_refuse(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    web = promoter("web", WEB)
    assert check(settings, {"add_contexts": [web]}).status == "applied"

    over = errors(check(settings, {"add_contexts": [web, promoter("db2", DB)]}))
    assert over == {
        "add_contexts": "would make 2 policy-added contexts on this host, more than "
        "[policy] max_new_contexts (1)"
    }
    outside = promoter("x", "/user.slice/x.service")
    assert errors(check(settings, {"add_contexts": [outside]})) == {
        "add_contexts[0].scheme.filters[0].memcg_path": "'/user.slice/x.service' is not under "
        "this host's [policy] cgroup_prefixes (/system.slice)",
        "add_contexts[0].goal.path": "'/user.slice/x.service' is not under this host's "
        "[policy] cgroup_prefixes (/system.slice)",
    }
    # '/system.slicex' shares the characters, not the cgroup
    assert "add_contexts[0].goal.path" in errors(
        check(settings, {"add_contexts": [promoter("x", "/system.slicex")]})
    )
    everyone = promoter("all", WEB)
    everyone["scheme"]["filters"] = [{"type": "anon", "matching": True, "allow": True}]
    found = errors(check(settings, {"add_contexts": [everyone]}))
    assert set(found) == {
        "add_contexts[0].scheme.filters[0].allow",
        "add_contexts[0].scheme.filters",
    }
    assert "must end with a memcg filter" in found["add_contexts[0].scheme.filters"]

    twice = errors(check(settings, {"add_contexts": [web, web]}))
    assert twice == {"add_contexts[1].name": "'web' is added twice (also add_contexts[0])"}
    taken = errors(check(settings, {"add_contexts": [promoter("db-promote", DB)]}))
    assert "is a context of this host's configuration file" in taken["add_contexts[0].name"]

    closed = settings_for(tmp_path, policy="")
    assert errors(check(closed, {"add_contexts": [web]})) == {
        "add_contexts": "this host takes no contexts from policies ([policy] "
        "allow_new_contexts is false)"
    }


def test_removal_only_of_what_a_less_specific_scope_added(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    fleet = check(settings, {"add_contexts": [promoter("web", WEB)]}, Scope.FLEET)
    assert isinstance(fleet, Verdict) and fleet.candidate is not None
    policies = dict(fleet.candidate.policies)
    assert [c.name for c in effective_contexts(settings.contexts, policies)] == [
        "db-promote",
        "web",
    ]
    # a host changes the fleet's context like any other, or removes it
    changed = check(settings, {"contexts": {"web": {"target_bp": 1500}}}, Scope.HOST, policies)
    assert isinstance(changed, Verdict) and changed.candidate is not None
    running = effective_contexts(settings.contexts, changed.candidate.policies)
    assert running[1].goal.target_bp == 1500
    removed = check(settings, {"remove_contexts": ["web"]}, Scope.HOST, policies)
    assert isinstance(removed, Verdict) and removed.candidate is not None
    running = effective_contexts(settings.contexts, removed.candidate.policies)
    assert [c.name for c in running] == ["db-promote"]

    assert errors(check(settings, {"remove_contexts": ["db-promote"]}, Scope.HOST, policies)) == {
        "remove_contexts[0]": "'db-promote' is a context of this host's configuration file, "
        "which a policy cannot remove (enabled = false stops it)"
    }
    # the fleet's own document drops what it no longer adds; it has nothing to remove
    assert errors(check(settings, {"remove_contexts": ["web"]}, Scope.FLEET, policies)) == {
        "remove_contexts[0]": "'web' is not added by a less specific scope's policy; "
        "those add: none"
    }


def test_a_stall_goal_takes_target_us(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    stall = promoter("web", WEB)
    stall["goal"] = {"metric": "some_mem_psi_us", "target_us": 20_000}
    assert check(settings, {"add_contexts": [stall]}).status == "applied"
    found = errors(
        check(settings, {"add_contexts": [stall], "contexts": {"web": {"target_bp": 10}}})
    )
    assert found == {"contexts.web.target_bp": "some_mem_psi_us takes target_us, not target_bp"}
    bp_goal = errors(check(settings, {"contexts": {"db-promote": {"target_us": 10}}}))
    assert bp_goal == {
        "contexts.db-promote.target_us": "only some_mem_psi_us takes it, not node_memcg_used_bp"
    }
    both = check(settings, {"add_contexts": [stall], "contexts": {"web": {"target_us": 5000}}})
    assert isinstance(both, Verdict) and both.candidate is not None
    running = effective_contexts(settings.contexts, both.candidate.policies)
    assert running[1].goal.target == 5000


def test_a_persisted_addition_the_host_no_longer_allows_is_not_loaded(tmp_path: Path) -> None:
    raw = {"id": "t", "generation": 1, "add_contexts": [promoter("web", WEB)]}
    address = Address("h1", "g1")
    state = tmp_path / "state"
    state.mkdir()
    PolicyStore(state / STATE_FILE, address).save({Scope.HOST: validate_document(raw)})

    allowing = settings_for(tmp_path)
    check = load_check(allowing.contexts, host_limits(allowing))
    store = PolicyStore.load(state, address, (), check)
    running = store.effective_contexts(allowing.contexts)
    assert [c.name for c in running] == ["db-promote", "web"]

    closed = settings_for(tmp_path, policy="")
    check = load_check(closed.contexts, host_limits(closed))
    with structlog.testing.capture_logs() as logs:
        store = PolicyStore.load(state, address, (), check)
    assert store.policies == {}
    refused = [e for e in logs if e["event"].startswith("persisted policy not applied")]
    assert [e["errors"] for e in refused] == [
        [
            "add_contexts: this host takes no contexts from policies ([policy] allow_new_contexts "
            "is false)"
        ]
    ]


def test_a_context_the_file_comes_to_define_runs_as_the_file_says(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    added = check(settings, {"add_contexts": [promoter("web", WEB, target_bp=2500)]})
    assert added.candidate is not None
    web_in_file = settings.contexts[0].model_copy(update={"name": "web"})
    base = [*settings.contexts, web_in_file]
    running = effective_contexts(base, added.candidate.policies)
    assert [(c.name, c.goal.path) for c in running] == [("db-promote", DB), ("web", DB)]


# -- the daemon ------------------------------------------------------------------


class Workloads:
    """The daemon of :data:`WORKLOADS_TOML` on a real broker, and its endpoint."""

    def __init__(self, tmp_path: Path, broker: Broker, policy: str = ALLOW) -> None:
        self.metrics_port = free_port()
        toml = WORKLOADS_TOML.format(
            state=json.dumps(str(tmp_path / "state")),
            metrics_port=self.metrics_port,
            mqtt_port=broker.port,
            policy=policy,
        )
        self.tmp_path = tmp_path
        self.toml = toml
        self.runs = 0
        self.daemon = self.start()

    def start(self) -> Daemon:
        self.runs += 1
        daemon = Daemon(self.tmp_path, self.toml, f"daemon{self.runs}")
        daemon.start()
        return daemon

    async def get(self, path: str) -> bytes:
        def fetch() -> bytes:
            url = f"http://127.0.0.1:{self.metrics_port}{path}"
            with urllib.request.urlopen(url, timeout=5) as reply:
                body: bytes = reply.read()
                return body

        return await asyncio.to_thread(fetch)

    async def status(self) -> dict[str, dict[str, Any]]:
        document = json.loads(await self.get("/status"))
        return {c["name"]: c for c in document["contexts"]}

    async def samples(self, name: str) -> list[Any]:
        text = (await self.get("/metrics")).decode()
        return [
            s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
        ]

    async def up(self) -> None:
        """Until the daemon serves its endpoint and is connected to the broker."""
        await self.wait_event("metrics endpoint listening")
        await self.wait_event("mqtt connected")

    async def wait_event(self, name: str, **match: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.daemon.wait_event, name, 20.0, **match)


async def push(w: Watcher, topic: str, doc: dict[str, Any]) -> dict[str, Any]:
    await w.publish(topic, doc)
    ack: dict[str, Any] = await w.next(ACK, wait_s=15.0)
    assert ack["id"] == doc["id"], ack
    return ack


async def test_an_added_context_runs_is_exported_and_survives_a_restart(
    broker: Broker, tmp_path: Path
) -> None:
    host = Workloads(tmp_path, broker)
    try:
        await host.up()
        async with Watcher(broker.port, ACK) as w:
            doc = {"id": "web-1", "generation": 1, "add_contexts": [promoter("web-promote", WEB)]}
            ack = await push(w, HOST_POLICY, doc)
            assert (ack["status"], ack["errors"]) == ("applied", [])
            assert ack["effective"]["web-promote"] == {
                "target_bp": 2500,
                "quota_max_bytes": 512 << 20,
                "enabled": True,
            }
            await host.wait_event("first iteration", context="web-promote")

            status = (await host.status())["web-promote"]
            assert (
                status
                | {
                    "goal_metric": "node_memcg_used_bp",
                    "node": 0,
                    "cgroup": WEB,
                    "target_bp": 2500,
                    "target_us": None,
                    "target_set_by": {"layer": "host", "generation": 1},
                }
                == status
            )
            targets = await host.samples("damond_goal_target_ratio")
            web = [s for s in targets if s.labels["context"] == "web-promote"]
            assert [(s.labels, s.value) for s in web] == [
                (
                    {
                        "context": "web-promote",
                        "goal_metric": "node_memcg_used_bp",
                        "node": "0",
                        "cgroup": WEB,
                    },
                    0.25,
                )
            ]

            # over the count, outside the prefixes: rejected, and the first one stays
            over = {
                "id": "web-2",
                "generation": 2,
                "add_contexts": [promoter("web-promote", WEB), promoter("db2", DB)],
            }
            ack = await push(w, HOST_POLICY, over)
            assert ack["status"] == "rejected"
            assert [e["loc"] for e in ack["errors"]] == ["add_contexts"]
            assert "max_new_contexts (1)" in ack["errors"][0]["msg"]
            outside = {
                "id": "web-3",
                "generation": 3,
                "add_contexts": [promoter("user", "/user.slice/user-1000.slice")],
            }
            ack = await push(w, HOST_POLICY, outside)
            assert ack["status"] == "rejected"
            assert {e["loc"] for e in ack["errors"]} == {
                "add_contexts[0].scheme.filters[0].memcg_path",
                "add_contexts[0].goal.path",
            }
            assert "cgroup_prefixes (/system.slice)" in ack["errors"][0]["msg"]
            assert set(ack["effective"]) == {"db-promote", "web-promote"}
        assert host.daemon.stop() == 0

        host.daemon = host.start()
        await host.up()
        loaded = await host.wait_event("persisted policies loaded")
        assert loaded["generations"]["host"] == 1
        await host.wait_event("first iteration", context="web-promote")
        assert set(await host.status()) == {"db-promote", "web-promote"}
    finally:
        assert host.daemon.stop() == 0


async def test_a_host_policy_removes_what_the_fleet_added(broker: Broker, tmp_path: Path) -> None:
    host = Workloads(tmp_path, broker)
    try:
        await host.up()
        async with Watcher(broker.port, ACK) as w:
            doc = {"id": "f1", "generation": 1, "add_contexts": [promoter("web-promote", WEB)]}
            assert (await push(w, FLEET_POLICY, doc))["status"] == "applied"
            await host.wait_event("first iteration", context="web-promote")

            keep_db = {"id": "h1", "generation": 1, "remove_contexts": ["db-promote"]}
            ack = await push(w, HOST_POLICY, keep_db)
            assert ack["status"] == "rejected"
            assert "configuration file" in ack["errors"][0]["msg"]

            remove = {"id": "h2", "generation": 2, "remove_contexts": ["web-promote"]}
            ack = await push(w, HOST_POLICY, remove)
            assert (ack["status"], set(ack["effective"])) == ("applied", {"db-promote"})
        assert set(await host.status()) == {"db-promote"}
        contexts = {s.labels["context"] for s in await host.samples("damond_context_up")}
        assert contexts == {"db-promote"}
    finally:
        assert host.daemon.stop() == 0


async def test_a_host_without_allow_new_contexts_applies_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    host = Workloads(tmp_path, broker, policy="")
    try:
        await host.up()
        async with Watcher(broker.port, ACK) as w:
            doc = {
                "id": "web-1",
                "generation": 1,
                "contexts": {"db-promote": {"target_bp": 3500}},
                "add_contexts": [promoter("web-promote", WEB)],
            }
            ack = await push(w, HOST_POLICY, doc)
        assert ack["status"] == "rejected"
        assert ack["errors"] == [
            {
                "loc": "add_contexts",
                "msg": "this host takes no contexts from policies ([policy] allow_new_contexts "
                "is false)",
            }
        ]
        # all or nothing: the valid change to db-promote is not applied either
        assert ack["effective"] == {
            "db-promote": {"target_bp": 3000, "quota_max_bytes": 512 << 20, "enabled": True}
        }
        assert (await host.status())["db-promote"]["target_bp"] == 3000
    finally:
        assert host.daemon.stop() == 0


@pytest.mark.parametrize("prefix", ["", "system.slice", "/system.slice/"])
def test_unusable_cgroup_prefixes_are_config_errors(tmp_path: Path, prefix: str) -> None:
    from damond.config import ConfigError

    policy = f'allow_new_contexts = true\ncgroup_prefixes = ["{prefix}"]'
    with pytest.raises(ConfigError) as exc:
        settings_for(tmp_path, policy=policy)
    assert any(e.startswith("policy.cgroup_prefixes[0]: ") for e in exc.value.errors), exc.value


def test_allow_new_contexts_needs_prefixes(tmp_path: Path) -> None:
    from damond.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        settings_for(tmp_path, policy="allow_new_contexts = true")
    assert exc.value.errors == [
        "policy: cgroup_prefixes: required with allow_new_contexts = true: the cgroups "
        'policy-added contexts may act on, like ["/system.slice"]'
    ]


def test_the_readme_workloads_example_holds(tmp_path: Path) -> None:
    """README's Workloads section: its configuration loads, and its second policy
    document adds the web service's context to it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Workloads\n", 1)[1].split("\n## ", 1)[0]
    toml = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "damond.toml").write_text(toml)
    settings = load_settings(tmp_path / "damond.toml")
    assert [c.name for c in settings.contexts] == ["db-promote", "batch-demote"]
    shell = section.split("```sh\n", 1)[1].split("```", 1)[0]
    web = shell.split("$ cat web.json\n", 1)[1].split("$ damond", 1)[0]
    result = check(settings, json.loads(web))
    assert isinstance(result, Verdict) and result.candidate is not None, result
    running = effective_contexts(settings.contexts, result.candidate.policies)
    assert [(c.name, c.goal.target_bp) for c in running] == [
        ("db-promote", 4500),
        ("batch-demote", 3000),
        ("web-promote", 1000),
    ]


def test_the_state_report_gives_a_stall_goal_in_microseconds(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    stall = settings.contexts[0].model_copy(
        update={
            "name": "stall",
            "goal": GoalConfig(metric="some_mem_psi_us", target_us=20_000),
        }
    )
    applier = PolicyApplier(
        PolicyStore(tmp_path / STATE_FILE, Address("h1", "g1")),
        [*settings.contexts, stall],
        lambda _: None,
        lambda _: None,
        (),
        1 << 16,
        NoPolicyMetrics(),
        HostLimits(),
    )
    statuses = {
        "db-promote": ContextStatus("db-promote", "node_memcg_used_bp", 0, 3000, metric_bp=2900),
        "stall": ContextStatus("stall", "some_mem_psi_us", 0, 0, metric_bp=12_000),
    }
    summary = applier.summary(statuses)
    assert summary["db-promote"] | {"metric_bp": 2900, "target_bp": 3000} == summary["db-promote"]
    assert summary["stall"] | {"metric_us": 12_000, "target_us": 20_000} == summary["stall"]
    assert "target_bp" not in summary["stall"]
    assert applier.effective()["stall"] == {
        "target_us": 20_000,
        "quota_max_bytes": 512 << 20,
        "enabled": True,
    }


def test_a_real_kernel_stages_a_kdamond_for_each_context_policies_may_add(
    tmp_path: Path,
) -> None:
    allowing = settings_for(tmp_path)  # max_new_contexts = 1
    assert with_policy_spares(allowing).sysfs.spare_kdamonds == 1 + 1
    closed = settings_for(tmp_path, policy="")
    assert with_policy_spares(closed).sysfs.spare_kdamonds == 1
