"""Paging: opaque page cursors and the Bundle links that carry them.

Owns R4 http.html#paging and search.html#Paging as fhirbin implements them: page links are
opaque, server-controlled URLs (RFC 5005 relations ``self``, ``first``, ``next``,
``previous``) that a client follows with GET even when the search was a POST. fhirbin pages
by key ("keyset" paging), not by offset, so a page does not shift when versions are added
before it: results are ordered by ``(lastUpdated, id, version)`` (ascending, or all three
descending for ``_sort=-_lastUpdated``), and a cursor names the key of the last entry shown
(``next``: the entries strictly after it in that order) or of the first (``prev``: the
entries strictly before it). The tie-breakers ``id`` and ``version`` make the order total.

Cursor format: ``base64url(check || "1" d lastUpdated_us "." version "." id)`` without
padding, where ``d`` is ``n`` or ``p`` and ``check`` is the first 6 bytes of the BLAKE2b
digest of the rest. It is URL-safe and short (86 characters for a UUID id and a current
timestamp). The check catches a token that was cut, mistyped or edited; it is not a
signature: a client could build a valid cursor, which only moves its own position in a result
set it is already allowed to read, because the filters live in the URL's parameters and every
page is authorised anew.
A malformed or tampered cursor is a 400 on ``http._page``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from fhirbin.errors import BadRequest

__all__ = [
    "Cursor",
    "decode_cursor",
    "encode_cursor",
    "page_links",
    "query_string",
]

_FORMAT = "1"
_CHECK_BYTES = 6
_DIRECTIONS = {"next": "n", "prev": "p"}
_BY_LETTER = {v: k for k, v in _DIRECTIONS.items()}
# version: fhirbin's version numbers (docs/decisions.md#version-ids); id: the FHIR id syntax
# (R4 datatypes.html#id).
_PAYLOAD_RE = re.compile(
    r"\A1(?P<d>[np])(?P<lu>-?(?:0|[1-9][0-9]{0,18}))\.(?P<v>[1-9][0-9]{0,17})"
    r"\.(?P<id>[A-Za-z0-9\-.]{1,64})\Z"
)
_MAX_TOKEN = 200

# Parameters page_links writes itself: never copied from ``used``.
_PAGING_PARAMETERS = frozenset({"_count", "_page"})


@dataclass(frozen=True)
class Cursor:
    """A page boundary: ``next`` = the entries after this key, ``prev`` = those before it."""

    direction: str  # "next" | "prev"
    last_updated_us: int
    id: str
    version: int


def encode_cursor(direction: str, last_updated_us: int, id: str, version: int) -> str:
    """The opaque, stable ``_page`` token of a boundary (same inputs, same token)."""
    letter = _DIRECTIONS.get(direction)
    if letter is None:
        raise ValueError(f"direction must be 'next' or 'prev', not {direction!r}")
    payload = f"{_FORMAT}{letter}{last_updated_us}.{version}.{id}".encode()
    if _PAYLOAD_RE.match(payload.decode()) is None:
        raise ValueError(f"cannot encode a cursor for id {id!r}, version {version!r}")
    token = base64.urlsafe_b64encode(_check(payload) + payload).rstrip(b"=")
    return token.decode()


def decode_cursor(token: str) -> Cursor:
    """The boundary a ``_page`` token names; BadRequest if it is not one of ours, intact."""
    if not token or len(token) > _MAX_TOKEN or not token.isascii():
        raise _bad_cursor(token)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise _bad_cursor(token) from None
    check, payload = raw[:_CHECK_BYTES], raw[_CHECK_BYTES:]
    # Canonical form only: a re-encoding must give the very same token (no stray bits).
    if _check(payload) != check or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:
        raise _bad_cursor(token)
    try:
        m = _PAYLOAD_RE.match(payload.decode("ascii"))
    except UnicodeDecodeError:
        m = None
    if m is None:
        raise _bad_cursor(token)
    return Cursor(_BY_LETTER[m["d"]], int(m["lu"]), m["id"], int(m["v"]))


def query_string(used: Sequence[tuple[str, str]]) -> str:
    """``name=value&...`` percent-encoded as UTF-8 (R4 http.html#root). Commas stay literal:
    they separate OR values and RFC 3986 allows them in a query; ``:`` stays literal in names
    (modifiers)."""
    return "&".join(f"{quote(n, safe=':')}={quote(v, safe=',')}" for n, v in used)


def page_links(
    base_url: str,
    path: str,
    used: Sequence[tuple[str, str]],
    count: int,
    *,
    first_cursor: str | None,
    next_cursor: str | None,
    prev_cursor: str | None,
    self_cursor: str | None,
) -> list[tuple[str, str]]:
    """``(relation, url)`` pairs for a page, in the order self, first, next, previous.

    Each URL is ``{base_url}/{path}?{used}&_count={count}[&_page={cursor}]``: the parameters
    applied (``used``, minus any ``_count``/``_page`` in it), then the page size, which R4
    search.html#count says SHOULD be repeated in page links, then the cursor. ``self`` and
    ``first`` are always given: ``self`` carries ``self_cursor`` when the page was reached
    through one, ``first`` carries no ``_page`` unless ``first_cursor`` is given. ``next`` and
    ``previous`` appear only with a cursor (callers pass none for ``_count=0``, which has
    no pages: search.html#count).
    """
    kept = [(n, v) for n, v in used if n not in _PAGING_PARAMETERS]
    url = f"{base_url}/{path}?" + query_string([*kept, ("_count", str(count))])

    def with_page(cursor: str | None) -> str:
        return url if cursor is None else f"{url}&_page={quote(cursor, safe='')}"

    links = [("self", with_page(self_cursor)), ("first", with_page(first_cursor))]
    if next_cursor is not None:
        links.append(("next", with_page(next_cursor)))
    if prev_cursor is not None:
        links.append(("previous", with_page(prev_cursor)))
    return links


def _check(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECK_BYTES, person=b"fhirbin-page").digest()


def _bad_cursor(token: str) -> BadRequest:
    return BadRequest(
        f"Invalid _page value {token[:60]!r}: page links are opaque; follow them as given "
        "(R4 http.html#paging).",
        expression="http._page",
    )
