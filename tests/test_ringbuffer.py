"""RingBuffer: bounded by item count and by bytes, eviction counters, lookups, since()."""

from __future__ import annotations

import pytest

from devconsole.model import ControlFrame, Item, Message, Opcode
from devconsole.ringbuffer import ITEM_OVERHEAD, RingBuffer


def msg(seq: int, conn: str = "c1", payload: bytes = b"x") -> Message:
    return Message(seq, conn, float(seq), "client", Opcode.TEXT, payload, len(payload), 0)


def ping(seq: int, conn: str = "c1") -> ControlFrame:
    return ControlFrame(seq, conn, float(seq), "server", Opcode.PING, b"", 2)


def seqs(items: object) -> list[int]:
    return [it.seq for it in items]  # type: ignore[attr-defined]


def test_rejects_nonsensical_bounds() -> None:
    with pytest.raises(ValueError):
        RingBuffer(max_items=0)
    with pytest.raises(ValueError):
        RingBuffer(max_bytes=0)


def test_bounded_by_count_keeps_the_newest() -> None:
    rb = RingBuffer(max_items=3)
    evicted: list[Item] = []
    for s in range(1, 8):
        evicted.extend(rb.append(msg(s)))
    assert len(rb) == 3
    assert seqs(rb) == [5, 6, 7]
    assert seqs(evicted) == [1, 2, 3, 4]
    assert rb.evicted_items == 4
    assert rb.appended == 7
    assert (rb.first_seq, rb.last_seq) == (5, 7)


def test_bounded_by_bytes_including_per_item_overhead() -> None:
    # Room for two 100-byte payloads with their overhead, not three.
    rb = RingBuffer(max_items=1000, max_bytes=2 * (100 + ITEM_OVERHEAD) + 50)
    for s in range(1, 4):
        rb.append(msg(s, payload=b"a" * 100))
    assert seqs(rb) == [2, 3]
    assert rb.bytes == 2 * (100 + ITEM_OVERHEAD)
    assert rb.bytes <= rb.max_bytes
    assert rb.evicted_items == 1
    assert rb.evicted_bytes == 100 + ITEM_OVERHEAD


def test_a_flood_of_empty_pings_is_bounded_by_bytes_too() -> None:
    rb = RingBuffer(max_items=1_000_000, max_bytes=10 * ITEM_OVERHEAD)
    for s in range(1, 1001):
        rb.append(ping(s))
    assert len(rb) == 10
    assert rb.bytes == 10 * ITEM_OVERHEAD
    assert rb.evicted_items == 990


def test_one_big_item_evicts_several_small_ones() -> None:
    rb = RingBuffer(max_items=100, max_bytes=10_000)
    for s in range(1, 11):
        rb.append(msg(s, payload=b"s" * 10))
    evicted = rb.append(msg(11, payload=b"B" * 9_000))
    assert len(evicted) > 1
    assert rb.bytes <= 10_000
    assert rb.last_seq == 11
    assert rb.evicted_bytes == sum(len(e.payload) + ITEM_OVERHEAD for e in evicted)


def test_an_item_larger_than_the_byte_budget_is_still_kept_alone() -> None:
    rb = RingBuffer(max_items=10, max_bytes=100)
    rb.append(msg(1))
    rb.append(msg(2, payload=b"z" * 500))
    assert seqs(rb) == [2]


def test_lookup_by_seq_and_contains_forget_evicted_items() -> None:
    rb = RingBuffer(max_items=2)
    for s in (10, 20, 30):
        rb.append(msg(s))
    assert rb.get(10) is None
    assert 10 not in rb
    got = rb.get(20)
    assert got is not None and got.seq == 20
    assert 30 in rb
    assert rb.get(25) is None


def test_seq_must_increase() -> None:
    rb = RingBuffer()
    rb.append(msg(5))
    with pytest.raises(ValueError):
        rb.append(msg(5))
    with pytest.raises(ValueError):
        rb.append(msg(4))
    # the refused item left no trace
    assert seqs(rb) == [5]
    assert rb.appended == 1
    assert rb.bytes == 1 + ITEM_OVERHEAD


def test_gaps_in_seq_are_allowed() -> None:
    rb = RingBuffer()
    for s in (1, 2, 100, 1000):
        rb.append(msg(s))
    assert seqs(rb) == [1, 2, 100, 1000]
    assert seqs(rb.since(2)) == [100, 1000]
    assert seqs(rb.since(50)) == [100, 1000]


def test_per_connection_index_survives_evictions() -> None:
    rb = RingBuffer(max_items=4)
    order = ["a", "b", "a", "a", "b", "c", "a"]
    for s, conn in enumerate(order, start=1):
        rb.append(msg(s, conn=conn))
    # kept: seqs 4..7 -> a, b, c, a
    assert seqs(rb) == [4, 5, 6, 7]
    assert seqs(rb.conn_items("a")) == [4, 7]
    assert seqs(rb.conn_items("b")) == [5]
    assert seqs(rb.conn_items("c")) == [6]
    assert list(rb.conn_items("nope")) == []
    # a connection whose items were all evicted disappears from the index
    for s in range(8, 12):
        rb.append(msg(s, conn="d"))
    assert list(rb.conn_items("a")) == []
    assert list(rb.conn_items("b")) == []
    assert seqs(rb.conn_items("d")) == [8, 9, 10, 11]


def test_since_returns_newer_items_oldest_first_and_per_connection() -> None:
    rb = RingBuffer()
    for s, conn in enumerate(["a", "b", "a", "b", "a"], start=1):
        rb.append(msg(s, conn=conn))
    assert seqs(rb.since(0)) == [1, 2, 3, 4, 5]
    assert seqs(rb.since(3)) == [4, 5]
    assert rb.since(5) == []
    assert seqs(rb.since(1, conn="a")) == [3, 5]
    assert seqs(rb.since(0, conn="b")) == [2, 4]
    assert rb.since(0, conn="zzz") == []


def test_since_after_evictions_returns_only_what_is_left() -> None:
    rb = RingBuffer(max_items=3)
    for s in range(1, 11):
        rb.append(msg(s))
    assert seqs(rb.since(2)) == [8, 9, 10]


def test_clear_empties_everything_but_keeps_the_history_counters() -> None:
    rb = RingBuffer(max_items=2)
    for s in range(1, 5):
        rb.append(msg(s))
    rb.clear()
    assert len(rb) == 0
    assert rb.bytes == 0
    assert rb.first_seq is None and rb.last_seq is None
    assert rb.get(4) is None
    assert list(rb.conn_items("c1")) == []
    assert rb.evicted_items == 2
    rb.append(msg(5))
    assert seqs(rb) == [5]


def test_accounting_stays_exact_through_a_long_mixed_run() -> None:
    rb = RingBuffer(max_items=50, max_bytes=20_000)
    for s in range(1, 2001):
        payload = b"p" * (s * 37 % 700)
        rb.append(msg(s, conn=f"c{s % 7}", payload=payload) if s % 3 else ping(s, f"c{s % 7}"))
        assert len(rb) <= 50
        assert rb.bytes <= 20_000
    assert rb.bytes == sum(len(it.payload) + ITEM_OVERHEAD for it in rb)
    assert rb.evicted_items + len(rb) == 2000
    assert sum(len(rb.conn_items(f"c{i}")) for i in range(7)) == len(rb)
    assert all(rb.get(it.seq) is it for it in rb)
