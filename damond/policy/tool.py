"""``damond policy``: the operator's side of the policy channel.

``push`` publishes a document retained (so hosts that are offline get it when
they connect) and reports, host by host, what each online target answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiomqtt

from damond.config import MqttConfig
from damond.policy.broker import CredentialsError, Topics, client_options
from damond.policy.document import PolicyRejected, Scope, parse_policy
from damond.policy.signing import PolicyKeyError, load_private_key, sign

QUIET_S = 0.3
"""Retained messages arrive right after the subscription; this much silence ends them."""


class ToolError(Exception):
    """A failure to report to the operator, with the exit code to use."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Target:
    scope: Scope
    name: str | None = None
    """The host or group name; None for the fleet."""

    def topic(self, topics: Topics) -> str:
        if self.scope is Scope.FLEET:
            return topics.fleet_policy
        assert self.name is not None
        if self.scope is Scope.GROUP:
            return topics.group_policy(self.name)
        return topics.host(self.name, "policy")


@dataclass
class Fleet:
    """What the retained online and state topics say about every host."""

    online: dict[str, bool] = field(default_factory=dict)
    state: dict[str, dict[str, Any]] = field(default_factory=dict)

    def note(self, topics: Topics, topic: str, payload: bytes) -> None:
        if (host := topics.host_of(topic, "online")) is not None:
            self.online[host] = payload.strip() == b"true"
        elif (host := topics.host_of(topic, "state")) is not None:
            try:
                report = json.loads(payload)
            except ValueError:
                return
            if isinstance(report, dict):
                self.state[host] = report

    def hosts(self) -> list[str]:
        return sorted(set(self.online) | set(self.state))

    def targeted_online(self, target: Target) -> list[str]:
        online = [h for h in self.hosts() if self.online.get(h)]
        if target.scope is Scope.HOST:
            return [h for h in online if h == target.name]
        if target.scope is Scope.GROUP:
            return [h for h in online if self.state.get(h, {}).get("group") == target.name]
        return online


def _payload(message: aiomqtt.Message) -> bytes:
    value = message.payload
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return b"" if value is None else str(value).encode()


async def _connect(cfg: MqttConfig) -> aiomqtt.Client:
    try:
        options = client_options(cfg)
    except CredentialsError as exc:
        raise ToolError(str(exc), 2) from None
    return aiomqtt.Client(
        identifier=f"damond-policy-{os.getpid()}-{uuid.uuid4().hex[:8]}", **options
    )


async def _gather(client: aiomqtt.Client, topics: Topics, fleet: Fleet, wait_s: float) -> None:
    """Read retained online/state messages until the broker has been quiet for QUIET_S."""
    deadline = time.monotonic() + wait_s
    messages = aiter(client.messages)
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(anext(messages), min(QUIET_S, left))
        except TimeoutError:
            return
        fleet.note(topics, message.topic.value, _payload(message))


def load_document(path: Path, key_path: Path | None) -> dict[str, Any]:
    """The file's document, checked as a host would check it, signed if a key is given."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ToolError(f"{path}: cannot read: {exc.strerror or exc}", 2) from None
    try:
        parsed = parse_policy(data, 1 << 24)
    except PolicyRejected as exc:
        lines = "\n".join(f"  {e.loc}: {e.msg}" for e in exc.errors)
        raise ToolError(f"{path}: invalid policy document:\n{lines}", 2) from None
    raw = dict(parsed.raw)
    if key_path is not None:
        try:
            raw = sign(raw, load_private_key(key_path))
        except PolicyKeyError as exc:
            raise ToolError(str(exc), 2) from None
    return raw


def _describe_ack(ack: Mapping[str, Any]) -> str:
    status = str(ack.get("status"))
    text = f"{status} (scope {ack.get('scope')}, generation {ack.get('generation')})"
    errors = ack.get("errors") or []
    if errors:
        text += ": " + "; ".join(f"{e.get('loc')}: {e.get('msg')}" for e in errors)
    return text


async def push(
    cfg: MqttConfig, document: Mapping[str, Any], target: Target, wait_s: float, out: TextIO
) -> int:
    """Publish ``document`` for ``target`` and print each online target host's answer."""
    topics = Topics(cfg.topic_prefix)
    policy_id = document["id"]
    fleet = Fleet()
    async with await _connect(cfg) as client:
        await client.subscribe([(topics.host("+", leaf), 1) for leaf in ("online", "state", "ack")])
        await _gather(client, topics, fleet, wait_s)
        waiting = set(fleet.targeted_online(target))
        payload = json.dumps(document, separators=(",", ":")).encode()
        await client.publish(target.topic(topics), payload, qos=1, retain=True)
        answers: dict[str, Mapping[str, Any]] = {}
        deadline = time.monotonic() + wait_s
        messages = aiter(client.messages)
        while waiting - set(answers) and (left := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(anext(messages), left)
            except TimeoutError:
                break
            host = topics.host_of(message.topic.value, "ack")
            if host is None or host not in waiting or host in answers:
                continue
            try:
                ack = json.loads(_payload(message))
            except ValueError:
                continue
            if (
                isinstance(ack, dict)
                and ack.get("id") == policy_id
                and ack.get("scope") == target.scope.value
            ):
                answers[host] = ack
    if not waiting:
        where = target.name if target.scope is not Scope.FLEET else "the fleet"
        print(
            f"no targeted host is online ({target.scope.value} {where}); the policy is retained "
            "and applies when they connect",
            file=out,
        )
        return 1
    for host in sorted(waiting):
        if host in answers:
            print(f"{host}: {_describe_ack(answers[host])}", file=out)
        else:
            print(f"{host}: no answer within {wait_s:g} s", file=out)
    rejected = any(a.get("status") == "rejected" for a in answers.values())
    return 1 if rejected or not answers else 0


async def get_state(cfg: MqttConfig, host: str, wait_s: float, out: TextIO) -> int:
    """Print the retained state report of ``host``."""
    topics = Topics(cfg.topic_prefix)
    fleet = Fleet()
    async with await _connect(cfg) as client:
        await client.subscribe([(topics.host(host, "state"), 1), (topics.host(host, "online"), 1)])
        await _gather(client, topics, fleet, wait_s)
    report = fleet.state.get(host)
    if report is None:
        print(f"no state retained for host {host}", file=out)
        return 1
    report = {"online": fleet.online.get(host, False), **report}
    print(json.dumps(report, indent=2, sort_keys=True), file=out)
    return 0


async def status(cfg: MqttConfig, wait_s: float, out: TextIO) -> int:
    """Print one line per known host: online flag, group and policy generations."""
    topics = Topics(cfg.topic_prefix)
    fleet = Fleet()
    async with await _connect(cfg) as client:
        await client.subscribe([(topics.host("+", leaf), 1) for leaf in ("online", "state")])
        await _gather(client, topics, fleet, wait_s)
    hosts = fleet.hosts()
    if not hosts:
        print("no hosts have reported", file=out)
        return 0
    width = max(len(h) for h in hosts)
    for host in hosts:
        report = fleet.state.get(host, {})
        gens = report.get("generations") or {}
        gen_text = " ".join(
            f"{s.value}={'-' if gens.get(s.value) is None else gens.get(s.value)}" for s in Scope
        )
        state = "online" if fleet.online.get(host) else "offline"
        group = report.get("group") or "-"
        print(f"{host:<{width}}  {state:<7}  group={group}  {gen_text}", file=out)
    return 0


def run(cfg: MqttConfig, coro: Coroutine[Any, Any, int]) -> int:
    """Run a tool coroutine; a broker failure becomes a ToolError naming the broker."""
    try:
        return asyncio.run(coro)
    except aiomqtt.MqttError as exc:
        raise ToolError(f"cannot reach the MQTT broker at {cfg.host}:{cfg.port}: {exc}") from None
