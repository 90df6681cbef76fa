"""Opaque handles for the ids that the dashboard's action forms refer to.

Alert and issue ids are built from event text (service names, rules, keys, fingerprints):
they may hold any character, CR/LF and other controls included, which an HTML form field
cannot carry faithfully (browsers normalise line breaks, the page replaces controls). A
form therefore carries `action_handle(id)` instead: 24 URL-safe characters (the first 18
bytes of the id's SHA-256, base64url), which the view maps back to the id it indexed.
Never decode a handle or trust it as an id: look it up.
"""

from __future__ import annotations

import base64
import hashlib
import re

__all__ = ["HANDLE_PATTERN", "action_handle", "is_handle"]

HANDLE_PATTERN = re.compile(r"[A-Za-z0-9_-]{24}")


def action_handle(item_id: str) -> str:
    """The opaque, URL-safe handle of an alert or issue id (the same in every process)."""
    digest = hashlib.sha256(item_id.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode("ascii")


def is_handle(value: object) -> bool:
    """True when `value` has the shape of a handle (say nothing of whether it is known)."""
    return isinstance(value, str) and HANDLE_PATTERN.fullmatch(value) is not None
