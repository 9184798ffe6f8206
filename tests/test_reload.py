"""Live reload: SIGHUP re-reads the config; what changed is applied online and
nothing else is touched; an invalid file changes nothing and says why."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import structlog

from damond.config import ConfigError, ContextConfig, Settings
from damond.runtime.configsource import ConfigSource
from damond.runtime.daemon import make_backend
from damond.runtime.reload import (
    Reloader,
    context_changes,
    restart_only_changes,
)
from damond.runtime.sdnotify import Notifier
from damond.runtime.supervisor import Supervisor
from tests.daemon_harness import Daemon, two_contexts

INTERVAL = "interval_s = 0.2\n"


def test_sighup_applies_a_changed_target_and_rejects_an_invalid_file(tmp_path: Path) -> None:
    config = tmp_path / "damond.toml"
    config.write_text(INTERVAL + two_contexts())
    daemon = Daemon(config, str(tmp_path / "notify.sock"))
    try:
        ready = daemon.wait_message("READY")
        # counted from READY (every context has iterated), not from the launch, whose
        # imports alone can take most of a second on a loaded machine
        daemon.wait_until("a few iterations", lambda: daemon._now() > ready.t + 1.1)

        assert not daemon.events("iteration")  # debug lines: not at the default level
        config.write_text('log_level = "debug"\n' + INTERVAL + two_contexts(node0_target=5000))
        daemon.signal(signal.SIGHUP)
        reloaded = daemon.wait_event("configuration reloaded")
        assert daemon.events("log level changed")[0].record["new"] == "debug"
        daemon.wait_event("iteration")  # from loops bound to their logger long before
        assert not daemon.events("changed settings take effect only after a restart")
        assert reloaded.record["changed"] == ["node0"]
        assert reloaded.record["unchanged"] == ["node1"]
        assert reloaded.record["added"] == reloaded.record["removed"] == []
        at_reload = reloaded.record["iterations"]
        assert at_reload["node1"] >= 5
        [reconfigured] = daemon.events("context reconfigured")
        assert reconfigured.record["context"] == "node0"
        assert reconfigured.record["target_bp"] == 5000

        config.write_text(
            'log_level = "debug"\n'
            + INTERVAL
            + two_contexts(node0_target=5000, node1_target=12000)
            + "colour = 'blue'\n"
        )
        daemon.signal(signal.SIGHUP)
        rejected = daemon.wait_event("reload rejected; the running configuration stays")
        assert rejected.record["config"] == str(config)
        assert rejected.record["errors"] == [
            "contexts[1].goal.target_bp: must be between 0 and 10000, got 12000",
            "contexts[1].colour: unknown field",
        ]
        ready = daemon.wait_message("READY", count=3)
        assert ready.fields["STATUS"].startswith("reload rejected (2 errors)")
        daemon.wait_until("more iterations", lambda: daemon._now() > rejected.t + 1.0)
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()

    # node1 ran on, untouched, through both reloads: one loop, one first iteration,
    # its counter kept counting; node0 was reconfigured once, not restarted.
    stopped = daemon.events("stopped")[-1].record["iterations"]
    seconds_since_reload = daemon.events("stopped")[-1].t - reloaded.t
    assert stopped["node1"] >= at_reload["node1"] + seconds_since_reload / 0.2 * 0.5
    assert stopped["node0"] >= at_reload["node0"] + seconds_since_reload / 0.2 * 0.5
    firsts = [line.record["context"] for line in daemon.events("first iteration")]
    assert sorted(firsts) == ["node0", "node1"]
    assert len(daemon.events("context reconfigured")) == 1
    assert not daemon.events("context loop failed; restarting")


def one_context(name: str, node: int, target_bp: int) -> str:
    other = 1 - node
    return (
        f'[[contexts]]\nname = "{name}"\nnode = {node}\n'
        f"scheme = {{ target_nid = {other} }}\ngoal = {{ nid = {node}, target_bp = {target_bp} }}\n"
    )


@asynccontextmanager
async def running_node0(path: Path) -> AsyncIterator[Supervisor]:
    """A supervisor running ``node0`` from ``path``, in this event loop."""
    await write(path, INTERVAL + one_context("node0", 0, 6000))
    settings = ConfigSource(path).load()
    supervisor = Supervisor(settings, make_backend(settings))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(supervisor.run())
        await wait_for(lambda: bool(supervisor.loops) and supervisor.all_iterated)
        try:
            yield supervisor
        finally:
            supervisor.stop()


async def write(path: Path, text: str) -> None:
    await asyncio.to_thread(path.write_text, text)


async def wait_for(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    for _ in range(int(within_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {within_s} s")


async def test_reload_adds_and_removes_contexts_and_names_restart_only_settings(
    tmp_path: Path,
) -> None:
    path = tmp_path / "damond.toml"
    async with running_node0(path) as supervisor:
        await add_node1_remove_node0(path, supervisor)


async def add_node1_remove_node0(path: Path, supervisor: Supervisor) -> None:
    node0 = supervisor.loops["node0"]
    await write(
        path,
        "interval_s = 0.5\n[metrics]\nlisten = '127.0.0.1:9999'\n" + one_context("node1", 1, 4000),
    )
    reloader = Reloader(supervisor, ConfigSource(path), Notifier(None))
    with structlog.testing.capture_logs() as logs:
        assert await reloader.reload()
    assert list(supervisor.loops) == ["node1"]
    await wait_for(lambda: not node0.status.up)  # torn down once its task is cancelled
    await wait_for(lambda: supervisor.loops["node1"].status.iterations > 0)
    events = {entry["event"]: entry for entry in logs}
    done = events["configuration reloaded"]
    assert (done["added"], done["removed"], done["changed"]) == (["node1"], ["node0"], [])
    restart = events["changed settings take effect only after a restart"]
    assert restart["settings"] == ["interval_s", "metrics.listen"]
    assert supervisor.settings.interval_s == 0.2  # still running at the start-up interval
    assert [c.name for c in supervisor.settings.contexts] == ["node1"]


async def test_reload_runs_the_contexts_the_hook_makes_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "damond.toml"

    def with_policy(contexts: Sequence[ContextConfig]) -> list[ContextConfig]:
        return [
            c.model_copy(update={"goal": c.goal.model_copy(update={"target_bp": 7000})})
            for c in contexts
        ]

    async with running_node0(path) as supervisor:
        await write(path, INTERVAL + one_context("node0", 0, 5000))
        reloader = Reloader(supervisor, ConfigSource(path), Notifier(None), with_policy)
        assert await reloader.reload()
        assert supervisor.loops["node0"].cfg.goal.target_bp == 7000


async def test_a_rejected_hook_changes_nothing(tmp_path: Path) -> None:
    def refuse(contexts: Sequence[ContextConfig]) -> list[ContextConfig]:
        raise ConfigError(["contexts[0].goal.target_bp: policy conflict"])

    path = tmp_path / "damond.toml"
    async with running_node0(path) as supervisor:
        before = supervisor.loops["node0"]
        await write(path, INTERVAL + one_context("node0", 0, 5000))
        reloader = Reloader(supervisor, ConfigSource(path), Notifier(None), refuse)
        with structlog.testing.capture_logs() as logs:
            assert not await reloader.reload()
        assert supervisor.loops["node0"] is before
        assert before.cfg.goal.target_bp == 6000
        assert logs[-1]["errors"] == ["contexts[0].goal.target_bp: policy conflict"]


def test_restart_only_changes_ignore_what_reload_applies() -> None:
    base = Settings()
    assert restart_only_changes(base, base) == []
    changed = Settings(
        log_level="debug",
        contexts=base.contexts[:1],
        backend="sysfs",
        on_exit="leave",
        mqtt={"port": 1884},
    )
    assert restart_only_changes(base, changed) == ["backend", "on_exit", "mqtt.port"]


def test_context_changes_classify_by_name_and_content() -> None:
    a, b = Settings().contexts
    b2 = b.model_copy(update={"enabled": False})
    c = a.model_copy(update={"name": "c"})
    changes = context_changes({"node0": a, "node1": b}, [b2, c])
    assert changes.unchanged == []
    assert changes.changed == ["node1"]
    assert changes.added == ["c"]
    assert changes.removed == ["node0"]
