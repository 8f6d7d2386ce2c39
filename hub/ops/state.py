"""The lab's state directory: private to this account, and the API tokens `labhub up` keeps in it."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from hub.access.records import token_digest
from hub.access.registry import Registry
from hub.config import DeviceConfig, LabConfig
from hub.credentials import read_secret, secret_path, write_secret

log = logging.getLogger("labhub")

TRAINER_TOKEN = "api-trainer"  # in <state_dir>/secrets: the lab's all-cohort trainer token
DEMO_APP_TOKEN = "api-demo-app"  # the demo phone app's learner token


def private_state_dir(state_dir: Path) -> None:
    """The state dir holds the registry, secrets, spool and reports: nobody else may list or read it. As root,
    others keep only the right to pass through (0711), so the broker's unprivileged user reaches its folder."""
    mode = 0o711 if os.geteuid() == 0 else 0o700
    state_dir.mkdir(parents=True, exist_ok=True, mode=mode)
    if state_dir.stat().st_mode & 0o777 != mode:
        state_dir.chmod(mode)


def lab_tokens(cfg: LabConfig, simulated: Sequence[DeviceConfig]) -> None:
    """`labhub up` keeps an all-cohort trainer token (and one for the demo phone app) in its state dir, made
    once and reused while they are valid; only their digests are in the registry."""
    registry = Registry(cfg.registry_path)
    try:
        wanted = [(TRAINER_TOKEN, "trainer", "*", "labhub up: the lab's trainer")]
        arms = [d.ref for d in simulated if d.kind == "arm"]
        if arms:
            wanted.append((DEMO_APP_TOKEN, "learner", f"{arms[0].cohort}/{arms[0].learner}", "labhub up: demo app"))
        for name, role, scope, label in wanted:
            path = secret_path(cfg.state_dir, name)
            secret = read_secret(path)
            token = registry.token_for(token_digest(secret)) if secret else None
            if token is None or token.scope != scope:
                if token is not None:
                    registry.revoke_token(token.id)  # replaced: the old one must not stay valid
                _, secret = registry.add_token(role, scope, label)
                write_secret(path, secret)
                log.info("new %s token for %s in %s", role, scope, path)
    finally:
        registry.close()
