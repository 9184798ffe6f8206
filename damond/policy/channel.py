"""The daemon's end of the policy channel: MQTT session, acks, state reports.

The channel never stops the daemon: without a broker the contexts run on the
last persisted policy while the channel retries with capped, jittered
exponential backoff, logging a failure once rather than on every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiomqtt
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from damond.config import ContextConfig, MqttConfig
from damond.control.status import ContextStatus
from damond.policy.broker import CredentialsError, Topics, client_options
from damond.policy.document import (
    PolicyError,
    PolicyRejected,
    Scope,
    parse_policy,
    peek_identity,
)
from damond.policy.inbox import CoalescingInbox, TokenBucket
from damond.policy.merge import CapacityOf, effective_view, fit_errors
from damond.policy.observer import NoPolicyMetrics, PolicyMetrics
from damond.policy.signing import signature_errors
from damond.policy.store import PolicyStore

Status = Literal["applied", "stale", "duplicate", "rejected"]

BACKOFF_BASE_S = 0.5
OFFLINE_PUBLISH_TIMEOUT_S = 2.0

log = structlog.get_logger("damond.policy")


@dataclass(frozen=True, slots=True)
class Ack:
    policy_id: str | None
    generation: int | None
    scope: Scope
    status: Status
    errors: Sequence[PolicyError] = ()
    effective: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.policy_id,
            "generation": self.generation,
            "scope": self.scope.value,
            "status": self.status,
            "errors": [e.to_json() for e in self.errors],
            "effective": dict(self.effective),
        }


def backoff_delay(failures: int, cap_s: float, rng: random.Random) -> float:
    """Exponential from BACKOFF_BASE_S, capped, with the upper half jittered."""
    ceiling = min(cap_s, BACKOFF_BASE_S * float(2 ** min(failures - 1, 32)))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def _raise_dropped_cancellation() -> None:
    """Re-raise a cancellation that an aiomqtt call returned over.

    aiomqtt bounds its calls with ``asyncio.wait_for``, which on Python 3.11
    returns the call's result and drops the cancellation when both arrive in one
    loop iteration (a PUBACK as the daemon shuts down); the task would then run on
    and the shutdown wait for it forever. The task's pending cancel count survives.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


class PolicyChannel:
    """Receives policies for this host, applies them whole and answers for each.

    ``base_contexts`` is the configured (policy-free) set; whoever reloads the
    configuration replaces it and calls :meth:`effective_contexts`.
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
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.base_contexts = list(base_contexts)
        self._apply_contexts = apply_contexts
        self._statuses = statuses
        self._capacity_of = capacity_of
        self._keys = list(keys)
        self.metrics: PolicyMetrics = metrics if metrics is not None else NoPolicyMetrics()
        self._rng = rng or random.Random()
        self.topics = Topics(cfg.topic_prefix)
        self._policy_topics = self.topics.policy_topics(cfg.host_id, cfg.group)
        self._ack_topic = self.topics.host(cfg.host_id, "ack")
        self._state_topic = self.topics.host(cfg.host_id, "state")
        self._online_topic = self.topics.host(cfg.host_id, "online")
        self._client: aiomqtt.Client | None = None
        self._connected_once = False
        self._stopping = False
        self._state_changed = asyncio.Event()

    def effective_contexts(
        self, base: Sequence[ContextConfig] | None = None
    ) -> list[ContextConfig]:
        """The contexts to run: ``base`` (default: the configured ones) under the policies."""
        return self.store.effective_contexts(self.base_contexts if base is None else base)

    def connection_state(self) -> str:
        """``connected`` or ``disconnected``, for the service's status line."""
        return "connected" if self._client is not None else "disconnected"

    # -- the service -------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until cancelled; each lost connection is retried with backoff."""
        failures = 0
        logged_error: str | None = None
        for scope, generation in self.store.generations().items():
            if generation is not None:
                self.metrics.policy_generation(scope, generation)
        self.metrics.mqtt_connected(False)
        while True:
            self._connected_once = False
            error = "connection closed"
            try:
                # each session on a task of its own: on Python 3.11 a TaskGroup ended by
                # an error leaves its abort counted as a cancel request on its task, which
                # _raise_dropped_cancellation would read as a shutdown in the next session
                await asyncio.create_task(self._session(), name="mqtt-session")
            except* (aiomqtt.MqttError, CredentialsError, OSError) as group:
                error = "; ".join(str(e) or type(e).__name__ for e in group.exceptions)
            except* Exception as group:
                error = "; ".join(f"{type(e).__name__}: {e}" for e in group.exceptions)
                log.error("policy channel failed unexpectedly", exc_info=group)
            if self._stopping:
                raise asyncio.CancelledError  # a shutdown whose disconnect failed
            if self._connected_once:
                failures = 0
                logged_error = None
            failures += 1
            delay = backoff_delay(failures, self.cfg.reconnect_max_s, self._rng)
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
            clean_session=True,
            **options,
        )
        async with client:
            _raise_dropped_cancellation()
            self._connected_once = True
            self._client = client
            self.metrics.mqtt_connected(True)
            log.info(
                "mqtt connected",
                broker=f"{self.cfg.host}:{self.cfg.port}",
                client_id=self.cfg.effective_client_id,
                topics=sorted(self._policy_topics),
            )
            try:
                await client.subscribe([(topic, 1) for topic in self._policy_topics])
                _raise_dropped_cancellation()
                # online only once subscribed: a policy sent on seeing it is not missed
                await client.publish(self._online_topic, b"true", qos=1, retain=True)
                _raise_dropped_cancellation()
                inbox: CoalescingInbox[Scope, bytes] = CoalescingInbox(
                    TokenBucket(self.cfg.rate_limit_per_s)
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

    async def _receive(self, client: aiomqtt.Client, inbox: CoalescingInbox[Scope, bytes]) -> None:
        """Sort incoming messages into the inbox; answer at once for what needs no parsing."""
        async for message in client.messages:
            scope = self._policy_topics.get(message.topic.value)
            if scope is None:
                continue
            payload = message.payload
            if isinstance(payload, str):
                payload = payload.encode()
            elif not isinstance(payload, bytes | bytearray):
                payload = b"" if payload is None else str(payload).encode()
            payload = bytes(payload)
            limit = self.cfg.max_payload_bytes
            if len(payload) > limit:
                error = PolicyError(
                    "payload", f"is {len(payload)} bytes, more than the limit {limit}"
                )
                await self._answer(client, self._ack(None, None, scope, "rejected", [error]))
                continue
            superseded = inbox.offer(scope, payload)
            if superseded is not None:
                policy_id, generation = peek_identity(superseded)
                error = PolicyError(
                    "(root)",
                    "superseded by a newer message for the same scope before it was processed "
                    f"(rate limit {self.cfg.rate_limit_per_s:g}/s)",
                )
                await self._answer(
                    client, self._ack(policy_id, generation, scope, "stale", [error])
                )

    async def _handle(self, client: aiomqtt.Client, inbox: CoalescingInbox[Scope, bytes]) -> None:
        while True:
            scope, payload = await inbox.take()
            try:
                ack = await self.process(scope, payload)
            except Exception:
                log.error("policy processing failed", scope=scope.value, exc_info=True)
                policy_id, generation = peek_identity(payload)
                error = PolicyError("(root)", "internal error while processing; nothing changed")
                ack = self._ack(policy_id, generation, scope, "rejected", [error])
            await self._answer(client, ack)

    async def _answer(self, client: aiomqtt.Client, ack: Ack) -> None:
        self.metrics.policy_update(ack.scope.value, ack.status)
        if ack.status == "rejected":
            log.warning(
                "policy rejected",
                scope=ack.scope.value,
                id=ack.policy_id,
                generation=ack.generation,
                errors=len(ack.errors),
                first_error=f"{ack.errors[0].loc}: {ack.errors[0].msg}" if ack.errors else None,
            )
        payload = json.dumps(ack.to_json(), separators=(",", ":")).encode()
        await client.publish(self._ack_topic, payload, qos=1)
        _raise_dropped_cancellation()

    def _ack(
        self,
        policy_id: str | None,
        generation: int | None,
        scope: Scope,
        status: Status,
        errors: Sequence[PolicyError] = (),
    ) -> Ack:
        effective = effective_view(self.effective_contexts())
        return Ack(policy_id, generation, scope, status, list(errors), effective)

    async def process(self, scope: Scope, payload: bytes) -> Ack:
        """Decide on one policy message; an accepted one is persisted, then applied."""
        try:
            parsed = parse_policy(payload, self.cfg.max_payload_bytes)
        except PolicyRejected as exc:
            errors = list(exc.errors)
            if exc.raw is not None:
                errors += fit_errors(exc.raw, self.base_contexts, self._capacity_of)
            return self._ack(exc.policy_id, exc.generation, scope, "rejected", errors)
        doc = parsed.document
        errors = signature_errors(parsed.raw, doc.signature, self._keys)
        if errors:
            return self._ack(doc.id, doc.generation, scope, "rejected", errors)
        current = self.store.get(scope)
        if current is not None and current.document.id == doc.id:
            note = PolicyError(
                "id",
                f"already applied for scope {scope.value} (generation "
                f"{current.document.generation})",
            )
            return self._ack(doc.id, doc.generation, scope, "duplicate", [note])
        if current is not None and doc.generation <= current.document.generation:
            note = PolicyError(
                "generation",
                f"must be newer than {current.document.generation}, the last applied generation "
                f"of scope {scope.value}, got {doc.generation}",
            )
            return self._ack(doc.id, doc.generation, scope, "stale", [note])
        errors = fit_errors(parsed.raw, self.base_contexts, self._capacity_of)
        if errors:
            return self._ack(doc.id, doc.generation, scope, "rejected", errors)
        previous = self.store.policies
        candidate = self.store.with_policy(scope, parsed)
        contexts = self.store.effective_contexts(self.base_contexts, candidate)
        try:
            await asyncio.to_thread(self.store.save, candidate)
        except OSError as exc:
            log.error("policy could not be persisted", path=str(self.store.path), error=str(exc))
            error = PolicyError(
                "(root)", f"could not be persisted in {self.store.path}: {exc}; nothing changed"
            )
            return self._ack(doc.id, doc.generation, scope, "rejected", [error])
        try:
            self._apply_contexts(contexts)
        except Exception as exc:
            log.error("policy could not be applied; restoring the previous one", exc_info=True)
            await asyncio.to_thread(self.store.save, previous)
            error = PolicyError("(root)", f"could not be applied: {exc}; nothing changed")
            return self._ack(doc.id, doc.generation, scope, "rejected", [error])
        self.metrics.policy_generation(scope.value, doc.generation)
        self._state_changed.set()
        log.info(
            "policy applied",
            scope=scope.value,
            id=doc.id,
            generation=doc.generation,
            effective=effective_view(contexts),
        )
        return self._ack(doc.id, doc.generation, scope, "applied")

    # -- state -------------------------------------------------------------

    def state_report(self) -> dict[str, Any]:
        """What ``.../state`` carries: the policy in force and how each context is doing."""
        summary = {
            name: {
                "metric_bp": status.metric_bp,
                "target_bp": status.target_bp,
                "quota_bytes": status.quota_bytes,
                "up": status.up,
                "iterations": status.iterations,
            }
            for name, status in self._statuses().items()
        }
        return {
            "host": self.cfg.host_id,
            "group": self.cfg.group,
            "generations": self.store.generations(),
            "ids": self.store.ids(),
            "effective": effective_view(self.effective_contexts()),
            "contexts": summary,
            "time": _now(),
        }

    async def _report_state(self, client: aiomqtt.Client) -> None:
        while True:
            self._state_changed.clear()
            payload = json.dumps(self.state_report(), separators=(",", ":")).encode()
            await client.publish(self._state_topic, payload, qos=1, retain=True)
            _raise_dropped_cancellation()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cfg.state_interval_s):
                    await self._state_changed.wait()
