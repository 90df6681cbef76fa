"""Dead-letter records for `events.dlq`: why an input was rejected, where it came from, its bytes.

Building a dead letter must never fail: whatever the raw bytes are, they are kept (as text when
they are valid UTF-8, base64 otherwise), bounded to MAX_RAW_BYTES. The bound keeps a dead
letter under Kafka's default 1 MB message limit (`message.max.bytes`) even in the worst case
(JSON escapes a control character as six bytes): a dead letter the broker refused would
stall its partition.
"""

from __future__ import annotations

import base64
import codecs
from typing import Any

__all__ = ["MAX_RAW_BYTES", "dead_letter"]

MAX_RAW_BYTES = 128 * 1024


def dead_letter(
    reason: str,
    field: str,
    topic: str,
    partition: int,
    offset: int,
    index: int | None,
    raw: bytes,
    now_ms: int,
) -> dict[str, Any]:
    """The `events.dlq` value for one rejected message (index None) or array element."""
    data = bytes(raw) if raw is not None else b""
    truncated = len(data) > MAX_RAW_BYTES
    out: dict[str, Any] = {
        "reason": reason,
        "field": field,
        "source": {"topic": topic, "partition": partition, "offset": offset, "index": index},
    }
    if truncated:
        data = data[:MAX_RAW_BYTES]
    try:
        if truncated:
            # The cut may split a multi-byte character: drop that incomplete tail only.
            text = codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
        else:
            text = data.decode("utf-8")
        out["raw"] = text
    except UnicodeDecodeError:
        out["raw_b64"] = base64.b64encode(data).decode("ascii")
    if truncated:
        out["raw_truncated"] = True
        out["raw_size"] = len(raw)
    out["dlq_ts"] = now_ms
    return out
