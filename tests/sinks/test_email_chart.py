"""The email's inline chart (issue 23): a metric alert's mail, as the loopback SMTP server
receives it, holds its HTML and a PNG in a multipart/related, the HTML shows the PNG by its
Content-ID, and the PNG decodes (chunk CRCs, IHDR size) and draws the threshold or
baseline line, the metric's line and the incident. The records come from the real baseline
and escalation stages (tests/sinks/worded.py), which carry the metric's recent points."""

from __future__ import annotations

import email
import re
import struct
import zlib
from email import policy
from email.message import EmailMessage
from typing import Any

import numpy as np
import pytest

from alerting.alert_text import format_value
from sinks.chart_png import INCIDENT_SHADE, LIMIT_GREY, LINE_RED, frame_for, incident_png
from sinks.email import EmailSink
from tests.sinks.fakes import FakeSmtp
from tests.sinks.worded import T0, Pipeline, anomaly_signal, as_sent, issue_alert, metric_alert

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_png(data: bytes) -> np.ndarray:
    """A strict little PNG reader (8-bit RGB/RGBA, any filter): checks the signature and
    every chunk's CRC, IHDR first and IEND last; returns the pixels (height x width x 3)."""
    assert data[:8] == PNG_SIGNATURE
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, interlace) == (8, 0) and colour in (2, 6)
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * channels
    assert len(raw) == height * (stride + 1)
    out = np.zeros((height, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for row in range(height):
        line = raw[row * (stride + 1) : (row + 1) * (stride + 1)]
        kind, cur = line[0], np.frombuffer(line[1:], dtype=np.uint8).astype(np.int32)
        rec = np.zeros(stride, dtype=np.int32)
        for i in range(stride):
            a = rec[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            rec[i] = (cur[i] + pred) & 0xFF
        out[row], prev = rec, rec
    return out.reshape(height, width, channels)[:, :, :3].astype(np.uint8)


def _is(pixels: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.all(pixels == np.array(colour, dtype=np.uint8), axis=-1)


@pytest.fixture
def smtp():
    server = FakeSmtp().start()
    yield server
    server.stop()


def _sink(server: FakeSmtp) -> EmailSink:
    return EmailSink(
        "127.0.0.1", server.port, sender="prodmon@example.com", recipients=["oncall@example.com"],
        tls="none",
    )  # fmt: skip


def _parts(mail: EmailMessage) -> tuple[str, str, bytes, str]:
    """(text, html, png, Content-ID) of a mail with an inline chart, checking its shape:
    multipart/alternative of text/plain and multipart/related(text/html, image/png)."""
    assert mail.get_content_type() == "multipart/alternative"
    plain, related = mail.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    rich, image = related.iter_parts()
    assert rich.get_content_type() == "text/html" and image.get_content_type() == "image/png"
    assert image.get_content_disposition() == "inline"
    cid = str(image["Content-ID"]).strip("<>")
    return plain.get_content(), rich.get_content(), image.get_content(), cid


async def test_a_metric_alert_s_mail_shows_its_chart_inline_with_the_threshold(smtp: FakeSmtp):
    firing, resolved = metric_alert()
    assert len(firing["points"]) == 3 and len(resolved["points"]) == 8  # from the stages
    sink = _sink(smtp)
    for record in (firing, resolved):
        await sink.send(as_sent(record, "email"))
    for mail, record in zip(
        (email.message_from_bytes(m.content, policy=policy.default) for m in smtp.mails),
        (firing, resolved),
        strict=True,
    ):
        text, html, png, cid = _parts(mail)
        assert f'<img src="cid:{cid}" width="480" height="160"' in html
        assert "dashed: threshold 1 s" in html and "p99, 04:00 to 04:" in html
        assert "Chart: https://prodmon.example.com/alert/chart.svg?id=" in text  # as before
        assert len(png) < 20_000
        pixels = decode_png(png)
        assert pixels.shape == (160, 480, 3)  # IHDR's size, decoded
        facts = record["facts"]
        ended = facts["since"] + facts["duration_ms"] if "duration_ms" in facts else None
        frame = frame_for(
            record["points"], 1000.0, facts["since"], ended, lambda v: format_value("p99_ms", v)
        )
        assert frame is not None
        row = round(frame.y(1000.0))
        grey = _is(pixels[row, frame.left : frame.right + 1], LIMIT_GREY)
        assert grey.mean() > 0.5  # the threshold line across the plot...
        assert (~grey).sum() > 20  # ...dashed
        rows_with_a_line = [r for r in range(160) if _is(pixels[r], LIMIT_GREY).sum() > 200]
        assert set(rows_with_a_line) <= {row, row + 1} and row in rows_with_a_line
        assert _is(pixels, LINE_RED).sum() > 100  # the metric's line
        assert _is(pixels, INCIDENT_SHADE).sum() > 1000  # the incident, shaded
        # The 2.1 s peak is above the threshold line, the quiet 200 ms below it.
        red_rows = np.nonzero(_is(pixels, LINE_RED).any(axis=1))[0]
        assert red_rows.min() < row
        if ended is not None:
            assert red_rows.max() > row


async def test_an_anomaly_s_chart_draws_its_baseline(smtp: FakeSmtp):
    points = [[T0 + m * 60_000, 1.0] for m in range(0, 4)] + [[T0 + 240_000, 6.9]]
    [record] = Pipeline().signals([{**anomaly_signal(), "points": points}], T0 + 301_000)
    await _sink(smtp).send(as_sent(record, "email"))
    mail = email.message_from_bytes(smtp.mails[0].content, policy=policy.default)
    _, html, png, _ = _parts(mail)
    assert "dashed: baseline 0.2 %" in html
    pixels = decode_png(png)
    frame = frame_for(points, 0.2, record["facts"]["since"], None, lambda v: f"{v:g} %")
    assert frame is not None
    rows = [r for r in range(160) if _is(pixels[r], LIMIT_GREY).sum() > 200]
    assert rows and abs(rows[0] - frame.y(0.2)) <= 1


async def test_mails_without_points_have_no_image_and_keep_their_shape(smtp: FakeSmtp):
    firing, _ = metric_alert()
    sink = _sink(smtp)
    await sink.send(as_sent(issue_alert(), "email"))
    await sink.send(as_sent({**firing, "points": [[T0, 1.0]]}, "email"))  # one point: no chart
    for m in smtp.mails:
        mail = email.message_from_bytes(m.content, policy=policy.default)
        assert [p.get_content_type() for p in mail.walk()] == [
            "multipart/alternative",
            "text/plain",
            "text/html",
        ]
        assert "cid:" not in mail.get_body(("html",)).get_content()


def test_the_content_id_is_stable_across_retries_and_names_no_event_text():
    firing, _ = metric_alert()
    sink = EmailSink("127.0.0.1", 25, sender="prodmon@example.com", recipients=["a@example.com"])
    first, again = (sink.render(as_sent(firing, "email")) for _ in range(2))
    assert first["images"] == again["images"]
    [image] = first["images"]
    assert image["type"] == "image/png" and 0 < image["bytes"] < 20_000
    assert re.fullmatch(r"<chart\.[0-9a-f]{32}@example\.com>", image["cid"])


@pytest.mark.parametrize(
    "points",
    [
        [],
        [[1, 2.0]],
        [[1, float("nan")], [2, float("inf")]],
        [["x", 1.0], [2, "y"], None, [3]],
        [[T0, 5.0], [T0, 5.0]],  # one instant
        [[T0, -3.0], [T0 + 60_000, 0.0]],  # nothing above zero
        [[T0 + i * 60_000, 1e300] for i in range(3)],
    ],
)
def test_odd_points_never_raise(points: list[Any]):
    png = incident_png(points, limit=1.0, started=T0, ended=None)
    if png is not None:
        assert decode_png(png).shape == (160, 480, 3)


def test_the_docs_example_is_what_the_sink_draws():
    """docs/sinks.md shows the email of this record and its image (docs/img/)."""
    from pathlib import Path

    from tests.sinks.worded import metric_alert_after_a_quiet_hour

    record = as_sent(metric_alert_after_a_quiet_hour(), "email")
    assert len(record["points"]) == 43
    sink = EmailSink("127.0.0.1", 25, sender="prodmon@example.com", recipients=["a@example.com"])
    rendered = sink.render(record)
    caption = "p99, 03:20 to 04:02 UTC; dashed: threshold 1 s; shaded: the incident"
    assert f'<small style="color:#777">{caption}</small>' in rendered["html"]
    [image] = rendered["images"]
    docs = Path(__file__).parents[2] / "docs"
    assert image["cid"].strip("<>") in (docs / "sinks.md").read_text()
    message = sink.build_message(record)
    [png] = [p.get_content() for p in message.walk() if p.get_content_type() == "image/png"]
    shown = (docs / "img" / "email-metric-chart.png").read_bytes()
    assert np.array_equal(decode_png(png), decode_png(shown))
