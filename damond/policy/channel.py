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
from typing import Any

import aiomqtt
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from damond.config import ContextConfig, MqttConfig
from damond.control.status import ContextStatus
from damond.policy.applier import PolicyApplier
from damond.policy.broker import CredentialsError, Topics, client_options
from damond.policy.decision import Verdict
from damond.policy.document import PolicyError, Scope, peek_identity, size_error
from damond.policy.inbox import CoalescingInbox, TokenBucket
from damond.policy.merge import CapacityOf
from damond.policy.observer import NoPolicyMetrics, PolicyMetrics
from damond.policy.store import PolicyStore

BACKOFF_BASE_S = 0.5
OFFLINE_PUBLISH_TIMEOUT_S = 2.0

log = structlog.get_logger("damond.policy")


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
        )
        self._statuses = statuses
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
            too_large = size_error(payload, self.cfg.max_payload_bytes)
            if too_large is not None:
                await self._answer(client, scope, Verdict(None, None, "rejected", [too_large]))
                continue
            superseded = inbox.offer(scope, payload)
            if superseded is not None:
                policy_id, generation = peek_identity(superseded)
                error = PolicyError(
                    "(root)",
                    "superseded by a newer message for the same scope before it was processed "
                    f"(rate limit {self.cfg.rate_limit_per_s:g}/s)",
                )
                await self._answer(client, scope, Verdict(policy_id, generation, "stale", [error]))

    async def _handle(self, client: aiomqtt.Client, inbox: CoalescingInbox[Scope, bytes]) -> None:
        while True:
            scope, payload = await inbox.take()
            try:
                verdict = await self._applier.process(scope, payload)
            except Exception:
                log.error("policy processing failed", scope=scope.value, exc_info=True)
                policy_id, generation = peek_identity(payload)
                error = PolicyError("(root)", "internal error while processing; nothing changed")
                verdict = Verdict(policy_id, generation, "rejected", [error])
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
                first_error=f"{errors[0].loc}: {errors[0].msg}" if errors else None,
            )
        ack = {
            "id": verdict.policy_id,
            "generation": verdict.generation,
            "scope": scope.value,
            "status": verdict.status,
            "errors": [e.to_json() for e in errors],
            "effective": self._applier.effective(),
        }
        await client.publish(
            self._ack_topic, json.dumps(ack, separators=(",", ":")).encode(), qos=1
        )
        _raise_dropped_cancellation()

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
            "effective": self._applier.effective(),
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
