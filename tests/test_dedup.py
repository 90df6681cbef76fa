"""RecentIds: the exact dedup window and the bounded memory of accepted ids."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from stages.dedup import RecentIds


def test_an_id_is_a_duplicate_only_within_the_window():
    ids = RecentIds(window_s=10, max_ids=100)
    ids.remember("a", 100.0)
    ids.expire(109.9)
    assert "a" in ids and "b" not in ids
    ids.expire(110.0)
    assert "a" not in ids and len(ids) == 0


def test_ids_are_forgotten_in_acceptance_order_beyond_max_ids():
    ids = RecentIds(window_s=1e9, max_ids=3)
    for now, batch in enumerate(["ab", "cd", "e"]):
        for event_id in batch:
            ids.remember(event_id, float(now))
            assert len(ids) <= 3
    assert [e for e in "abcde" if e in ids] == ["c", "d", "e"]


def test_a_batch_bigger_than_max_ids_keeps_its_newest():
    ids = RecentIds(window_s=1e9, max_ids=32)
    for i in range(100):
        ids.remember(str(i), 1.0)
        assert len(ids) <= 32
    assert all(str(i) in ids for i in range(70, 100)) and "60" not in ids
    assert sum(len(chunk) for _, chunk in ids.chunks) == len(ids)


def test_an_id_accepted_again_after_the_window_counts_from_its_new_acceptance():
    ids = RecentIds(window_s=10, max_ids=100)
    ids.remember("a", 100.0)
    ids.remember("b", 105.0)
    ids.expire(111.0)
    assert "a" not in ids
    ids.remember("a", 111.0)
    ids.expire(116.0)
    assert "a" in ids and "b" not in ids
    ids.expire(121.0)
    assert len(ids) == 0 and not ids.chunks


def test_matches_an_exact_reference():
    """Against a dict of every acceptance, with batches of one `now` each: the same
    answer for every id, while the bound on memory is not reached."""
    rng = random.Random(7)
    ids, reference = RecentIds(window_s=50, max_ids=10_000), {}
    now = 0.0
    for _ in range(2_000):
        now += rng.random() * 3
        ids.expire(now)
        for _ in range(rng.randrange(10)):
            event_id = str(rng.randrange(400))
            expected = event_id in reference and now - reference[event_id] < 50
            assert (event_id in ids) == expected
            if not expected:
                ids.remember(event_id, now)
                reference[event_id] = now


def test_memory_is_bounded_by_max_ids_across_batches():
    ids = RecentIds(window_s=1e9, max_ids=1000)
    for batch in range(100):
        ids.expire(float(batch))
        for i in range(37):
            ids.remember(f"{batch}-{i}", float(batch))
            assert len(ids) <= 1000
        assert sum(len(chunk) for _, chunk in ids.chunks) == len(ids)
    assert all(f"99-{i}" in ids for i in range(37)) and "0-0" not in ids


@given(
    max_ids=st.integers(1, 40),
    batches=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 90)), min_size=1, max_size=8),
)
def test_ids_added_at_once_are_trimmed_as_if_remembered_one_at_a_time(max_ids, batches):
    """`trim_added` (ingest's column path, which adds a run's ids in one `update`) leaves
    the ids and their order exactly as `remember` for each would."""
    one, bulk = RecentIds(60.0, max_ids), RecentIds(60.0, max_ids)
    n, now = 0, 1000.0
    for step, size in batches:
        now += step  # batches share a `now` or come later, as the runner's do
        ids = [f"e{n + i}" for i in range(size)]
        n += size
        for event_id in ids:
            one.remember(event_id, now)
        if ids:  # as ingest's column path: never for no events
            bulk.ids.update(ids)
            bulk.chunk(now).extend(ids)
            bulk.trim_added(size)
        assert bulk.ids == one.ids
        assert [c for c in bulk.chunks if c[1]] == [c for c in one.chunks if c[1]]
