"""Keyset paging: opaque page tokens that carry the last id seen, never an offset."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select

from opensphere.services.errors import invalid_argument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
T = TypeVar("T")


def encode_token(last_id: str) -> str:
    raw = json.dumps({"after": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, field: str = "page_token") -> str | None:
    """The id after which the next page starts; INVALID_ARGUMENT for a token we did not issue."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after = data["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise invalid_argument(field, "is not a page token issued by this server") from None
    if not isinstance(after, str):
        raise invalid_argument(field, "is not a page token issued by this server")
    return after


def page_size(requested: int) -> int:
    if requested < 0 or requested > MAX_PAGE_SIZE:
        raise invalid_argument("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
    return requested or DEFAULT_PAGE_SIZE


def keyset(query: Select[Any], id_column: Any, token: str, requested_size: int) -> Select[Any]:
    """Restrict ``query`` to one page (plus one row to detect a next page), ordered by id."""
    size = page_size(requested_size)
    after = decode_token(token)
    if after is not None:
        query = query.where(id_column > after)
    return query.order_by(id_column).limit(size + 1)


def split_page(rows: Sequence[T], requested_size: int, key: Any) -> tuple[Sequence[T], str]:
    """Drop the look-ahead row and build the next token from the last row kept."""
    size = page_size(requested_size)
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    return rows, encode_token(key(rows[-1]))


def like_pattern(text: str) -> str:
    """A LIKE pattern that matches ``text`` as a literal substring."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
