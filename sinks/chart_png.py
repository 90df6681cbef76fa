"""A small PNG chart of an alert's metric around its incident, for the email's HTML part.

Mail clients (Gmail first) show no SVG and fetch no remote image without asking, and the
dashboard's chart needs its token; so the email carries the chart inline. The notifier has
no rollups: the points come with the alert (stages/baseline.py puts the series' recent
points on the signal, escalation keeps them). The chart: the metric's line, the threshold
or baseline as a dashed grey line, the incident shaded, values on the left, times below
(a 5x7 bitmap font, enough for numbers and units). The axis follows ops/web/charts.py's
`incident_chart` (the dashboard's SVG), which uses this module's `nice_ceiling`, so both
read alike.

numpy rasterises, zlib and struct write the PNG (8-bit RGB, no filter). Pure; the image has
a fixed size whatever the input, and odd points are skipped, never raised on.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

__all__ = [
    "INCIDENT_SHADE",
    "LIMIT_GREY",
    "LINE_RED",
    "Frame",
    "encode_png",
    "frame_for",
    "incident_png",
]

WIDTH, HEIGHT = 480, 160
LINE_RED = (0xC0, 0x39, 0x2B)  # ops/web/charts.py INCIDENT_COLOUR
LIMIT_GREY = (0x55, 0x55, 0x55)  # ops/web/charts.py LIMIT_COLOUR
INCIDENT_SHADE = (250, 239, 238)  # the line's red at 8 % over white, as the SVG's shading
GRID = (0xEE, 0xEE, 0xEE)
LABEL = (0x55, 0x55, 0x55)
WHITE = (255, 255, 255)
DASH, GAP = 5, 3

# 5x7 glyphs, rows top to bottom (`#` set): digits, the units format_value writes, UTC.
_GLYPHS = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    ",": (".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."),
    ":": (".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "%": ("##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"),
    "/": (".....", "....#", "...#.", "..#..", ".#...", "#....", "....."),
    "s": (".....", ".....", ".####", "#....", ".###.", "....#", "####."),
    "m": (".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"),
    "r": (".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."),
    "e": (".....", ".....", ".###.", "#...#", "#####", "#....", ".###."),
    "q": (".....", ".....", ".####", "#...#", ".####", "....#", "....#"),
    "i": ("..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."),
    "n": (".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"),
    "x": (".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"),
    "k": ("#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    " ": (".....",) * 7,
}
_ADVANCE = 6  # a glyph and one blank column


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^n at or above `value` (axis top)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _glyph(rows: tuple[str, ...]) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


_BITMAPS = {char: _glyph(rows) for char, rows in _GLYPHS.items()}


def text_width(text: str) -> int:
    return max(len(text) * _ADVANCE - 1, 0)


def _draw_text(img: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    """`text` with its top-left corner at (x, y); characters the font lacks are blank,
    whatever falls outside the image is clipped."""
    height, width = img.shape[:2]
    for i, char in enumerate(text):
        bitmap = _BITMAPS.get(char)
        if bitmap is None:
            continue
        x0 = x + i * _ADVANCE
        ys, xs = np.nonzero(bitmap)
        ys, xs = ys + y, xs + x0
        keep = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
        img[ys[keep], xs[keep]] = colour


@dataclass(frozen=True)
class Frame:
    """Where values and times land in the image (the same geometry for drawing and tests)."""

    left: int
    right: int
    top: int
    bottom: int
    t0: int
    t1: int
    y_max: float

    def x(self, t: float) -> float:
        span = max(self.t1 - self.t0, 1)
        return self.left + (self.right - self.left) * (t - self.t0) / span

    def y(self, v: float) -> float:
        return self.top + (self.bottom - self.top) * (1 - max(v, 0.0) / self.y_max)


def _clean(points: Sequence[Sequence[float]]) -> list[tuple[int, float]]:
    out = []
    for p in points:
        if not isinstance(p, list | tuple) or len(p) != 2:
            continue
        t, v = p
        finite = all(
            isinstance(n, int | float) and not isinstance(n, bool) and math.isfinite(n)
            for n in (t, v)
        )
        if finite and abs(t) < 2**53:
            out.append((int(t), float(v)))
    out.sort()
    return out


def frame_for(
    points: Sequence[Sequence[float]],
    limit: float | None,
    started: int | None,
    ended: int | None,
    label: Callable[[float], str] = lambda v: f"{v:g}",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Frame | None:
    """The geometry of the chart of `points`, or None when fewer than two points."""
    shown = _clean(points)
    if len(shown) < 2:
        return None
    times = [t for t, _ in shown] + [t for t in (started, ended) if isinstance(t, int)]
    t0, t1 = min(times), max(times)
    limit = limit if isinstance(limit, int | float) and math.isfinite(limit) else None
    y_max = nice_ceiling(max(max(v for _, v in shown), limit or 0.0) * 1.1)
    widest = max(text_width(label(y_max * i / 2)) for i in range(3))
    left = min(max(widest + 8, 36), width // 3)
    return Frame(left, width - 10, 10, height - 16, t0, t1, y_max)


def incident_png(
    points: Sequence[Sequence[float]],
    *,
    limit: float | None,
    started: int | None,
    ended: int | None,
    label: Callable[[float], str] = lambda v: f"{v:g}",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> bytes | None:
    """The PNG of `points` ([[epoch ms, value], ...]) with `limit` dashed and the incident
    (`started` to `ended`, or to the last point) shaded; `label` formats a value with its
    unit. None when there are fewer than two usable points."""
    frame = frame_for(points, limit, started, ended, label, width, height)
    if frame is None:
        return None
    shown = _clean(points)
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = WHITE
    if isinstance(started, int):
        x0 = round(frame.x(started))
        x1 = round(frame.x(ended if isinstance(ended, int) else frame.t1))
        img[frame.top : frame.bottom + 1, max(x0, frame.left) : max(x1, x0 + 1) + 1] = (
            INCIDENT_SHADE
        )
    for i in range(3):  # grid and values: 0, half, top
        v = frame.y_max * i / 2
        row = round(frame.y(v))
        img[row, frame.left : frame.right + 1] = GRID
        text = label(v)
        _draw_text(img, text, frame.left - 5 - text_width(text), row - 3, LABEL)
    for t, align in ((frame.t0, "left"), (frame.t1, "right")):
        text = datetime.fromtimestamp(t / 1000, UTC).strftime("%H:%M UTC")
        x = int(frame.x(t)) - (text_width(text) if align == "right" else 0)
        _draw_text(img, text, x, height - 10, LABEL)
    if limit is not None and math.isfinite(limit):
        row = round(frame.y(limit))
        cols = np.arange(frame.left, frame.right + 1)
        dashes = cols[(cols - frame.left) % (DASH + GAP) < DASH]
        for r in (row, row + 1):
            if frame.top <= r <= frame.bottom:
                img[r, dashes] = LIMIT_GREY
    _draw_line(img, [(frame.x(t), frame.y(v)) for t, v in shown], LINE_RED)
    return encode_png(img)


def _draw_line(
    img: np.ndarray, xy: list[tuple[float, float]], colour: tuple[int, int, int]
) -> None:
    """A polyline two pixels wide through `xy` (image coordinates)."""
    xs, ys = [], []
    for (x0, y0), (x1, y1) in itertools.pairwise(xy):
        steps = int(max(abs(x1 - x0), abs(y1 - y0)) * 2) + 2
        s = np.linspace(0.0, 1.0, steps)
        xs.append(x0 + (x1 - x0) * s)
        ys.append(y0 + (y1 - y0) * s)
    px = np.floor(np.concatenate(xs)).astype(np.int64)
    py = np.floor(np.concatenate(ys)).astype(np.int64)
    height, width = img.shape[:2]
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        cx, cy = px + dx, py + dy
        keep = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
        img[cy[keep], cx[keep]] = colour


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of `rgb` (height x width x 3, uint8)."""
    height, width, _ = rgb.shape
    raw = np.zeros((height, width * 3 + 1), dtype=np.uint8)  # filter byte 0 on each row
    raw[:, 1:] = rgb.reshape(height, width * 3)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
        + _chunk(b"IEND", b"")
    )
