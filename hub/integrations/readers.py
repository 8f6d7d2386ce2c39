"""Read-only broker accounts for a cohort (a Home Assistant or Node-RED instance): made, listed and removed.

The broker is their only record (`reader.<cohort>.<name>` accounts in the dynamic-security file, which
`labhub backup` keeps): the registry has nothing to say about them. Passwords are returned once.
"""

from __future__ import annotations

from hub.access.accounts import Accounts, Credential
from hub.access.dynsec import reader_account, reader_role, reader_username
from hub.access.records import RegistryError, check_learner
from hub.credentials import new_password
from hub.integrations.homeassistant import cohort_filter


def check_reader(cohort: str, name: str) -> tuple[str, str]:
    """Names as for a learner: each a topic segment."""
    try:
        return check_learner(f"{cohort}/{name}")
    except RegistryError as err:
        raise RegistryError(f"reader {cohort} {name}: {err}") from None


async def add_reader(accounts: Accounts, cohort: str, name: str) -> Credential:
    cohort, name = check_reader(cohort, name)
    password = new_password()
    async with accounts.broker() as sec:
        found = await sec.command("getClient", ignore=["Client not found"], username=reader_username(cohort, name))
        if not found.get("error"):
            raise RegistryError(f"reader {name} of cohort {cohort} exists already (remove it to make a new one)")
        await sec.ensure(reader_account(cohort, name, cohort_filter(cohort)), password)
    return Credential(reader_username(cohort, name), password)


async def remove_reader(accounts: Accounts, cohort: str, name: str) -> None:
    cohort, name = check_reader(cohort, name)
    async with accounts.broker() as sec:
        found = await sec.command("getClient", ignore=["Client not found"], username=reader_username(cohort, name))
        if found.get("error"):
            raise RegistryError(f"no reader {name} in cohort {cohort}")
        await sec.remove(reader_username(cohort, name), reader_role(cohort, name))


async def list_readers(accounts: Accounts, cohort: str | None = None) -> list[str]:
    """Reader account names (`reader.<cohort>.<name>`), of one cohort or all."""
    prefix = reader_username(cohort, "") if cohort else "reader."
    async with accounts.broker() as sec:
        listing = await sec.command("listClients", verbose=False, count=-1, offset=0)
    names = listing.get("data", {}).get("clients", [])
    return sorted(n for n in names if isinstance(n, str) and n.startswith(prefix))
