"""A detector's whole state as compact, exact bytes (issue 24: memory at fleet scale).

`Detector.to_state()` is a JSON dict of up to 16 KB, and a live `Detector` took 10-25 KB
of objects (docs/memory.md, issue 24). The baseline stage holds one per series and
metric, so at fleet scale it keeps them packed instead and unpacks only the one it
updates. Packing must not change a single result, so every float is stored as its
float64 bits, every integer exactly, None explicitly, and `unpack(pack(d))` continues bit
for bit as `d` would (tests/test_detector_pack.py runs both side by side).

Layout (little-endian), `VERSION` 1:

- a fixed header (`_HEAD`, 256 bytes): version, flags (which optional floats are None, the
  two booleans, whether the sorted reservoir is stored), the peak kind's code, the active
  season's index; the 8 integers, the 20 scalar floats, then the lengths of the sequences;
- the reservoir (values, then their times; the sorted copy only when it differs bitwise
  from `sorted(values)`, i.e. with both signed zeros in it), the shift ring, the gate and
  the likelihood ring, all float64; then the episode memory (float64) and the recent
  anomalies (indices int64, signs int8), often none;
- per season: period, bucket count, flags; unless it is fresh (never learned: then nothing
  more), `filled`, its five floats and its buckets. Buckets are stored rotated to start at
  the bucket of the detector's first point and with the leading and trailing run of
  never-visited buckets (offset +0.0, count 0) left out, so a profile still being learned
  costs what it learned; counts in the width the detector holds them in (the narrowest
  that fits, widened as they grow, never saturated).

A young detector packs into about 0.5 KB, one with both seasonal profiles filled into about
4 KB (the reservoir's 40 values and times are 0.6 KB of it).
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left
from collections import deque
from typing import Any

from detection.detector import COUNT_TYPES, Detector, DetectorConfig, _Season

__all__ = ["VERSION", "DetectorCodec", "pack", "unpack"]

VERSION = 1
if sys.byteorder != "little" or [array(t).itemsize for t in COUNT_TYPES] != [1, 2, 4, 8]:
    raise ImportError("detection.packed needs a little-endian machine with 4-byte 'I' arrays")
# version, flags, peak kind, active season; 8 ints; 20 floats; 7 lengths
_HEAD = struct.Struct("<4B8q20d7I")
_SEASON_HEAD = struct.Struct("<dIB")  # period, buckets, flags
_SEASON_BODY = struct.Struct("<q5d3IB")  # filled, 5 floats, rotation, lead, stored, width
_KINDS: tuple[str | None, ...] = (None, "spike", "dip", "level_shift", "variance_change", "drift")
_KIND_CODE = {kind: code for code, kind in enumerate(_KINDS)}
_COUNT_SIZES = (1, 2, 4, 8)  # bytes of each of COUNT_TYPES
_NO_SEASON = 255
_FOUR_ZEROS = bytes(32)

# header flags
_FIRST_T_NONE, _LAST_T_NONE, _PREV_D_NONE, _PREV_X_NONE = 1, 2, 4, 8
_EXCEEDING, _FLAT_QUIET, _SORTED_STORED = 16, 32, 64
# season flags
_FRESH, _LEVEL_NONE, _ACTIVE = 1, 2, 4

_SEQUENCES: dict[tuple[int, int], struct.Struct] = {}


def _sequences(floats: int, recent: int) -> struct.Struct:
    """The struct of the episode memory (`floats` float64) and the recent anomalies'
    indices (int64) and signs (int8), after the reservoir and the rings."""
    key = (floats, recent)
    found = _SEQUENCES.get(key)
    if found is None:
        found = _SEQUENCES[key] = struct.Struct(f"<{floats}d{recent}q{recent}b")
    return found


class DetectorCodec:
    """Packs and unpacks the detectors of one `DetectorConfig`.

    Holds a template detector so that unpacking copies the constants derived from the
    config instead of recomputing them, and builds no fresh profiles to throw away.
    """

    __slots__ = ("_config", "_periods", "_seasons", "_template")

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self._template = Detector(config)
        self._config = self._template.config
        self._seasons = {s.period: s for s in self._template._seasons}
        self._periods = [s.period for s in self._template._seasons]

    @property
    def config(self) -> DetectorConfig:
        return self._config

    # -- pack -----------------------------------------------------------------------------

    def pack(self, det: Detector) -> bytes:
        """The detector's state as bytes; `unpack` gives back a detector that continues
        exactly as this one would."""
        win_d, srt, recent, mem, lk = det._win_d, det._sorted, det._recent, det._mem, det._lk
        arrays = [win_d.tobytes(), det._win_t.tobytes()]
        zero = bisect_left(srt, 0.0)
        if zero < len(srt) and srt[zero] == 0.0 and _bits(srt) != _bits(sorted(win_d)):
            arrays.append(_bits(srt))  # both signed zeros in it: keep their exact order
            flags = _SORTED_STORED
        else:
            flags = 0
        arrays += (det._ring.tobytes(), det._gate.tobytes(), det._lk_ring.tobytes())
        flags |= (
            (_FIRST_T_NONE if det._first_t is None else 0)
            | (_LAST_T_NONE if det._last_t is None else 0)
            | (_PREV_D_NONE if det._prev_d is None else 0)
            | (_PREV_X_NONE if det._prev_x is None else 0)
            | (_EXCEEDING if det._exceeding else 0)
            | (_FLAT_QUIET if det._flat_quiet else 0)
        )
        seasons = det._seasons
        active = _NO_SEASON if det._active is None else seasons.index(det._active)
        head = _HEAD.pack(
            VERSION,
            flags,
            _KIND_CODE[det._peak_kind],
            active,
            det._n,
            det._n_slow,
            det._flat,
            det._run,
            det._last_finding,
            det._lk_n,
            det._mem_state,
            det._mem_quiet,
            _or_zero(det._first_t),
            _or_zero(det._last_t),
            det._dt,
            det._mu,
            det._sigma,
            det._tail,
            det._vshort,
            det._vlong,
            det._var_q,
            _or_zero(det._prev_d),
            _or_zero(det._prev_x),
            det._p_same,
            det._shift_q,
            det._shift_rms,
            det._peak_z,
            lk[0],
            lk[1],
            det._lo,
            det._hi,
            det._refresh_at,
            len(win_d),
            len(det._ring),
            len(det._gate),
            len(det._lk_ring),
            len(recent),
            len(mem),
            len(seasons),
        )
        if mem or recent:  # episode memory and recent anomalies: often none
            arrays.append(
                _sequences(3 * len(mem), len(recent)).pack(
                    *[v for item in mem for v in item],
                    *(i for i, _ in recent),
                    *(sign for _, sign in recent),
                )
            )
        first_t = det._first_t
        return b"".join((head, *arrays, *(_pack_season(s, first_t) for s in seasons)))

    # -- unpack ---------------------------------------------------------------------------

    def unpack(self, data: bytes) -> Detector:
        """A detector from `pack`'s bytes (of a detector with this codec's config; with
        another config, as `Detector.from_state` does: a smaller `window` keeps the newest
        values, seasons not stored or of another bucket count start fresh)."""
        head = _HEAD.unpack_from(data)
        if head[0] != VERSION:
            raise ValueError(f"unsupported packed detector version {head[0]!r}")
        template = self._template
        det = Detector.__new__(Detector)
        det._cfg = template._cfg
        det._up, det._down = template._up, template._down
        det._slow_up, det._slow_down = template._slow_up, template._slow_down
        det._var_up, det._var_down = template._var_up, template._var_down
        (
            _,
            flags,
            kind,
            active,
            det._n,
            det._n_slow,
            det._flat,
            det._run,
            det._last_finding,
            det._lk_n,
            det._mem_state,
            det._mem_quiet,
            first_t,
            last_t,
            det._dt,
            det._mu,
            det._sigma,
            det._tail,
            det._vshort,
            det._vlong,
            det._var_q,
            prev_d,
            prev_x,
            det._p_same,
            det._shift_q,
            det._shift_rms,
            det._peak_z,
            lk0,
            lk1,
            det._lo,
            det._hi,
            det._refresh_at,
            n_win,
            n_ring,
            n_gate,
            n_lk,
            n_recent,
            n_mem,
            n_seasons,
        ) = head
        det._peak_kind = _KINDS[kind]
        det._first_t = None if flags & _FIRST_T_NONE else first_t
        det._last_t = None if flags & _LAST_T_NONE else last_t
        det._prev_d = None if flags & _PREV_D_NONE else prev_d
        det._prev_x = None if flags & _PREV_X_NONE else prev_x
        det._exceeding = bool(flags & _EXCEEDING)
        det._flat_quiet = bool(flags & _FLAT_QUIET)
        det._lk = [lk0, lk1]
        o = _HEAD.size
        win_d = array("d", data[o : o + 8 * n_win])
        win_t = array("d", data[o + 8 * n_win : o + 16 * n_win])
        o += 16 * n_win
        stored_sorted = flags & _SORTED_STORED
        if stored_sorted:
            srt = array("d", data[o : o + 8 * n_win]).tolist()
            o += 8 * n_win
        keep = self._config.window
        if n_win > keep:  # packed with a larger window: the newest values, as from_state
            win_d, win_t, stored_sorted = win_d[-keep:], win_t[-keep:], 0
        det._win_d, det._win_t = win_d, win_t
        det._sorted = srt if stored_sorted else sorted(win_d)
        det._ring = array("d", data[o : o + 8 * n_ring])
        o += 8 * n_ring
        det._gate = array("d", data[o : o + 8 * n_gate])
        o += 8 * n_gate
        det._lk_ring = array("d", data[o : o + 8 * n_lk])
        o += 8 * n_lk
        det._mem, det._recent = [], deque()
        if n_mem or n_recent:
            sequences = _sequences(3 * n_mem, n_recent)
            values = sequences.unpack_from(data, o)
            o += sequences.size
            i = 3 * n_mem
            det._mem = [list(values[j : j + 3]) for j in range(0, i, 3)]
            det._recent = deque(zip(values[i : i + n_recent], values[i + n_recent :], strict=True))
        offset = o
        stored: list[_Season] = []
        for _ in range(n_seasons):
            season, offset = self._unpack_season(data, offset)
            stored.append(season)
        if offset != len(data):
            raise ValueError(f"packed detector of {len(data)} bytes, {offset} read")
        if [s.period for s in stored] == self._periods:  # this config's seasons
            det._seasons = stored
            det._active = None if active == _NO_SEASON else stored[active]
            return det
        by_period = {season.period: season for season in stored}
        det._seasons = [
            by_period.get(s.period) or _Season(s.period, s.width) for s in template._seasons
        ]
        period = None if active == _NO_SEASON else stored[active].period
        det._active = next((s for s in det._seasons if s.period == period), None)
        return det

    def _unpack_season(self, data: bytes, offset: int) -> tuple[_Season, int]:
        """One season's record at `offset`: (the season, the offset after it)."""
        period, nb, season_flags = _SEASON_HEAD.unpack_from(data, offset)
        offset += _SEASON_HEAD.size
        like = self._seasons.get(period)
        width = period / self._config.season_buckets if like is None else like.width
        if season_flags & _FRESH:
            return _Season(period, width), offset
        body = _SEASON_BODY.unpack_from(data, offset)
        offset += _SEASON_BODY.size
        filled, level, within, total, mean_offset, strength, rotation, lead, k, wide = body
        typecode = COUNT_TYPES[wide]
        size = _COUNT_SIZES[wide]
        end = offset + 8 * k
        values, counts = data[offset:end], data[end : end + size * k]
        offset = end + size * k
        if like is None or nb != like.nb:  # not in this config, or another bucket count
            return _Season(period, width), offset
        season = _Season.__new__(_Season)
        season.period, season.width, season.nb = period, width, nb
        if k < nb:  # the buckets never visited, at both ends
            trail = nb - lead - k
            values = b"".join((bytes(8 * lead), values, bytes(8 * trail)))
            counts = b"".join((bytes(size * lead), counts, bytes(size * trail)))
        if rotation:  # undo the rotation
            back = nb - rotation
            values = values[8 * back :] + values[: 8 * back]
            counts = counts[size * back :] + counts[: size * back]
        season.buckets = array("d", values)
        season.counts = array(typecode, counts)
        season.filled = filled
        season.level = None if season_flags & _LEVEL_NONE else level
        season.within, season.total = within, total
        season.mean_offset, season.strength = mean_offset, strength
        season.active = bool(season_flags & _ACTIVE)
        return season, offset


def _or_zero(value: float | None) -> float:
    return 0.0 if value is None else value


def _bits(values: Any) -> bytes:
    return array("d", values).tobytes()


def _is_fresh(season: _Season) -> bool:
    """Nothing learned: exactly what `_Season(period, width)` holds."""
    if season.level is not None or season.filled or season.active:
        return False
    floats = (season.within, season.total, season.mean_offset, season.strength)
    if struct.pack("<4d", *floats) != _FOUR_ZEROS:
        return False
    return not any(season.counts.tobytes()) and not any(season.buckets.tobytes())


def _pack_season(season: _Season, first_t: float | None) -> bytes:
    """One season's record (see the module docstring)."""
    nb, counts = season.nb, season.counts
    if season.level is None and _is_fresh(season):
        return _SEASON_HEAD.pack(season.period, nb, _FRESH)
    value_raw, count_raw = season.buckets.tobytes(), counts.tobytes()
    size = counts.itemsize
    rotation = lead = trail = 0
    if season.filled < nb and first_t is not None:  # still learning (or min_cycles > 1)
        rotation = season.bucket(first_t)  # start where learning started
        value_raw = value_raw[8 * rotation :] + value_raw[: 8 * rotation]
        count_raw = count_raw[size * rotation :] + count_raw[: size * rotation]
        lead, trail = _zero_runs(count_raw, size)  # buckets never visited, at both ends
        ends = value_raw[: 8 * lead] + value_raw[8 * (nb - trail) :]
        if ends.count(0) != len(ends):  # an offset without a count: keep every bucket
            lead = trail = 0
        value_raw = value_raw[8 * lead : 8 * (nb - trail)]
        count_raw = count_raw[size * lead : size * (nb - trail)]
    flags = (_LEVEL_NONE if season.level is None else 0) | (_ACTIVE if season.active else 0)
    body = _SEASON_BODY.pack(
        season.filled,
        _or_zero(season.level),
        season.within,
        season.total,
        season.mean_offset,
        season.strength,
        rotation,
        lead,
        nb - lead - trail,
        COUNT_TYPES.index(counts.typecode),
    )
    return b"".join((_SEASON_HEAD.pack(season.period, nb, flags), body, value_raw, count_raw))


def _zero_runs(raw: bytes, size: int) -> tuple[int, int]:
    """Items of `size` bytes at the start and at the end of `raw` whose bytes are all
    zero (when every byte is zero: all of them at the start, none at the end)."""
    number = int.from_bytes(raw, "little")
    if not number:
        return len(raw) // size, 0
    first = ((number & -number).bit_length() - 1) // 8  # lowest non-zero byte
    last = (number.bit_length() - 1) // 8  # highest non-zero byte
    return first // size, (len(raw) - 1 - last) // size


_CODECS: dict[int, DetectorCodec] = {}


def _codec(config: DetectorConfig | None) -> DetectorCodec:
    """The codec of a config (cached by identity: configs are frozen and long-lived)."""
    key = id(config)
    codec = _CODECS.get(key)
    if codec is None or (config is not None and codec.config is not config):
        codec = _CODECS[key] = DetectorCodec(config)
    return codec


def pack(det: Detector) -> bytes:
    """`det`'s state as compact, exact bytes."""
    return _codec(det.config).pack(det)


def unpack(data: bytes | memoryview, config: DetectorConfig | None = None) -> Detector:
    """The detector `pack` gave `data` for; pass the config it was made with."""
    return _codec(config).unpack(data)
