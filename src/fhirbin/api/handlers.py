"""Binary handlers: parse the request, call the service, build the response. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from starlette.requests import Request
from starlette.responses import Response

from fhirbin.api.requests import content_length, parse_form, read_body, require, runtime
from fhirbin.api.responses import FHIR_JSON, StreamedResponse, json_response, validator_headers
from fhirbin.errors import BadRequest, NotAcceptable, NotFound, UnsupportedMediaType
from fhirbin.fhir.binary import (
    binary_json_length,
    binary_json_stream,
    etag,
    http_date,
)
from fhirbin.fhir.binary_parse import parse_binary_resource
from fhirbin.fhir.bundle import searchset_stream
from fhirbin.fhir.ids import check_id
from fhirbin.fhir.negotiate import (
    Representation,
    check_content_type,
    fhir_format,
    is_fhir_json_type,
    media_type_essence,
    read_representation,
)
from fhirbin.fhir.outcome import operation_outcome
from fhirbin.fhir.prefer import Return, prefer_return
from fhirbin.fhir.references import security_context_header
from fhirbin.fhir.search import parse_binary_search, prefer_handling, self_link
from fhirbin.metadata.base import BinaryVersion
from fhirbin.service import too_large

FORM = "application/x-www-form-urlencoded"
#: A POSTed search is a handful of parameters; anything bigger is not a search.
MAX_FORM_BODY = 1024 * 1024


def no_xml() -> NotAcceptable:
    # The XML form arrives with the REST-life issue; until then it is refused, not faked.
    return NotAcceptable(
        "This server does not serve FHIR XML yet; ask for application/fhir+json (_format=json).",
        expression="http._format",
    )


async def read(request: Request) -> Response:
    """GET/HEAD [base]/Binary/[id] — R4 binary.html#rest, decisions D1/D2 (negotiation)."""
    require(request, "r")
    binary_id = check_id(request.path_params["id"])
    representation = read_representation(
        request.query_params.get("_format"), request.headers.get("accept")
    )
    if representation is Representation.FHIR_XML:
        raise no_xml()
    service = runtime(request).service
    version = await service.read(binary_id)
    if representation is Representation.FHIR_JSON:
        return _fhir_json(version, request)
    headers = validator_headers(version)
    headers["Content-Type"] = version.content_type  # verbatim, parameters and case kept
    headers["Content-Length"] = str(version.size)
    return StreamedResponse(
        status_code=200,
        headers=headers,
        body=service.content(version),
        path=service.content_path(version),
    )


def _fhir_json(version: BinaryVersion, request: Request, status_code: int = 200) -> Response:
    headers = validator_headers(version)
    headers["Content-Type"] = FHIR_JSON
    headers["Content-Length"] = str(binary_json_length(version))
    service = runtime(request).service
    body = binary_json_stream(version, service.content(version))
    return StreamedResponse(status_code=status_code, headers=headers, body=body)


async def search(request: Request) -> Response:
    """GET [base]/Binary?… and POST [base]/Binary/_search (R4 http.html#search)."""
    require(request, "s")
    params: list[tuple[str, str]] = list(request.query_params.multi_items())
    if request.method == "POST":
        content_type = request.headers.get("content-type", "")
        if media_type_essence(content_type) != FORM:
            raise UnsupportedMediaType(
                f"POST _search takes {FORM}, not {content_type or 'an untyped body'}.",
                expression="http.Content-Type",
            )
        params += parse_form(await read_body(request, MAX_FORM_BODY))
    fmt = fhir_format(_last(params, "_format"), request.headers.get("accept"))
    if fmt is Representation.FHIR_XML:
        raise no_xml()
    strict = prefer_handling(request.headers.get("prefer")) == "strict"
    query = parse_binary_search(params, strict=strict)
    rt = runtime(request)
    versions = await rt.service.search_ids(query.ids)
    body = searchset_stream(
        total=len(versions),
        self_url=self_link(rt.base_url, query.used),
        entries=_entries(request, versions),
    )
    headers = {"Content-Type": FHIR_JSON, "Cache-Control": "private", "Vary": "Accept"}
    headers["X-Content-Type-Options"] = "nosniff"
    return StreamedResponse(status_code=200, headers=headers, body=body)


async def _entries(
    request: Request, versions: Sequence[BinaryVersion]
) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
    rt = runtime(request)
    for version in versions:
        stream = binary_json_stream(version, rt.service.content(version))
        yield f"{rt.base_url}/Binary/{version.id}", stream


def _last(params: Sequence[tuple[str, str]], name: str) -> str | None:
    values = [value for key, value in params if key == name]
    return values[-1] if values else None


async def create(request: Request) -> Response:
    """POST [base]/Binary — native bytes as-is, or a FHIR JSON Binary (R4 binary.html#rest)."""
    require(request, "c")
    service = runtime(request).service
    content_type = check_content_type(request.headers.get("content-type"))
    header_context = security_context_header(request.headers.getlist("x-security-context"))
    fmt = fhir_format(request.query_params.get("_format"), request.headers.get("accept"))
    prefer = request.headers.get("prefer")
    if is_fhir_json_type(content_type):
        # A FHIR JSON body is parsed only to learn whether it *is* a Binary; bodies that are
        # not (a Patient, say) are "accepted as is" as native content (R4 binary.html#rest).
        # base64 is 4/3 of the content, plus room for the JSON around it.
        limit = service.max_size * 4 // 3 + 65536
        body = await read_body(request, limit, too_large(service.max_size))
        parsed = parse_binary_resource(body)
        if parsed is not None:
            returning = _returning(prefer, Return.REPRESENTATION, fmt)
            context = _merge_context(header_context, parsed.security_context)
            version = await service.create(parsed.content_type, context, _once(parsed.data))
        else:
            returning = _returning(prefer, Return.MINIMAL, fmt)
            version = await service.create(content_type, header_context, _once(body))
    else:
        declared = content_length(request)
        if declared is not None and declared > service.max_size:
            raise too_large(service.max_size)  # decided before reading a byte
        returning = _returning(prefer, Return.MINIMAL, fmt)
        version = await service.create(content_type, header_context, request.stream())
    return _created(request, version, returning)


def _returning(prefer: str | None, default: Return, fmt: Representation) -> Return:
    """Decision D7; checked before anything is stored so a refusal leaves nothing behind."""
    returning = prefer_return(prefer, default)
    if returning is Return.REPRESENTATION and fmt is Representation.FHIR_XML:
        raise no_xml()
    return returning


def _merge_context(header: str | None, body: str | None) -> str | None:
    if header is not None and body is not None and header != body:
        raise BadRequest(
            "X-Security-Context and the body's securityContext name different resources.",
            expression="http.X-Security-Context",
        )
    return body or header


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _created(request: Request, version: BinaryVersion, returning: Return) -> Response:
    """201 with Location, ETag and Last-Modified (R4 http.html#create), body per Prefer."""
    base = runtime(request).base_url
    headers = {
        "Location": f"{base}/Binary/{version.id}/_history/{version.version}",
        "ETag": etag(version.version),
        "Last-Modified": http_date(version.last_updated),
    }
    if returning is Return.REPRESENTATION:
        response = _fhir_json(version, request, status_code=201)
        response.raw_headers.append((b"location", headers["Location"].encode("latin-1")))
        return response
    if returning is Return.OPERATION_OUTCOME:
        outcome = operation_outcome(
            "informational", f"Created Binary/{version.id}", severity="information"
        )
        return json_response(outcome, status_code=201, headers=headers)
    return Response(status_code=201, headers=headers)


async def not_found(request: Request) -> Response:
    """Paths under /Binary/ that are no route; a %2F inside an id is a malformed id (D3)."""
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    tail = raw.split(b"/Binary/", 1)[-1]
    if b"%2f" in tail.lower():
        raise BadRequest("A Binary id may not contain '/' (%2F).", expression="id")
    raise NotFound("No route matches this URL on this FHIR server.")
