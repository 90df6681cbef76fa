"""The open windows of one coarser resolution (1 min, 1 h) of one partition, as columns.

Every active series and service has one open window per coarser resolution, and it lives
as long as the resolution (an hour for the 1 h one). As a `Window` per series that was a
window object, a histogram object, an array and an empty list of pending values, about
530 bytes each, twice per series. Here a window is a slot: its counters are one entry in
each of seven `array('q')` columns, its histogram the bytes of its sparse words (`index
<< count_bits | count`, as `SparseHistogram._counts` holds them), and its series the key
of one dict entry: about 230 bytes for a window of a few buckets (docs/memory.md).

Closed windows of the finer resolution are merged in with numpy, for all of a close's
series at once (`merge`), exactly as `Window.merge` would; a window is built as a `Window`
only to be emitted when it closes, or read by early evaluation. A histogram too wide for
the sparse words (dense) stays a `SparseHistogram` object in its slot.

Pure: no I/O, no clocks.
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from histograms.hdr import HdrLayout, SparseHistogram
from stages.bulk_close import _reduce, _tables, flush_all

if TYPE_CHECKING:
    from stages.windows import Window

__all__ = ["CoarseWindows"]

_COLUMNS = ("start", "errors", "client_errors", "late", "sum_us", "max_us", "total", "through")


class CoarseWindows:
    """Open windows of one resolution, one slot per series (see the module docstring)."""

    __slots__ = (
        "_free",
        "_window",
        "client_errors",
        "errors",
        "hdr",
        "hists",
        "late",
        "max_us",
        "slots",
        "start",
        "sum_us",
        "through",
        "total",
    )

    def __init__(self, hdr: HdrLayout, window: type[Window]) -> None:
        self.hdr = hdr
        self._window = window  # stages.windows.Window (imported there: no import cycle)
        self.slots: dict[str, int] = {}  # series -> slot, in the order windows opened
        self._free: list[int] = []
        self.start = array("q")
        self.errors = array("q")
        self.client_errors = array("q")
        self.late = array("q")
        self.sum_us = array("q")
        self.max_us = array("q")
        self.total = array("q")
        # The end of the latest finer window merged in: a close made again after a restart
        # (its changelog written part way) finds its windows here already (`merge`).
        self.through = array("q")
        # A slot's histogram: its sparse words as bytes, or a (dense) SparseHistogram.
        self.hists: list[bytes | SparseHistogram | None] = []

    def __len__(self) -> int:
        return len(self.slots)

    def __contains__(self, series: object) -> bool:
        return series in self.slots

    # --- slots --------------------------------------------------------------------------------

    def open(self, series: str, start: int) -> int:
        """A new, empty window for `series` at `start`; its slot."""
        if self._free:
            slot = self._free.pop()
            for column in self._columns():
                column[slot] = 0
            self.start[slot] = start
            self.hists[slot] = b""
        else:
            slot = len(self.hists)
            for column in self._columns():
                column.append(0)
            self.start[slot] = start
            self.hists.append(b"")
        self.slots[series] = slot
        return slot

    def _columns(self) -> tuple[array, ...]:
        return tuple(getattr(self, name) for name in _COLUMNS)

    def start_of(self, series: str) -> int | None:
        slot = self.slots.get(series)
        return None if slot is None else self.start[slot]

    def start_and_count(self, series: str) -> tuple[int, int] | None:
        """(start, events) of the series' window, if it has one."""
        slot = self.slots.get(series)
        return None if slot is None else (self.start[slot], self.total[slot])

    def starts(self) -> Iterator[tuple[str, int]]:
        """(series, start) of every open window."""
        start = self.start
        for series, slot in self.slots.items():
            yield series, start[slot]

    def done(self, closed: int, size: int) -> list[str]:
        """The series whose window ends at or before `closed`, in the order they opened."""
        start = self.start
        return [s for s, slot in self.slots.items() if start[slot] + size <= closed]

    # --- windows ------------------------------------------------------------------------------

    def get(self, series: str) -> Window | None:
        """The series' open window as a `Window` (a copy: for reading)."""
        slot = self.slots.get(series)
        return None if slot is None else self._build(slot)

    def pop(self, series: str) -> Window:
        """The series' window as a `Window`; its slot is freed."""
        slot = self.slots.pop(series)
        window = self._build(slot)
        self.hists[slot] = None
        self._free.append(slot)
        return window

    def discard(self, series: str) -> None:
        slot = self.slots.pop(series, None)
        if slot is not None:
            self.hists[slot] = None
            self._free.append(slot)

    def put(self, series: str, window: Window, through: int = 0) -> None:
        """Hold `window` (flushed) as the series' open window (a restore), with the end
        of the latest finer window it holds."""
        self.discard(series)
        slot = self.open(series, window.start)
        self.through[slot] = through
        self.errors[slot] = window.errors
        self.client_errors[slot] = window.client_errors
        self.late[slot] = window.late
        self.sum_us[slot] = window.sum_us
        self.max_us[slot] = window.max_us
        self.total[slot] = window.hist.total
        self._set_hist(slot, window.hist)

    def _build(self, slot: int) -> Window:
        window = self._window(self.hdr, self.start[slot])
        window.hist = self._hist(slot)
        window.errors = self.errors[slot]
        window.client_errors = self.client_errors[slot]
        window.late = self.late[slot]
        window.sum_us = self.sum_us[slot]
        window.max_us = self.max_us[slot]
        return window

    def _hist(self, slot: int) -> SparseHistogram:
        held = self.hists[slot]
        if isinstance(held, SparseHistogram):
            return held.copy()
        hist = SparseHistogram(self.hdr)
        if held:
            words = array("Q")
            words.frombytes(held)
            hist._counts = words
            counts = np.frombuffer(held, dtype=np.uint64) & np.uint64(self.hdr._cmask)
            hist.total = int(counts.sum())
        return hist

    def _set_hist(self, slot: int, hist: SparseHistogram) -> None:
        if type(hist) is SparseHistogram:
            self.hists[slot] = hist._counts.tobytes()
        else:
            self.hists[slot] = hist.copy()

    def state(self, series: str) -> dict[str, Any] | None:
        """The changelog form of the series' open window, as `Window.to_state` gives it."""
        slot = self.slots.get(series)
        if slot is None:
            return None
        held = self.hists[slot]
        if isinstance(held, SparseHistogram):
            hist: dict[str, Any] = {"counts": held.to_pairs()}
        else:
            if sys.byteorder != "little":
                words = array("Q")
                words.frombytes(held or b"")
                words.byteswap()
                held = words.tobytes()
            hist = {"words": base64.b64encode(held or b"").decode("ascii")}
            hist["bits"] = self.hdr._count_bits
        return {
            "start": self.start[slot],
            **hist,
            "errors": self.errors[slot],
            "client_errors": self.client_errors[slot],
            "late": self.late[slot],
            "sum_us": self.sum_us[slot],
            "max_us": self.max_us[slot],
            "through": self.through[slot],
        }

    # --- merging ------------------------------------------------------------------------------

    def holds(self, slot: int, end: int) -> bool:
        """Whether everything up to `end` is in the slot's window, or was in the one
        before it (a finer window ending there, closed again after a restart)."""
        return self.through[slot] >= end

    def merge(self, slots: Sequence[int], sources: Sequence[Window], ends: Sequence[int]) -> None:
        """Add each flushed window of `sources` (ending at the same place of `ends`) to the
        window in the same place of `slots` (every slot once), as `Window.merge` would:
        counters, then the histograms' buckets of all of them in one sort."""
        if not slots:
            return
        flush_all(self.hdr, sources)  # (closed windows hold no pending values: a no-op)
        at = np.asarray(slots, dtype=np.int64)
        n = len(sources)
        column = np.frombuffer(self.through, dtype=np.int64)
        column[at] = np.maximum(column[at], np.asarray(ends, dtype=np.int64))
        del column
        for name in ("errors", "client_errors", "late", "sum_us", "total"):
            if name == "total":
                added = np.fromiter((w.hist.total for w in sources), np.int64, n)
            else:
                added = np.fromiter((getattr(w, name) for w in sources), np.int64, n)
            column = np.frombuffer(getattr(self, name), dtype=np.int64)
            column[at] += added
            del column
        column = np.frombuffer(self.max_us, dtype=np.int64)
        column[at] = np.maximum(column[at], np.fromiter((w.max_us for w in sources), np.int64, n))
        del column
        hists = self.hists
        bulk: list[int] = []
        for k, (slot, source) in enumerate(zip(slots, sources, strict=True)):
            if not source.hist.total:
                continue
            if type(hists[slot]) is bytes and type(source.hist) is SparseHistogram:
                bulk.append(k)
            else:  # a dense histogram on either side: one at a time
                hist = self._hist(slot)
                hist.merge(source.hist)
                self._set_hist(slot, hist)
        if bulk and not self._merge_words([slots[k] for k in bulk], [sources[k] for k in bulk]):
            for k in bulk:  # too wide or too large for sparse words: one at a time
                hist = self._hist(slots[k])
                hist.merge(sources[k].hist)
                self._set_hist(slots[k], hist)

    def _merge_words(self, slots: list[int], sources: list[Window]) -> bool:
        """The sparse merge of `_merge` in numpy; False (nothing changed) when a result
        would need the dense form."""
        lay, hists = self.hdr, self.hists
        mine = [hists[slot] for slot in slots]
        theirs = [w.hist._counts for w in sources]
        data = np.frombuffer(b"".join([*mine, *theirs]), dtype=np.uint64)  # type: ignore[list-item]
        lens = [len(h) // 8 for h in mine] + [len(h) for h in theirs]  # type: ignore[arg-type]
        segments = np.repeat(np.tile(np.arange(len(slots), dtype=np.int64), 2), lens)
        index = (data >> np.uint64(lay._count_bits)).astype(np.int64)
        counts = (data & np.uint64(lay._cmask)).astype(np.int64)
        width = _tables(lay).width
        keys, counts = _reduce(segments * width + index, counts)
        if int(counts.max()) > lay._cmask:
            return False
        segment = keys // width
        bounds = np.searchsorted(segment, np.arange(len(slots) + 1)).tolist()
        if max(np.diff(bounds).tolist()) > lay.promote_at:
            return False
        words = ((keys - segment * width).astype(np.uint64) << np.uint64(lay._count_bits)) | (
            counts.astype(np.uint64)
        )
        blob = words.tobytes()
        for i, slot in enumerate(slots):
            hists[slot] = blob[8 * bounds[i] : 8 * bounds[i + 1]]
        return True
