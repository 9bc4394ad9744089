"""The authorization policy: who may pull, push and delete which repositories.

Pure: no I/O except :func:`load_policy`, which reads the YAML file. The format is documented in
``docs/auth-policy.md``. Rules only ever allow (their grants are a union); nothing is allowed
unless a rule, or membership of ``admins``, says so. An identity's ``limit`` (an API token's
scopes, a bearer token's access claim) then narrows whatever the policy allows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moorage.auth.access import (
    ADMIN,
    ADMIN_ACTIONS,
    CATALOG,
    PULL,
    PUSH,
    REGISTRY,
    REPOSITORY,
    USAGE,
    Access,
)
from moorage.auth.identity import Identity, Via
from moorage.config import RepositoryPatterns, _describe
from moorage.oci.names import is_valid_name

Action = Literal["pull", "push", "delete"]

# What a repository pattern may contain: the name grammar's characters plus the two wildcards.
# Anything else (upper case, `[`, spaces) could never match a valid name, so it is a typo.
_PATTERN_CHARACTERS = re.compile(r"^[a-z0-9._/*?-]+$")


class PolicyError(Exception):
    """The policy file is unreadable or invalid; the message names each offending key."""


def validate_repository_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a repository glob (``*`` any characters including ``/``,
    ``?`` one character, everything else literal); else raise ValueError."""
    if not _PATTERN_CHARACTERS.fullmatch(pattern):
        raise ValueError(
            f"repository pattern {pattern!r} may hold only a-z 0-9 . _ / - and the wildcards * ?"
        )
    return pattern


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    # fnmatchcase without its [character classes]: a pattern character is literal unless it is
    # one of the two wildcards, so nothing a repository name may hold is ever special.
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _any_of(patterns: Iterable[str], *, globs: bool) -> re.Pattern[str]:
    """One expression matching a name that any of ``patterns`` matches (globs or literals)."""
    parts = [_glob(p).pattern if globs else re.escape(p) for p in patterns]
    return re.compile("|".join(f"(?:{part})" for part in parts) or "(?!)", re.DOTALL)


def literal_prefixes(patterns: Iterable[str]) -> tuple[str, ...] | None:
    """The fewest name prefixes that every name some pattern matches starts with (the text
    before each pattern's first wildcard), sorted, none a prefix of another; None when a
    pattern starts with a wildcard (any name may match). No patterns: no prefixes."""
    found: set[str] = set()
    for pattern in patterns:
        literal = re.split(r"[*?]", pattern, maxsplit=1)[0]
        if not literal:
            return None
        found.add(literal)
    kept: list[str] = []
    for prefix in sorted(found):
        if not kept or not prefix.startswith(kept[-1]):
            kept.append(prefix)
    return tuple(kept)


def matches(pattern: str, name: str) -> bool:
    """True when the repository ``name`` (taken literally) matches the glob ``pattern``."""
    return _glob(pattern).fullmatch(name) is not None


def matches_any(patterns: Iterable[str], name: str) -> bool:
    """True when ``name`` matches one of the globs ``patterns``."""
    return any(matches(pattern, name) for pattern in patterns)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Model):
    """Who (``users``, ``groups``, ``authenticated``, ``anonymous``) gets ``actions`` on the
    repositories matching any of ``repositories``."""

    repositories: RepositoryPatterns
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    # Any logged-in caller.
    authenticated: bool = False
    # Anyone at all, logged in or not.
    anonymous: bool = False
    actions: tuple[Action, ...] = Field(min_length=1)
    # Tags this rule lets a caller push may be created but never moved to another manifest.
    immutable_tags: bool = False

    @model_validator(mode="after")
    def _coherent(self) -> Rule:
        if not (self.users or self.groups or self.authenticated or self.anonymous):
            raise ValueError(
                "a rule must name who it applies to: users, groups, authenticated or anonymous"
            )
        if self.immutable_tags and PUSH not in self.actions:
            raise ValueError("immutable_tags only means something on a rule that grants push")
        return self


class Policy(_Model):
    # Users allowed every action on every repository.
    admins: tuple[str, ...] = ()
    groups: dict[str, tuple[str, ...]] = {}
    rules: tuple[Rule, ...] = ()

    @model_validator(mode="after")
    def _groups_exist(self) -> Policy:
        for index, rule in enumerate(self.rules):
            for group in rule.groups:
                if group not in self.groups:
                    raise ValueError(
                        f"rules.{index}.groups names {group!r}, which is not defined in groups"
                    )
        return self


DEFAULT_POLICY = Policy(
    rules=(Rule(repositories=("*",), authenticated=True, actions=("pull", "push", "delete")),)
)
"""Without a policy file: every logged-in user may do everything, anonymous callers nothing
(what a plain htpasswd setup gives)."""


def load_policy(path: Path) -> Policy:
    """Read and validate the policy file at ``path``. Raises :class:`PolicyError`."""
    try:
        content = path.read_bytes()
    except OSError as error:
        raise PolicyError(f"cannot read policy file {path}: {error.strerror}") from None
    return parse_policy(content, path)


def parse_policy(content: bytes, path: Path) -> Policy:
    """Validate the policy file ``path``'s ``content``. Raises :class:`PolicyError`."""
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as error:
        raise PolicyError(f"policy file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"policy file {path} must hold a mapping (admins, groups, rules)")
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        raise PolicyError(f"policy file {path}:\n{_describe(error)}") from None


def has_immutable_tags(policy: Policy, repository: str) -> bool:
    """True when a rule matching ``repository`` makes its tags immutable (for its callers):
    garbage collection's retention rules leave such a repository's tags alone."""
    return any(
        rule.immutable_tags and matches_any(rule.repositories, repository) for rule in policy.rules
    )


def limit_allows(limit: Iterable[Access] | None, requested: Access, *, globs: bool) -> Access:
    """``requested`` narrowed to the actions ``limit`` allows on it (possibly none).

    ``limit`` None means no limit. A limit entry's ``*`` action allows every action, as in
    :func:`moorage.auth.access.covers`. With ``globs`` a limit entry's name is a repository
    pattern (API token scopes, ``repository:team/*:pull``); without, it must equal the requested
    name (a bearer token's access claim lists literal names). ``requested.name`` is always
    literal: callers must refuse names that are not valid repository names first.
    """
    if limit is None:
        return requested
    allowed: set[str] = set()
    for entry in limit:
        if entry.type != requested.type:
            continue
        named = matches(entry.name, requested.name) if globs else entry.name == requested.name
        if named:
            allowed |= requested.actions if "*" in entry.actions else entry.actions
    return Access(requested.type, requested.name, requested.actions & allowed)


class PolicyAuthorizer:
    """The :class:`~moorage.auth.port.Authorizer` over a :class:`Policy`."""

    # Its policy never changes (ReloadingPolicyAuthorizer replaces a whole PolicyAuthorizer).
    generation = 0

    def __init__(self, policy: Policy = DEFAULT_POLICY) -> None:
        self.policy = policy
        self._admins = frozenset(policy.admins)
        self._groups_of: dict[str, set[str]] = {}
        for group, members in policy.groups.items():
            for member in members:
                self._groups_of.setdefault(member, set()).add(group)
        self._anonymous_pull = any(r.anonymous and PULL in r.actions for r in policy.rules)

    # --- the Authorizer port -------------------------------------------------------------------
    def grant(self, identity: Identity, requested: Sequence[Access]) -> list[Access]:
        granted: list[Access] = []
        for access in requested:
            if access.type == REPOSITORY:
                allowed = self._repository_actions(identity, access.name)
            elif access.type == REGISTRY and access.name == CATALOG:
                allowed = self._catalog_actions(identity)
            elif access.type == REGISTRY and access.name == USAGE and self._is_admin(identity):
                allowed = frozenset({ADMIN})
            else:
                allowed = frozenset()
            narrowed = limit_allows(
                identity.limit,
                Access(access.type, access.name, access.actions & allowed),
                globs=identity.via is Via.API_TOKEN,
            )
            if narrowed.actions:
                granted.append(narrowed)
        return granted

    def may_overwrite_tag(self, identity: Identity, repository: str) -> bool:
        if self._is_admin(identity):
            return True
        return not any(
            rule.immutable_tags and PUSH in rule.actions
            for rule in self._rules_for(identity, repository)
        )

    # --- catalog filtering ---------------------------------------------------------------------
    def may_pull(self, identity: Identity, repository: str) -> bool:
        """True when ``identity`` may pull ``repository``: whether the catalog lists it."""
        return bool(self.grant(identity, [Access(REPOSITORY, repository, frozenset({PULL}))]))

    def pull_filter(self, identity: Identity) -> Callable[[str], bool]:
        """:meth:`may_pull` for one identity over many names (a catalog page): the rules and
        limits that apply are chosen once and their patterns joined into one expression, which
        costs a fraction of a :meth:`grant` per name."""
        by_policy = None
        if not self._is_admin(identity):
            by_policy = _any_of(
                (
                    pattern
                    for rule in self.policy.rules
                    if PULL in rule.actions and self._applies_to(rule, identity)
                    for pattern in rule.repositories
                ),
                globs=True,
            )
        by_limit = None
        if identity.limit is not None:
            by_limit = _any_of(
                (
                    entry.name
                    for entry in identity.limit
                    if entry.type == REPOSITORY and not entry.actions.isdisjoint({PULL, "*"})
                ),
                globs=identity.via is Via.API_TOKEN,
            )

        def may_pull(repository: str) -> bool:
            return (
                is_valid_name(repository)
                and (by_policy is None or by_policy.fullmatch(repository) is not None)
                and (by_limit is None or by_limit.fullmatch(repository) is not None)
            )

        return may_pull

    def pull_prefixes(self, identity: Identity) -> tuple[str, ...] | None:
        """Name prefixes that every repository ``identity`` may pull starts with, so that a
        listing reads only those name ranges; :meth:`pull_filter` still decides each name.
        None when no prefix bounds them (an admin, or a rule for ``*``)."""
        by_policy = None
        if not self._is_admin(identity):
            by_policy = literal_prefixes(
                pattern
                for rule in self.policy.rules
                if PULL in rule.actions and self._applies_to(rule, identity)
                for pattern in rule.repositories
            )
        by_limit = None
        if identity.limit is not None:
            by_limit = literal_prefixes(
                entry.name
                for entry in identity.limit
                if entry.type == REPOSITORY and not entry.actions.isdisjoint({PULL, "*"})
            )
        # Either bounds what may be pulled; the one with fewer ranges costs fewer queries.
        bounds = [prefixes for prefixes in (by_policy, by_limit) if prefixes is not None]
        return min(bounds, key=len) if bounds else None

    # --- evaluation ----------------------------------------------------------------------------
    def _is_admin(self, identity: Identity) -> bool:
        return identity.name is not None and identity.name in self._admins

    def _applies_to(self, rule: Rule, identity: Identity) -> bool:
        if rule.anonymous:
            return True
        name = identity.name
        if name is None:
            return False
        return (
            rule.authenticated
            or name in rule.users
            or not self._groups_of.get(name, set()).isdisjoint(rule.groups)
        )

    def _rules_for(self, identity: Identity, repository: str) -> Iterable[Rule]:
        for rule in self.policy.rules:
            if self._applies_to(rule, identity) and matches_any(rule.repositories, repository):
                yield rule

    def _repository_actions(self, identity: Identity, repository: str) -> frozenset[str]:
        # A requested name is literal. `team-a/*` is not a valid name, so it is refused here
        # rather than being matched against rules (or limits) as if it were a pattern.
        if not is_valid_name(repository):
            return frozenset()
        if self._is_admin(identity):
            return ADMIN_ACTIONS
        # Each action comes only from a rule that lists it: delete never follows from push.
        return frozenset(
            action for rule in self._rules_for(identity, repository) for action in rule.actions
        )

    def _catalog_actions(self, identity: Identity) -> frozenset[str]:
        # The catalog is filtered per repository with may_pull, so listing it reveals only what
        # the caller could pull anyway; anonymous callers get it only if they can pull anything.
        if not identity.anonymous or self._anonymous_pull:
            return frozenset({"*"})
        return frozenset()
