"""SparseHistogram answers exactly like hdrh's HdrHistogram, in both its sparse and dense states.

The reference is `hdrh.histogram.HdrHistogram`. It is fed the same values clamped the way
SparseHistogram records them: above ``highest`` to ``highest``, negatives to 0.

Exact quantile (for the relative-error checks): the order statistic at HdrHistogram's rank,
``x[r - 1]`` where ``x`` is the sorted (clamped) data and ``r = max(1, int(p * n / 100 + 0.5))``.
That is nearest rank with half-up rounding. HdrHistogram reports the highest value of that
value's bucket (the lowest for p == 0). So it must lie within 10**-digits of it, relatively.
"""

from __future__ import annotations

import base64
import random
import struct
import sys
import zlib
from array import array
from functools import lru_cache

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from histograms.hdr import STORED_BELOW, HdrLayout, SparseHistogram, layout


def same_encoding(ours: str, theirs: bytes) -> bool:
    """True when two V2 compressed encodings hold the same payload, byte for byte (the
    compressed bytes differ: ours sizes zlib's window to the data), and ours is valid."""

    def inflated(encoded: str | bytes) -> bytes:
        blob = base64.b64decode(encoded)
        _cookie, length = struct.unpack_from(">II", blob)
        assert length == len(blob) - 8
        return zlib.decompress(blob[8:])

    return inflated(ours) == inflated(theirs) and ours.encode("ascii") != b""


HIGHEST = 3_600_000_000
PERCENTILES = (0, 1, 50, 90, 95, 99, 99.9, 100)
LAYOUT_PARAMS = [(1, HIGHEST, 2), (1, HIGHEST, 1), (1, HIGHEST, 3), (1000, 10_000_000, 3)]


def clamp(values: list[int], lay: HdrLayout) -> list[int]:
    return [min(max(v, 0), lay.highest) for v in values]


def reference(values: list[int], lay: HdrLayout) -> HdrHistogram:
    hh = HdrHistogram(lay.lowest, lay.highest, lay.digits)
    for v in clamp(values, lay):
        hh.record_value(v)
    return hh


def sparse(values: list[int], lay: HdrLayout | None = None) -> SparseHistogram:
    hist = SparseHistogram(lay or layout())
    for v in values:
        hist.record(v)
    return hist


def dense(values: list[int], lay: HdrLayout | None = None) -> SparseHistogram:
    hist = SparseHistogram(lay or layout())
    hist.densify()
    hist.record_many(values)
    return hist


def ref_counts(hh: HdrHistogram) -> list[tuple[int, int]]:
    return [(i, c) for i, c in enumerate(hh.counts) if c]


@lru_cache
def dataset(name: str, n: int) -> tuple[int, ...]:
    rng = random.Random(f"{name}-{n}")
    if name == "uniform":
        return tuple(rng.randint(0, 2_000_000) for _ in range(n))
    if name == "lognormal":
        return tuple(int(rng.lognormvariate(9.0, 1.5)) for _ in range(n))
    if name == "pareto":  # heavy tail, some values above highest (clamped)
        return tuple(int(200 * rng.paretovariate(0.8)) for _ in range(n))
    raise ValueError(name)


DATASETS = [(name, n) for name in ("uniform", "lognormal", "pareto") for n in (5, 300, 20_000)]


# --- layout maths -------------------------------------------------------------------------------


@pytest.mark.parametrize("params", LAYOUT_PARAMS)
def test_layout_constants_match_hdrhistogram(params: tuple[int, int, int]) -> None:
    lay = HdrLayout(*params)
    hh = HdrHistogram(*params)
    assert lay.counts_len == hh.counts_len
    assert lay.bucket_count == hh.bucket_count
    assert lay.sub_bucket_count == hh.sub_bucket_count
    assert lay.sub_bucket_half_count == hh.sub_bucket_half_count
    assert lay.sub_bucket_half_count_magnitude == hh.sub_bucket_half_count_magnitude
    assert lay.unit_magnitude == hh.unit_magnitude
    assert lay.sub_bucket_mask == hh.sub_bucket_mask


@pytest.mark.parametrize("params", LAYOUT_PARAMS)
def test_index_and_value_maths_match_hdrhistogram(params: tuple[int, int, int]) -> None:
    lay = HdrLayout(*params)
    hh = HdrHistogram(*params)
    rng = random.Random(7)
    values = {0, 1, 2, 3, 127, 128, 255, 256, 257, 1000, 1023, 1024, lay.highest, lay.highest - 1}
    values |= {(1 << k) + d for k in range(lay.highest.bit_length()) for d in (-1, 0, 1)}
    values |= {rng.randint(0, lay.highest) for _ in range(3000)}
    values |= {int(rng.lognormvariate(8, 3)) % (lay.highest + 1) for _ in range(3000)}
    for v in sorted(x for x in values if 0 <= x <= lay.highest):
        assert lay.index_of(v) == hh.get_counts_array_index(v), v
        assert lay.lowest_equivalent(v) == hh.get_lowest_equivalent_value(v), v
        assert lay.highest_equivalent(v) == hh.get_highest_equivalent_value(v), v
        assert lay.median_equivalent(v) == hh._hdr_median_equiv_value(v), v
    for index in range(lay.counts_len):
        assert lay.value_from_index(index) == hh.get_value_from_index(index), index
        if lay.value_from_index(index) <= lay.highest:  # buckets past highest: clamped
            assert lay.index_of(lay.value_from_index(index)) == index


def test_index_of_clamps_out_of_range_values() -> None:
    lay = layout()
    top = lay.index_of(lay.highest)
    assert top < lay.counts_len
    for v in (lay.highest + 1, lay.highest * 2, 2**63, 2**80):
        assert lay.index_of(v) == top
    for v in (-1, -1000, -(2**70)):
        assert lay.index_of(v) == 0
    assert lay.index_of(0) == 0
    assert lay.index_of(1) == 1


def test_layout_is_cached_and_validated() -> None:
    assert layout() is layout(1, HIGHEST, 2)
    assert layout(1, 1_000_000, 3) is layout(1, 1_000_000, 3)
    assert HdrLayout() == layout() and hash(HdrLayout()) == hash(layout())
    assert HdrLayout(1, 1_000_000, 3) != layout()
    assert layout().counts_len == 3328  # 26.6 KB of int64 counts when dense
    for bad in ((0, HIGHEST, 2), (10, 15, 2), (1, HIGHEST, 0), (1, HIGHEST, 6)):
        with pytest.raises(ValueError):
            HdrLayout(*bad)


# --- percentiles, min, max, mean ----------------------------------------------------------------


@pytest.mark.parametrize("state", ["sparse", "dense"])
@pytest.mark.parametrize(("name", "n"), DATASETS)
def test_percentiles_match_hdrhistogram(name: str, n: int, state: str) -> None:
    values = list(dataset(name, n))
    lay = layout()
    hh = reference(values, lay)
    hist = sparse(values) if state == "sparse" else dense(values)
    assert hist.is_dense() == (state == "dense")
    expected = {p: hh.get_value_at_percentile(p) for p in PERCENTILES}
    assert {p: hist.value_at_percentile(p) for p in PERCENTILES} == expected
    assert hist.values_at_percentiles(PERCENTILES) == expected
    assert hh.get_percentile_to_value_dict(list(PERCENTILES)) == expected
    assert hist.min_value() == hh.get_min_value()
    assert hist.max_value() == hh.get_max_value()
    assert hist.mean() == hh.get_mean_value()
    assert hist.total == len(hist) == hh.get_total_count() == n


@pytest.mark.parametrize(("name", "n"), DATASETS)
def test_percentiles_within_relative_error_of_exact_quantile(name: str, n: int) -> None:
    lay = layout()
    xs = sorted(clamp(list(dataset(name, n)), lay))
    hist = sparse(xs)
    tolerance = 10.0**-lay.digits
    for p in PERCENTILES:
        rank = max(1, int(p * n / 100 + 0.5))  # nearest rank, half-up (HdrHistogram's rule)
        exact = xs[rank - 1]
        reported = hist.value_at_percentile(p)
        assert abs(reported - exact) <= exact * tolerance, (p, exact, reported)
        assert reported >= exact if p else reported <= exact


@pytest.mark.parametrize("params", LAYOUT_PARAMS)
def test_other_layouts_match_hdrhistogram(params: tuple[int, int, int]) -> None:
    lay = layout(*params)
    rng = random.Random(11)
    values = [int(rng.lognormvariate(10, 2.5)) for _ in range(2000)] + [0, 1, lay.highest]
    hh = reference(values, lay)
    for hist in (sparse(values, lay), dense(values, lay)):
        assert hist.values_at_percentiles(PERCENTILES) == {
            p: hh.get_value_at_percentile(p) for p in PERCENTILES
        }
        assert hist.min_value() == hh.get_min_value()
        assert hist.max_value() == hh.get_max_value()
        assert hist.mean() == hh.get_mean_value()
        assert hist.items() == ref_counts(hh)
        assert same_encoding(hist.encode(), hh.encode())


def test_layouts_too_large_for_a_tops_table_match_hdrhistogram() -> None:
    lay = layout(1, HIGHEST, 4)  # counts_len 155648: percentiles computed per index
    assert lay.bucket_tops() is None
    assert layout().bucket_tops() == [
        layout().highest_equivalent(layout().value_from_index(i))
        for i in range(layout().counts_len)
    ]
    rng = random.Random(13)
    values = [int(rng.lognormvariate(10, 2.5)) for _ in range(500)] + [0, 1, lay.highest]
    hh = reference(values, lay)
    hist = sparse(values, lay)
    assert hist.values_at_percentiles(PERCENTILES) == hh.get_percentile_to_value_dict(
        list(PERCENTILES)
    )
    assert same_encoding(hist.encode(), hh.encode())


def test_empty_histogram() -> None:
    hist = SparseHistogram(layout())
    hh = HdrHistogram(1, HIGHEST, 2)
    assert hist.total == len(hist) == 0 and not hist
    assert hist.value_at_percentile(50) == hh.get_value_at_percentile(50) == 0
    assert hist.values_at_percentiles([50, 99]) == {50: 0, 99: 0}
    assert hist.min_value() == hh.get_min_value() == 0
    assert hist.max_value() == hh.get_max_value() == 0
    assert hist.mean() == hh.get_mean_value() == 0.0
    assert same_encoding(hist.encode(), hh.encode())


def test_zero_and_clamped_values() -> None:
    lay = layout()
    values = [0, 0, 5, lay.highest + 12345, 10**15, -3]
    hist = sparse(values)
    hh = reference(values, lay)
    assert hist.items() == ref_counts(hh)
    assert hist.min_value() == hh.get_min_value() == 0
    assert hist.max_value() == hh.get_max_value() == lay.highest_equivalent(lay.highest)
    assert hist.values_at_percentiles(PERCENTILES) == hh.get_percentile_to_value_dict(
        list(PERCENTILES)
    )
    assert same_encoding(hist.encode(), hh.encode())


def test_max_value_deviation_when_only_bucket_zero_is_used() -> None:
    """Documented deviation: max is derived from counts; index 0 reads as value 0."""
    lay = layout(1000, 10_000_000, 3)  # unit magnitude 9: index 0 holds 0..511
    hist = sparse([300], lay)
    hh = reference([300], lay)
    assert hist.items() == ref_counts(hh) == [(0, 1)]
    assert hist.max_value() == 0 and hh.get_max_value() == 511
    assert hist.values_at_percentiles(PERCENTILES) == hh.get_percentile_to_value_dict(
        list(PERCENTILES)
    )
    assert sparse([0], layout()).max_value() == reference([0], layout()).get_max_value() == 0


def test_record_with_count_and_validation() -> None:
    lay = layout()
    hist = SparseHistogram(lay)
    hh = HdrHistogram(1, HIGHEST, 2)
    for value, count in ((1500, 7), (1501, 3), (90_000, 1), (1500, 2)):
        hist.record(value, count)
        hh.record_value(value, count)
    assert hist.items() == ref_counts(hh)
    assert hist.total == 13
    assert hist.mean() == hh.get_mean_value()
    for bad in (0, -1):
        with pytest.raises(ValueError):
            hist.record(10, bad)
    assert hist.total == 13


# --- merge --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mix", ["sparse+sparse", "sparse+dense", "dense+sparse", "dense+dense"])
def test_merge_of_parts_equals_whole(mix: str) -> None:
    values = list(dataset("lognormal", 20_000))
    whole = sparse(values)
    left_kind, right_kind = mix.split("+")
    build = {"sparse": sparse, "dense": dense}
    parts = [values[i : i + 997] for i in range(0, len(values), 997)]
    acc = build[left_kind](parts[0])
    for k, part in enumerate(parts[1:]):
        acc.merge(build[right_kind if k % 2 == 0 else left_kind](part))
    assert acc == whole
    assert acc.items() == whole.items()
    assert acc.total == whole.total
    assert acc.values_at_percentiles(PERCENTILES) == whole.values_at_percentiles(PERCENTILES)
    assert acc.encode() == whole.encode()
    assert SparseHistogram.decode(acc.encode()) == whole


def test_merge_many_small_windows_matches_hdrhistogram_add() -> None:
    rng = random.Random(3)
    windows = [
        [int(rng.lognormvariate(8, 1)) for _ in range(rng.randint(1, 8))] for _ in range(300)
    ]
    acc = SparseHistogram(layout())
    ref = HdrHistogram(1, HIGHEST, 2)
    for window in windows:
        acc.merge(sparse(window))
        ref.add(reference(window, layout()))
    assert acc.items() == ref_counts(ref)
    assert acc.total == ref.get_total_count()
    assert same_encoding(acc.encode(), ref.encode())


def test_merge_into_itself_doubles() -> None:
    hist = sparse([5, 1000, 1000, 77_000])
    hist.merge(hist)
    assert hist.items() == sparse([5, 5, 1000, 1000, 1000, 1000, 77_000, 77_000]).items()
    assert hist.total == 8


def test_merge_across_layouts_matches_hdrhistogram_add() -> None:
    fine = layout(1, 10_000_000, 3)
    values = [int(random.Random(i).lognormvariate(9, 2)) % 10_000_000 for i in range(500)]
    src = sparse(values, fine)
    acc = sparse([123, 456])
    ref = reference([123, 456], layout())
    acc.merge(src)
    ref.add(reference(values, fine))
    assert acc.items() == ref_counts(ref)
    assert acc.values_at_percentiles(PERCENTILES) == ref.get_percentile_to_value_dict(
        list(PERCENTILES)
    )


def test_merge_promotes_when_union_is_large() -> None:
    lay = layout()
    top = lay.index_of(lay.highest)  # buckets above highest are unreachable (clamped)
    a = sparse([lay.value_from_index(i) for i in range(0, top + 1, 2)])
    b = sparse([lay.value_from_index(i) for i in range(1, top + 1, 2)])
    assert not a.is_dense() and not b.is_dense()
    a.merge(b)
    assert a.is_dense()
    assert a.items() == [(i, 1) for i in range(top + 1)]


# --- encoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["sparse", "dense"])
@pytest.mark.parametrize(("name", "n"), DATASETS)
def test_encoding_is_byte_identical_and_round_trips(name: str, n: int, state: str) -> None:
    values = list(dataset(name, n))
    hh = reference(values, layout())
    hist = sparse(values) if state == "sparse" else dense(values)
    encoded = hist.encode()
    assert isinstance(encoded, str)
    assert same_encoding(encoded, hh.encode())
    back = SparseHistogram.decode(encoded)
    assert back == hist and back.layout is layout()
    assert SparseHistogram.decode(hh.encode()) == hist
    decoded_by_hdrh = HdrHistogram.decode(encoded)
    assert ref_counts(decoded_by_hdrh) == hist.items()
    assert decoded_by_hdrh.get_total_count() == hist.total


@pytest.mark.parametrize("n", [1, 45, 400, 5000])
def test_small_payloads_are_stored_and_large_ones_deflated(n: int) -> None:
    values = list(dataset("lognormal", n))
    hist = sparse(values)
    blob = base64.b64decode(hist.encode())
    stream = blob[8:]
    data = zlib.decompress(stream)  # any inflater reads both forms
    assert same_encoding(hist.encode(), reference(values, layout()).encode())
    assert ref_counts(HdrHistogram.decode(hist.encode())) == hist.items()
    if len(data) < STORED_BELOW:
        assert stream[2] & 0b111 == 0b001  # one final stored block
        assert len(stream) == len(data) + 11  # header, block lengths, data, adler32
    else:
        assert stream[2] & 0b110 != 0  # a compressed block (fixed or dynamic Huffman)
        assert len(stream) < len(data)


def test_encoding_large_counts_and_other_layout() -> None:
    lay = layout(1000, 10_000_000, 3)
    hist = SparseHistogram(lay)
    hh = HdrHistogram(1000, 10_000_000, 3)
    for value, count in ((0, 3), (999, 1), (5_000, 2**40), (9_999_999, 300), (2_000_000, 2**20)):
        hist.record(value, count)
        hh.record_value(value, count)
    assert same_encoding(hist.encode(), hh.encode())
    back = SparseHistogram.decode(hh.encode())
    assert back.layout is lay and back == hist
    assert ref_counts(HdrHistogram.decode(hist.encode())) == hist.items()


def test_encoding_huge_count_uses_nine_byte_varint() -> None:
    hist = SparseHistogram(layout())
    hist.record(42, 2**62 + 5)  # beyond the sparse count field: promotes to dense
    assert hist.is_dense()
    hh = HdrHistogram(1, HIGHEST, 2)
    hh.record_value(42, 2**62 + 5)
    assert same_encoding(hist.encode(), hh.encode())
    assert SparseHistogram.decode(hist.encode()) == hist


def test_decode_into_a_given_layout() -> None:
    values = [10, 2_000, 350_000, 9_999_000]
    encoded = sparse(values).encode()
    same = SparseHistogram.decode(encoded.encode("ascii"), layout())
    assert same.layout is layout() and same == sparse(values)
    coarse = layout(1, HIGHEST, 1)
    converted = SparseHistogram.decode(encoded, coarse)
    assert converted.layout is coarse
    ref = HdrHistogram(1, HIGHEST, 1)
    ref.add(reference(values, layout()))
    assert converted.items() == ref_counts(ref)


@pytest.mark.parametrize(
    "blob",
    [
        "not base64 at all!",
        base64.b64encode(b"abc").decode(),
        base64.b64encode(struct.pack(">II", 0x12345678, 3) + b"xyz").decode(),
        base64.b64encode(struct.pack(">II", 0x1C849314, 99) + b"xyz").decode(),
        base64.b64encode(struct.pack(">II", 0x1C849314, 3) + b"xyz").decode(),
    ],
)
def test_decode_rejects_garbage(blob: str) -> None:
    with pytest.raises(ValueError):
        SparseHistogram.decode(blob)


def test_decode_rejects_truncated_payload() -> None:
    header = struct.pack(">IIIIqqd", 0x1C849313, 2, 0, 2, 1, HIGHEST, 1.0)
    payload = zlib.compress(header + b"\x80")  # declares 2 bytes, holds 1 unterminated varint
    blob = struct.pack(">II", 0x1C849314, len(payload)) + payload
    with pytest.raises(ValueError):
        SparseHistogram.decode(base64.b64encode(blob))


# --- representation, promotion, memory ----------------------------------------------------------


def test_small_window_is_far_smaller_than_dense() -> None:
    lay = layout()
    hist = sparse([1200, 1350, 980, 45_000, 2_100])
    dense_hist = dense([1200, 1350, 980, 45_000, 2_100])
    assert not hist.is_dense() and dense_hist.is_dense()
    assert hist.nbytes() <= 256
    assert dense_hist.nbytes() >= 8 * lay.counts_len
    assert hist.nbytes() * 50 < dense_hist.nbytes()
    assert hist == dense_hist


def test_nbytes_is_honest() -> None:
    hist = sparse([1, 2, 3])
    expected = sys.getsizeof(hist) + sys.getsizeof(hist._counts)
    assert hist.nbytes() == expected
    hist.record(5, 1000)  # total no longer a cached small int
    assert hist.nbytes() == expected + sys.getsizeof(hist.total)


def test_promotion_at_break_even_keeps_answers_identical() -> None:
    lay = layout()
    assert lay.promote_at == lay.counts_len * 16 // 17 == 3132
    rng = random.Random(5)
    indices = list(range(lay.counts_len))
    rng.shuffle(indices)
    values = [lay.value_from_index(i) + rng.randint(0, 3) for i in indices for _ in range(2)]
    values = [min(v, lay.highest) for v in values]
    hist = SparseHistogram(lay)
    snapshots = {}
    for k, v in enumerate(values):
        hist.record(v)
        if k in (999, 4000, 6000):
            snapshots[k] = (hist.is_dense(), hist.values_at_percentiles(PERCENTILES), hist.encode())
    assert hist.is_dense()
    assert not snapshots[999][0]
    for k, (_, pcts, enc) in snapshots.items():
        ref = reference(values[: k + 1], lay)
        assert pcts == ref.get_percentile_to_value_dict(list(PERCENTILES))
        assert same_encoding(enc, ref.encode())
    ref = reference(values, lay)
    assert hist.items() == ref_counts(ref)
    assert hist.mean() == ref.get_mean_value()
    assert same_encoding(hist.encode(), ref.encode())


def test_count_overflowing_the_sparse_field_promotes() -> None:
    lay = layout()
    hist = sparse([100, 200])
    hist.record(200, lay._cmask)  # existing bucket overflows its 52-bit field
    assert hist.is_dense()
    assert hist.items() == [(100, 1), (200, lay._cmask + 1)]
    fresh = SparseHistogram(lay)
    fresh.record(300_000, lay._cmask + 1)  # new bucket too large for the field
    assert fresh.is_dense() and fresh.items() == [(lay.index_of(300_000), lay._cmask + 1)]


def test_merge_whose_counts_outgrow_the_sparse_field_promotes_only_when_needed() -> None:
    lay = layout()
    big = SparseHistogram(lay)
    big.record(100, lay._cmask - 1)
    other = sparse([200, 200, 300])
    big.merge(other)  # the total passes the field's limit, but no bucket does
    i100, i200, i300 = map(lay.index_of, (100, 200, 300))
    assert not big.is_dense()
    assert big.items() == [(i100, lay._cmask - 1), (i200, 2), (i300, 1)]
    big.merge(sparse([100, 100, 100]))  # bucket 100 no longer fits its field
    assert big.is_dense()
    assert big.items() == [(i100, lay._cmask + 2), (i200, 2), (i300, 1)]
    assert big.total == lay._cmask + 5


def test_record_many_equals_record_and_densify() -> None:
    values = [*dataset("pareto", 300), -5, HIGHEST * 3]
    one_by_one = sparse(values)
    bulk = SparseHistogram(layout())
    bulk.record_many(iter(values))
    bulk.record_many([])
    assert bulk == one_by_one and not bulk.is_dense()
    small = SparseHistogram(layout())
    small.record_many(values[:5])  # below the bulk threshold: per-value path
    small.record_many(values[5:])
    assert small == one_by_one
    copied = one_by_one.copy()
    copied.densify()
    assert copied.is_dense() and not one_by_one.is_dense()
    assert copied == one_by_one
    copied.record(1)
    assert copied != one_by_one
    assert "dense" in repr(copied) and "sparse" in repr(one_by_one)


def test_equality_needs_same_layout() -> None:
    a = sparse([10, 20], layout())
    b = sparse([10, 20], layout(1, HIGHEST, 3))
    assert a.items() == b.items() and a != b
    assert a != object()


# --- property test ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.one_of(
            st.integers(min_value=0, max_value=2_000),
            st.integers(min_value=0, max_value=HIGHEST),
            st.integers(min_value=-10, max_value=HIGHEST * 2),
        ),
        min_size=1,
        max_size=60,
    ),
    densify=st.booleans(),
)
def test_property_same_answers_as_hdrhistogram(values: list[int], densify: bool) -> None:
    lay = layout()
    hh = reference(values, lay)
    hist = SparseHistogram(lay)
    if densify:
        hist.densify()
    half = len(values) // 2
    for v in values[:half]:
        hist.record(v)
    hist.record_many(values[half:])
    assert hist.values_at_percentiles(PERCENTILES) == hh.get_percentile_to_value_dict(
        list(PERCENTILES)
    )
    assert hist.value_at_percentile(99.9) == hh.get_value_at_percentile(99.9)
    assert hist.min_value() == hh.get_min_value()
    assert hist.max_value() == hh.get_max_value()
    assert hist.items() == ref_counts(hh)
    assert same_encoding(hist.encode(), hh.encode())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.integers(min_value=-10, max_value=HIGHEST * 2), max_size=80),
    cut=st.integers(min_value=0, max_value=80),
    dense_left=st.booleans(),
    dense_right=st.booleans(),
)
def test_property_merge_and_round_trip(
    values: list[int], cut: int, dense_left: bool, dense_right: bool
) -> None:
    left = (dense if dense_left else sparse)(values[:cut])
    right = (dense if dense_right else sparse)(values[cut:])
    left.merge(right)
    whole = sparse(values)
    assert left == whole
    encoded = left.encode()
    assert encoded == whole.encode()
    assert SparseHistogram.decode(encoded) == whole
    assert ref_counts(HdrHistogram.decode(encoded)) == whole.items()


def test_pairs_round_trip_in_both_states():
    lay = layout()
    sparse = SparseHistogram(lay)
    sparse.record_many([1, 5, 5, 900, 123_456])
    dense = sparse.copy()
    dense.densify()
    for hist in (sparse, dense):
        pairs = hist.to_pairs()
        assert len(pairs) == 8
        again = SparseHistogram.from_pairs(lay, pairs)
        assert again == hist and again.total == 5


def test_words_round_trip_and_dense_has_none():
    lay = layout()
    sparse = SparseHistogram(lay)
    sparse.record_many([1, 5, 5, 900, 123_456, 3_600_000_000])
    text = sparse.to_words()
    again = SparseHistogram.from_words(lay, text, lay._count_bits)
    assert again == sparse and again.total == sparse.total
    assert again.value_at_percentile(99) == sparse.value_at_percentile(99)
    empty = SparseHistogram(lay)
    assert SparseHistogram.from_words(lay, empty.to_words(), lay._count_bits).total == 0
    dense = sparse.copy()
    dense.densify()
    assert dense.to_words() is None


def test_words_of_another_count_width_are_converted():
    lay = layout()
    bits = lay._count_bits - 3
    words = array("Q", [(index << bits) | count for index, count in [(3, 2), (70, 1), (900, 5)]])
    hist = SparseHistogram.from_words(lay, base64.b64encode(words).decode(), bits)
    assert hist.items() == [(3, 2), (70, 1), (900, 5)] and hist.total == 8


@pytest.mark.parametrize(
    "words",
    [[(5 << 40) | 1, (3 << 40) | 1], [(5 << 40) | 0], [(10**6 << 40) | 1], [(4 << 40) | 1] * 2],
)
def test_words_that_are_not_ascending_buckets_with_counts_are_refused(words):
    text = base64.b64encode(array("Q", words)).decode()
    with pytest.raises(ValueError):
        SparseHistogram.from_words(layout(), text, 40)


def test_words_that_are_not_base64_of_whole_words_are_refused():
    with pytest.raises(ValueError):
        SparseHistogram.from_words(layout(), "not base64!", 40)
    with pytest.raises(ValueError):
        SparseHistogram.from_words(layout(), base64.b64encode(b"abc").decode(), 40)
