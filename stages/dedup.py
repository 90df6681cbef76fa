"""The event ids ingest has accepted recently: what makes a re-sent event a duplicate.

An id is a duplicate when it was accepted less than `window_s` ago and is still
remembered; at most `max_ids` are remembered, the oldest forgotten first.

The ids are one set, for the membership test every event pays, plus the order they were
accepted in: one chunk per batch, stamped with the batch's `now` (every id of a batch is
accepted at the same `now`). `expire(now)`, called before each batch, drops the chunks
past the window, so during a batch membership alone is the answer; past `max_ids` the
oldest ids are forgotten as the newest are remembered.

A set lookup is one probe of one table, where a dict of id -> time costs a probe of its
index and one of its entries; at hundreds of thousands of ids each is a cache miss, and
this is the per-event cost of dedup (docs/benchmarks.md).
"""

from __future__ import annotations

from collections import deque


class RecentIds:
    """Accepted event ids, with their acceptance order in per-batch chunks."""

    __slots__ = ("chunks", "ids", "max_ids", "window_s")

    def __init__(self, window_s: float, max_ids: int) -> None:
        self.window_s = window_s
        self.max_ids = max(1, max_ids)
        self.ids: set[str] = set()
        # (accepted at, ids in acceptance order), oldest first; the last is being filled
        self.chunks: deque[tuple[float, list[str]]] = deque()

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, event_id: str) -> bool:
        """Accepted within the window, as of the last `expire`."""
        return event_id in self.ids

    def chunk(self, now: float) -> list[str]:
        """The list that ids accepted at `now` are appended to (with `ids.add`)."""
        chunks = self.chunks
        if chunks and chunks[-1][0] == now:
            return chunks[-1][1]
        accepted: list[str] = []
        chunks.append((now, accepted))
        return accepted

    def remember(self, event_id: str, now: float) -> None:
        """Record `event_id` as accepted at `now`, within the bound on remembered ids."""
        ids = self.ids
        ids.add(event_id)
        self.chunk(now).append(event_id)
        if len(ids) > self.max_ids:
            self.trim()

    def trim(self) -> None:
        """Forget the oldest ids: those beyond `max_ids` and 1/16 more, so this runs once
        per that many acceptances."""
        self._forget(len(self.ids) - self.max_ids + self.max_ids // 16)

    def trim_added(self, added: int) -> None:
        """After the newest `added` ids went in at once (`ids.update`, the chunk's
        `extend`): forget what remembering them one at a time would have forgotten. Each
        `trim` then ran when the count passed `max_ids` and forgot `max_ids // 16 + 1`,
        the oldest first, so together they forgot that many times the number of passes."""
        over = len(self.ids) - self.max_ids
        if over > 0:
            step = self.max_ids // 16 + 1
            self._forget((1 + (over - 1) // step) * step)

    def _forget(self, excess: int) -> None:
        """Forget the `excess` oldest ids. The newest chunk is cut, never dropped: ids are
        being appended to it."""
        ids, chunks = self.ids, self.chunks
        while excess > 0:
            accepted = chunks[0][1]
            if len(accepted) <= excess and len(chunks) > 1:
                chunks.popleft()
                ids.difference_update(accepted)
                excess -= len(accepted)
            else:
                ids.difference_update(accepted[:excess])
                del accepted[:excess]
                excess = 0

    def expire(self, now: float) -> None:
        """Forget the ids accepted a whole window ago."""
        ids, chunks = self.ids, self.chunks
        horizon = now - self.window_s
        while chunks and chunks[0][0] <= horizon:
            ids.difference_update(chunks.popleft()[1])
