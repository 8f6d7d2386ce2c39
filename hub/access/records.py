"""What the registry holds, as frozen records, and the checks on the names and scopes a trainer types. Pure.

A learner is `cohort/learner` and a device `cohort/learner/device`, each level a topic segment; a token's scope
is a cohort or "*" for trainers and viewers, `cohort/learner` for a learner. Every refusal is a RegistryError.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from devices.arm import DEFAULT_PROFILE
from devices.kinds import check_kind
from devices.topics import DeviceRef, TopicError, check_segment

ROLES = ("trainer", "learner", "viewer")


class RegistryError(ValueError):
    """A registry change that cannot be made as asked (unknown device, bad name, duplicate…)."""


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    ref: DeviceRef
    kind: str
    profile: str | None
    description: str
    enabled: bool
    from_config: bool
    created_ns: int = 0  # when it was registered: older data of that name belongs to someone else

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.ref.key,
            "kind": self.kind,
            "profile": self.profile,
            "description": self.description,
            "enabled": self.enabled,
            "username": self.ref.key,
        }


@dataclass(frozen=True, slots=True)
class LearnerRecord:
    cohort: str
    learner: str
    enabled: bool
    has_account: bool

    @property
    def key(self) -> str:
        return learner_key(self.cohort, self.learner)


@dataclass(frozen=True, slots=True)
class Token:
    """Who an API token speaks for. `scope`: trainer/viewer → a cohort or "*"; learner → "cohort/learner"."""

    id: str
    role: str
    scope: str
    label: str
    revoked: bool = False

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "role": self.role, "scope": self.scope, "label": self.label, "revoked": self.revoked}


@dataclass(frozen=True, slots=True)
class DemoSession:
    """A learner's demonstration: the window that is graded, and the trainer who ran it."""

    id: str
    cohort: str
    learner: str
    trainer: str
    started_ns: int
    stopped_ns: int | None
    devices: tuple[tuple[str, str], ...] | None = None  # (device id, kind) when it started: what is graded

    @property
    def running(self) -> bool:
        return self.stopped_ns is None

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "learner": learner_key(self.cohort, self.learner),
            "trainer": self.trainer,
            "started_ns": self.started_ns,
            "stopped_ns": self.stopped_ns,
            "running": self.running,
            "devices": [key for key, _ in self.devices or ()],
        }


def learner_key(cohort: str, learner: str) -> str:
    """A learner's id: their MQTT username and their tokens' scope (a device's is `DeviceRef.key`)."""
    return f"{cohort}/{learner}"


def token_digest(token: str) -> str:
    """Tokens are random 256-bit secrets: a fast hash is enough, a slow one adds nothing."""
    return hashlib.sha256(token.encode()).hexdigest()


def _check_name(name: str) -> None:
    try:
        check_segment(name)
    except TopicError as err:
        raise RegistryError(str(err)) from None


def check_learner(key: str) -> tuple[str, str]:
    """`cohort/learner` → its two names, or RegistryError."""
    parts = key.split("/")
    if len(parts) != 2:
        raise RegistryError(f"learner id {key!r} must be cohort/learner")
    for part in parts:
        _check_name(part)
    return parts[0], parts[1]


def check_device(key: str, kind: str, profile: str | None, profiles: frozenset[str]) -> tuple[DeviceRef, str | None]:
    """Check a device as a trainer names it; arms get the default profile if none is given."""
    try:
        return DeviceRef.parse(key), check_kind(kind, profile, profiles, DEFAULT_PROFILE)
    except ValueError as err:  # TopicError is one too
        raise RegistryError(str(err)) from None


def check_scope(role: str, scope: str) -> str:
    if role not in ROLES:
        raise RegistryError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if role == "learner":
        return learner_key(*check_learner(scope))
    if scope == "*":
        return scope
    try:
        _check_name(scope)
    except RegistryError as err:
        raise RegistryError(f"a {role} token's scope is a cohort or '*': {err}") from None
    return scope
