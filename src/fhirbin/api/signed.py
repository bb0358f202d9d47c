"""Signed URLs for browsers: making one, and serving the content it opens.

* ``GET [base]/Binary/[id]/$signed-url`` and ``GET [base]/Binary/[id]/_history/[vid]/$signed-url``
  (a token that may read the Binary) answer a ``Parameters`` resource: ``url`` (valueUrl,
  absolute, on the public base URL) and ``expires`` (valueInstant), FHIRBIN_SIGNED_URL_TTL
  seconds ahead. ``Cache-Control: no-store``: the answer is a permission.
* ``GET/HEAD [base]/Binary/[id]/_history/[vid]/$signed-content?sig=…`` serves that version's
  native bytes with no token (api/middleware.py lets exactly this path through), planned by the
  very planner of a native read (api/reading.py ``plan_version``: conditional requests, Range,
  HEAD, the safe-serving headers). Only ``Cross-Origin-Resource-Policy`` differs
  (security/serving.py ``resource_policy``). A changed path or signature, another query
  parameter or an expired signature is a 403 (auth/signed_urls.py); a deleted Binary is a 410
  and an expunged (unknown) one a 404, whatever version the URL names: deleting ends every URL
  made for it.

The read a URL serves is audited as a vread of that version by the client that asked for the
URL (:func:`audit_as_read`); the signature, being in the query string, is never logged or
stored (docs/security.md#audit). docs/api.md, "Signed URLs"; docs/decisions.md#signed-urls.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from fhirbin.api.access import authorize
from fhirbin.api.context import context_of
from fhirbin.api.reading import ask_of, plan_version
from fhirbin.api.render import pretty, resource_response
from fhirbin.api.requests import runtime
from fhirbin.auth import signed_urls
from fhirbin.errors import NotFound, SignatureRefused
from fhirbin.fhir.audit import Interaction
from fhirbin.fhir.binary import instant
from fhirbin.fhir.ids import check_id, version_number
from fhirbin.fhir.negotiate import Representation, fhir_format
from fhirbin.metadata.base import BinaryVersion
from fhirbin.security.access import system_access
from fhirbin.security.serving import resource_policy

_CHANGED = "This signed URL is not valid (it was altered or not made by this server)."
_CORP = b"cross-origin-resource-policy"


async def signed_url(request: Request) -> Response:
    """GET [base]/Binary/[id]/$signed-url: a URL for the current version."""
    access = authorize(request, "r")
    binary_id = check_id(request.path_params["id"])
    version = await runtime(request).service.read(binary_id, access)
    return _made(request, version)


async def signed_url_of_version(request: Request) -> Response:
    """GET [base]/Binary/[id]/_history/[vid]/$signed-url: a URL for that version."""
    access = authorize(request, "r")
    binary_id = check_id(request.path_params["id"])
    raw_vid = request.path_params["vid"]
    vid = version_number(raw_vid)
    if vid is None:  # as a vread (docs/decisions.md#version-ids)
        check_id(raw_vid, expression="vid")
        raise NotFound(f"Binary/{binary_id} has no version {raw_vid!r}.")
    version = await runtime(request).service.vread(binary_id, vid, access)
    return _made(request, version)


def _made(request: Request, version: BinaryVersion) -> Response:
    rt = runtime(request)
    client_id = context_of(request.scope).who
    assert client_id is not None, "authorize() let a request without a token through"
    audit_as(request.scope, Interaction("E", "operation", f"Binary/{version.id}"), version.version)
    sig, expires = signed_urls.sign(
        rt.issuer,
        base_url=rt.base_url,
        binary_id=version.id,
        version=version.version,
        client_id=client_id,
        ttl=rt.settings.signed_url_ttl,
        now=int(time.time()),
    )
    url = (
        f"{rt.base_url}{signed_urls.content_path(version.id, version.version)}"
        f"?{signed_urls.QUERY_NAME}={sig}"
    )
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "url", "valueUrl": url},
            {"name": "expires", "valueInstant": instant(datetime.fromtimestamp(expires, UTC))},
        ],
    }
    fmt = fhir_format(request.query_params.get("_format"), request.headers.get("accept"))
    return resource_response(
        parameters, fmt, pretty=pretty(request), headers={"Cache-Control": "no-store"}
    )


async def signed_content(request: Request) -> Response:
    """GET/HEAD [base]/Binary/[id]/_history/[vid]/$signed-content?sig=…: the bytes, no token."""
    rt = runtime(request)
    scope = request.scope
    grant = signed_urls.verify(
        _signature(request),
        rt.keys.public_keys,
        base_url=rt.base_url,
        binary_id=request.path_params["id"],
        version=_version(request.path_params["vid"]),
        max_lifetime=rt.settings.signed_url_ttl,
        now=int(time.time()),
    )
    read = Interaction("R", "vread", f"Binary/{grant.binary_id}", grant.version)
    audit_as(scope, read, grant.version, grant.client_id)
    service = rt.service
    # The signature is the permission (checked by a client that could read the Binary when
    # the URL was made): the service is asked with unlimited access.
    everyone = system_access(rt.base_url)
    # A deletion or an expunge ends every URL of the Binary: 410 / 404 (R4 http.html#read).
    current = await service.read(grant.binary_id, everyone)
    wanted = current
    if current.version != grant.version:
        wanted = await service.vread(grant.binary_id, grant.version, everyone)
    planned = plan_version(service, ask_of(scope), wanted, Representation.NATIVE, context_of(scope))
    if planned.status_code in (200, 206):
        origins = any(o.strip() for o in rt.settings.cors_origins.split(","))
        policy = resource_policy(signed=True, embedding_origins=origins).encode("latin-1")
        # A new list: a planned answer's encoded headers may be shared with other reads.
        planned.raw_headers = [
            *((k, v) for k, v in planned.raw_headers if k != _CORP),
            (_CORP, policy),
        ]
    return planned


def audit_as(
    scope: Scope, interaction: Interaction, version: int | None, client_id: str | None = None
) -> None:
    """What the audit records for this request (api/audit_records.py, api/context.py): the
    ``interaction``, the version served, and, when no token was verified, the client a signed
    URL was made for. The one place this module speaks to the audit."""
    context = context_of(scope)
    context.interaction = interaction
    context.version = version
    if client_id is not None:
        context.client_id = client_id


def _signature(request: Request) -> str:
    """The ``sig`` parameter, the query's only one: any other change is tampering."""
    items = request.query_params.multi_items()
    if len(items) != 1 or items[0][0] != signed_urls.QUERY_NAME:
        raise SignatureRefused(_CHANGED)
    return items[0][1]


def _version(raw: str) -> int:
    vid = version_number(raw)
    if vid is None:
        raise SignatureRefused(_CHANGED)
    return vid
