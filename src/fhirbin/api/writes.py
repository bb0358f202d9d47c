"""create, update, delete and $expunge: parse the body, call the service, answer per ``Prefer``."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO

import anyio
from starlette.requests import Request
from starlette.responses import Response

from fhirbin.api.access import authorize
from fhirbin.api.audit_records import expunge_audit, write_audit
from fhirbin.api.render import binary_response, pretty, resource_response
from fhirbin.api.requests import body_chunks, content_length, read_body, runtime, spool_body
from fhirbin.errors import BadRequest, OperationDisabled, PayloadTooLarge
from fhirbin.fhir.binary import binary_summary_json, etag, http_date
from fhirbin.fhir.binary_parse import ParsedBinary
from fhirbin.fhir.binary_stream import CHUNK, StreamedData, data_chunks, parse_binary_json_file
from fhirbin.fhir.conditional import if_match_ok
from fhirbin.fhir.ids import check_id, check_writable_id
from fhirbin.fhir.negotiate import (
    Representation,
    check_content_type,
    fhir_format,
    is_fhir_json_type,
    is_fhir_xml_type,
    media_type_essence,
)
from fhirbin.fhir.outcome import operation_outcome
from fhirbin.fhir.prefer import Return, prefer_return
from fhirbin.fhir.references import security_context_header
from fhirbin.fhir.xml_parse import parse_binary_xml
from fhirbin.metadata.base import BinaryVersion
from fhirbin.service import BinaryService, too_large

_NO_SNIFF = {"X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True)
class Upload:
    """What a create or update body amounts to."""

    content_type: str
    security_context: str | None
    chunks: AsyncIterable[bytes]
    #: ``representation`` for FHIR resource bodies, ``SUBSET`` for native ones
    #: (docs/decisions.md#prefer-on-writes)
    default_return: Return
    #: the id inside a FHIR Binary body (None for native bodies)
    body_id: str | None = None
    fhir_body: bool = False
    #: the spooled body the chunks are read from, closed (and so deleted) after the write
    spool: BinaryIO | None = None

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()


async def _upload(request: Request, service: BinaryService) -> Upload:
    content_type = check_content_type(request.headers.get("content-type"))
    header_context = security_context_header(request.headers.getlist("x-security-context"))
    essence = media_type_essence(content_type)
    # R4 binary.html#rest: content is accepted as is "except for the special case where the
    # content is actually a Binary resource" — whatever the type says. Generic JSON and XML
    # are checked too, because clients such as fhirpy (requests' json=) send FHIR resources
    # as application/json.
    fhir_json = is_fhir_json_type(content_type) or essence == "application/json"
    fhir_xml = is_fhir_xml_type(content_type) or essence in ("application/xml", "text/xml")
    # base64 is 4/3 of the content, plus room for the markup around it.
    limit = service.max_size * 4 // 3 + 65536
    if fhir_json:
        return await _json_upload(request, service, content_type, header_context, limit)
    if fhir_xml:
        # A FHIR body is parsed only to learn whether it *is* a Binary; bodies that are not
        # (a Patient, say) are "accepted as is" as native content (R4 binary.html#rest).
        # An XML parser hands over the ``data`` attribute whole, so an XML body costs about
        # four times its size in memory: it has a lower limit (FHIRBIN_MAX_XML_SIZE).
        max_xml = runtime(request).settings.max_xml_size
        xml_limit = min(limit, max_xml)
        error = too_large(service.max_size) if xml_limit == limit else _xml_too_large(max_xml)
        body = await read_body(request, xml_limit, error)
        parsed = parse_binary_xml(body, must_be_xml=is_fhir_xml_type(content_type))
        if parsed is not None:
            return _from_resource(parsed, header_context)
        return Upload(content_type, header_context, _once(body), Return.SUBSET)
    declared = content_length(request)
    if declared is not None and declared > service.max_size:
        raise too_large(service.max_size)  # decided before reading a byte
    return Upload(content_type, header_context, body_chunks(request), Return.SUBSET)


def _xml_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"A FHIR XML body may be at most {limit} bytes on this server (FHIRBIN_MAX_XML_SIZE: "
        "an XML parser holds Binary.data whole); send the content natively, or as FHIR JSON, "
        "which streams.",
        expression="Binary.data",
    )


async def _json_upload(
    request: Request,
    service: BinaryService,
    content_type: str,
    header_context: str | None,
    limit: int,
) -> Upload:
    """A JSON body, spooled to a temporary file and parsed from there as a stream
    (fhir/binary_stream.py): memory stays bounded whatever its size."""
    # Closed by Upload.close (or below on failure): it outlives this function.
    spool = tempfile.TemporaryFile(dir=runtime(request).settings.data_dir)  # noqa: SIM115
    try:
        await spool_body(request, spool, limit, too_large(service.max_size))
        parsed = await anyio.to_thread.run_sync(
            partial(parse_binary_json_file, spool, must_be_json=is_fhir_json_type(content_type))
        )
    except BaseException:
        spool.close()
        raise
    if parsed is None:  # JSON that is not a Binary: the body itself is the content
        return Upload(content_type, header_context, _replay(spool), Return.SUBSET, spool=spool)
    if parsed.size > service.max_size:
        spool.close()
        raise too_large(service.max_size)
    body_context = parsed.security_context
    _check_contexts(header_context, body_context)
    chunks = _decoded(spool, parsed.data) if parsed.data is not None else _once(b"")
    return Upload(
        parsed.content_type,
        body_context or header_context,
        chunks,
        Return.REPRESENTATION,
        body_id=parsed.id,
        fhir_body=True,
        spool=spool,
    )


async def _replay(spool: BinaryIO) -> AsyncIterator[bytes]:
    spool.seek(0)
    while chunk := spool.read(CHUNK):
        yield chunk


async def _decoded(spool: BinaryIO, data: StreamedData) -> AsyncIterator[bytes]:
    for chunk in data_chunks(spool, data):
        yield chunk


def _check_contexts(header_context: str | None, body_context: str | None) -> None:
    if header_context is not None and body_context is not None and header_context != body_context:
        raise BadRequest(
            "X-Security-Context and the body's securityContext name different resources.",
            expression="http.X-Security-Context",
        )


def _from_resource(parsed: ParsedBinary, header_context: str | None) -> Upload:
    body_context = parsed.security_context
    _check_contexts(header_context, body_context)
    return Upload(
        parsed.content_type,
        body_context or header_context,
        _once(parsed.data),
        Return.REPRESENTATION,
        body_id=parsed.id,
        fhir_body=True,
    )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _check_context(request: Request, upload: Upload) -> None:
    """FHIRBIN_REQUIRE_SECURITY_CONTEXT (a patient-bound token writing its own patient's
    Binaries only is the service's check, security/access.py)."""
    if upload.security_context is None and runtime(request).settings.require_security_context:
        raise BadRequest(
            "This server requires a securityContext on every Binary: send "
            "X-Security-Context: <reference> (or securityContext in a FHIR body).",
            expression="http.X-Security-Context",
            code="required",
        )


def _returning(request: Request, upload: Upload) -> tuple[Return, Representation]:
    """The answer's form (docs/decisions.md#prefer-on-writes), settled before anything is
    stored so a refusal leaves nothing behind."""
    fmt = fhir_format(request.query_params.get("_format"), request.headers.get("accept"))
    returning = prefer_return(request.headers.get("prefer"), upload.default_return)
    return returning, fmt


async def create(request: Request) -> Response:
    """POST [base]/Binary — native bytes as-is, or a FHIR Binary (R4 binary.html#rest)."""
    access = authorize(request, "c")
    service = runtime(request).service
    upload = await _upload(request, service)
    try:
        _check_context(request, upload)
        returning, fmt = _returning(request, upload)
        version = await service.create(
            upload.content_type,
            upload.security_context,
            upload.chunks,
            access=access,
            audit=write_audit(request.scope, "create"),
        )
    finally:
        upload.close()
    return _written(request, version, returning, fmt, status_code=201)


async def update(request: Request) -> Response:
    """PUT [base]/Binary/[id] — R4 http.html#update, #upsert, #concurrency;
    docs/decisions.md#ids."""
    access = authorize(request, "u")
    binary_id = check_writable_id(request.path_params["id"])
    service = runtime(request).service
    if_match = request.headers.get("if-match")
    precondition = None if if_match is None else partial(if_match_ok, if_match)
    upload = await _upload(request, service)
    try:
        if upload.fhir_body and upload.body_id != binary_id:
            # R4 http.html#update: the body's id MUST equal the URL's, else 400.
            raise BadRequest(
                f"The Binary in the body has id {upload.body_id!r}; the URL says {binary_id!r}.",
                expression="Binary.id",
            )
        _check_context(request, upload)
        returning, fmt = _returning(request, upload)
        version, created = await service.update(
            binary_id,
            upload.content_type,
            upload.security_context,
            upload.chunks,
            precondition,
            access=access,
            audit=write_audit(request.scope, "update"),
        )
    finally:
        upload.close()
    return _written(request, version, returning, fmt, status_code=201 if created else 200)


async def delete(request: Request) -> Response:
    """DELETE [base]/Binary/[id] — 204 even when unknown or already deleted
    (docs/decisions.md#delete-is-idempotent)."""
    access = authorize(request, "d")
    binary_id = check_id(request.path_params["id"])
    if_match = request.headers.get("if-match")
    precondition = None if if_match is None else partial(if_match_ok, if_match)
    service = runtime(request).service
    await service.delete(
        binary_id, precondition, access=access, audit=write_audit(request.scope, "delete")
    )
    return Response(status_code=204)


async def expunge(request: Request) -> Response:
    """POST [base]/Binary/[id]/$expunge — every version and its content erased for good, when
    FHIRBIN_ALLOW_EXPUNGE is on (docs/decisions.md#expunge): 200 with a Parameters resource
    (``count``: the versions removed); 404 for an id with no versions."""
    access = authorize(request, "d")
    binary_id = check_id(request.path_params["id"])
    rt = runtime(request)
    if not rt.settings.allow_expunge:
        raise OperationDisabled(
            "$expunge is switched off on this server (FHIRBIN_ALLOW_EXPUNGE); nothing changed."
        )
    gone = await rt.service.expunge(binary_id, access, expunge_audit(request.scope, binary_id))
    fmt = fhir_format(request.query_params.get("_format"), request.headers.get("accept"))
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "count", "valueInteger": gone.versions}],
    }
    return resource_response(parameters, fmt, pretty=pretty(request))


def _written(
    request: Request,
    version: BinaryVersion,
    returning: Return,
    fmt: Representation,
    *,
    status_code: int,
) -> Response:
    """201/200 with Location, ETag and Last-Modified (R4 http.html#create, #update; R5 wants
    Location on 200 too), the body per ``Prefer`` (R4 http.html#prefer,
    docs/decisions.md#prefer-on-writes)."""
    rt = runtime(request)
    headers = {
        "Location": f"{rt.base_url}/Binary/{version.id}/_history/{version.version}",
        "ETag": etag(version.version),
        "Last-Modified": http_date(version.last_updated),
    }
    if returning is Return.REPRESENTATION:
        return binary_response(
            rt.service,
            version,
            fmt,
            pretty=pretty(request),
            status_code=status_code,
            extra_headers={"Location": headers["Location"]},
        )
    if returning is Return.SUBSET:
        # Clients such as Medplum's createBinary read the id from the body: tell it, and the
        # meta, without echoing the content (R4 search.html#summary: tagged SUBSETTED).
        return resource_response(
            binary_summary_json(version),
            fmt,
            pretty=pretty(request),
            status_code=status_code,
            headers={**headers, **_NO_SNIFF},
        )
    if returning is Return.OPERATION_OUTCOME:
        verb = "Created" if status_code == 201 else "Updated"
        outcome = operation_outcome(
            "informational",
            f"{verb} Binary/{version.id} version {version.version}.",
            severity="information",
        )
        return resource_response(
            outcome, fmt, pretty=pretty(request), status_code=status_code, headers=headers
        )
    return Response(status_code=status_code, headers=headers)
