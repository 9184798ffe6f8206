"""``damond policy``: the operator's side of the policy channel.

``push`` publishes a document retained (so hosts that are offline get it when
they connect) and reports, host by host, what each online target answered;
``clear`` removes a retained document from the broker. Both read their own
message back on its topic, so that a publish the broker's ACL dropped is not
reported as retained.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Coroutine, Mapping, Sequence
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
ECHO_WAIT_S = 3.0
"""How long a publish may take to come back on its topic before it counts as dropped."""
OK_ANSWERS = frozenset({"applied", "duplicate"})
"""Answers that leave the document in force on the host: ``push`` exits 0 on these alone."""


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

    def describe(self) -> str:
        return "the fleet" if self.name is None else f"{self.scope.value} {self.name}"

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


def load_document(path: Path, key_path: Path | None, target: Target) -> dict[str, Any]:
    """The file's document addressed to ``target`` (its ``scope`` and ``target`` set, so
    that a signature binds them), checked as a host would check it, signed if a key is
    given."""
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
    for name, value in (("scope", target.scope.value), ("target", target.name)):
        if raw.get(name) is not None and raw[name] != value:
            raise ToolError(
                f"{path}: {name} is {raw[name]!r}, but this push is for {target.describe()}", 2
            )
        if value is not None:
            raw[name] = value
    if key_path is not None:
        try:
            raw = sign(raw, load_private_key(key_path))
        except PolicyKeyError as exc:
            raise ToolError(str(exc), 2) from None
    return raw


def _readable(granted: Sequence[object]) -> bool:
    """Whether a SUBACK's codes grant the subscription (codes from 0x80 refuse it)."""
    for code in granted:
        value = getattr(code, "value", code)
        if not isinstance(value, int) or value >= 0x80:
            return False
    return True


def _describe_ack(ack: Mapping[str, Any]) -> str:
    status = str(ack.get("status"))
    text = f"{status} (scope {ack.get('scope')}, generation {ack.get('generation')})"
    errors = ack.get("errors") or []
    if errors:
        text += ": " + "; ".join(f"{e.get('loc')}: {e.get('msg')}" for e in errors)
    return text


async def push(
    cfg: MqttConfig,
    document: Mapping[str, Any],
    target: Target,
    wait_s: float,
    out: TextIO,
    err: TextIO,
) -> int:
    """Publish ``document`` for ``target`` and print each online target host's answer;
    0 when every one of them has it in force."""
    topics = Topics(cfg.topic_prefix)
    topic = target.topic(topics)
    policy_id = document["id"]
    payload = json.dumps(document, separators=(",", ":")).encode()
    fleet = Fleet()
    async with await _connect(cfg) as client:
        await client.subscribe([(topics.host("+", leaf), 1) for leaf in ("online", "state", "ack")])
        readable = _readable(await client.subscribe(topic, qos=1))
        await _gather(client, topics, fleet, wait_s)
        waiting = set(fleet.targeted_online(target))
        await client.publish(topic, payload, qos=1, retain=True)
        if waiting:
            print(
                f"waiting up to {wait_s:g} s for the acks of {', '.join(sorted(waiting))}",
                file=err,
            )
        answers: dict[str, Mapping[str, Any]] = {}
        echoed = False
        deadline = time.monotonic() + (wait_s if waiting else min(wait_s, ECHO_WAIT_S))
        messages = aiter(client.messages)
        while (waiting - set(answers) or (readable and not echoed)) and (
            left := deadline - time.monotonic()
        ) > 0:
            try:
                message = await asyncio.wait_for(anext(messages), left)
            except TimeoutError:
                break
            if message.topic.value == topic:
                echoed = echoed or _payload(message) == payload
                continue
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
    if readable and not echoed and not answers:
        print(
            f"the broker did not take the policy on {topic}: its ACL may not let this user "
            "publish there; nothing was retained",
            file=out,
        )
        return 1
    if not waiting:
        kept = (
            "the broker retained the policy and it applies when they connect"
            if echoed
            else f"this user may not read {topic}, so whether the broker retained the policy "
            "is not known"
        )
        print(f"no targeted host is online ({target.describe()}); {kept}", file=out)
        return 1
    for host in sorted(waiting):
        if host in answers:
            print(f"{host}: {_describe_ack(answers[host])}", file=out)
        else:
            print(f"{host}: no answer within {wait_s:g} s", file=out)
    in_force = all(answers.get(h, {}).get("status") in OK_ANSWERS for h in waiting)
    return 0 if in_force else 1


async def clear(cfg: MqttConfig, target: Target, wait_s: float, out: TextIO) -> int:
    """Remove the retained policy of ``target`` from the broker (an empty retained
    message); hosts ignore it and keep the policy they applied."""
    topic = target.topic(Topics(cfg.topic_prefix))
    async with await _connect(cfg) as client:
        readable = _readable(await client.subscribe(topic, qos=1))
        await client.publish(topic, b"", qos=1, retain=True)
        echoed = False
        deadline = time.monotonic() + min(wait_s, ECHO_WAIT_S)
        messages = aiter(client.messages)
        while readable and not echoed and (left := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(anext(messages), left)
            except TimeoutError:
                break
            echoed = message.topic.value == topic and not _payload(message)
    if readable and not echoed:
        print(
            f"the broker did not take the clearing message on {topic}: its ACL may not let "
            "this user publish there",
            file=out,
        )
        return 1
    print(
        f"cleared the retained policy of {target.describe()} ({topic}); hosts keep the "
        "policy they applied until a newer one comes",
        file=out,
    )
    return 0


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
