"""Real parts for the policy tests: a mosquitto broker on a free loopback port,
a damond daemon as a subprocess, and a client that watches acks and state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiomqtt

from damond.config import ContextConfig, GoalConfig, SchemeConfig, load_settings
from damond.policy.channel import PolicyChannel
from damond.policy.document import Address
from damond.policy.signing import configured_keys
from damond.policy.store import PolicyStore
from damond.runtime.daemon import make_backend, node_capacity
from damond.runtime.supervisor import Supervisor
from tests.tools import free_port, require_binary


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class Broker:
    """A mosquitto process; ``extra`` lines go into its listener's configuration."""

    def __init__(self, workdir: Path, extra: str = "allow_anonymous true") -> None:
        self.binary = require_binary("mosquitto", "mosquitto")
        self.workdir = workdir
        self.port = free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self.workdir / f"mosquitto-{self.port}.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n{self.extra}\npersistence false\nuser root\n"
            "log_type error\nlog_type warning\nset_tcp_nodelay true\n"
        )
        log = (self.workdir / f"mosquitto-{self.port}.log").open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log)
        log.close()
        wait_for_port(self.port)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def contexts() -> tuple[ContextConfig, ...]:
    """The seed's two contexts, as the tests' base configuration."""
    return (
        ContextConfig(
            name="node0",
            node=0,
            scheme=SchemeConfig(target_nid=1),
            goal=GoalConfig(nid=0, target_bp=6000),
        ),
        ContextConfig(
            name="node1",
            node=1,
            scheme=SchemeConfig(target_nid=0),
            goal=GoalConfig(nid=1, target_bp=4000),
        ),
    )


def daemon_toml(state_dir: Path, port: int, mqtt: Mapping[str, Any] | None = None) -> str:
    fields: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "host_id": "h1",
        "group": "g1",
        "reconnect_max_s": 1.0,
        "state_interval_s": 1.0,
        **(mqtt or {}),
    }

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str | Path):
            return json.dumps(str(v))
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    lines = [
        'backend = "simulated"',
        "interval_s = 0.2",
        f"state_dir = {value(state_dir)}",
        'log_level = "info"',
        "[metrics]",
        "enabled = false",
        "[mqtt]",
        *(f"{k} = {value(v)}" for k, v in fields.items()),
    ]
    return "\n".join(lines) + "\n"


class Daemon:
    """``python -m damond run`` in a subprocess, its JSON log lines in a file."""

    def __init__(self, workdir: Path, toml: str, name: str = "daemon") -> None:
        self.config = workdir / f"{name}.toml"
        self.config.write_text(toml)
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "damond", "run", "-c", str(self.config)],
            stdout=log,
            stderr=log,
            env=env,
            cwd=self.config.parent,
        )
        log.close()

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                out.append(event)
        return out

    def wait_event(self, name: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                    return event
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"no {name!r} event matching {match} in {self.log_path}:\n"
            + self.log_path.read_text(errors="replace")[-3000:]
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"the daemon ignored SIGTERM for 15 s; its log {self.log_path}:\n"
                    + self.log_path.read_text(errors="replace")[-3000:]
                ) from None
        return self.proc.returncode


class Watcher:
    """An MQTT client that collects messages on the topics it is given."""

    def __init__(
        self, port: int, *topics: str, skip_retained: bool = False, **options: Any
    ) -> None:
        self.port = port
        self.topics = topics
        self.skip_retained = skip_retained
        self.options = options
        self.messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        self.client = aiomqtt.Client(
            "127.0.0.1",
            self.port,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            **self.options,
        )
        await self.client.__aenter__()
        if self.topics:
            await self.client.subscribe([(t, 1) for t in self.topics])
        self._task = asyncio.create_task(self._pump())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None and self.client is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.client.__aexit__(None, None, None)

    async def _pump(self) -> None:
        assert self.client is not None
        async for message in self.client.messages:
            if self.skip_retained and message.retain:
                continue
            payload = message.payload
            assert isinstance(payload, bytes)
            await self.messages.put((message.topic.value, payload))

    async def publish(
        self, topic: str, payload: bytes | dict[str, Any], retain: bool = False
    ) -> None:
        assert self.client is not None
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        await self.client.publish(topic, data, qos=1, retain=retain)

    async def next(self, topic: str | None = None, wait_s: float = 10.0) -> Any:
        """The next message (on ``topic``, if given), JSON-decoded when it is JSON."""
        deadline = time.monotonic() + wait_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no message on {topic or self.topics} within {wait_s} s")
            got_topic, payload = await asyncio.wait_for(self.messages.get(), left)
            if topic is None or got_topic == topic:
                try:
                    return json.loads(payload)
                except ValueError:
                    return payload

    def drain(self) -> Iterator[tuple[str, bytes]]:
        while not self.messages.empty():
            yield self.messages.get_nowait()


class Host:
    """The daemon's parts in this process: a real supervisor on the simulated
    backend with the policy channel as its service, as ``run_daemon`` wires them."""

    def __init__(self, state_dir: Path, port: int, **mqtt: Any) -> None:
        overrides: dict[str, Any] = {
            "backend": "simulated",
            "interval_s": 0.1,
            "state_dir": state_dir,
            "contexts": [c.model_dump() for c in contexts()],
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "host_id": "h1",
                "group": "g1",
                "reconnect_max_s": 1.0,
                "state_interval_s": 30.0,
                **mqtt,
            },
        }
        self.settings = load_settings(None, overrides)
        self.port = port
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Host:
        settings = self.settings
        keys = configured_keys(settings.mqtt)
        address = Address(settings.mqtt.host_id, settings.mqtt.group)
        store = PolicyStore.load(settings.state_dir, address, keys)
        effective = tuple(store.effective_contexts(settings.contexts))
        self.supervisor = Supervisor(
            settings.model_copy(update={"contexts": effective}), make_backend(settings)
        )
        self.channel = PolicyChannel(
            settings.mqtt,
            store,
            settings.contexts,
            self.supervisor.apply_contexts,
            lambda: self.supervisor.statuses,
            node_capacity(settings, self.supervisor),
            keys=keys,
        )
        self.supervisor.services.append(self.channel.run)
        # a state report of this run: a retained one may be an earlier Host's, sent
        # before this one subscribed to its policy topics
        async with Watcher(self.port, "damond/hosts/h1/state", skip_retained=True) as watcher:
            self._task = asyncio.create_task(self.supervisor.run())
            await watcher.next("damond/hosts/h1/state")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self.supervisor.stop()
        await asyncio.wait_for(self._task, 15)

    def running(self, name: str) -> ContextConfig:
        return self.supervisor.loops[name].cfg
