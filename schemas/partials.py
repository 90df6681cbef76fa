"""Wire types of `events.latency` (internal): partial windows and source watermarks.

Two-phase windowing (docs/windows.md): the ingest stage keeps partial windows per
`events.raw` partition (the *source*) and, when a partial window closes there, sends it
to the windows stage, which merges the partials of every source and closes a window once
every source's watermark has passed it. Two kinds of element travel in the packed
`events.latency` arrays:

- a **partial window**, partitioned by service (all of a service's endpoints meet in
  one windows partition, so the whole-service series is merged there):
  `{"partial": 1, "series", "start", "src", "count", "errors", "client_errors", "late",
  "sum_us", "max_us", "words" + "bits" | "counts"}`. Its id is `series|start|src`
  (`partial_id`): a source sends one partial per series and base window, so the same id
  twice is a re-emission after a crash, counted once.
- a **source watermark**, sent to every partition (`BROADCAST_KEY`):
  `{"watermark": closed, "src", "idle", "max_ts"}`: the source has sent every partial
  of the base windows ending at or before `closed`; `idle` says it has had nothing to
  window for `windows.idle_flush_s` (wall time), so nothing waits for it.

`words` is `SparseHistogram.to_words` (base64 of little-endian `index << bits | count`
words); a dense histogram travels as `counts`, `[index, count, ...]`.

- **a service's partial windows** (what ingest sends since issue 24), one element per
  service, base window and source: `{"partials": 1, "service", "start", "src", "bits",
  "rows": [[endpoint, count, errors, client_errors, late, sum_us, max_us, words], ...]}`.
  Each row is the partial window of `service|endpoint`, with the same id and meaning as
  the element above; written once per service rather than once per series, the fields
  cost a third of the bytes, and the Python objects that wait for the broker's ack one
  per service (docs/memory.md). The windows stage reads both forms; it must be upgraded
  before ingest (an older windows stage dead-letters this element).

Older deployments wrote normalized latency events here; the windows stage still reads
them (an element with neither `partial` nor `watermark`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BROADCAST_KEY",
    "InvalidPartial",
    "encode_partial",
    "encode_service_partials",
    "encode_watermark",
    "expand_partials",
    "partial_id",
    "read_partial",
    "read_service_partials",
    "read_watermark",
]

# An emit with this key goes to every partition of its (batched) topic (pipeline/output.py).
BROADCAST_KEY = "\x00every-partition"


class InvalidPartial(ValueError):
    """An `events.latency` element that is not a readable partial or watermark."""


def partial_id(series: str, start: int, src: int) -> str:
    return f"{series}|{start}|{src}"


def encode_partial(
    series: str,
    start: int,
    src: int,
    count: int,
    errors: int,
    client_errors: int,
    late: int,
    sum_us: int,
    max_us: int,
    words: str | None,
    bits: int,
    pairs: list[int] | None,
) -> dict[str, Any]:
    """A partial window's element (`words` for a sparse histogram, else `pairs`)."""
    value: dict[str, Any] = {
        "partial": 1,
        "series": series,
        "start": start,
        "src": src,
        "count": count,
        "errors": errors,
        "client_errors": client_errors,
        "late": late,
        "sum_us": sum_us,
        "max_us": max_us,
    }
    if words is not None:
        value["words"] = words
        value["bits"] = bits
    else:
        value["counts"] = pairs
    return value


def encode_service_partials(
    service: str, start: int, src: int, bits: int, rows: list[list[Any]]
) -> dict[str, Any]:
    """A service's partial windows of one base window and source as one element: `rows`
    are `[endpoint, count, errors, client_errors, late, sum_us, max_us, words]`."""
    return {
        "partials": 1,
        "service": service,
        "start": start,
        "src": src,
        "bits": bits,
        "rows": rows,
    }


def read_service_partials(
    value: dict[str, Any],
) -> tuple[int, int, int, list[tuple[str, list[int], str]]]:
    """Check a service's partials element: (start, src, bits, [(series, [count, errors,
    client_errors, late, sum_us, max_us], words), ...]). Every row is checked before any
    is returned, so a bad element is refused whole. Raises `InvalidPartial`."""
    service = value.get("service")
    if type(service) is not str:
        raise InvalidPartial(f"service: expected text, got {service!r}")
    start = _int(value, "start", None)
    src = _int(value, "src")
    bits = _int(value, "bits", 1)
    rows = value.get("rows")
    if type(rows) is not list:
        raise InvalidPartial("rows: expected an array")
    read = []
    for row in rows:
        if type(row) is not list or len(row) != 8:
            raise InvalidPartial(f"rows: expected [endpoint, 6 counts, words], got {row!r:.80}")
        endpoint, words = row[0], row[7]
        numbers = row[1:7]
        if type(endpoint) is not str or type(words) is not str:
            raise InvalidPartial(f"rows: endpoint and words are text, got {row!r:.80}")
        if not all(type(n) is int and n >= 0 for n in numbers):
            raise InvalidPartial(f"rows: counts are integers >= 0, got {row!r:.80}")
        read.append((service + "|" + endpoint, numbers, words))
    return start, src, bits, read


def expand_partials(value: dict[str, Any]) -> list[dict[str, Any]]:
    """The partial windows an element carries, each as `encode_partial` writes one (a
    partial element is itself; a service's element is one per row): for tests and tools."""
    if "partial" in value:
        return [value]
    start, src, bits, rows = read_service_partials(value)
    expanded = []
    for series, numbers, words in rows:
        count, errors, client_errors, late, sum_us, max_us = numbers
        expanded.append(
            encode_partial(
                series,
                start,
                src,
                count,
                errors,
                client_errors,
                late,
                sum_us,
                max_us,
                words,
                bits,
                None,
            )
        )
    return expanded


def encode_watermark(src: int, closed: int, idle: bool, max_ts: int) -> dict[str, Any]:
    return {"watermark": closed, "src": src, "idle": idle, "max_ts": max_ts}


def _int(value: dict[str, Any], name: str, least: int | None = 0) -> int:
    got = value.get(name)
    if type(got) is not int or (least is not None and got < least):
        raise InvalidPartial(f"{name}: expected an integer >= {least}, got {got!r}")
    return got


def read_partial(value: dict[str, Any]) -> tuple[str, int, int, list[int]]:
    """Check a partial's fields: (series, start, src, [count, errors, client_errors, late,
    sum_us, max_us]); the histogram is read by the caller. Raises `InvalidPartial`."""
    series = value.get("series")
    if type(series) is not str or "|" not in series:
        raise InvalidPartial(f"series: expected 'service|endpoint', got {series!r}")
    start = _int(value, "start", None)
    src = _int(value, "src")
    numbers = [
        _int(value, name)
        for name in ("count", "errors", "client_errors", "late", "sum_us", "max_us")
    ]
    if "words" in value:
        if type(value["words"]) is not str:
            raise InvalidPartial("words: expected base64 text")
        _int(value, "bits", 1)
    elif type(value.get("counts")) is not list:
        raise InvalidPartial("a partial needs 'words' or 'counts'")
    return series, start, src, numbers


def read_watermark(value: dict[str, Any]) -> tuple[int, int, bool, int]:
    """(src, closed, idle, max_ts) of a source watermark. Raises `InvalidPartial`."""
    closed = _int(value, "watermark", None)
    src = _int(value, "src")
    idle = value.get("idle")
    if type(idle) is not bool:
        raise InvalidPartial(f"idle: expected true or false, got {idle!r}")
    return src, closed, idle, _int(value, "max_ts", None)
