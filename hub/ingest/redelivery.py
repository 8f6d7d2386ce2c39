"""What the spool remembers to recognise a broker's redelivery: the payload digests of its last records."""

from __future__ import annotations

from collections import deque

RECENT = 200_000  # enough to recognise what a broker redelivers after a crash


class RecentDigests:
    """(device key, payload digest) → position of the newest such record, for the last RECENT records."""

    def __init__(self, size: int = RECENT) -> None:
        self._size = size
        self._positions: dict[tuple[str, int], int] = {}
        self._order: deque[tuple[tuple[str, int], int]] = deque()

    def remember(self, key: str, digest: int, position: int) -> None:
        if not digest:
            return
        self._positions[(key, digest)] = position
        self._order.append(((key, digest), position))
        if len(self._order) > self._size:
            old, pos = self._order.popleft()
            if self._positions.get(old) == pos:
                del self._positions[old]

    def __contains__(self, item: tuple[str, int]) -> bool:
        return item in self._positions
