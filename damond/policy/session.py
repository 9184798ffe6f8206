"""How the daemon's MQTT sessions are made and retried: the v5 CONNECT properties,
the reconnection schedule, telling a session taken over from one lost, and a
cancellation that aiomqtt drops."""

from __future__ import annotations

import asyncio
import random

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

FLAT_RETRIES = 10
"""Retries at the initial delay before the delay grows: a broker restarted within about
15 s is found within a few seconds of its return (a refused connection costs little)."""
GROWTH = 1.5
SESSION_TAKEN_OVER = 0x8E
"""MQTT v5 DISCONNECT reason: another client connected with the same client id."""
QUICK_LOSS_S = 10.0
QUICK_LOSSES = 2
"""This many sessions in a row that the broker closed within QUICK_LOSS_S of their start,
each reconnected at the first attempt, mark a takeover by another client with this
client id (brokers such as mosquitto 2.0 close the taken-over connection without
saying why)."""


def backoff_delay(failures: int, initial_s: float, cap_s: float, rng: random.Random) -> float:
    """The wait before retry number ``failures`` (1 = the first after a loss): the first
    FLAT_RETRIES at ``initial_s``, then GROWTH times longer each, at most ``cap_s``;
    jittered down by up to a quarter so that a fleet does not reconnect in step."""
    exponent = min(max(0, failures - FLAT_RETRIES), 64)
    ceiling = min(cap_s, initial_s * GROWTH**exponent)
    return ceiling * rng.uniform(0.75, 1.0)


def connect_properties(max_packet_bytes: int) -> Properties:
    """Ask the broker never to send a packet over ``max_packet_bytes`` (it drops them)."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.MaximumPacketSize = max_packet_bytes
    return properties


def taken_over(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the broker's "session taken over"."""
    seen: BaseException | None = exc
    while seen is not None:
        rc = getattr(seen, "rc", None) if isinstance(seen, aiomqtt.MqttCodeError) else None
        if rc is not None and getattr(rc, "value", rc) == SESSION_TAKEN_OVER:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class TakeoverWatch:
    """Tells a session taken over by another client from a connection lost."""

    def __init__(self) -> None:
        self._quick_losses = 0

    def session_ended(self, lasted_s: float | None, said_taken_over: bool) -> bool:
        """Count one session's end (``lasted_s`` None: it never came up); True when it
        looks taken over, so that the channel backs off instead of taking it back."""
        if lasted_s is None:
            self._quick_losses = 0  # the broker was away: an outage, not a takeover
            return False
        if said_taken_over:
            return True
        self._quick_losses = self._quick_losses + 1 if lasted_s < QUICK_LOSS_S else 0
        return self._quick_losses >= QUICK_LOSSES


def raise_dropped_cancellation() -> None:
    """Re-raise a cancellation that an aiomqtt call returned over.

    aiomqtt bounds its calls with ``asyncio.wait_for``, which on Python 3.11
    returns the call's result and drops the cancellation when both arrive in one
    loop iteration (a PUBACK as the daemon shuts down); the task would then run on
    and the shutdown wait for it forever. The task's pending cancel count survives.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
