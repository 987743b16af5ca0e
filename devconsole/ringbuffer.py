"""A ring buffer of stream items, bounded by item count and by payload bytes.

Core module: no I/O. Append is O(1) (amortised), lookup by seq is O(1), and the
per-connection index lets a view of one connection iterate only its own items.
Items must be appended with strictly increasing ``seq``; gaps are allowed (a late
attach may start after evicted items).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from devconsole.model import Item

# Per-item memory besides the payload (the Message object, its bytes header, deque and
# dict slots), added to the payload size when accounting bytes so that the byte bound is
# real and a flood of empty pings is bounded too. Measured: 434 B of RSS per buffered
# item with 110 B payloads (bench/filter_scan.py, 1,000,000 items).
ITEM_OVERHEAD = 330


class RingBuffer:
    def __init__(self, max_items: int = 100_000, max_bytes: int = 256 << 20) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: deque[Item] = deque()
        self._by_seq: dict[int, Item] = {}
        self._by_conn: dict[str, deque[Item]] = {}
        self.bytes = 0  # accounted bytes held now
        self.evicted_items = 0
        self.evicted_bytes = 0
        self.appended = 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items)

    def __contains__(self, seq: object) -> bool:
        return seq in self._by_seq

    @property
    def first_seq(self) -> int | None:
        return self._items[0].seq if self._items else None

    @property
    def last_seq(self) -> int | None:
        return self._items[-1].seq if self._items else None

    def append(self, item: Item) -> list[Item]:
        """Add ``item``; returns the items evicted to make room (oldest first)."""
        items = self._items
        if items and item.seq <= items[-1].seq:
            raise ValueError(f"seq {item.seq} is not after {items[-1].seq}")
        cost = len(item.payload) + ITEM_OVERHEAD
        items.append(item)
        self._by_seq[item.seq] = item
        conn_items = self._by_conn.get(item.conn)
        if conn_items is None:
            conn_items = self._by_conn[item.conn] = deque()
        conn_items.append(item)
        self.bytes += cost
        self.appended += 1
        evicted: list[Item] = []
        while len(items) > self.max_items or (self.bytes > self.max_bytes and len(items) > 1):
            evicted.append(self._evict_one())
        return evicted

    def _evict_one(self) -> Item:
        old = self._items.popleft()
        del self._by_seq[old.seq]
        conn_items = self._by_conn[old.conn]
        conn_items.popleft()  # the oldest item overall is the oldest of its connection
        if not conn_items:
            del self._by_conn[old.conn]
        cost = len(old.payload) + ITEM_OVERHEAD
        self.bytes -= cost
        self.evicted_items += 1
        self.evicted_bytes += cost
        return old

    def get(self, seq: int) -> Item | None:
        return self._by_seq.get(seq)

    def conn_items(self, conn: str) -> deque[Item]:
        """The buffered items of one connection, oldest first (do not mutate)."""
        return self._by_conn.get(conn) or deque()

    def since(self, seq: int, conn: str | None = None) -> list[Item]:
        """Items with seq > ``seq`` (of ``conn`` if given), oldest first.

        Cost is proportional to the number of items returned: it walks from the newest end.
        """
        source = self._items if conn is None else self._by_conn.get(conn)
        if not source:
            return []
        out: list[Item] = []
        for item in reversed(source):
            if item.seq <= seq:
                break
            out.append(item)
        out.reverse()
        return out

    def clear(self) -> None:
        self._items.clear()
        self._by_seq.clear()
        self._by_conn.clear()
        self.bytes = 0
