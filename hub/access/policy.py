"""Who may do what through the API: one table of roles × actions, each granted within a reach. Pure.

Roles: a *trainer* manages and drives the devices of their cohort (or of every cohort, scope "*"); a *viewer*
(a classroom screen) reads them; a *learner* (or their phone app, scope "cohort/learner") reads and drives only
their own devices. Lab-wide views (counters, metrics) need a scope of "*". A role the table does not name gets
the `OTHERS` row: it reads within its scope and does nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from devices.topics import DeviceRef
from hub.access.records import Token


class Action(Enum):
    READ = "read"  # a device: its state, readings, commands and live view; a learner's demo sessions
    COMMAND = "command"  # a device: send it commands
    WATCH_COHORT = "watch a cohort"  # a live view of every device of a cohort, those to come included
    MANAGE = "manage"  # a cohort: registry changes, demo sessions, its tokens (made, listed, revoked)
    ADMINISTER = "administer"  # the registry's and the tokens' lists (their rows: MANAGE on each one's cohort)
    GRANT_TRAINER = "grant trainer tokens"  # make or revoke a trainer's token
    LAB_WIDE = "lab-wide views"  # counters and metrics of the whole lab
    HEALTH_DETAILS = "health details"  # why the hub is degraded (the broker's and the database's error texts)
    SHOWCASE = "publish a showcase"  # a learner's project page: publish or revoke (approving it is MANAGE)


class Reach(Enum):
    NOWHERE = "nowhere"
    ANYWHERE = "anywhere"  # the role is enough
    LAB = "lab"  # only a token of every cohort (scope "*")
    COHORT = "cohort"  # the token's cohort, or every cohort for scope "*"
    OWN = "own"  # a learner's own corner: scope "cohort/learner"


OTHERS = ""  # the row for any role the table does not name

POLICY: Mapping[Action, Mapping[str, Reach]] = {
    Action.READ: {"learner": Reach.OWN, OTHERS: Reach.COHORT},
    Action.COMMAND: {"learner": Reach.OWN, "trainer": Reach.COHORT, OTHERS: Reach.NOWHERE},
    Action.WATCH_COHORT: {"learner": Reach.NOWHERE, OTHERS: Reach.COHORT},
    Action.MANAGE: {"trainer": Reach.COHORT, OTHERS: Reach.NOWHERE},
    Action.ADMINISTER: {"trainer": Reach.ANYWHERE, OTHERS: Reach.NOWHERE},
    Action.GRANT_TRAINER: {"trainer": Reach.LAB, OTHERS: Reach.NOWHERE},
    Action.LAB_WIDE: {"trainer": Reach.LAB, "viewer": Reach.LAB, OTHERS: Reach.NOWHERE},
    Action.HEALTH_DETAILS: {"trainer": Reach.ANYWHERE, "viewer": Reach.ANYWHERE, OTHERS: Reach.NOWHERE},
    Action.SHOWCASE: {"learner": Reach.OWN, "trainer": Reach.COHORT, OTHERS: Reach.NOWHERE},
}


@dataclass(frozen=True, slots=True)
class Place:
    """Where an action lands: a cohort, or a learner's corner of it (their devices, their demo sessions)."""

    cohort: str
    learner: str | None = None

    @classmethod
    def of(cls, ref: DeviceRef) -> Place:
        return cls(ref.cohort, ref.learner)

    @classmethod
    def of_scope(cls, scope: str) -> Place:
        """The cohort a token's scope lies in ("demo/ana" and "demo": demo)."""
        return cls(scope.split("/", 1)[0])


def allows(token: Token, action: Action, where: Place | None = None) -> bool:
    """May `token` do `action` at `where` (None: an action that lands nowhere in particular)?"""
    rules = POLICY[action]
    reach = rules.get(token.role, rules[OTHERS])
    if reach is Reach.ANYWHERE:
        return True
    if reach is Reach.LAB:
        return token.scope == "*"
    if where is None:
        return False
    if reach is Reach.COHORT:
        return token.scope in ("*", where.cohort)
    if reach is Reach.OWN:
        return where.learner is not None and token.scope == f"{where.cohort}/{where.learner}"
    return False


def may_grant(token: Token, role: str, scope: str) -> bool:
    """Make (or revoke) a token of `role` for `scope`: a trainer does it in their cohorts; trainers' tokens only an
    all-cohort trainer."""
    if role == "trainer":
        return allows(token, Action.GRANT_TRAINER)
    return allows(token, Action.MANAGE, Place.of_scope(scope))


def listing(token: Token, cohort: str | None, learner: str | None = None) -> tuple[str | None, str | None] | None:
    """What a listing asked for (`cohort`, `learner`; None: all) may show, narrowed to the token's scope: a learner
    their own, a token of one cohort that cohort. None: the cohort asked for is outside the token's scope."""
    if token.role == "learner":
        own_cohort, own_learner = token.scope.split("/", 1)
        return own_cohort, own_learner
    if token.scope == "*":
        return cohort, learner
    if cohort not in (None, token.scope):
        return None
    return token.scope, learner
