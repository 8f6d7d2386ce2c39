"""The API's access policy (hub.access.policy) as tables: every action × place against every kind of token.

Roles and scopes as the README's "Accounts and access" states them: a trainer manages and drives their cohort (or
every cohort with scope "*"), a viewer reads, a learner ("cohort/learner") reads and drives only their own devices;
lab-wide views need scope "*"; a role the policy does not know reads within its scope and does nothing else.
"""

from __future__ import annotations

import pytest

from devices.topics import DeviceRef
from hub.access.policy import OTHERS, POLICY, Action, Place, allows, listing, may_grant
from hub.access.records import Token

TRAINER_ALL = Token("t0", "trainer", "*", "head trainer")
TRAINER_DEMO = Token("t1", "trainer", "demo", "demo trainer")
VIEWER_ALL = Token("v0", "viewer", "*", "hall screen")
VIEWER_DEMO = Token("v1", "viewer", "demo", "demo screen")
LEARNER_ANA = Token("l1", "learner", "demo/ana", "ana's phone")
LEARNER_STAR = Token("l2", "learner", "*", "a learner token with a wildcard scope")
STRANGER = Token("x1", "auditor", "*", "a role the policy does not know")
EVERYONE = (TRAINER_ALL, TRAINER_DEMO, VIEWER_ALL, VIEWER_DEMO, LEARNER_ANA, LEARNER_STAR, STRANGER)

ANA = Place.of(DeviceRef("demo", "ana", "arm1"))
BOB = Place.of(DeviceRef("demo", "bob", "arm1"))
OTHER_ANA = Place.of(DeviceRef("other", "ana", "arm1"))  # same learner name, another cohort
DEMO, OTHER = Place("demo"), Place("other")

# (action, where, the tokens allowed): every other token of EVERYONE is refused.
GRID: list[tuple[Action, Place | None, set[Token]]] = [
    (Action.READ, ANA, {TRAINER_ALL, TRAINER_DEMO, VIEWER_ALL, VIEWER_DEMO, LEARNER_ANA, STRANGER}),
    (Action.READ, BOB, {TRAINER_ALL, TRAINER_DEMO, VIEWER_ALL, VIEWER_DEMO, STRANGER}),
    (Action.READ, OTHER_ANA, {TRAINER_ALL, VIEWER_ALL, STRANGER}),
    (Action.READ, DEMO, {TRAINER_ALL, TRAINER_DEMO, VIEWER_ALL, VIEWER_DEMO, STRANGER}),  # a learner: never a cohort
    (Action.READ, None, set()),
    (Action.COMMAND, ANA, {TRAINER_ALL, TRAINER_DEMO, LEARNER_ANA}),
    (Action.COMMAND, BOB, {TRAINER_ALL, TRAINER_DEMO}),
    (Action.COMMAND, OTHER_ANA, {TRAINER_ALL}),
    (Action.COMMAND, None, set()),
    (Action.SHOWCASE, ANA, {TRAINER_ALL, TRAINER_DEMO, LEARNER_ANA}),  # a learner's own project page
    (Action.SHOWCASE, BOB, {TRAINER_ALL, TRAINER_DEMO}),
    (Action.SHOWCASE, OTHER_ANA, {TRAINER_ALL}),
    (Action.SHOWCASE, None, set()),
    (Action.WATCH_COHORT, DEMO, {TRAINER_ALL, TRAINER_DEMO, VIEWER_ALL, VIEWER_DEMO, STRANGER}),
    (Action.WATCH_COHORT, OTHER, {TRAINER_ALL, VIEWER_ALL, STRANGER}),
    (Action.MANAGE, DEMO, {TRAINER_ALL, TRAINER_DEMO}),
    (Action.MANAGE, ANA, {TRAINER_ALL, TRAINER_DEMO}),
    (Action.MANAGE, OTHER, {TRAINER_ALL}),
    (Action.MANAGE, Place("*"), {TRAINER_ALL}),  # a scope of "*" is no cohort a one-cohort trainer has
    (Action.ADMINISTER, None, {TRAINER_ALL, TRAINER_DEMO}),
    (Action.GRANT_TRAINER, None, {TRAINER_ALL}),
    (Action.LAB_WIDE, None, {TRAINER_ALL, VIEWER_ALL}),
    (Action.HEALTH_DETAILS, None, {TRAINER_ALL, TRAINER_DEMO, VIEWER_ALL, VIEWER_DEMO}),
]


@pytest.mark.parametrize(("action", "where", "allowed"), GRID)
def test_who_may_do_what_where(action: Action, where: Place | None, allowed: set[Token]) -> None:
    verdicts = {token.label: allows(token, action, where) for token in EVERYONE}
    assert verdicts == {token.label: token in allowed for token in EVERYONE}


def test_every_action_is_in_the_grid_and_has_a_row_for_unknown_roles() -> None:
    assert {action for action, _, _ in GRID} == set(Action) == set(POLICY)
    assert all(OTHERS in rules for rules in POLICY.values())


@pytest.mark.parametrize(
    ("token", "role", "scope", "expected"),
    [
        (TRAINER_ALL, "trainer", "demo", True),
        (TRAINER_ALL, "trainer", "*", True),
        (TRAINER_ALL, "viewer", "*", True),
        (TRAINER_ALL, "learner", "other/bob", True),
        (TRAINER_ALL, "viewer", "*/x", True),
        (TRAINER_DEMO, "trainer", "demo", False),  # only an all-cohort trainer makes trainers
        (TRAINER_DEMO, "viewer", "demo", True),
        (TRAINER_DEMO, "learner", "demo/ana", True),
        (TRAINER_DEMO, "learner", "demo", True),  # the cohort part of a bare cohort is the cohort
        (TRAINER_DEMO, "learner", "demo/ana/x", True),  # the cohort is what comes before the first "/"
        (TRAINER_DEMO, "learner", "other/demo/x", False),
        (TRAINER_DEMO, "learner", "other/ana", False),
        (TRAINER_DEMO, "viewer", "other", False),
        (TRAINER_DEMO, "viewer", "*", False),  # a cohort trainer cannot hand out a lab-wide viewer
        (TRAINER_DEMO, "viewer", "demox", False),
        (VIEWER_ALL, "viewer", "demo", False),
        (VIEWER_ALL, "learner", "demo/ana", False),
        (LEARNER_ANA, "learner", "demo/ana", False),
        (STRANGER, "viewer", "demo", False),
    ],
)
def test_who_grants_which_tokens(token: Token, role: str, scope: str, expected: bool) -> None:
    assert may_grant(token, role, scope) is expected


@pytest.mark.parametrize(
    ("token", "cohort", "learner", "shown"),
    [
        (LEARNER_ANA, None, None, ("demo", "ana")),  # a learner sees their own, whatever they ask
        (LEARNER_ANA, "other", "bob", ("demo", "ana")),
        (TRAINER_ALL, None, None, (None, None)),
        (TRAINER_ALL, "other", "bob", ("other", "bob")),
        (VIEWER_ALL, "demo", None, ("demo", None)),
        (TRAINER_DEMO, None, None, ("demo", None)),  # a one-cohort token: its cohort
        (TRAINER_DEMO, "demo", "bob", ("demo", "bob")),
        (TRAINER_DEMO, None, "bob", ("demo", "bob")),
        (TRAINER_DEMO, "other", None, None),  # outside its scope: refused
        (VIEWER_DEMO, "other", "ana", None),
        (STRANGER, "other", None, ("other", None)),
        (Token("l3", "learner", "demo/ana/x", "a learner scope with two slashes"), None, None, ("demo", "ana/x")),
    ],
)
def test_listings_are_narrowed_to_the_tokens_scope(
    token: Token, cohort: str | None, learner: str | None, shown: tuple[str | None, str | None] | None
) -> None:
    assert listing(token, cohort, learner) == shown
