"""Consumed messages as slim `Record`s, unpacked straight from aiokafka's fetched batches.

aiokafka turns every fetched message into a `ConsumerRecord`: a dataclass of eleven
fields built by a Python `__init__`, behind two generator layers. That costs about 1.1 us
a message, more than a quarter of what the fused ingest + windows stage spends on an
event. Stages read six fields (`stages.base.Record`), and a `Record` is a msgspec struct
built in C and not tracked by the garbage collector: unpacked directly, a message costs
about 0.7 us (docs/benchmarks.md).

How: a consumer asks for slim records by passing a `SlimRecords` as its
`value_deserializer`. aiokafka keeps one `PartitionRecords` per fetched partition and
`FetchResult.getall` iterates it record by record for `getmany`; `install_slim_records()`
makes both classes subclasses that, for consumers asking, unpack `Record`s with the
logical topic name (`SlimRecords.topic_of`) a record batch at a time and hand them to
`getall` a batch at a time (`_PartitionRecords.take`: never more than `max_records`, the
position just past what was handed out), doing what aiokafka's own loop does for a
consumer that never reads transactions: CRC checks when enabled (CRC-32C in hardware:
`google_crc32c` on the fetched bytes, 13 times faster than aiokafka's software table; see
`_crc_ok`), control batches skipped, offsets below the fetch position skipped. A batch
at a time spares a generator step and an append per record (~80 of ~420 ns a record).
Every other consumer (and any read_committed one) gets aiokafka's own path, untouched;
so does everything if the installed aiokafka lacks the internals this relies on (then
`SlimRecords` is an identity deserializer and the runner renames topics itself).

A batch that cannot be read (a codec this install lacks, a failed CRC, a corrupt or
truncated batch) never stops the consumer: its offset range is noted as an
`UnreadableBatch` on the `SlimRecords` (the runner sends it to `events.dlq` and counts it)
and the position moves past it, so the partition keeps flowing; the records of a batch
before a corrupt one are handed out first.

tests/test_slim_records.py checks the records against aiokafka's own on a real broker.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import google_crc32c
from aiokafka.consumer import fetcher
from aiokafka.structs import TopicPartition

from schemas.dlq import dead_letter
from stages.base import Record

__all__ = ["SlimRecords", "UnreadableBatch", "install_slim_records"]

_READ_UNCOMMITTED = getattr(fetcher, "READ_UNCOMMITTED", 0)
# Kafka's codec ids (the low three bits of a record batch's attributes).
CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


class UnreadableBatch(NamedTuple):
    """A range of offsets the consumer skipped because their batch could not be read."""

    tp: TopicPartition  # the physical partition
    topic: str  # its logical topic name
    first_offset: int
    last_offset: int
    reason: str

    @property
    def records(self) -> int:
        return self.last_offset - self.first_offset + 1

    def dead_letter(self, now_ms: int) -> dict[str, Any]:
        """Its `events.dlq` value: the reason, and the source's whole offset range."""
        letter = dead_letter(
            f"{self.reason}; offsets {self.first_offset}-{self.last_offset} skipped",
            "$batch",
            self.topic,
            self.tp.partition,
            self.first_offset,
            None,
            b"",
            now_ms,
        )
        letter["source"]["last_offset"] = self.last_offset
        return letter


def _codec_of(batch: Any) -> str:
    try:
        codec = int(batch.compression_type)
    except Exception:
        return "unknown"
    return CODEC_NAMES.get(codec, f"unknown codec id {codec}")


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


class SlimRecords:
    """A consumer's request for slim records, naming the logical topic of each physical
    one. Called as a deserializer (only if slim unpacking is unavailable) it returns the
    value unchanged."""

    __slots__ = ("topic_of", "unreadable")

    def __init__(self, topic_of: Callable[[str], str]) -> None:
        self.topic_of = topic_of
        self.unreadable: list[UnreadableBatch] = []

    def take_unreadable(self) -> list[UnreadableBatch]:
        """The batches skipped since the last call (in fetch order), forgotten here."""
        taken, self.unreadable = self.unreadable, []
        return taken

    def __call__(self, value: bytes | None) -> bytes | None:
        return value


_Base: Any = getattr(fetcher, "PartitionRecords", None)
_NEEDED = ("_unpack_records", "__next__")
_FetchResultBase: Any = getattr(fetcher, "FetchResult", None)
_MemoryRecords: Any = getattr(fetcher, "MemoryRecords", None)
_fetched: list[Any] = [None, None]  # the `MemoryRecords` made last and the bytes it reads
_FRAME = struct.Struct(">qi")  # a batch's base offset and length (after these 12 bytes)
_CRC_FROM = 21  # a v2 batch's CRC-32C covers its bytes from its attributes on


def _memory_records(raw: bytes) -> Any:
    """aiokafka's `MemoryRecords` of a fetched partition, its bytes remembered for the
    `_PartitionRecords` aiokafka makes from it next (same call, no await between)."""
    records = _MemoryRecords(raw)
    _fetched[0], _fetched[1] = records, raw
    return records


def _crc_ok(batch: Any, raw: bytes | None, at: int) -> tuple[bool, int]:
    """Whether `batch`'s CRC holds, and where the next batch starts in `raw`, the
    fetched bytes it came from at `at` (-1: not known). A v2 batch's CRC-32C is computed
    on those bytes in hardware; any other (old message formats, or the bytes not known)
    is checked by aiokafka."""
    end = -1
    if raw is not None and at >= 0 and at + _FRAME.size <= len(raw):
        base_offset, length = _FRAME.unpack_from(raw, at)
        if base_offset == batch.base_offset and length >= 0:
            end = at + _FRAME.size + length
            if batch.magic == 2 and end <= len(raw):
                return google_crc32c.value(raw[at + _CRC_FROM : end]) == batch.crc, end
    try:
        return bool(batch.validate_crc()), end
    except Exception:
        return False, end


def _supported(base: Any) -> bool:
    return base is not None and all(hasattr(base, name) for name in _NEEDED)


_RESULT_NEEDED = ("getall", "check_assignment", "_update_position")


_AVAILABLE = _supported(_Base) and all(hasattr(_FetchResultBase, n) for n in _RESULT_NEEDED)

if _AVAILABLE:

    class _PartitionRecords(_Base):  # type: ignore[misc, valid-type]
        """aiokafka's `PartitionRecords`, handing `SlimRecords` consumers `Record`s a
        batch at a time (`take`)."""

        next_fetch_offset: int  # set by aiokafka's `PartitionRecords`: the fetch position
        _records_iterator: Iterator[Any] | None  # set there: `_unpack_records()`

        def __init__(self, tp: Any, records: Any, *args: Any) -> None:
            super().__init__(tp, records, *args)
            # The fetched bytes `records` reads, if `_memory_records` made it.
            self._raw = _fetched[1] if _fetched[0] is records else None
            _fetched[0] = _fetched[1] = None
            self._pending: list[Record] = []  # unpacked, not yet handed out
            self._pending_end = 0  # the position once all of them are
            self.exhausted = False  # every batch unpacked and handed out

        @property
        def slim(self) -> bool:
            return (
                type(self._value_deserializer) is SlimRecords
                and self._isolation_level == _READ_UNCOMMITTED
            )

        def take(self, limit: int | None) -> list[Record]:
            """Up to `limit` records (None: all), the position moved past them. Records
            are unpacked a batch at a time: a batch costs one step of the unpacking
            generator and one list, not one step and one append per record."""
            taken: list[Record] = []
            while True:
                pending = self._pending
                if pending:
                    room = len(pending) if limit is None else limit - len(taken)
                    if room < len(pending):
                        taken += pending[:room]
                        self._pending = pending[room:]
                        self.next_fetch_offset = taken[-1].offset + 1
                        return taken
                    if taken:
                        taken += pending
                    else:
                        taken = pending
                    self._pending = []
                    self.next_fetch_offset = self._pending_end
                    if limit is not None and len(taken) >= limit:
                        return taken
                batches = self._records_iterator
                batch = next(batches, None) if batches is not None else None
                if batch is None:
                    self._records_iterator = None
                    self.exhausted = True
                    return taken
                self._pending, self._pending_end = batch

        def __iter__(self) -> Iterator[Any]:
            return self  # one record a step, for aiokafka's own `getall` and `getone`

        def __next__(self) -> Any:
            if not self.slim:
                return super().__next__()
            taken = self.take(1)
            if not taken:
                raise StopIteration
            return taken[0]

        def _unpack_records(self) -> Iterator[Any]:
            """For slim consumers, each batch's records at or past the position, as
            (records, the position after them); else aiokafka's records one by one."""
            slim = self._value_deserializer
            if type(slim) is not SlimRecords or self._isolation_level != _READ_UNCOMMITTED:
                yield from super()._unpack_records()
                return
            tp, records, check_crcs = self._tp, self._records, self._check_crcs
            raw, at = self._raw, 0
            self._raw = None
            topic, partition = slim.topic_of(tp.topic), tp.partition
            # Each step runs once every record unpacked before is handed out (`take`), so
            # `next_fetch_offset` is where the consumer is.
            while records.has_next():
                try:
                    batch = records.next_batch()
                except Exception as exc:  # the batch's framing itself is broken
                    # Its extent is unknown: skip one offset, and the next fetch starts
                    # after it (the broker answers from the batch holding that offset).
                    self._skip(slim, topic, self.next_fetch_offset, 0, f"corrupt: {_why(exc)}")
                    return
                if batch is None:
                    return
                if check_crcs:
                    ok, at = _crc_ok(batch, raw, at)
                    if not ok:
                        self._skip(
                            slim, topic, batch.base_offset, batch.next_offset, "CRC mismatch"
                        )
                        continue
                if not batch.is_control_batch:
                    position = self.next_fetch_offset
                    got: list[Record] = []
                    append = got.append
                    try:
                        for record in batch:
                            offset = record.offset
                            if offset >= position:  # else the start of a batch fetched mid-way
                                key, value, timestamp = record.key, record.value, record.timestamp
                                append(Record(topic, partition, offset, key, value, timestamp))
                    except Exception as exc:  # undecodable codec or corrupt records
                        if got:  # the records before it go out first
                            yield got, got[-1].offset + 1
                        why = f"{_codec_of(batch)} compressed, {_why(exc)}"
                        self._skip(slim, topic, batch.base_offset, batch.next_offset, why)
                        continue
                    if got:
                        # As aiokafka does: past the batch's last offset even if compaction
                        # removed its last records, so the next fetch starts at the next batch.
                        yield got, batch.next_offset
                        continue
                self.next_fetch_offset = batch.next_offset

        def _skip(
            self, slim: SlimRecords, topic: str, base_offset: int, next_offset: int, why: str
        ) -> None:
            """Note the rest of a batch as unreadable and move the position past it."""
            first = max(base_offset, self.next_fetch_offset)
            last = max(next_offset - 1, first)
            slim.unreadable.append(
                UnreadableBatch(self._tp, topic, first, last, f"unreadable record batch ({why})")
            )
            self.next_fetch_offset = last + 1

    class _FetchResult(_FetchResultBase):  # type: ignore[misc, valid-type]
        """aiokafka's `FetchResult`, taking a slim partition's records a batch at a time.

        Its backoff is 0 for a slim partition. aiokafka sends no fetch to a broker while
        any partition it serves holds records fetched less than `prefetch_backoff` (0.1 s)
        ago, so a consumer that drains its partitions one after another (`getmany` takes
        them in turn) waits a whole round trip each time the last one runs dry: 5-6 % of
        the fused stage's time on the issue-22 benchmark. Without the backoff, a drained
        partition is fetched again while the others are being read. Each partition still
        holds at most one fetched result, so the memory bound is unchanged."""

        _partition_records: Any  # set by aiokafka's `FetchResult`

        def _slim_records(self) -> _PartitionRecords | None:
            """The partition's records if they are unpacked for a slim consumer."""
            records = self._partition_records
            if type(records) is _PartitionRecords and records.slim:
                return records
            return None

        def calculate_backoff(self) -> float:
            """0 for a slim partition (see the class), else aiokafka's."""
            if self._slim_records() is not None:
                return 0
            return float(super().calculate_backoff())

        def getall(self, max_records: int | None = None) -> list[Any]:
            records = self._slim_records()
            if records is None:
                return super().getall(max_records)
            if not self.check_assignment(self._topic_partition):
                return []
            taken = records.take(max_records)
            self._update_position()
            if records.exhausted:
                self._partition_records = None
            return taken


def install_slim_records() -> bool:
    """Make aiokafka's fetcher build `_PartitionRecords` (idempotent). False if the
    installed aiokafka lacks what slim unpacking relies on."""
    if not _AVAILABLE:
        return False
    fetcher.PartitionRecords = _PartitionRecords
    fetcher.FetchResult = _FetchResult
    if _MemoryRecords is not None:
        fetcher.MemoryRecords = _memory_records
    return True
