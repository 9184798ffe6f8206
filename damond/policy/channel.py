"""The daemon's end of the policy channel: MQTT session, acks, state reports.

The channel never stops the daemon: without a broker the contexts run on the
last persisted policy while the channel retries with capped, jittered
exponential backoff, logging a failure once rather than on every attempt.
The session speaks MQTT v5, so that the broker never sends a packet larger
than ``mqtt.max_packet_bytes`` and says so when another client takes the
session over (another damond with the same host id).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiomqtt
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from damond.config import ContextConfig, MqttConfig
from damond.control.status import ContextStatus
from damond.policy.applier import PolicyApplier
from damond.policy.broker import CredentialsError, Topics, client_options
from damond.policy.decision import Screened, Verdict
from damond.policy.document import PolicyError, Scope, listed, size_error
from damond.policy.inbox import CoalescingInbox, TokenBucket
from damond.policy.merge import CapacityOf
from damond.policy.observer import NoPolicyMetrics, PolicyMetrics
from damond.policy.session import (
    TakeoverWatch,
    backoff_delay,
    connect_properties,
    raise_dropped_cancellation,
    taken_over,
)
from damond.policy.store import PolicyStore
from damond.policy.workloads import HostLimits

OFFLINE_PUBLISH_TIMEOUT_S = 2.0
MAX_ACK_ID = 128
"""An id longer than a valid one is not echoed in the ack."""

log = structlog.get_logger("damond.policy")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


class PolicyChannel:
    """Receives policies for this host, has them applied whole and answers for each.

    ``base_contexts`` is the configured (policy-free) set; a reload passes the
    new one to :meth:`rebase`.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        store: PolicyStore,
        base_contexts: Sequence[ContextConfig],
        apply_contexts: Callable[[list[ContextConfig]], None],
        statuses: Callable[[], Mapping[str, ContextStatus]],
        capacity_of: CapacityOf,
        keys: Sequence[Ed25519PublicKey] = (),
        metrics: PolicyMetrics | None = None,
        rng: random.Random | None = None,
        limits: HostLimits | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.metrics: PolicyMetrics = metrics if metrics is not None else NoPolicyMetrics()
        self._applier = PolicyApplier(
            store,
            base_contexts,
            apply_contexts,
            capacity_of,
            keys,
            cfg.max_payload_bytes,
            self.metrics,
            limits or HostLimits(),
        )
        self._statuses = statuses
        self._rng = rng or random.Random()
        self.topics = Topics(cfg.topic_prefix)
        self._policy_topics = self.topics.policy_topics(cfg.host_id, cfg.group)
        self._ack_topic = self.topics.host(cfg.host_id, "ack")
        self._state_topic = self.topics.host(cfg.host_id, "state")
        self._online_topic = self.topics.host(cfg.host_id, "online")
        self._instance = uuid.uuid4().hex
        """Tells this process's state reports from another damond's with the same host id."""
        self._twins_seen: set[str] = set()
        self._other_instance: str | None = None
        """Another instance's retained state report seen at a connection: its own
        previous run, or a twin (which a takeover then tells)."""
        self._connected_at = 0.0
        self._client: aiomqtt.Client | None = None
        self._connected_once = False
        self._stopping = False
        self._state_changed = asyncio.Event()

    def rebase(self, base: Sequence[ContextConfig]) -> list[ContextConfig]:
        """On reload: take ``base`` as the configured contexts; returns the ones to run,
        the accepted policies on top."""
        return self._applier.rebase(base)

    def connection_state(self) -> str:
        """``connected`` or ``disconnected``, for the service's status line."""
        return "connected" if self._client is not None else "disconnected"

    # -- the service -------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until cancelled; each lost connection is retried with backoff."""
        failures = 0
        logged_error: str | None = None
        takeovers = TakeoverWatch()
        for scope, generation in self.store.generations().items():
            if generation is not None:
                self.metrics.policy_generation(scope, generation)
        self.metrics.mqtt_connected(False)
        while True:
            self._connected_once = False
            error = "connection closed"
            said_taken_over = False
            try:
                # each session on a task of its own: on Python 3.11 a TaskGroup ended by
                # an error leaves its abort counted as a cancel request on its task, which
                # raise_dropped_cancellation would read as a shutdown in the next session
                await asyncio.create_task(self._session(), name="mqtt-session")
            except* (aiomqtt.MqttError, CredentialsError, OSError) as group:
                error = "; ".join(str(e) or type(e).__name__ for e in group.exceptions)
                said_taken_over = any(taken_over(e) for e in group.exceptions)
            except* Exception as group:
                error = "; ".join(f"{type(e).__name__}: {e}" for e in group.exceptions)
                log.error("policy channel failed unexpectedly", exc_info=group)
            if self._stopping:
                raise asyncio.CancelledError  # a shutdown whose disconnect failed
            lasted = time.monotonic() - self._connected_at if self._connected_once else None
            if self._connected_once:
                failures = 0
                logged_error = None
            failures += 1
            if takeovers.session_ended(lasted, said_taken_over):
                # two daemons with one client id take the session from each other on
                # every connect: wait the longest, so that the one connected stays so
                delay = self.cfg.reconnect_max_s * self._rng.uniform(0.75, 1.0)
                log.error(
                    "mqtt session taken over by another client with this client id; is "
                    "another damond running with the same mqtt.host_id? Give each host its "
                    "own host_id; retrying later",
                    host_id=self.cfg.host_id,
                    client_id=self.cfg.effective_client_id,
                    other_instance_seen=self._other_instance is not None,
                    retry_in_s=round(delay, 1),
                )
                logged_error = error
                await asyncio.sleep(delay)
                continue
            delay = backoff_delay(
                failures, self.cfg.reconnect_initial_s, self.cfg.reconnect_max_s, self._rng
            )
            if error != logged_error:
                log.warning(
                    "mqtt broker unavailable; contexts run on the last accepted policy, "
                    "retrying in the background",
                    broker=f"{self.cfg.host}:{self.cfg.port}",
                    error=error,
                    retry_in_s=round(delay, 2),
                )
                logged_error = error
            else:
                log.debug("mqtt reconnect failed", error=error, retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)

    async def publish_offline(self) -> None:
        """Say retained ``false`` on the online topic, bounded in time; for graceful shutdown."""
        client = self._client
        if client is None:
            return
        try:
            await client.publish(
                self._online_topic, b"false", qos=1, retain=True, timeout=OFFLINE_PUBLISH_TIMEOUT_S
            )
        except aiomqtt.MqttError as exc:
            log.warning("could not publish the offline state", error=str(exc))

    async def _session(self) -> None:
        options = await asyncio.to_thread(client_options, self.cfg)
        client = aiomqtt.Client(
            identifier=self.cfg.effective_client_id,
            will=aiomqtt.Will(self._online_topic, b"false", qos=1, retain=True),
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,
            properties=connect_properties(self.cfg.max_packet_bytes),
            **options,
        )
        async with client:
            raise_dropped_cancellation()
            self._connected_once = True
            self._connected_at = time.monotonic()
            self._client = client
            self.metrics.mqtt_connected(True)
            log.info(
                "mqtt connected",
                broker=f"{self.cfg.host}:{self.cfg.port}",
                client_id=self.cfg.effective_client_id,
                topics=sorted(self._policy_topics),
            )
            try:
                # its own state too: a report from another instance reveals a twin
                own = [*self._policy_topics, self._state_topic]
                await client.subscribe([(topic, 1) for topic in own])
                raise_dropped_cancellation()
                # online only once subscribed: a policy sent on seeing it is not missed
                await client.publish(self._online_topic, b"true", qos=1, retain=True)
                raise_dropped_cancellation()
                inbox: CoalescingInbox[Scope, Screened] = CoalescingInbox(
                    TokenBucket(self.cfg.rate_limit_per_s), lambda m: m.document.generation
                )
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._receive(client, inbox))
                    tg.create_task(self._handle(client, inbox))
                    tg.create_task(self._report_state(client))
            except asyncio.CancelledError:
                self._stopping = True
                await self.publish_offline()
                raise
            finally:
                self._client = None
                self.metrics.mqtt_connected(False)

    # -- messages ----------------------------------------------------------

    async def _receive(
        self, client: aiomqtt.Client, inbox: CoalescingInbox[Scope, Screened]
    ) -> None:
        """Screen each incoming message: answer at once for one that is not valid, let a
        valid one wait for its turn (superseding a waiting one of an older generation)."""
        async for message in client.messages:
            payload = _payload_bytes(message.payload)
            if message.topic.value == self._state_topic:
                self._note_own_state(payload, message.retain)
                continue
            scope = self._policy_topics.get(message.topic.value)
            if scope is None:
                continue
            if not payload:
                log.debug("cleared retained policy ignored", scope=scope.value)
                continue
            if len(payload) > self.cfg.max_packet_bytes:
                log.warning(
                    "policy message dropped unread: larger than mqtt.max_packet_bytes",
                    scope=scope.value,
                    bytes=len(payload),
                    limit=self.cfg.max_packet_bytes,
                )
                continue
            too_large = size_error(payload, self.cfg.max_payload_bytes)
            if too_large is not None:
                await self._answer(client, scope, Verdict(None, None, "rejected", [too_large]))
                continue
            screened = self._applier.screen(scope, payload)
            if isinstance(screened, Verdict):
                await self._answer(client, scope, screened)
                continue
            loser = inbox.offer(scope, screened)
            winner = inbox.waiting(scope)
            if loser is not None and winner is not None:
                await self._answer(client, scope, self._superseded(loser, winner))

    def _superseded(self, loser: Screened, winner: Screened) -> Verdict:
        error = PolicyError(
            "(root)",
            f"superseded by generation {winner.document.generation}, a newer valid message "
            "for the same scope, before it was processed "
            f"(rate limit {self.cfg.rate_limit_per_s:g}/s)",
        )
        return Verdict(loser.document.id, loser.document.generation, "superseded", [error])

    def _note_own_state(self, payload: bytes, retained: bool) -> None:
        """Log, once per instance, a live state report for this host that another
        process published: two daemons share the host id."""
        try:
            report = json.loads(payload)
        except ValueError:
            return
        other = report.get("instance") if isinstance(report, dict) else None
        if not isinstance(other, str) or other == self._instance:
            return
        if retained:
            self._other_instance = other  # possibly this host's previous run
            return
        if other in self._twins_seen:
            return
        self._twins_seen.add(other)
        log.error(
            "another damond publishes as this host: two daemons share mqtt.host_id; give each "
            "host its own host_id",
            host_id=self.cfg.host_id,
            other_client_id=str(report.get("client_id"))[:128],
        )

    async def _handle(
        self, client: aiomqtt.Client, inbox: CoalescingInbox[Scope, Screened]
    ) -> None:
        while True:
            scope, message = await inbox.take()
            try:
                verdict = await self._applier.process(scope, message)
            except Exception:
                log.error("policy processing failed", scope=scope.value, exc_info=True)
                error = PolicyError("(root)", "internal error while processing; nothing changed")
                doc = message.document
                verdict = Verdict(doc.id, doc.generation, "rejected", [error])
            if verdict.status == "applied":
                self._state_changed.set()
            await self._answer(client, scope, verdict)

    async def _answer(self, client: aiomqtt.Client, scope: Scope, verdict: Verdict) -> None:
        """Publish the ack for ``verdict``, with the policy fields in force now."""
        self.metrics.policy_update(scope.value, verdict.status)
        errors = verdict.errors
        if verdict.status == "rejected":
            log.warning(
                "policy rejected",
                scope=scope.value,
                id=verdict.policy_id,
                generation=verdict.generation,
                errors=len(errors),
                first_error=": ".join(errors[0].to_json().values()) if errors else None,
            )
        policy_id = verdict.policy_id
        ack = {
            "id": policy_id if policy_id is None or len(policy_id) <= MAX_ACK_ID else None,
            "generation": verdict.generation,
            "scope": scope.value,
            "status": verdict.status,
            "errors": [e.to_json() for e in listed(errors)],
            "effective": self._applier.effective(),
        }
        await client.publish(
            self._ack_topic, json.dumps(ack, separators=(",", ":")).encode(), qos=1
        )
        raise_dropped_cancellation()

    # -- state -------------------------------------------------------------

    def state_report(self) -> dict[str, Any]:
        """What ``.../state`` carries: the policy in force and how each context is doing."""
        summary = self._applier.summary(self._statuses())
        return {
            "host": self.cfg.host_id,
            "group": self.cfg.group,
            "instance": self._instance,
            "client_id": self.cfg.effective_client_id,
            "generations": self.store.generations(),
            "ids": self.store.ids(),
            "effective": self._applier.effective(),
            "contexts": summary,
            "time": _now(),
        }

    async def _report_state(self, client: aiomqtt.Client) -> None:
        while True:
            self._state_changed.clear()
            payload = json.dumps(self.state_report(), separators=(",", ":")).encode()
            await client.publish(self._state_topic, payload, qos=1, retain=True)
            raise_dropped_cancellation()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cfg.state_interval_s):
                    await self._state_changed.wait()


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return b"" if payload is None else str(payload).encode()
