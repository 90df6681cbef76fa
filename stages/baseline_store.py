"""The baseline stage's per-series state held as bytes (issue 24: memory at fleet scale).

Live `Detector` objects cost about 30 KB each, four or five per series; the stage instead
keeps, per partition and key (a series, or an issue's fingerprint), one bytes value
holding the packed detectors of all its metrics (`DetectorBundles`, detection/packed.py),
and each series' recent chart points as two arrays' bytes (`RecentPoints`). A rollup
unpacks only its series' detectors, updates them and packs them back, so the results are
those of the live objects, bit for bit (tests/test_baseline_memory.py).

One value per key rather than a column store indexed by a series id: a key's detectors are
always read and written together (a rollup updates every watched metric of its series),
the changelog writes one record per key and update, a dict of bytes costs about 100 bytes
a key on top of the packed data, and idle expiry stays a dict deletion.

A bundle is: a count (uint8), then per metric its name's length (uint8), the name (UTF-8),
the packed detector's length (uint32) and the packed detector. In the changelog it is the
JSON string of its base64 (`state.baseline` key `dp|<key>`); the previous form, one
`d|<key>|<metric>` record per detector holding `Detector.to_state()`, is still restored
(and tombstoned once the key is written in the new form).
"""

from __future__ import annotations

import base64
import binascii
import struct
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

from detection.detector import Detector, DetectorConfig
from detection.packed import DetectorCodec

__all__ = ["BUNDLE_KIND", "LEGACY_KIND", "DetectorBundles", "RecentPoints"]

BUNDLE_KIND = "dp"  # changelog key dp|<key>: the packed detectors of a key
LEGACY_KIND = "d"  # changelog key d|<key>|<metric>: one detector's to_state() (before)
_LENGTH = struct.Struct("<I")
State = dict[tuple[int, str], Any]  # a StageResult's changelog changes
# a packed detector that cannot be read: its key and metric learn afresh, as a state of
# another detector version did before
UNREADABLE = (ValueError, KeyError, TypeError, IndexError, OverflowError, struct.error)


def split_bundle(bundle: bytes) -> dict[str, bytes]:
    """A bundle's packed detectors by metric."""
    out: dict[str, bytes] = {}
    offset = 1
    for _ in range(bundle[0]):
        size = bundle[offset]
        name = bundle[offset + 1 : offset + 1 + size].decode()
        offset += 1 + size
        (length,) = _LENGTH.unpack_from(bundle, offset)
        offset += 4
        out[name] = bundle[offset : offset + length]
        offset += length
    if offset != len(bundle):
        raise ValueError(f"detector bundle of {len(bundle)} bytes, {offset} read")
    return out


def join_bundle(packed: dict[str, bytes]) -> bytes:
    """The bundle of packed detectors by metric (at most 255 metrics, short names)."""
    parts = [bytes((len(packed),))]
    for name, data in packed.items():
        encoded = name.encode()
        parts += (bytes((len(encoded),)), encoded, _LENGTH.pack(len(data)), data)
    return b"".join(parts)


class DetectorBundles:
    """Per partition, key -> the bundle of its metrics' packed detectors."""

    __slots__ = ("_codec", "_legacy", "bundles")

    def __init__(self, config: DetectorConfig) -> None:
        self._codec = DetectorCodec(config)
        self.bundles: dict[int, dict[str, bytes]] = {}
        # partition -> key -> metrics restored from the previous changelog form, whose
        # d|<key>|<metric> records are tombstoned when the key is next written
        self._legacy: dict[int, dict[str, set[str]]] = {}

    def __len__(self) -> int:
        return sum(len(keys) for keys in self.bundles.values())

    def keys(self, partition: int) -> Iterable[str]:
        return self.bundles.get(partition, {}).keys()

    def detectors(self, partition: int, key: str) -> dict[str, Detector]:
        """A key's detectors by metric, unpacked (new objects: changes are not kept)."""
        bundle = self.bundles.get(partition, {}).get(key)
        if bundle is None:
            return {}
        return {name: self._codec.unpack(data) for name, data in split_bundle(bundle).items()}

    def items(self) -> Iterator[tuple[int, str, str, Detector]]:
        """Every detector held: (partition, key, metric, detector), unpacked."""
        for partition, keys in self.bundles.items():
            for key in keys:
                for metric, det in self.detectors(partition, key).items():
                    yield partition, key, metric, det

    # -- the update path ------------------------------------------------------------------

    def open(self, partition: int, key: str) -> dict[str, bytes]:
        """A key's packed detectors by metric, to update with `detector` and `put`."""
        bundle = self.bundles.get(partition, {}).get(key)
        return {} if bundle is None else split_bundle(bundle)

    def detector(self, packed: dict[str, bytes], metric: str) -> Detector:
        """The metric's detector from `open`'s dict: unpacked, or a fresh one."""
        data = packed.get(metric)
        if data is not None:
            try:
                return self._codec.unpack(data)
            except UNREADABLE:
                pass  # learn this metric afresh
        return Detector(self._codec.config)

    def pack(self, det: Detector) -> bytes:
        return self._codec.pack(det)

    def put(self, partition: int, key: str, packed: dict[str, bytes], state: State) -> None:
        """Keep a key's updated packed detectors and write them to the changelog `state`
        (after tombstones of the key's records in the previous form, so a restore that
        reads both ends with this one)."""
        bundle = join_bundle(packed)
        self.bundles.setdefault(partition, {})[key] = bundle
        self._drop_legacy(partition, key, state)
        state[(partition, f"{BUNDLE_KIND}|{key}")] = base64.b64encode(bundle).decode()

    def forget(self, partition: int, key: str, state: State) -> None:
        """Drop a key (idle): its detectors and their changelog records, in both forms."""
        self.bundles.get(partition, {}).pop(key, None)
        self._drop_legacy(partition, key, state)
        state[(partition, f"{BUNDLE_KIND}|{key}")] = None

    def _drop_legacy(self, partition: int, key: str, state: State) -> None:
        legacy = self._legacy.get(partition)
        metrics = legacy.pop(key, None) if legacy else None
        for metric in sorted(metrics or ()):
            state[(partition, f"{LEGACY_KIND}|{key}|{metric}")] = None

    def revoke(self, partition: int) -> None:
        self.bundles.pop(partition, None)
        self._legacy.pop(partition, None)

    # -- restore --------------------------------------------------------------------------

    def restore(self, partition: int, key: str, value: Any) -> None:
        """One `dp|<key>` record: its bundle (None, or one that cannot be read: the key
        learns afresh)."""
        keys = self.bundles.setdefault(partition, {})
        bundle = None
        if isinstance(value, str):
            try:
                bundle = base64.b64decode(value, validate=True)
                split_bundle(bundle)
            except (binascii.Error, *UNREADABLE):
                bundle = None
        if bundle is None:
            keys.pop(key, None)
        else:
            keys[key] = bundle

    def restore_legacy(self, partition: int, name: str, value: Any) -> None:
        """One `d|<key>|<metric>` record of the previous form: `to_state()` (or None)."""
        key, _, metric = name.rpartition("|")
        legacy = self._legacy.setdefault(partition, {})
        det = None
        if value is not None:
            try:
                det = Detector.from_state(value, self._codec.config)
            except UNREADABLE:
                det = None  # another detector version's state: learn this series afresh
        elif metric not in legacy.get(key, ()):
            return  # a tombstone written after the key moved to the new form
        packed = self.open(partition, key)
        if det is None:
            packed.pop(metric, None)
        else:
            packed[metric] = self._codec.pack(det)
        legacy.setdefault(key, set()).add(metric)
        keys = self.bundles.setdefault(partition, {})
        if packed:
            keys[key] = join_bundle(packed)
        else:
            keys.pop(key, None)


class RecentPoints:
    """Per partition, series -> its recent points as bytes: the window starts (int64),
    then the values (float64, `width` per point, row by row)."""

    __slots__ = ("points", "width")

    def __init__(self, width: int) -> None:
        self.width = width  # values per point (the metrics watched)
        self.points: dict[int, dict[str, bytes]] = {}

    def rows(self, partition: int, series: str) -> list[list[Any]] | None:
        """[[start, value, ...], ...], oldest first, or None when nothing is kept."""
        data = self.points.get(partition, {}).get(series)
        if data is None:
            return None
        return self._rows(*self._columns(data))

    def _columns(self, data: bytes) -> tuple[array, array]:
        """A series' bytes as its starts and its values, row by row."""
        n = len(data) // (8 + 8 * self.width)
        return array("q", data[: 8 * n]), array("d", data[8 * n :])

    def _rows(self, starts: array, values: array) -> list[list[Any]]:
        numbers, w = values.tolist(), self.width
        return [[t, *numbers[i * w : i * w + w]] for i, t in enumerate(starts.tolist())]

    def append(
        self, partition: int, series: str, start: int, oldest: int, values: list[float], keep: int
    ) -> list[list[Any]]:
        """Add a point; keep at most `keep`, none starting at or before `oldest`. Returns
        the points kept, as `rows` would."""
        store = self.points.setdefault(partition, {})
        data = store.get(series)
        w = self.width
        starts, flat = (array("q"), array("d")) if data is None else self._columns(data)
        first = max(len(starts) - (keep - 1), 0)
        if first < len(starts) and min(starts[first:]) > oldest:  # the newest keep - 1
            del starts[:first]
            del flat[: first * w]
        elif starts:
            kept = [i for i in range(first, len(starts)) if starts[i] > oldest]
            flat = array("d", [v for i in kept for v in flat[i * w : i * w + w]])
            starts = array("q", [starts[i] for i in kept])
        starts.append(start)
        flat.extend(values)
        store[series] = starts.tobytes() + flat.tobytes()
        return self._rows(starts, flat)

    def set_rows(self, partition: int, series: str, rows: list[list[Any]]) -> None:
        """Keep restored points ([start, value, ...] each, already checked)."""
        starts = array("q", [row[0] for row in rows])
        flat = array("d", [v for row in rows for v in row[1:]])
        self.points.setdefault(partition, {})[series] = starts.tobytes() + flat.tobytes()

    def forget(self, partition: int, series: str) -> None:
        self.points.get(partition, {}).pop(series, None)

    def keys(self, partition: int) -> Iterable[str]:
        return self.points.get(partition, {}).keys()

    def revoke(self, partition: int) -> None:
        self.points.pop(partition, None)
