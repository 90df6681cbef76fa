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
CRC checks when enabled, control batches skipped, offsets below the fetch position
skipped, the position advanced record by record. Every other consumer (and any
read_committed one) gets aiokafka's own path, untouched; so does everything if the
installed aiokafka lacks the internals this relies on (then `SlimRecords` is an identity
deserializer and the runner renames topics itself).

tests/test_slim_records.py checks the records against aiokafka's own on a real broker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from aiokafka import errors
from aiokafka.consumer import fetcher

from stages.base import Record

__all__ = ["SlimRecords", "install_slim_records"]

_READ_UNCOMMITTED = getattr(fetcher, "READ_UNCOMMITTED", 0)


class SlimRecords:
    """A consumer's request for slim records, naming the logical topic of each physical
    one. Called as a deserializer (only if slim unpacking is unavailable) it returns the
    value unchanged."""

    __slots__ = ("topic_of",)

    def __init__(self, topic_of: Callable[[str], str]) -> None:
        self.topic_of = topic_of

    def __call__(self, value: bytes | None) -> bytes | None:
        return value


_Base: Any = getattr(fetcher, "PartitionRecords", None)
_NEEDED = ("_unpack_records", "__next__")


def _supported(base: Any) -> bool:
    return base is not None and all(hasattr(base, name) for name in _NEEDED)


if _supported(_Base):

    class _PartitionRecords(_Base):  # type: ignore[misc, valid-type]
        """aiokafka's `PartitionRecords`, yielding `Record`s for `SlimRecords` consumers."""

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
            topic, partition = slim.topic_of(tp.topic), tp.partition
            while records.has_next():
                batch = records.next_batch()
                if check_crcs and not batch.validate_crc():
                    raise errors.CorruptRecordException(f"Invalid CRC - {tp}")
                if not batch.is_control_batch:
                    position = self.next_fetch_offset
                    for record in batch:
                        offset = record.offset
                        if offset < position:  # the start of a batch fetched mid-way
                            continue
                        self.next_fetch_offset = offset + 1
                        key, value, timestamp = record.key, record.value, record.timestamp
                        yield Record(topic, partition, offset, key, value, timestamp)
                # As aiokafka does: past the batch's last offset even if compaction
                # removed its last records, so the next fetch starts at the next batch.
                self.next_fetch_offset = batch.next_offset


def install_slim_records() -> bool:
    """Make aiokafka's fetcher build `_PartitionRecords` (idempotent). False if the
    installed aiokafka lacks what slim unpacking relies on."""
    if not _supported(_Base):
        return False
    fetcher.PartitionRecords = _PartitionRecords
    return True
