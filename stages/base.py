"""The contract between pure stages and the runtime that feeds them.

A stage receives a batch of `Record`s (already consumed from Kafka by the runtime)
plus the current time, and returns a `StageResult`: records to emit and state
changes to write to its changelog. A stage must never touch Kafka, sockets,
clocks or files; everything it needs arrives as arguments.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import orjson


class Record(msgspec.Struct, gc=False):
    """One consumed Kafka message, as the runtime hands it to a stage.

    A msgspec struct: built in C and never tracked by the garbage collector (its fields
    are plain values), since the runtime makes one per consumed message
    (pipeline/slim_records.py). Where slim unpacking is unavailable the runtime hands
    over aiokafka's `ConsumerRecord`s instead, which have these same fields (and more);
    stages read only these."""

    topic: str  # logical topic name without prefix, e.g. "events.raw"
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0  # broker/producer timestamp, epoch ms


class EncodedJSON(Mapping[str, Any]):
    """An emit value that a stage has already encoded as a JSON object.

    The runtime sends `json` as it is (inside the packed array of a repartition topic);
    read as a mapping, it is the object it encodes (decoded on first access: for tests and
    tools, never on the hot path).
    """

    __slots__ = ("_object", "json")

    def __init__(self, json: bytes) -> None:
        self.json = json
        self._object: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._object is None:
            self._object = orjson.loads(self.json)
        return self._object

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return f"EncodedJSON({self.json!r})"


@dataclass(slots=True)
class Emit:
    """A record a stage wants produced.

    `topic` is the logical name (the runtime adds the prefix). `value` is any
    JSON-serialisable object, an `EncodedJSON`, or bytes to send as they are. Records for the
    internal repartition topics (events.errors, events.latency) are packed by
    the runtime into one JSON-array message per destination partition.
    """

    topic: str
    key: str
    value: Any


class StageResult:
    """What one call of a stage produced: records to emit, and changelog writes as
    (partition, state key) -> new state (a JSON-able value, or None for a tombstone).

    A close of many series would hold all its rollups and changelog values at once until
    the broker acknowledged them. Such a result comes in parts instead (`streamed`): the
    runtime asks for one part at a time (`parts`) and hands it to the producer before the
    next is made, so a close of 100,000 series holds a part of it, not all of it
    (docs/memory.md). A stage makes its parts in the order they may become durable (every
    output of a partition before the changelog writes that say they were made), and the
    runtime makes all of them before it calls the stage again. Reading `emits` or `state`
    makes every part at once: the same records and writes, in one piece (tests, tools).
    """

    __slots__ = ("_emits", "_more", "_state")

    def __init__(
        self, emits: list[Emit] | None = None, state: dict[tuple[int, str], Any] | None = None
    ) -> None:
        self._emits: list[Emit] = [] if emits is None else emits
        self._state: dict[tuple[int, str], Any] = {} if state is None else state
        self._more: Iterator[StageResult] | None = None

    @classmethod
    def streamed(cls, parts: Iterable[StageResult]) -> StageResult:
        """A result made of `parts`, each made only when asked for."""
        result = cls()
        result._more = iter(parts)
        return result

    @property
    def emits(self) -> list[Emit]:
        self._make_all()
        return self._emits

    @property
    def state(self) -> dict[tuple[int, str], Any]:
        self._make_all()
        return self._state

    @property
    def in_parts(self) -> bool:
        """Whether parts of it are still to be made."""
        return self._more is not None

    def whole(self) -> StageResult:
        """This result with every part made (in one piece)."""
        self._make_all()
        return self

    def _make_all(self) -> None:
        more, self._more = self._more, None
        if more is not None:
            for part in more:
                self._emits.extend(part.emits)
                self._state.update(part.state)

    def extend(self, other: StageResult) -> None:
        """Add `other` after what this holds (as a later part if either comes in parts)."""
        if self._more is None and other._more is None:
            self._emits.extend(other._emits)
            self._state.update(other._state)
        else:
            self._more = itertools.chain(self._more or (), (other,))

    def parts(self) -> Iterator[StageResult]:
        """This result one part at a time, each made when the one before has been taken
        (what the runtime reads); then it holds nothing."""
        more, self._more = self._more, None
        emits, state = self._emits, self._state
        self._emits, self._state = [], {}
        if emits or state:
            yield StageResult(emits, state)
        for part in more or ():
            yield from part.parts()


class Stage(Protocol):
    """A pure processing step. See the module docstring. The optional capabilities
    (`state_name`, `external_inputs`, `hold_offsets`, `counters`, `state_size`) have their
    defaults in `StageBase`, which every stage derives from."""

    name: str
    inputs: tuple[str, ...]  # logical topics consumed
    stateful: bool  # True when the stage keeps a changelog `state.<state_name>`
    external_inputs: tuple[str, ...]  # topics read as named, without the prefix

    @property
    def state_name(self) -> str:
        """The name of its changelog topic `state.<state_name>`."""
        ...

    def hold_offsets(self) -> Mapping[tuple[str, int], int] | None:
        """Per (logical input topic, partition) the oldest offset it still needs: the
        runner commits no further. None: commit what was consumed."""
        ...

    def counters(self) -> Mapping[str, float]:
        """Its own counters, for /metrics (`prodmon_stage_events_total{kind}`)."""
        ...

    def state_size(self) -> int | None:
        """State keys it holds now (the `prodmon_state_keys` gauge); None: not counted."""
        ...

    def process(self, records: list[Record], now: float) -> StageResult:
        """Handle one batch; `now` is epoch seconds."""
        ...

    def tick(self, now: float) -> StageResult:
        """Timer work (periodic emissions, expiries); called between batches."""
        ...

    def restore(self, partition: int, key: str, value: Any) -> None:
        """Load one changelog entry for an assigned partition (value None = deleted)."""
        ...

    def assign(self, partitions: Iterable[int]) -> None:
        """Partitions now owned (before their changelog is restored)."""
        ...

    def revoke(self, partitions: Iterable[int]) -> None:
        """Partitions given up: drop every piece of state held for them."""
        ...


class StageBase:
    """The defaults of a stage's optional capabilities (see `Stage`): the changelog named
    after the stage, no extra topics, offsets committed as consumed, no counters, state not
    counted; and, for a stage without state or timers, no-op `tick`, `restore`, `assign`
    and `revoke`."""

    name: str
    external_inputs: tuple[str, ...] = ()

    @property
    def state_name(self) -> str:
        return self.name

    def hold_offsets(self) -> Mapping[tuple[str, int], int] | None:
        return None

    def counters(self) -> Mapping[str, float]:
        return {}

    def state_size(self) -> int | None:
        return None

    def tick(self, now: float) -> StageResult:
        return StageResult()

    def restore(self, partition: int, key: str, value: Any) -> None:
        return None

    def assign(self, partitions: Iterable[int]) -> None:
        return None

    def revoke(self, partitions: Iterable[int]) -> None:
        return None
