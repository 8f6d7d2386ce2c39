"""`labhub token add|list|revoke`: API tokens for trainers, learners and viewers; a new one is shown once."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hub.access.registry import Registry
from hub.cli.options import configure, lab_command

if TYPE_CHECKING:
    from hub.cli.options import Subparsers


def register(sub: Subparsers) -> None:
    token = sub.add_parser("token", help="API tokens (trainer, learner, viewer)")
    token_sub = token.add_subparsers(required=True, metavar="ACTION")
    add = lab_command(token_sub, "add", "a new token; prints it once", cmd_token, action="add")
    add.add_argument("--role", required=True, choices=("trainer", "learner", "viewer"))
    add.add_argument("--scope", required=True, help="trainer/viewer: a cohort or '*'; learner: cohort/learner")
    add.add_argument("--label", default="")
    lab_command(token_sub, "list", "tokens (never their secrets)", cmd_token, action="list")
    lab_command(token_sub, "revoke", "revoke a token by its id", cmd_token, action="revoke").add_argument("id")


def cmd_token(args: argparse.Namespace) -> int:
    registry = Registry(configure(args).registry_path)
    try:
        if args.action == "list":
            for t in registry.tokens():
                print(f"{t.id}  {t.role:8} {t.scope:24} {'REVOKED' if t.revoked else 'active':8} {t.label}")
        elif args.action == "add":
            token, secret = registry.add_token(args.role, args.scope, args.label)
            print(f"token {token.id} ({token.role}, {token.scope}) — shown once, keep it safe:\n{secret}")
        else:
            registry.revoke_token(args.id)
            print(f"token {args.id} revoked")
    finally:
        registry.close()
    return 0
