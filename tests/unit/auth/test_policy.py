"""Every policy decision, each with the request that must be refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from moorage.auth.access import CATALOG_ACCESS, USAGE_ACCESS, Access, parse_scope, repository
from moorage.auth.identity import ANONYMOUS, Identity, Via
from moorage.auth.policy import (
    DEFAULT_POLICY,
    Policy,
    PolicyAuthorizer,
    PolicyError,
    limit_allows,
    literal_prefixes,
    load_policy,
    matches,
)

POLICY_YAML = """
admins: [root]
groups: {team-a: [alice, bob], ci: [robot]}
rules:
  - repositories: ["team-a/*"]
    groups: [team-a]
    actions: [pull, push]
  - repositories: ["team-a/*"]
    users: [alice]
    actions: [delete]
  - repositories: ["public/*"]
    anonymous: true
    actions: [pull]
  - repositories: ["*"]
    authenticated: true
    actions: [pull]
  - repositories: ["releases/*"]
    groups: [ci]
    actions: [push]
    immutable_tags: true
"""

ALL = ("pull", "push", "delete")


def user(name: str, limit: tuple[Access, ...] | None = None, via: Via = Via.PASSWORD) -> Identity:
    return Identity(name, via, limit)


def token(name: str, *scopes: str) -> Identity:
    return Identity(name, Via.API_TOKEN, tuple(parse_scope(s) for s in scopes))


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY_YAML)
    return path


@pytest.fixture
def authz(policy_file: Path) -> PolicyAuthorizer:
    return PolicyAuthorizer(load_policy(policy_file))


def actions(authz: PolicyAuthorizer, identity: Identity, name: str) -> set[str]:
    granted = authz.grant(identity, [repository(name, *ALL)])
    return {a for access in granted for a in access.actions}


# --- who gets what ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("identity", "name", "expected"),
    [
        # A team member reads and writes the team's repositories but cannot delete.
        (user("bob"), "team-a/app", {"pull", "push"}),
        # The team's deleter gets delete from its own rule.
        (user("alice"), "team-a/app", {"pull", "push", "delete"}),
        # Someone from another team only reads (the authenticated rule).
        (user("carol"), "team-a/app", {"pull"}),
        # Anonymous callers get nothing outside public/.
        (ANONYMOUS, "team-a/app", set()),
        (ANONYMOUS, "public/base", {"pull"}),
        (user("carol"), "public/base", {"pull"}),
        # The admin gets everything everywhere, even where no rule matches.
        (user("root"), "team-a/app", set(ALL)),
        (user("root"), "anything/else", set(ALL)),
        # The robot pushes releases, never deletes them.
        (user("robot"), "releases/app", {"pull", "push"}),
        (user("robot"), "team-a/app", {"pull"}),
        # team-a/* needs the slash: team-ab is another repository.
        (user("bob"), "team-ab", {"pull"}),
        # Nested names match (`*` crosses `/`).
        (user("bob"), "team-a/sub/app", {"pull", "push"}),
    ],
)
def test_grants(authz: PolicyAuthorizer, identity: Identity, name: str, expected: set[str]) -> None:
    assert actions(authz, identity, name) == expected


def test_delete_never_follows_from_push(authz: PolicyAuthorizer) -> None:
    assert authz.grant(user("bob"), [repository("team-a/app", "delete")]) == []
    assert authz.grant(user("robot"), [repository("releases/app", "delete")]) == []


def test_grant_is_the_part_of_the_request_that_is_allowed(authz: PolicyAuthorizer) -> None:
    granted = authz.grant(
        user("bob"),
        [repository("team-a/app", "pull", "push", "delete"), repository("other/app", "push")],
    )
    assert granted == [repository("team-a/app", "pull", "push")]


def test_only_what_was_asked_is_granted(authz: PolicyAuthorizer) -> None:
    assert authz.grant(user("root"), [repository("x/y", "pull")]) == [repository("x/y", "pull")]


def test_unknown_actions_and_resource_types_are_refused(authz: PolicyAuthorizer) -> None:
    assert authz.grant(user("root"), [repository("x/y", "*")]) == []
    assert authz.grant(user("root"), [repository("x/y", "frobnicate")]) == []
    assert authz.grant(user("root"), [Access("other", "x", frozenset({"pull"}))]) == []


def test_only_admins_hold_the_admin_action(authz: PolicyAuthorizer) -> None:
    # Repository delete (DELETE /api/v1/repositories/<name>) needs it; no rule can grant it.
    assert authz.grant(user("root"), [repository("x/y", "admin")]) == [repository("x/y", "admin")]
    assert authz.grant(user("alice"), [repository("team-a/app", "admin", "delete")]) == [
        repository("team-a/app", "delete")
    ]
    assert (
        authz.grant(
            user("root", (parse_scope("repository:x/y:pull"),)), [repository("x/y", "admin")]
        )
        == []
    )


def test_only_admins_may_read_the_usage_report(authz: PolicyAuthorizer) -> None:
    assert authz.grant(user("root"), [USAGE_ACCESS]) == [USAGE_ACCESS]
    for caller in (user("alice"), user("robot"), ANONYMOUS):
        assert authz.grant(caller, [USAGE_ACCESS]) == []
    # Not through an API token either, even one holding every repository and the catalog.
    token = Identity(
        "root",
        Via.API_TOKEN,
        limit=(parse_scope("repository:*:pull,push,delete"), CATALOG_ACCESS),
    )
    assert authz.grant(token, [USAGE_ACCESS]) == []


def test_anonymous_rule_also_applies_to_logged_in_users() -> None:
    policy = Policy.model_validate(
        {"rules": [{"repositories": ["pub"], "anonymous": True, "actions": ["pull"]}]}
    )
    assert PolicyAuthorizer(policy).may_pull(user("anyone"), "pub")


def test_users_and_group_names_are_case_sensitive(authz: PolicyAuthorizer) -> None:
    assert actions(authz, user("Bob"), "team-a/app") == {"pull"}
    assert actions(authz, user("ROOT"), "x") == {"pull"}


# --- requested names are literal ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["team-a/*", "team-a/?pp", "*", "team-a/[a]pp", "Team-A/app"])
def test_glob_in_a_requested_name_grants_nothing(authz: PolicyAuthorizer, name: str) -> None:
    assert authz.grant(user("alice"), [repository(name, *ALL)]) == []
    assert authz.grant(user("root"), [repository(name, *ALL)]) == []


def test_glob_scope_in_a_bearer_limit_is_literal(authz: PolicyAuthorizer) -> None:
    # A bearer token's access claim names literal repositories: `team-a/*` is not all of team-a.
    bob = user("bob", (parse_scope("repository:team-a/*:pull,push"),), via=Via.BEARER)
    assert authz.grant(bob, [repository("team-a/app", "push")]) == []


# --- limits ---------------------------------------------------------------------------------------
def test_api_token_scopes_narrow_the_policy(authz: PolicyAuthorizer) -> None:
    alice = token("alice", "repository:team-a/app:pull")
    assert actions(authz, alice, "team-a/app") == {"pull"}
    assert actions(authz, alice, "team-a/other") == set()


def test_api_token_glob_scopes_cover_matching_repositories(authz: PolicyAuthorizer) -> None:
    alice = token("alice", "repository:team-a/*:pull,push")
    assert actions(authz, alice, "team-a/app") == {"pull", "push"}
    assert actions(authz, alice, "team-a/x/y") == {"pull", "push"}
    assert actions(authz, alice, "public/base") == set()


def test_a_limit_never_adds_what_the_policy_refuses(authz: PolicyAuthorizer) -> None:
    bob = token("bob", "repository:*:pull,push,delete")
    assert actions(authz, bob, "team-a/app") == {"pull", "push"}
    assert actions(authz, bob, "other/app") == {"pull"}


def test_admins_are_limited_too(authz: PolicyAuthorizer) -> None:
    root = token("root", "repository:ops/*:pull")
    assert actions(authz, root, "ops/db") == {"pull"}
    assert actions(authz, root, "team-a/app") == set()
    assert authz.may_overwrite_tag(root, "releases/app")


def test_limit_allows() -> None:
    limit = (parse_scope("repository:team/*:pull"), parse_scope("repository:team/app:push"))
    wanted = repository("team/app", "pull", "push", "delete")
    assert limit_allows(limit, wanted, globs=True) == repository("team/app", "pull", "push")
    assert limit_allows(limit, wanted, globs=False) == repository("team/app", "push")
    assert limit_allows(None, wanted, globs=False) == wanted
    assert limit_allows((), wanted, globs=True).actions == frozenset()
    star = (parse_scope("repository:team/app:*"),)
    assert limit_allows(star, wanted, globs=False) == wanted
    # A limit on one resource type says nothing about another.
    assert limit_allows(limit, CATALOG_ACCESS, globs=True).actions == frozenset()


# --- catalog --------------------------------------------------------------------------------------
def test_catalog_for_authenticated_callers(authz: PolicyAuthorizer) -> None:
    assert authz.grant(user("carol"), [CATALOG_ACCESS]) == [CATALOG_ACCESS]


def test_catalog_for_anonymous_only_with_an_anonymous_pull_rule(authz: PolicyAuthorizer) -> None:
    assert authz.grant(ANONYMOUS, [CATALOG_ACCESS]) == [CATALOG_ACCESS]
    assert PolicyAuthorizer(DEFAULT_POLICY).grant(ANONYMOUS, [CATALOG_ACCESS]) == []


def test_catalog_is_limited_by_token_scopes(authz: PolicyAuthorizer) -> None:
    assert authz.grant(token("bob", "repository:team-a/*:pull"), [CATALOG_ACCESS]) == []
    with_catalog = token("bob", "repository:team-a/*:pull", "registry:catalog:*")
    assert authz.grant(with_catalog, [CATALOG_ACCESS]) == [CATALOG_ACCESS]


def test_may_pull_filters_the_catalog(authz: PolicyAuthorizer) -> None:
    names = ["public/base", "releases/app", "team-a/app"]
    assert [n for n in names if authz.may_pull(ANONYMOUS, n)] == ["public/base"]
    assert [n for n in names if authz.may_pull(user("carol"), n)] == names
    bob = token("bob", "repository:team-a/*:pull")
    assert [n for n in names if authz.may_pull(bob, n)] == ["team-a/app"]


# --- immutable tags -------------------------------------------------------------------------------
def test_immutable_tags(authz: PolicyAuthorizer) -> None:
    assert not authz.may_overwrite_tag(user("robot"), "releases/app")
    assert authz.may_overwrite_tag(user("robot"), "team-a/app")
    assert authz.may_overwrite_tag(user("bob"), "team-a/app")
    # Admins are never held to immutable tags.
    assert authz.may_overwrite_tag(user("root"), "releases/app")


def test_immutable_if_any_matching_push_rule_says_so() -> None:
    policy = Policy.model_validate(
        {
            "rules": [
                {"repositories": ["rel/*"], "users": ["ci"], "actions": ["push"]},
                {
                    "repositories": ["rel/*"],
                    "authenticated": True,
                    "actions": ["push"],
                    "immutable_tags": True,
                },
            ]
        }
    )
    assert not PolicyAuthorizer(policy).may_overwrite_tag(user("ci"), "rel/app")


# --- the default policy ---------------------------------------------------------------------------
def test_default_policy_authenticated_everything_anonymous_nothing() -> None:
    authz = PolicyAuthorizer()
    assert actions(authz, user("anyone"), "some/repo") == set(ALL)
    assert actions(authz, ANONYMOUS, "some/repo") == set()
    assert not authz.may_pull(ANONYMOUS, "some/repo")


# --- globs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "a/b/c", True),
        ("team/*", "team/app", True),
        ("team/*", "team", False),
        ("team/?pp", "team/app", True),
        ("team/?pp", "team/apps", False),
        ("team.app", "teamxapp", False),
        ("a?b", "a/b", True),
    ],
)
def test_matches(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


# --- bad policy files name the key ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("admins: [root]\nrulez: []\n", "rulez"),
        (
            "rules:\n  - repositories: ['*']\n    users: [a]\n    actions: [pull, pusj]\n",
            "rules.0.actions.1",
        ),
        (
            "rules:\n  - repositories: ['*']\n    user: [a]\n    actions: [pull]\n",
            "rules.0.user",
        ),
        ("rules:\n  - repositories: ['*']\n    actions: [pull]\n", "must name who"),
        (
            "rules:\n  - repositories: ['*']\n    groups: [nope]\n    actions: [pull]\n",
            "rules.0.groups names 'nope', which is not defined in groups",
        ),
        (
            "rules:\n  - repositories: ['Team/[ab]']\n    users: [a]\n    actions: [pull]\n",
            "rules.0.repositories",
        ),
        (
            "rules:\n  - repositories: []\n    users: [a]\n    actions: [pull]\n",
            "rules.0.repositories",
        ),
        (
            "rules:\n  - repositories: ['*']\n    users: [a]\n    actions: []\n",
            "rules.0.actions",
        ),
        (
            "rules:\n  - repositories: ['*']\n    users: [a]\n    actions: [pull]\n"
            "    immutable_tags: true\n",
            "immutable_tags",
        ),
        ("groups: {ci: robot}\n", "groups.ci"),
        ("- just a list\n", "must hold a mapping"),
        ("", "must hold a mapping"),
        ("rules: [\n", "not valid YAML"),
    ],
)
def test_bad_policy_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=re.escape(message)):
        load_policy(path)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "nope.yaml")


# --- the documentation's examples are valid policies ----------------------------------------------
DOC = Path(__file__).resolve().parents[3] / "docs" / "auth-policy.md"


def test_documented_examples_load(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert blocks
    for index, block in enumerate(blocks):
        path = tmp_path / f"example{index}.yaml"
        path.write_text(block)
        load_policy(path)


@pytest.mark.parametrize(
    "identity",
    [
        ANONYMOUS,
        user("alice"),
        user("bob"),
        user("carol"),
        user("robot"),
        user("root"),
        token("bob", "repository:team-a/*:pull"),
        token("root", "repository:releases/?pp:pull,push", "repository:x:*"),
        token("carol", "repository:team-a/app:push"),
        user("bob", (parse_scope("repository:team-a/*:pull"),), via=Via.BEARER),
        user("bob", (parse_scope("repository:team-a/app:pull"),), via=Via.BEARER),
        user("root", (), via=Via.BEARER),
    ],
    ids=repr,
)
def test_pull_filter_agrees_with_may_pull(authz: PolicyAuthorizer, identity: Identity) -> None:
    names = [
        "team-a/app",
        "team-a/*",
        "team-ab",
        "public/base",
        "releases/app",
        "releases/apps",
        "x",
        "other/app",
        "Team-a/app",
        "",
    ]
    may_pull = authz.pull_filter(identity)
    assert [n for n in names if may_pull(n)] == [n for n in names if authz.may_pull(identity, n)]


@pytest.mark.parametrize(
    ("patterns", "prefixes"),
    [
        ([], ()),
        (["team-a/*"], ("team-a/",)),
        (["team-a/*", "team-a/x/*", "public/*"], ("public/", "team-a/")),
        (["team-a/app", "team-a/app2"], ("team-a/app",)),
        (["t?am/*"], ("t",)),
        (["*"], None),
        (["team-a/*", "?x"], None),
    ],
)
def test_literal_prefixes(patterns: list[str], prefixes: tuple[str, ...] | None) -> None:
    assert literal_prefixes(patterns) == prefixes


@pytest.mark.parametrize(
    ("identity", "prefixes"),
    [
        (ANONYMOUS, ("public/",)),
        (user("alice"), None),  # the "*" rule for every logged-in user
        (user("root"), None),
        (token("alice", "repository:team-a/*:pull"), ("team-a/",)),
        (token("alice", "repository:team-a/*:push"), ()),
        (token("root", "repository:x/*:pull", "repository:y/*:pull,push"), ("x/", "y/")),
    ],
)
def test_pull_prefixes_bound_what_may_be_pulled(
    authz: PolicyAuthorizer, identity: Identity, prefixes: tuple[str, ...] | None
) -> None:
    assert authz.pull_prefixes(identity) == prefixes
    if prefixes is not None:
        may_pull = authz.pull_filter(identity)
        for name in ("public/a", "team-a/app", "x/y", "y/z", "zzz/q"):
            if may_pull(name):
                assert name.startswith(prefixes)
