"""A memory-lean histogram that answers exactly like HdrHistogram.

`SparseHistogram` uses the bucket layout of `hdrh.histogram.HdrHistogram`
(`HdrLayout` reimplements its bucket maths: unit magnitude, sub-buckets, counts
index) and gives the same percentiles, min, max and mean, and the same V2
compressed encoding (the same payload, byte for byte), without a dense counts array
per window.

Representation
--------------
The state is chosen by the counts themselves; both states give the same answers.

* **sparse** (the start): one sorted `array('Q')`. Each non-empty bucket is one
  64-bit word, ``counts_index << count_bits | count``. ``count_bits`` is
  ``64 - counts_len.bit_length()`` (52 for the default layout). So sorting the
  words sorts the buckets, and ``bisect`` finds one in O(log k). There is no
  Python object per bucket: a window of 5 events costs a 56-byte instance, a
  64-byte array header and a 64-byte buffer.
* **dense**: one `array('q', counts_len)` with HdrHistogram's counts array.
  Promotion changes the instance's class to `_DenseHistogram`, a subclass with
  the same slots and a different `record`. So neither hot path tests which
  state it is in.

Break-even
----------
Both states pay the same fixed cost: the instance and a 64-byte `array`
header. A sparse histogram with ``k`` buckets keeps about ``8 * k * 17 / 16``
bytes of buffer, because `array.insert` over-allocates by about 1/16. A dense
one keeps ``8 * counts_len`` bytes. So a histogram is promoted when it would
need more than ``promote_at = counts_len * 16 // 17`` buckets. A count too big
for ``count_bits`` also promotes it. For the default layout (1 us .. 1 h, 2
digits; counts_len 3328, about 26.7 KB dense) ``promote_at`` is 3132. Latency
data rarely fills that many buckets, so in practice only synthetic or very wide
data is promoted. Call `SparseHistogram.densify` to promote a series you know is
hot: a dense record is about three times as fast as a sparse one with hundreds
of buckets.

Deviations from `HdrHistogram` (by design)
-------------------------------------------
* Values above ``highest`` are clamped to ``highest``. HdrHistogram records
  them up to the end of its last bucket and silently drops larger ones.
  Negative values are recorded as 0; HdrHistogram drops them.
* `max_value` is computed from the counts. When every value is in counts index
  0 it returns 0. This matches HdrHistogram exactly when ``lowest == 1`` (index
  0 holds only the value 0). With a coarser ``lowest``, HdrHistogram returns
  the top of bucket 0 if a non-zero value fell into it.
* `values_at_percentiles` returns a key for every percentile requested, with
  the same value `value_at_percentile` gives. HdrHistogram's dict version drops
  percentiles above 100 and returns ``{}`` when the histogram is empty.
* Past 2**53 total counts the float count target can round above the total;
  it is capped at the total here (HdrHistogram would then return 0).

Everything is pure: no I/O, no clocks, standard library only.
"""

from __future__ import annotations

import base64
import math
import operator
import struct
import sys
import zlib
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import accumulate, compress

__all__ = ["HdrLayout", "SparseHistogram", "layout"]

# V2 wire format (hdrh/codec.py): cookie bases; bits 4..7 hold the word-size nibble.
_V2_ENCODING_COOKIE = 0x1C849303 | 0x10
_V2_COMPRESSION_COOKIE = 0x1C849304 | 0x10
_COOKIE_BASE_MASK = ~0xF0
# cookie, payload_len, normalizing index offset, digits, lowest, highest, int-to-double ratio
_PAYLOAD_HEADER = struct.Struct(">IIIIqqd")
_EXTERNAL_HEADER = struct.Struct(">II")  # compression cookie, compressed length
_MAX_COUNT = (1 << 63) - 1  # HdrHistogram counts are signed 64-bit
_SMALL_INT_MAX = 256  # CPython caches ints -5..256; larger ones are separate objects
_BULK_MIN = 16  # below this many values, `record` per value beats building a tally
_TOPS_MAX = 1 << 16  # largest counts_len given a `bucket_tops` table (the default is 3328)


def _bucket_count(highest: int, sub_bucket_count: int, unit_magnitude: int) -> int:
    """HdrHistogram's get_bucket_count: buckets needed to cover `highest`."""
    smallest_untrackable = sub_bucket_count << unit_magnitude
    needed = 1
    while smallest_untrackable <= highest:
        if smallest_untrackable > sys.maxsize // 2:
            return needed + 1
        smallest_untrackable <<= 1
        needed += 1
    return needed


class HdrLayout:
    """Bucket layout identical to ``HdrHistogram(lowest, highest, digits)``."""

    __slots__ = (
        "_base",
        "_cmask",
        "_count_bits",
        "_shift",
        "_tops",
        "bucket_count",
        "counts_len",
        "digits",
        "highest",
        "lowest",
        "promote_at",
        "sub_bucket_count",
        "sub_bucket_half_count",
        "sub_bucket_half_count_magnitude",
        "sub_bucket_mask",
        "unit_magnitude",
    )

    def __init__(self, lowest: int = 1, highest: int = 3_600_000_000, digits: int = 2) -> None:
        lowest, highest, digits = map(operator.index, (lowest, highest, digits))
        if not 1 <= digits <= 5:
            raise ValueError(f"digits must be in 1..5, got {digits}")
        if lowest < 1:
            raise ValueError(f"lowest must be >= 1, got {lowest}")
        if highest < 2 * lowest:
            raise ValueError(f"highest must be >= 2 * lowest, got {highest}")
        self.lowest = lowest
        self.highest = highest
        self.digits = digits
        # Same (float) formulas as HdrHistogram.__init__, so edge cases round identically.
        self.unit_magnitude = math.floor(math.log(lowest) / math.log(2))
        largest_single_unit = 2 * math.pow(10, digits)
        count_mag = math.ceil(math.log(largest_single_unit) / math.log(2))
        self.sub_bucket_half_count_magnitude = count_mag - 1 if count_mag > 1 else 0
        self.sub_bucket_count = int(math.pow(2, self.sub_bucket_half_count_magnitude + 1))
        self.sub_bucket_half_count = self.sub_bucket_count // 2
        self.sub_bucket_mask = (self.sub_bucket_count - 1) << self.unit_magnitude
        self.bucket_count = _bucket_count(highest, self.sub_bucket_count, self.unit_magnitude)
        self.counts_len = (self.bucket_count + 1) * self.sub_bucket_half_count

        # Hot-path tables indexed by bl = (value | sub_bucket_mask).bit_length():
        # bucket b = bl - s (s = mask bit length), index = (b << half_mag) + (value >> (b + unit)).
        s = self.sub_bucket_mask.bit_length()
        h, u = self.sub_bucket_half_count_magnitude, self.unit_magnitude
        top = max(highest.bit_length(), s) + 1
        self._base = tuple((max(bl - s, 0) << h) for bl in range(top))
        self._shift = tuple(max(bl - s, 0) + u for bl in range(top))

        self._count_bits = 64 - self.counts_len.bit_length()
        self._cmask = (1 << self._count_bits) - 1
        self.promote_at = self.counts_len * 16 // 17
        self._tops: list[int] | None = None  # see `bucket_tops`

    # -- HdrHistogram value maths -------------------------------------------------------------

    def index_of(self, value: int) -> int:
        """HdrHistogram's counts index for `value` (clamped to 0..highest)."""
        if value > self.highest:
            value = self.highest
        elif value < 0:
            value = 0
        bl = (value | self.sub_bucket_mask).bit_length()
        return self._base[bl] + (value >> self._shift[bl])

    def _bucket_and_sub(self, value: int) -> tuple[int, int]:
        value = max(int(value), 0)
        bucket = (
            (value | self.sub_bucket_mask).bit_length()
            - self.unit_magnitude
            - (self.sub_bucket_half_count_magnitude + 1)
        )
        return bucket, value >> (bucket + self.unit_magnitude)

    def value_from_index(self, index: int) -> int:
        """Lowest value of the bucket at counts `index` (HdrHistogram.get_value_from_index)."""
        bucket = (index >> self.sub_bucket_half_count_magnitude) - 1
        sub = (index & (self.sub_bucket_half_count - 1)) + self.sub_bucket_half_count
        if bucket < 0:
            sub -= self.sub_bucket_half_count
            bucket = 0
        return sub << (bucket + self.unit_magnitude)

    def lowest_equivalent(self, value: int) -> int:
        """Smallest value in the same bucket as `value`."""
        bucket, sub = self._bucket_and_sub(value)
        return sub << (bucket + self.unit_magnitude)

    def _range_size(self, value: int) -> int:
        bucket, sub = self._bucket_and_sub(value)
        if sub >= self.sub_bucket_count:
            bucket += 1
        return 1 << (self.unit_magnitude + bucket)

    def highest_equivalent(self, value: int) -> int:
        """Largest value in the same bucket as `value`."""
        return self.lowest_equivalent(value) + self._range_size(value) - 1

    def median_equivalent(self, value: int) -> int:
        """Middle of the bucket holding `value` (what HdrHistogram's mean uses)."""
        return self.lowest_equivalent(value) + (self._range_size(value) >> 1)

    def bucket_tops(self) -> list[int] | None:
        """``highest_equivalent(value_from_index(i))`` for every counts index ``i``: what a
        percentile falling in that bucket reports. Built on first use; None for layouts
        with more than `_TOPS_MAX` counts (callers then compute it per index)."""
        if self._tops is None and self.counts_len <= _TOPS_MAX:
            vfi, heq = self.value_from_index, self.highest_equivalent
            self._tops = [heq(vfi(i)) for i in range(self.counts_len)]
        return self._tops

    # -- identity -----------------------------------------------------------------------------

    def _key(self) -> tuple[int, int, int]:
        return (self.lowest, self.highest, self.digits)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HdrLayout):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"HdrLayout(lowest={self.lowest}, highest={self.highest}, digits={self.digits}, "
            f"counts_len={self.counts_len})"
        )


@lru_cache(maxsize=64)
def _cached_layout(lowest: int, highest: int, digits: int) -> HdrLayout:
    return HdrLayout(lowest, highest, digits)


def layout(lowest: int = 1, highest: int = 3_600_000_000, digits: int = 2) -> HdrLayout:
    """Shared (lru-cached) `HdrLayout`: equal arguments, however passed, give one object."""
    return _cached_layout(*map(operator.index, (lowest, highest, digits)))


def _put_varint(out: bytearray, value: int) -> None:
    """Append a zig-zagged value as LEB128 (at most 9 bytes, the 9th holding 8 bits)."""
    for _ in range(8):
        if value < 0x80:
            out.append(value)
            return
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value & 0xFF)


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode the signed ZigZag LEB128 value at ``buf[pos]``; returns (value, next pos)."""
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise ValueError("truncated varint in histogram payload")
        b = buf[pos]
        pos += 1
        if shift == 56:  # 9th byte: all 8 bits are payload
            value |= b << 56
            break
        value |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    return (value >> 1) ^ -(value & 1), pos


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    _put_varint(out, value)
    return bytes(out)


# The payload bytes of a gap of g >= 1 between non-empty counts indices (g - 1 empty
# buckets, written as the zig-zagged -(g - 1); nothing when g == 1) and of a count c >= 1
# (zig-zagged 2c), for the small gaps and counts that sparse windows are made of.
_TABLE_SIZE = 4096
_GAP_BYTES = (b"", b"", *(_varint_bytes(2 * (g - 1) - 1) for g in range(2, _TABLE_SIZE)))
_COUNT_BYTES = (b"", *(_varint_bytes(2 * c) for c in range(1, _TABLE_SIZE)))


def _payload(indices: list[int], counts: list[int]) -> bytes:
    """The V2 payload (zig-zag LEB128 counts, empty runs as negatives) of the non-empty
    buckets `indices` (ascending) with their `counts` (all >= 1)."""
    if not indices:
        return b""
    gaps = list(map(operator.sub, indices, [-1, *indices[:-1]]))
    if max(gaps) < _TABLE_SIZE and max(counts) < _TABLE_SIZE:  # table lookups, in C
        parts: list[bytes] = [b""] * (2 * len(gaps))
        parts[::2] = map(_GAP_BYTES.__getitem__, gaps)
        parts[1::2] = map(_COUNT_BYTES.__getitem__, counts)
        return b"".join(parts)
    out = bytearray()
    for gap, count in zip(gaps, counts, strict=True):
        if gap > 1:
            _put_varint(out, 2 * (gap - 1) - 1)
        _put_varint(out, count << 1)
    return bytes(out)


def _merged_words(mine: array, theirs: array, count_bits: int, count_mask: int) -> array:
    """The sparse words of two sparse histograms added together. Each holds an index at
    most once, so after sorting the words a shared index is two neighbours: the second's
    count goes to the first, and the second is dropped (counts cannot overflow: checked
    by the caller)."""
    merged = sorted(mine + theirs)
    indices = [w >> count_bits for w in merged]
    shared = list(compress(range(1, len(indices)), map(operator.eq, indices[1:], indices)))
    if shared:
        keep = [True] * len(merged)
        for k in shared:
            merged[k - 1] += merged[k] & count_mask
            keep[k] = False
        merged = list(compress(merged, keep))
    return array("Q", merged)


# Below this many bytes (header + payload) a histogram's zlib stream holds it as it is, in
# one stored block: deflating saves about a fifth of such a payload (~25 bytes of a 125-byte
# window) but costs 5-9 us a rollup in zlib's setup, as much as the rest of its encoding.
STORED_BELOW = 256
_ZLIB_HEADER = b"\x78\x01"  # deflate with a 32 KB window, no dictionary, check bits
_STORED_LAST_BLOCK = b"\x01"  # BFINAL = 1, BTYPE = 00 (stored)
_STORED_LENGTHS = struct.Struct("<HH")  # a stored block's LEN and its one's complement
_ADLER = struct.Struct(">I")


def _deflate(data: bytes) -> bytes:
    """A zlib stream (RFC 1950) of `data`, which any inflater reads.

    Small data goes in one stored block (see `STORED_BELOW`). Larger data is compressed
    with a window sized to it and run-length matching only (`Z_RLE`): `zlib.compress`
    sets up a 32 KB window and a 64 K-entry hash table for every call, 5 to 50 us even for
    a few hundred bytes. A payload's repeats are runs of equal counts, so on rollups'
    payloads RLE came within 0.5 % of the default strategy's size in two thirds of its
    time (10 against 15 us for ~330 bytes; docs/benchmarks.md).
    """
    size = len(data)
    if size < STORED_BELOW:
        return b"".join(
            (
                _ZLIB_HEADER,
                _STORED_LAST_BLOCK,
                _STORED_LENGTHS.pack(size, size ^ 0xFFFF),
                data,
                _ADLER.pack(zlib.adler32(data)),
            )
        )
    wbits = min(15, max(10, (size - 1).bit_length()))
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits, 1, zlib.Z_RLE)
    return packer.compress(data) + packer.flush()


def encode_payload(lay: HdrLayout, payload: bytes) -> str:
    """The base64 V2 compressed encoding of a histogram of layout `lay` whose V2 payload
    (see `_payload`) is `payload`. HdrHistogram's decoders read it; its payload is the
    one HdrHistogram.encode() compresses, byte for byte (only the zlib stream differs: see
    `_deflate`)."""
    header = _PAYLOAD_HEADER.pack(
        _V2_ENCODING_COOKIE, len(payload), 0, lay.digits, lay.lowest, lay.highest, 1.0
    )
    compressed = _deflate(header + payload)
    blob = _EXTERNAL_HEADER.pack(_V2_COMPRESSION_COOKIE, len(compressed)) + compressed
    return base64.b64encode(blob).decode("ascii")


_UNZIGZAG = tuple((b >> 1) ^ -(b & 1) for b in range(0x80))  # single-byte varints


class SparseHistogram:
    """HdrHistogram-compatible histogram, sparse until dense is cheaper.

    Values are ints (microseconds for latency windows). Every query gives the
    same result as `hdrh.histogram.HdrHistogram` fed the same (clamped) values.
    """

    __slots__ = ("_counts", "layout", "total")

    layout: HdrLayout
    total: int

    def __init__(self, layout: HdrLayout) -> None:
        self.layout = layout
        self.total = 0
        self._counts = array("Q")  # sparse: sorted words index << count_bits | count

    # -- recording ----------------------------------------------------------------------------

    def record(self, value: int, count: int = 1) -> None:
        """Record `value` `count` times (count >= 1)."""
        lay = self.layout
        if value > lay.highest:
            value = lay.highest
        elif value < 0:
            value = 0
        bl = (value | lay.sub_bucket_mask).bit_length()
        key = (lay._base[bl] + (value >> lay._shift[bl])) << lay._count_bits
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        words = self._counts
        pos = bisect_left(words, key)
        if pos < len(words):
            word = words[pos] + count
            if word - key <= lay._cmask:  # same bucket and no count overflow
                words[pos] = word
                self.total += count
                return
            if word - count - key <= lay._cmask:  # same bucket, count overflows the field
                self._promote()
                self.record(value, count)
                return
        if len(words) >= lay.promote_at or count > lay._cmask:
            self._promote()
            self.record(value, count)
            return
        words.insert(pos, key | count)
        self.total += count

    def record_many(self, values: Iterable[int]) -> None:
        """Record each value once; faster per value than `record` for batches."""
        vals = values if isinstance(values, list) else list(values)
        if len(vals) < _BULK_MIN:
            record = self.record
            for value in vals:
                record(value)
            return
        self._add_tally(self._tally(vals))

    def _tally(self, vals: list[int]) -> dict[int, int]:
        """Counts per counts index for `vals` (clamped like `record`)."""
        lay = self.layout
        hi = lay.highest
        if max(vals) > hi or min(vals) < 0:
            vals = [hi if v > hi else 0 if v < 0 else v for v in vals]
        mask, base, shift = lay.sub_bucket_mask, lay._base, lay._shift
        return Counter([base[(bl := (v | mask).bit_length())] + (v >> shift[bl]) for v in vals])

    def _add_at(self, index: int, count: int) -> bool:
        """Add `count` at counts `index` in place; False if that needs the dense state."""
        lay = self.layout
        cb, cmask = lay._count_bits, lay._cmask
        key = index << cb
        words = self._counts
        pos = bisect_left(words, key)
        if pos < len(words) and words[pos] >> cb == index:
            total = (words[pos] & cmask) + count
            if total > cmask:
                return False
            words[pos] = key | total
            return True
        if len(words) >= lay.promote_at or count > cmask:
            return False
        words.insert(pos, key | count)
        return True

    def _add_tally(self, tally: dict[int, int]) -> None:
        """Add ``{counts_index: count}`` (all counts >= 1, same layout) to this histogram."""
        if not tally:
            return
        lay = self.layout
        cb, cmask = lay._count_bits, lay._cmask
        words = self._counts
        added = sum(tally.values())
        if self.total + added > cmask or len(words) + len(tally) > lay.promote_at:
            self._add_tally_checked(tally)  # may need the dense state
            return
        # No bucket can outgrow its count field (a count is at most the total) and the
        # buckets fit: the histogram stays sparse.
        if not words:  # a window's first flush, a fresh coarse window: build it at once
            self._counts = array("Q", sorted([(i << cb) | c for i, c in tally.items()]))
        else:  # bisect each bucket: add in place or insert
            for index, count in tally.items():
                key = index << cb
                pos = bisect_left(words, key)
                if pos < len(words) and words[pos] >> cb == index:
                    words[pos] += count
                else:
                    words.insert(pos, key | count)
        self.total += added

    def _add_tally_checked(self, tally: dict[int, int]) -> None:
        """`_add_tally` bucket by bucket, promoting to dense at the first that needs it."""
        items = list(tally.items())
        for n, (index, count) in enumerate(items):
            if not self._add_at(index, count):
                self.total += sum(c for _, c in items[:n])
                self._promote()
                self._add_tally(dict(items[n:]))
                return
        self.total += sum(tally.values())

    def merge(self, other: SparseHistogram) -> None:
        """Add `other`'s counts (exact, like HdrHistogram.add).

        With a different layout each of `other`'s buckets is re-recorded at its
        lowest value, as HdrHistogram.add does.
        """
        same = other.layout is self.layout or other.layout == self.layout
        if same and not self.total and type(self) is SparseHistogram:  # empty: become a copy
            self._counts = array(other._counts.typecode, other._counts)
            self.total = other.total
            self.__class__ = type(other)
            return
        if same and type(self) is SparseHistogram and type(other) is SparseHistogram:
            lay = self.layout
            words, theirs = self._counts, other._counts
            fits = len(words) + len(theirs) <= lay.promote_at
            if fits and self.total + other.total <= lay._cmask:
                # Both sparse and no bucket can overflow: merge the sorted words in C.
                self._counts = _merged_words(words, theirs, lay._count_bits, lay._cmask)
                self.total += other.total
                return
        indices, counts = other._columns()
        if same:
            self._add_tally(dict(zip(indices, counts, strict=True)))
        else:
            value_from_index = other.layout.value_from_index
            for index, count in zip(indices, counts, strict=True):
                self.record(value_from_index(index), count)

    def to_pairs(self) -> list[int]:
        """Flat ``[index, count, index, count, ...]``: a cheap JSON-able form for state."""
        indices, counts = self._columns()
        pairs = indices + counts
        pairs[::2] = indices
        pairs[1::2] = counts
        return pairs

    @classmethod
    def from_pairs(cls, layout: HdrLayout, pairs: Sequence[int]) -> SparseHistogram:
        """The inverse of `to_pairs` (same layout)."""
        hist = cls(layout)
        tally: dict[int, int] = {}
        for index, count in zip(pairs[::2], pairs[1::2], strict=True):
            if count > 0:
                tally[int(index)] = tally.get(int(index), 0) + int(count)
        hist._add_tally(tally)
        return hist

    def to_words(self) -> str | None:
        """The sparse buckets as base64 of their little-endian words (`index << bits |
        count`, `bits` = the layout's count bits): the changelog's compact form, a few
        times cheaper to make and to read than `to_pairs`. None once dense."""
        if type(self) is not SparseHistogram:
            return None
        words = self._counts
        if sys.byteorder != "little":
            words = array("Q", words)
            words.byteswap()
        return base64.b64encode(words).decode("ascii")

    @classmethod
    def from_words(cls, layout: HdrLayout, text: str, bits: int) -> SparseHistogram:
        """The inverse of `to_words`, written with `bits` count bits; ValueError if the
        words are not ascending buckets of `layout` with positive counts."""
        words = array("Q", base64.b64decode(text, validate=True))
        if sys.byteorder != "little":
            words.byteswap()
        mask = (1 << bits) - 1
        indices = [w >> bits for w in words]
        counts = [w & mask for w in words]
        if (
            not all(map(operator.lt, indices, indices[1:]))
            or (indices and indices[-1] >= layout.counts_len)
            or not all(counts)
        ):
            raise ValueError("histogram words are not ascending buckets with counts")
        if bits != layout._count_bits or max(counts, default=0) > layout._cmask:
            pairs = [x for pair in zip(indices, counts, strict=True) for x in pair]
            return cls.from_pairs(layout, pairs)
        hist = cls(layout)
        hist._counts = words
        hist.total = sum(counts)
        if len(words) > layout.promote_at or hist.total > layout._cmask:
            hist._promote()
        return hist

    def densify(self) -> None:
        """Switch to the dense representation now (e.g. for a series known to be hot)."""
        self._promote()

    def _promote(self) -> None:
        lay = self.layout
        cb, cmask = lay._count_bits, lay._cmask
        dense = array("q", [0]) * lay.counts_len  # exact size (frombytes over-allocates)
        for word in self._counts:
            dense[word >> cb] = word & cmask
        self._counts = dense
        self.__class__ = _DenseHistogram

    # -- queries ------------------------------------------------------------------------------

    def is_dense(self) -> bool:
        """True once promoted to a dense counts array."""
        return False

    def items(self) -> list[tuple[int, int]]:
        """``(counts_index, count)`` for every non-empty bucket, ascending by index."""
        cb, cmask = self.layout._count_bits, self.layout._cmask
        return [(w >> cb, w & cmask) for w in self._counts]

    def _columns(self) -> tuple[list[int], list[int]]:
        """`items` as two lists: the counts indices and their counts."""
        cb, cmask = self.layout._count_bits, self.layout._cmask
        words = self._counts
        return [w >> cb for w in words], [w & cmask for w in words]

    def _indices_at(self, targets: list[int]) -> list[int]:
        """Counts index where the running total first reaches each target (HdrHistogram's scan)."""
        cb, cmask = self.layout._count_bits, self.layout._cmask
        words = self._counts
        running = list(accumulate([w & cmask for w in words]))
        return [words[bisect_left(running, t)] >> cb for t in targets]

    def _target(self, percentile: float) -> int:
        # HdrHistogram.get_target_count_at_percentile, same float expression; capped at total,
        # which only matters past 2**53 counts, where the float can round above the total.
        requested = min(percentile, 100.0)
        return min(max(int((requested * self.total / 100) + 0.5), 1), self.total)

    def _value_for(self, index: int, percentile: float) -> int:
        lay = self.layout
        value = lay.value_from_index(index)
        return lay.highest_equivalent(value) if percentile else lay.lowest_equivalent(value)

    def value_at_percentile(self, percentile: float) -> int:
        """HdrHistogram.get_value_at_percentile: `percentile` in 0..100; 0 when empty."""
        if not self.total:
            return 0
        (index,) = self._indices_at([self._target(percentile)])
        return self._value_for(index, percentile)

    def values_at_percentiles(self, percentiles: Sequence[float]) -> dict[float, int]:
        """`value_at_percentile` for each percentile, with one pass over the counts."""
        percentiles = list(percentiles)
        if not self.total:
            return dict.fromkeys(percentiles, 0)
        indices = self._indices_at([self._target(p) for p in percentiles])
        tops = self.layout.bucket_tops()
        if tops is None:
            return {p: self._value_for(i, p) for p, i in zip(percentiles, indices, strict=True)}
        return {
            p: tops[i] if p else self._value_for(i, p)
            for p, i in zip(percentiles, indices, strict=True)
        }

    def min_value(self) -> int:
        """HdrHistogram.get_min_value: lowest equivalent of the minimum; 0 when empty."""
        items = self.items()
        if not items or items[0][0] == 0:
            return 0
        return self.layout.value_from_index(items[0][0])

    def max_value(self) -> int:
        """HdrHistogram.get_max_value: highest equivalent of the maximum; 0 when empty."""
        items = self.items()
        if not items or items[-1][0] == 0:
            return 0
        lay = self.layout
        return lay.highest_equivalent(lay.value_from_index(items[-1][0]))

    def mean(self) -> float:
        """HdrHistogram.get_mean_value: count-weighted mean of bucket midpoints."""
        if not self.total:
            return 0.0
        lay = self.layout
        vfi, heq, med = lay.value_from_index, lay.highest_equivalent, lay.median_equivalent
        weighted = sum(count * med(heq(vfi(index))) for index, count in self.items())
        return float(weighted) / self.total

    # -- encoding -----------------------------------------------------------------------------

    def encode(self) -> str:
        """Base64 V2 compressed encoding, as HdrHistogram.encode() (see `encode_payload`)."""
        return encode_payload(self.layout, _payload(*self._columns()))

    @classmethod
    def decode(cls, encoded: str | bytes, layout: HdrLayout | None = None) -> SparseHistogram:
        """Decode `encode()` / HdrHistogram.encode() output.

        The layout comes from the header. If `layout` is given and differs, the
        counts are re-recorded into it (HdrHistogram.add semantics).
        Raises ValueError on malformed input.
        """
        try:
            blob = base64.b64decode(encoded)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"histogram is not valid base64: {exc}") from exc
        if len(blob) < _EXTERNAL_HEADER.size:
            raise ValueError("encoded histogram too short")
        cookie, length = _EXTERNAL_HEADER.unpack_from(blob)
        if cookie & _COOKIE_BASE_MASK != _V2_COMPRESSION_COOKIE & _COOKIE_BASE_MASK:
            raise ValueError(f"not a V2 compressed histogram (cookie {cookie:#x})")
        if length != len(blob) - _EXTERNAL_HEADER.size:
            raise ValueError("compressed length does not match the header")
        try:
            data = zlib.decompress(blob[_EXTERNAL_HEADER.size :])
        except zlib.error as exc:
            raise ValueError(f"corrupt histogram payload: {exc}") from exc
        if len(data) < _PAYLOAD_HEADER.size:
            raise ValueError("histogram payload too short")
        cookie, payload_len, norm_offset, digits, lowest, highest, _ratio = (
            _PAYLOAD_HEADER.unpack_from(data)
        )
        if cookie & _COOKIE_BASE_MASK != _V2_ENCODING_COOKIE & _COOKIE_BASE_MASK:
            raise ValueError(f"not a V2 histogram payload (cookie {cookie:#x})")
        if norm_offset:
            raise ValueError("normalizing index offsets are not supported")
        end = _PAYLOAD_HEADER.size + payload_len
        if end > len(data):
            raise ValueError("histogram payload shorter than its declared length")
        source = _cached_layout(lowest, highest, digits)

        tally: dict[int, int] = {}
        index = 0
        pos = _PAYLOAD_HEADER.size
        while pos < end:
            b = data[pos]
            if b < 0x80:
                value = _UNZIGZAG[b]
                pos += 1
            else:
                value, pos = _read_varint(data, pos, end)
            if value < 0:
                index -= value
                continue
            if value:
                if index >= source.counts_len or value > _MAX_COUNT:
                    raise ValueError(f"bad count {value} at counts index {index}")
                tally[index] = value
            index += 1

        hist = cls(source)
        hist._add_tally(tally)
        if layout is None or layout == source:
            if layout is not None:
                hist.layout = layout  # equal layouts: adopt the caller's object
            return hist
        converted = cls(layout)
        converted.merge(hist)
        return converted

    # -- memory, equality ---------------------------------------------------------------------

    def nbytes(self) -> int:
        """Bytes held by this instance: object, counts array (with slack), total if boxed."""
        size = sys.getsizeof(self) + sys.getsizeof(self._counts)
        if self.total > _SMALL_INT_MAX:
            size += sys.getsizeof(self.total)
        return size

    def copy(self) -> SparseHistogram:
        """Independent copy in the same state."""
        clone = object.__new__(type(self))
        clone.layout = self.layout
        clone.total = self.total
        clone._counts = array(self._counts.typecode, self._counts)
        return clone

    def __len__(self) -> int:
        """Number of recorded values (the total count)."""
        return self.total

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseHistogram):
            return NotImplemented
        return (
            self.layout == other.layout
            and self.total == other.total
            and self.items() == other.items()
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        state = "dense" if self.is_dense() else "sparse"
        return f"<SparseHistogram {state} total={self.total} buckets={len(self.items())}>"


class _DenseHistogram(SparseHistogram):
    """Dense state of `SparseHistogram` (same slots; `_counts` is HdrHistogram's counts array)."""

    __slots__ = ()

    def record(self, value: int, count: int = 1) -> None:
        """Record `value` `count` times (count >= 1)."""
        lay = self.layout
        if value > lay.highest:
            value = lay.highest
        elif value < 0:
            value = 0
        bl = (value | lay.sub_bucket_mask).bit_length()
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self._counts[lay._base[bl] + (value >> lay._shift[bl])] += count
        self.total += count

    def _add_tally(self, tally: dict[int, int]) -> None:
        counts = self._counts
        for index, count in tally.items():
            counts[index] += count
        self.total += sum(tally.values())

    def _promote(self) -> None:
        return

    def is_dense(self) -> bool:
        return True

    def items(self) -> list[tuple[int, int]]:
        return [(i, c) for i, c in enumerate(self._counts) if c]

    def _columns(self) -> tuple[list[int], list[int]]:
        counts = self._counts
        return list(compress(range(len(counts)), counts)), list(filter(None, counts))

    def _indices_at(self, targets: list[int]) -> list[int]:
        # Running totals over every index: the bisect position is the counts index itself.
        running = list(accumulate(self._counts))
        return [bisect_left(running, t) for t in targets]
