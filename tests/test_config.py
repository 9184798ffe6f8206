from __future__ import annotations

from pathlib import Path

import pytest

from damond.config import ConfigError, GiB, Mode, environment_warnings, load_settings

CONTEXT = {"name": "a", "node": 0, "scheme": {"target_nid": 1}, "goal": {"nid": 0, "target_bp": 1}}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "damond.toml"
    path.write_text(text)
    return path


def test_embedded_default_is_the_seed_scenario() -> None:
    s = load_settings(None)
    assert s.backend == "simulated"
    assert [(c.name, c.node, c.scheme.target_nid) for c in s.contexts] == [
        ("node0", 0, 1),
        ("node1", 1, 0),
    ]
    assert [(c.goal.metric, c.goal.nid, c.goal.target_bp) for c in s.contexts] == [
        ("node_target_mem_bp", 0, 6000),
        ("node_target_mem_bp", 1, 4000),
    ]
    assert all(c.scheme.action == "migrate_hot" and c.mode is Mode.DAEMON for c in s.contexts)


def test_environment_overrides_file_and_flags_override_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "interval_s = 2.0\n[mqtt]\nport = 1000\nhost = 'broker'\n")
    assert load_settings(path).mqtt.port == 1000
    monkeypatch.setenv("DAMOND_MQTT__PORT", "1884")
    monkeypatch.setenv("DAMOND_INTERVAL_S", "3.0")
    s = load_settings(path)
    assert (s.mqtt.port, s.mqtt.host, s.interval_s) == (1884, "broker", 3.0)
    assert load_settings(path, {"interval_s": 4.0}).interval_s == 4.0


def test_every_error_is_listed_with_its_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
interval_s = "fast"
[[contexts]]
name = "a"
node = 0
scheme = { target_nid = 1 }
goal = { nid = 0, target_bp = 12000 }
[[contexts]]
name = "b"
node = 1
colour = "blue"
scheme = { target_nid = 0 }
goal = { nid = 1, target_bp = -5 }
""",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.errors == [
        "interval_s: input should be a valid number, unable to parse string as a number, "
        "got 'fast'",
        "contexts[0].goal.target_bp: must be between 0 and 10000, got 12000",
        "contexts[1].goal.target_bp: must be between 0 and 10000, got -5",
        "contexts[1].colour: unknown field",
    ]


def test_cross_field_errors_are_all_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[contexts]]
name = "a"
node = 0
scheme = { target_nid = 0 }
goal = { nid = 0, target_bp = 100 }
[[contexts]]
name = "a"
node = 5
scheme = { target_nid = 1 }
goal = { nid = 2, target_bp = 100 }
""",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.errors == [
        "contexts[0].scheme.target_nid: must differ from the context's node (0), got 0",
        "contexts[1].name: duplicate context name 'a' (also contexts[0])",
        "contexts[1].node: unknown node 5, the simulated machine has nodes 0, 1",
        "contexts[1].goal.nid: unknown node 2, the simulated machine has nodes 0, 1",
        "contexts[1].goal.nid: must be the context's node (5) or the scheme's target_nid (1), "
        "got 2",
    ]


def test_native_mode_needs_the_kernel_metric_on_the_destination(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[contexts]]
name = "a"
node = 0
mode = "native"
scheme = { target_nid = 1 }
goal = { nid = 0, target_bp = 6000 }
""",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.errors == [
        "contexts[0].goal.metric: native mode needs a metric the kernel computes; no kernel "
        "has node_target_mem_bp (never merged): use node_eligible_mem_bp (Linux 7.2+), or "
        'mode = "kernel" or "daemon"',
        "contexts[0].goal.nid: native mode needs the goal on the scheme's destination (nid=1) "
        "because the kernel's tuner assumes a larger quota raises the metric, got 0",
    ]


def test_simulated_memory_must_fit_the_machine(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[simulation]
nodes = [{ id = 0, capacity_bytes = 1073741824 }, { id = 1, capacity_bytes = 1073741824 }]
sets = [{ name = "hot", bytes = 4294967296, access_rate = 0.9, placement = 3 }]
shifts = [{ at_s = 10, from_set = "hot", to_set = "nope", fraction = 0.5 }]
""",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.errors == [
        "simulation.sets[0].placement: unknown node 3, the simulated machine has nodes 0, 1",
        "simulation.shifts[0].to_set: unknown set 'nope'",
        "simulation.sets: 4294967296 bytes of memory do not fit the machine's 2147483648 bytes "
        "of capacity",
    ]


def test_mqtt_is_on_exactly_when_a_broker_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(None).mqtt.enabled is False
    assert load_settings(write(tmp_path, "[mqtt]\nhost = 'broker'\n")).mqtt.enabled is True
    assert load_settings(write(tmp_path, "[mqtt]\nenabled = true\n")).mqtt.enabled is True
    monkeypatch.setenv("DAMOND_MQTT__HOST", "broker")
    assert load_settings(None).mqtt.enabled is True
    monkeypatch.setenv("DAMOND_MQTT__ENABLED", "false")
    assert load_settings(None).mqtt.enabled is False


def test_choices_are_accepted_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAMOND_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("DAMOND_BACKEND", "Simulated")
    s = load_settings(None, {"contexts": [{**CONTEXT, "mode": "Kernel"}]})
    assert (s.log_level, s.backend, s.contexts[0].mode) == ("debug", "simulated", Mode.KERNEL)


def test_unknown_variables_are_warnings_at_every_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAMOND_INTERVAL", "2")
    monkeypatch.setenv("DAMOND_MQTT__PROT", "1884")
    monkeypatch.setenv("DAMOND_SYSFS__NOPE", "1")
    monkeypatch.setenv("DAMOND_CONFIG", "/nowhere.toml")  # read by config_path, not a field
    s = load_settings(None)
    assert (s.interval_s, s.mqtt.port) == (1.0, 1883)
    assert environment_warnings() == [
        "DAMOND_INTERVAL: not a damond setting, ignored; did you mean DAMOND_INTERVAL_S?",
        "DAMOND_MQTT__PROT: not a damond setting, ignored; did you mean DAMOND_MQTT__PORT?",
        "DAMOND_SYSFS__NOPE: not a damond setting, ignored; did you mean DAMOND_SYSFS?",
    ]


def test_a_quota_the_node_cannot_hold_is_refused_as_a_policy_refuses_it(tmp_path: Path) -> None:
    too_much = 999_999_999_999_999
    path = write(
        tmp_path,
        f"""
[[contexts]]
name = "a"
node = 0
scheme = {{ target_nid = 1, quota = {{ max_bytes = {too_much} }} }}
goal = {{ nid = 0, target_bp = 6000 }}
""",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    reason = f"must not exceed the capacity of node 0 (21474836480 bytes), got {too_much}"
    assert info.value.errors == [f"contexts[0].scheme.quota.max_bytes: {reason}"]

    from damond.policy.merge import fit_errors

    base = load_settings(None).contexts
    raw = {"contexts": {"node0": {"quota_max_bytes": too_much}}}
    [policy_error] = fit_errors(raw, base, lambda node: 20 * GiB if node == 0 else None)
    assert policy_error.msg == reason
