"""Live reload on SIGHUP: re-read the configuration and apply it to the running contexts.

The new file is read from the same sources as at start (file, environment,
command-line overrides) and validated whole. A valid one is applied in one
step: unchanged contexts are left alone, changed ones reconfigured online,
removed ones stopped, new ones started. An invalid one is rejected with every
error logged, and the running configuration stays. Settings that only take
effect at start are reported as needing a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from damond.config import ConfigError, ContextConfig, Settings
from damond.runtime.configsource import ConfigSource
from damond.runtime.logs import set_log_level
from damond.runtime.sdnotify import Notifier
from damond.runtime.supervisor import Supervisor

EffectiveContexts = Callable[[Sequence[ContextConfig]], list[ContextConfig]]
"""Turns the configured contexts into the ones to run (e.g. with policies applied)."""

ONLINE_SETTINGS = frozenset({"contexts", "log_level"})
"""Top-level settings a reload applies; every other one is read only at start."""

log = structlog.get_logger("damond.runtime.reload")


def configured_contexts(contexts: Sequence[ContextConfig]) -> list[ContextConfig]:
    """The contexts as configured, with nothing applied on top."""
    return list(contexts)


def restart_only_changes(running: Settings, new: Settings) -> list[str]:
    """Dotted names of the settings that differ but take effect only at start."""
    old_values = running.model_dump()
    new_values = new.model_dump()
    changed: list[str] = []
    for key, old in old_values.items():
        if key in ONLINE_SETTINGS or old == new_values[key]:
            continue
        value = new_values[key]
        if isinstance(old, dict) and isinstance(value, dict):
            changed += [f"{key}.{sub}" for sub in old if old[sub] != value.get(sub)]
        else:
            changed.append(key)
    return changed


@dataclass(frozen=True)
class ContextChanges:
    unchanged: list[str]
    changed: list[str]
    added: list[str]
    removed: list[str]


def context_changes(
    running: Mapping[str, ContextConfig], wanted: Sequence[ContextConfig]
) -> ContextChanges:
    names = {ctx.name for ctx in wanted}
    return ContextChanges(
        unchanged=[c.name for c in wanted if c.name in running and running[c.name] == c],
        changed=[c.name for c in wanted if c.name in running and running[c.name] != c],
        added=[c.name for c in wanted if c.name not in running],
        removed=[name for name in running if name not in names],
    )


class Reloader:
    """Runs a reload whenever one is requested (SIGHUP), one at a time."""

    def __init__(
        self,
        supervisor: Supervisor,
        source: ConfigSource,
        notifier: Notifier,
        effective_contexts: EffectiveContexts = configured_contexts,
    ) -> None:
        self.supervisor = supervisor
        self.source = source
        self.notifier = notifier
        self.effective_contexts = effective_contexts
        self._requested = asyncio.Event()

    def request(self) -> None:
        """Ask for a reload; requests arriving during one are merged into the next."""
        self._requested.set()

    async def serve(self) -> None:
        while True:
            await self._requested.wait()
            self._requested.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Apply the configuration as it is now; False if it was rejected."""
        self.notifier.reloading()
        path = str(self.source.path) if self.source.path else None
        log.info("reloading configuration", config=path)
        try:
            new = await asyncio.to_thread(self.source.load)
            contexts = self.effective_contexts(new.contexts)
        except ConfigError as exc:
            log.error(
                "reload rejected; the running configuration stays",
                config=path,
                errors=exc.errors,
            )
            self.notifier.ready(
                status=f"reload rejected ({len(exc.errors)} errors), running the previous config"
            )
            return False
        running = self.supervisor.settings
        changes = context_changes(
            {name: loop.cfg for name, loop in self.supervisor.loops.items()}, contexts
        )
        self.supervisor.apply_contexts(contexts)
        if new.log_level != running.log_level:
            set_log_level(new.log_level)
            log.info("log level changed", old=running.log_level, new=new.log_level)
        self.supervisor.settings = running.model_copy(
            update={"contexts": tuple(contexts), "log_level": new.log_level}
        )
        log.info(
            "configuration reloaded",
            unchanged=changes.unchanged,
            changed=changes.changed,
            added=changes.added,
            removed=changes.removed,
            iterations={n: loop.status.iterations for n, loop in self.supervisor.loops.items()},
        )
        pending = restart_only_changes(running, new)
        if pending:
            log.warning("changed settings take effect only after a restart", settings=pending)
        self.notifier.ready()
        return True
