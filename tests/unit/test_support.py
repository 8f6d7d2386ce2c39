"""The test helpers themselves (tests/support.py), where a wrong helper would make other tests pass wrongly."""

from __future__ import annotations

import time

from tests.support import stable


async def test_a_wait_for_a_count_sees_a_late_duplicate() -> None:
    """The helper the integration tests count with (count_when_stable): it returns once the count has stayed
    put, so a duplicate that lands after the target was first reached is in the value compared (a wait that
    stopped at the first match would return 3 here)."""
    started = time.monotonic()

    def read() -> int:
        elapsed = time.monotonic() - started
        return 0 if elapsed < 0.1 else 3 if elapsed < 0.4 else 4

    assert await stable(read, lambda n: n >= 3, quiet=0.5) == 4
