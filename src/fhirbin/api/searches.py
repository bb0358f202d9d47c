"""Search and history: parameters → catalogue query → a paged, streamed Bundle.

Paging is keyset-based (fhir/paging.py): each page link carries the parameters in force and an
opaque cursor naming the row the page starts after (or ends before), so following a link with
GET works after a POST search and pages do not shift when Binaries are added meanwhile
(R4 http.html#paging).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from fhirbin.api.access import Access, authorize
from fhirbin.api.context import RequestContext, context_of
from fhirbin.api.reading import ReadAsk, ask_of
from fhirbin.api.render import Entry, Subset, bundle_response
from fhirbin.api.requests import parse_form, read_body, runtime
from fhirbin.api.responses import StreamedResponse
from fhirbin.errors import UnsupportedMediaType
from fhirbin.fhir.binary import etag, instant
from fhirbin.fhir.dates import datetime_to_us
from fhirbin.fhir.ids import check_id
from fhirbin.fhir.negotiate import Representation, fhir_format, media_type_essence
from fhirbin.fhir.paging import Cursor, decode_cursor, encode_cursor, page_links
from fhirbin.fhir.search import parse_binary_search, parse_history_params, prefer_handling
from fhirbin.metadata.base import (
    BinaryVersion,
    CatalogueQuery,
    HistoryQuery,
    Keyset,
    UpdatedRange,
)

if TYPE_CHECKING:
    from fhirbin.runtime import Runtime

FORM = "application/x-www-form-urlencoded"
#: A POSTed search is a handful of parameters; anything bigger is not a search.
MAX_FORM_BODY = 1024 * 1024
DEFAULT_COUNT = 20
MAX_COUNT = 1000


async def search(request: Request) -> Response:
    """GET [base]/Binary?… and POST [base]/Binary/_search (R4 http.html#search)."""
    access = authorize(request, "s")
    scope = request.scope

    async def form() -> bytes:
        return await read_body(request, MAX_FORM_BODY)

    return await search_binaries(runtime(request), access, ask_of(scope), form, context_of(scope))


async def search_binaries(
    rt: Runtime,
    access: Access,
    ask: ReadAsk,
    form: Callable[[], Awaitable[bytes]],
    context: RequestContext,
) -> StreamedResponse:
    """The searchset Bundle a search asks for (both lanes, api/reading.py); ``form`` reads
    a POSTed form body, asked for only once its Content-Type is checked."""
    params = list(ask.params)
    if ask.method == "POST":
        content_type = ask.content_type or ""
        if media_type_essence(content_type) != FORM:
            raise UnsupportedMediaType(
                f"POST _search takes {FORM}, not {content_type or 'an untyped body'}.",
                expression="http.Content-Type",
            )
        params += parse_form(await form())
    fmt = _format(ask, params)
    query = parse_binary_search(
        params,
        _strict(ask),
        now_us=time.time_ns() // 1000,
        default_count=DEFAULT_COUNT,
        max_count=MAX_COUNT,
    )
    context.query = query.used  # the audit record's query
    cursor = decode_cursor(query.page) if query.page else None
    ids = None
    if query.ids is not None:
        ids = frozenset.intersection(*query.ids) if query.ids else frozenset()
    count_only = query.count == 0 or query.summary == "count"
    catalogue_query = CatalogueQuery(
        ids=ids,
        updated=tuple(UpdatedRange(u.lower_us, u.upper_us, u.inside) for u in query.updated),
        descending=query.descending,
        after=_keyset(cursor, "next"),
        before=_keyset(cursor, "prev"),
        limit=0 if count_only else query.count + 1,  # one more tells whether a page follows
    )
    rows, total = await rt.service.search(catalogue_query, access, with_total=query.total != "none")
    rows, links = _page(rt.base_url, "Binary", query.used, query.count, rows, cursor, count_only)
    base = rt.base_url
    entries = [Entry(f"{base}/Binary/{v.id}", v, search_mode="match") for v in rows]
    subset = Subset(summary=query.summary == "true", elements=query.elements)
    return bundle_response(
        rt.service,
        bundle_type="searchset",
        total=total,
        links=links,
        entries=entries,
        fmt=fmt,
        pretty=ask.pretty,
        subset=subset,
    )


def _format(ask: ReadAsk, params: Sequence[tuple[str, str]]) -> Representation:
    formats = [value for key, value in params if key == "_format"]
    return fhir_format(formats[-1] if formats else None, ask.accept)


def _strict(ask: ReadAsk) -> bool:
    return prefer_handling(ask.prefer) == "strict"


def _keyset(cursor: Cursor | None, direction: str) -> Keyset | None:
    if cursor is None or cursor.direction != direction:
        return None
    return Keyset(cursor.last_updated_us, cursor.id, cursor.version)


def _key(version: BinaryVersion, direction: str) -> str:
    us = datetime_to_us(version.last_updated)
    return encode_cursor(direction, us, version.id, version.version)


def _page(
    base_url: str,
    path: str,
    used: Sequence[tuple[str, str]],
    count: int,
    rows: list[BinaryVersion],
    cursor: Cursor | None,
    count_only: bool,
) -> tuple[list[BinaryVersion], list[tuple[str, str]]]:
    """Trim the extra row and build self/first/next/previous (R4 search.html#count: no page
    links for ``_count=0``)."""
    if count_only:
        return [], page_links(
            base_url,
            path,
            used,
            count,
            first_cursor=None,
            next_cursor=None,
            prev_cursor=None,
            self_cursor=None,
        )
    backwards = cursor is not None and cursor.direction == "prev"
    more = len(rows) > count
    if more:
        # Rows come in the query's order; the extra row of a "prev" page is its first one.
        rows = rows[1:] if backwards else rows[:count]
    has_next = (more and not backwards) or backwards
    has_prev = (more and backwards) or (cursor is not None and not backwards)
    next_cursor = _key(rows[-1], "next") if rows and has_next else None
    prev_cursor = _key(rows[0], "prev") if rows and has_prev else None
    self_cursor = None
    if cursor is not None:
        self_cursor = encode_cursor(
            cursor.direction, cursor.last_updated_us, cursor.id, cursor.version
        )
    links = page_links(
        base_url,
        path,
        used,
        count,
        first_cursor=None,
        next_cursor=next_cursor,
        prev_cursor=prev_cursor,
        self_cursor=self_cursor,
    )
    return rows, links


async def history(request: Request) -> Response:
    """GET [base]/Binary/[id]/_history and [base]/Binary/_history (R4 http.html#history)."""
    binary_id = request.path_params.get("id")
    access = authorize(request, "r" if binary_id is not None else "s")
    if binary_id is not None:
        check_id(binary_id)
    ask = ask_of(request.scope)
    params = list(ask.params)
    fmt = _format(ask, params)
    query = parse_history_params(
        params, strict=_strict(ask), default_count=DEFAULT_COUNT, max_count=MAX_COUNT
    )
    context_of(request.scope).query = query.used  # the audit record's query
    cursor = decode_cursor(query.page) if query.page else None
    rt = runtime(request)
    history_query = HistoryQuery(
        since_us=query.since_us,
        after=_keyset(cursor, "next"),
        before=_keyset(cursor, "prev"),
        limit=query.count + 1 if query.count else 0,
    )
    rows, total = await rt.service.history(binary_id, history_query, access, with_total=True)
    path = f"Binary/{binary_id}/_history" if binary_id is not None else "Binary/_history"
    rows, links = _page(rt.base_url, path, query.used, query.count, rows, cursor, query.count == 0)
    entries = [_history_entry(rt.base_url, v) for v in rows]
    return bundle_response(
        rt.service,
        bundle_type="history",
        total=total,
        links=links,
        entries=entries,
        fmt=fmt,
        pretty=ask.pretty,
    )


def _history_entry(base_url: str, version: BinaryVersion) -> Entry:
    """R4 http.html#history: entries carry request and response; a deletion has no resource.

    fhirbin does not record whether version 1 came from POST or from update-as-create, so
    version 1 is reported as POST (a create) and later versions as PUT.
    """
    if version.deleted:
        request = ("DELETE", f"Binary/{version.id}")
        status = "204"
    elif version.version == 1:
        request = ("POST", "Binary")
        status = "201"
    else:
        request = ("PUT", f"Binary/{version.id}")
        status = "200"
    response = {
        "status": status,
        "etag": etag(version.version),
        "lastModified": instant(version.last_updated),
    }
    if not version.deleted:
        response["location"] = f"Binary/{version.id}/_history/{version.version}"
    return Entry(
        full_url=f"{base_url}/Binary/{version.id}",
        version=None if version.deleted else version,
        request=request,
        response=response,
    )
