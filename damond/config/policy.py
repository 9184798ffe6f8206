"""The schema of ``[policy]``: how far remote policies may change this host's contexts.

A policy may always retune the configured contexts (targets, quotas, on/off); adding
contexts of its own is off unless the host's operator allows it here, and then only
for the cgroups listed, so that a fleet operator can give a new service its share
of DRAM without the host giving up control of the rest of its memory.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from damond.config.context import cgroup_path
from damond.config.fields import _Strict


def _prefix(value: str) -> str:
    if not value:
        raise PydanticCustomError(
            "cgroup_path", "must be a cgroup path like /system.slice, got ''", {}
        )
    return cgroup_path(value)


class PolicyConfig(_Strict):
    allow_new_contexts: bool = False
    """Take contexts that policies add (``add_contexts``, docs/policy.md); when false
    a policy can only change the configured contexts."""
    max_new_contexts: Annotated[int, Field(ge=0, le=64)] = 8
    """The most policy-added contexts that run at once, over every scope's policy; on a
    real kernel damond stages this many idle kdamonds for them beside
    ``sysfs.spare_kdamonds``."""
    cgroup_prefixes: tuple[Annotated[str, AfterValidator(_prefix)], ...] = ()
    """The cgroups policy-added contexts may act on: each memcg filter's ``memcg_path``
    and each ``node_memcg_*`` goal's ``path`` must be one of these or below one
    (``/system.slice`` takes ``/system.slice/db.service``); required with
    ``allow_new_contexts``."""

    @model_validator(mode="after")
    def _prefixes_with_new_contexts(self) -> PolicyConfig:
        if self.allow_new_contexts and not self.cgroup_prefixes:
            raise PydanticCustomError(
                "policy_prefixes",
                "cgroup_prefixes: required with allow_new_contexts = true: the cgroups "
                'policy-added contexts may act on, like ["/system.slice"]',
            )
        return self

    def allows_path(self, path: str) -> bool:
        """Whether the cgroup ``path`` is one of the prefixes or below one."""
        return any(
            path == prefix or path.startswith(prefix.rstrip("/") + "/")
            for prefix in self.cgroup_prefixes
        )
