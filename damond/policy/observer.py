"""What the policy channel reports to the metrics exporter."""

from __future__ import annotations

from typing import Protocol


class PolicyMetrics(Protocol):
    def policy_update(self, scope: str, result: str) -> None:
        """One policy message handled: ``result`` is the ack status."""

    def policy_generation(self, scope: str, generation: int) -> None:
        """The generation now applied for ``scope``."""

    def mqtt_connected(self, connected: bool) -> None:
        """The broker connection came up or went down."""


class NoPolicyMetrics:
    """Reports nowhere; the default when no exporter is wired in."""

    def policy_update(self, scope: str, result: str) -> None:
        pass

    def policy_generation(self, scope: str, generation: int) -> None:
        pass

    def mqtt_connected(self, connected: bool) -> None:
        pass
