"""Consumed messages as slim `Record`s, unpacked straight from aiokafka's fetched batches.

aiokafka turns every fetched message into a `ConsumerRecord`: a dataclass of eleven
fields built by a Python `__init__`, behind two generator layers. That costs about 1.1 us
a message, more than a quarter of what the fused ingest + windows stage spends on an
event. Stages read six fields (`stages.base.Record`), and a `Record` is a msgspec struct
built in C and not tracked by the garbage collector: unpacked directly, a message costs
about 0.7 us (docs/benchmarks.md).

How: a consumer asks for slim records by passing a `SlimRecords` as its
`value_deserializer`. aiokafka keeps one `PartitionRecords` per fetched partition and
iterates it for `getmany`; `install_slim_records()` makes that class a subclass that, for consumers
asking, yields `Record`s itself with the logical topic name (`SlimRecords.topic_of`),
doing what aiokafka's own loop does for a consumer that never reads transactions:
CRC checks when enabled (CRC-32C in hardware: `google_crc32c` on the fetched bytes,
13 times faster than aiokafka's software table; see `_crc_ok`), control batches skipped,
offsets below the fetch position skipped, the position advanced record by record. Every
other consumer (and any read_committed one) gets aiokafka's own path, untouched; so does
everything if the installed aiokafka lacks the internals this relies on (then
`SlimRecords` is an identity deserializer and the runner renames topics itself).

A batch that cannot be read (a codec this install lacks, a failed CRC, a corrupt or
truncated batch) never stops the consumer: its offset range is noted as an
`UnreadableBatch` on the `SlimRecords` (the runner sends it to `events.dlq` and counts it)
and the position moves past it, so the partition keeps flowing.

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


if _supported(_Base):

    class _PartitionRecords(_Base):  # type: ignore[misc, valid-type]
        def __init__(self, tp: Any, records: Any, *args: Any) -> None:
            super().__init__(tp, records, *args)
            # The fetched bytes `records` reads, if `_memory_records` made it.
            self._raw = _fetched[1] if _fetched[0] is records else None
            _fetched[0] = _fetched[1] = None

        """aiokafka's `PartitionRecords`, yielding `Record`s for `SlimRecords` consumers."""

        next_fetch_offset: int  # set by aiokafka's `PartitionRecords`: the fetch position

        def __iter__(self) -> Iterator[Any]:
            # `getall` loops over this object: for slim records, hand it the generator
            # itself, so a record costs one generator step and no Python `__next__` call.
            iterator = self._records_iterator
            if iterator is not None and type(self._value_deserializer) is SlimRecords:
                return iterator
            return self

        def _unpack_records(self) -> Iterator[Any]:
            slim = self._value_deserializer
            if type(slim) is not SlimRecords or self._isolation_level != _READ_UNCOMMITTED:
                yield from super()._unpack_records()
                return
            tp, records, check_crcs = self._tp, self._records, self._check_crcs
            raw, at = self._raw, 0
            self._raw = None
            topic, partition = slim.topic_of(tp.topic), tp.partition
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
                    try:
                        for record in batch:
                            offset = record.offset
                            if offset < position:  # the start of a batch fetched mid-way
                                continue
                            self.next_fetch_offset = offset + 1
                            key, value, timestamp = record.key, record.value, record.timestamp
                            yield Record(topic, partition, offset, key, value, timestamp)
                    except Exception as exc:  # undecodable codec or corrupt records
                        why = f"{_codec_of(batch)} compressed, {_why(exc)}"
                        self._skip(slim, topic, batch.base_offset, batch.next_offset, why)
                        continue
                # As aiokafka does: past the batch's last offset even if compaction
                # removed its last records, so the next fetch starts at the next batch.
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


def install_slim_records() -> bool:
    """Make aiokafka's fetcher build `_PartitionRecords` (idempotent). False if the
    installed aiokafka lacks what slim unpacking relies on."""
    if not _supported(_Base):
        return False
    fetcher.PartitionRecords = _PartitionRecords
    if _MemoryRecords is not None:
        fetcher.MemoryRecords = _memory_records
    return True
