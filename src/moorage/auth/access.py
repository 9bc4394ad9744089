"""Accesses and the Docker token spec's scope strings (``repository:team/app:pull,push``).

Pure: no I/O. A scope names a resource type, a resource name and a set of actions. Resource
names may themselves contain ``:`` (``localhost:5000/app``), so the type ends at the first colon
and the actions start after the last one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PULL = "pull"
PUSH = "push"
DELETE = "delete"
REPOSITORY_ACTIONS = frozenset({PULL, PUSH, DELETE})
# Held only by the policy's admins (no rule or API token scope can grant it): deleting a whole
# repository (DELETE /api/v1/repositories/<name>).
ADMIN = "admin"
ADMIN_ACTIONS = REPOSITORY_ACTIONS | {ADMIN}

REPOSITORY = "repository"
REGISTRY = "registry"
CATALOG = "catalog"


@dataclass(frozen=True, slots=True)
class Access:
    """Permission to perform ``actions`` on the resource ``type``:``name``."""

    type: str
    name: str
    actions: frozenset[str]

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def claim(self) -> dict[str, object]:
        """The entry of a JWT ``access`` claim."""
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


class ScopeError(ValueError):
    """A scope string that is not ``type:name:actions``."""


def parse_scope(scope: str) -> Access:
    """Parse one scope (``repository:localhost:5000/app:pull,push``)."""
    resource_type, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not resource_type or not name:
        raise ScopeError(f"scope {scope!r} is not type:name:actions")
    return Access(resource_type, name, frozenset(a for a in actions.split(",") if a))


def parse_scopes(values: Iterable[str]) -> list[Access]:
    """Parse every scope in ``values``; each value may hold several, separated by spaces."""
    return [parse_scope(part) for value in values for part in value.split()]


def repository(name: str, *actions: str) -> Access:
    return Access(REPOSITORY, name, frozenset(actions))


CATALOG_ACCESS = Access(REGISTRY, CATALOG, frozenset({"*"}))
# The registry-wide usage report (the web UI's usage overview, every repository's figures):
# like ADMIN on a repository, held only by the policy's admins; no token can carry it.
USAGE = "usage"
USAGE_ACCESS = Access(REGISTRY, USAGE, frozenset({ADMIN}))


def covers(granted: Iterable[Access], needed: Access) -> bool:
    """True when the union of ``granted`` holds every action of ``needed``."""
    held: set[str] = set()
    for access in granted:
        if access.type == needed.type and access.name == needed.name:
            held |= access.actions
    return needed.actions <= held or "*" in held
