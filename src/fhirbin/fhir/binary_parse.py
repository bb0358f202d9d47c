"""Reading a FHIR JSON Binary from a create/update body (R4 binary.html#rest, http.html#create).

Owns the rule that decides whether a FHIR-JSON request body *is* a Binary resource (and so a
normal FHIR create/update) or native content that merely has a FHIR media type, and the strict
validation of a Binary resource: Binary is a plain Resource (binary.html#resource), its
``contentType`` is a media type, ``data`` real base64, ``securityContext`` a literal reference.
:mod:`fhirbin.fhir.binary` re-exports :class:`ParsedBinary` and :func:`parse_binary_resource`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from fhirbin.errors import BadRequest
from fhirbin.fhir.negotiate import check_content_type
from fhirbin.fhir.references import check_reference


@dataclass(frozen=True)
class ParsedBinary:
    """A Binary resource sent by a client. ``id`` is the body's id, which create ignores and
    update compares with the URL (R4 http.html#create, #update)."""

    content_type: str
    security_context: str | None
    data: bytes
    id: str | None = None


# Resource elements accepted and ignored: the server assigns id and meta (R4
# http.html#create); language changes nothing fhirbin does with the bytes.
_IGNORED = frozenset({"id", "meta", "language", "_id", "_language"})
# Binary is a Resource, not a DomainResource (R4 binary.html#resource, narrative.html#root).
_DOMAIN_RESOURCE = frozenset({"text", "contained", "extension", "modifierExtension"})
_BASE64_WHITESPACE = str.maketrans("", "", " \t\r\n")


def parse_binary_resource(body: bytes, *, must_be_json: bool = False) -> ParsedBinary | None:
    """The Binary a FHIR-JSON create/update body holds, or None if the body is not a Binary.

    R4 binary.html#rest: a body is a Binary resource only if it is a JSON object whose
    ``resourceType`` is ``"Binary"``; any other JSON (an array, a Patient...) is native content
    to store as it is. A body that is not JSON at all is native content too, unless
    ``must_be_json`` (the body was declared ``application/fhir+json``): then it is a
    BadRequest, since "accepted as is" is about resources and garbage is none
    (docs/decisions.md#fhir-bodies-must-parse). A Binary resource is validated strictly:
    BadRequest names the first element that is wrong.
    """
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                duplicates.append(key)
            obj[key] = value
        return obj

    try:
        doc = json.loads(body, object_pairs_hook=pairs)
    except (ValueError, RecursionError) as exc:  # includes JSONDecodeError, UnicodeDecodeError
        if must_be_json and body:
            raise not_json(exc) from None
        return None
    if not isinstance(doc, dict) or doc.get("resourceType") != "Binary":
        return None
    if duplicates:  # json.html: properties appear once; "last one wins" would hide content
        raise BadRequest(duplicate_property(duplicates[0]), expression="Binary")
    content_type, security_context, body_id = check_binary_document(doc)
    data = decode_data(_string(doc, "data")) if "data" in doc else b""
    return ParsedBinary(content_type, security_context, data, body_id)


#: The top-level elements whose values :func:`check_binary_document` reads.
BINARY_ELEMENTS = frozenset(
    {"resourceType", "contentType", "data", "securityContext", "id", "meta", "language"}
)


def duplicate_property(name: str) -> str:
    return f"Property {name[:100]!r} appears more than once."


def check_binary_document(doc: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """``(contentType, securityContext reference, id)`` of a parsed Binary document, or
    BadRequest naming the first element that is wrong. ``data`` is only checked to be a
    non-empty string here; decoding it is the caller's."""
    for key in doc:
        _check_element(key)
    if "language" in doc:
        _string(doc, "language")
    if "meta" in doc and not isinstance(doc["meta"], dict):
        raise BadRequest("Binary.meta must be a JSON object.", expression="Binary.meta")
    if "contentType" not in doc:
        raise BadRequest(
            "Binary.contentType is required (1..1, R4 binary.html#resource).",
            expression="Binary.contentType",
        )
    # Inside a resource, contentType describes the data, not the exchange: a fhirVersion in
    # it is not the version of this interaction (R4 http.html#version-parameter).
    content_type = check_content_type(
        _string(doc, "contentType"), "Binary.contentType", describes_request=False
    )
    if "data" in doc:
        _string(doc, "data")
    security_context = None
    if "securityContext" in doc:
        security_context = _security_context(doc["securityContext"])
    body_id = _string(doc, "id") if "id" in doc else None
    return content_type, security_context, body_id


def not_json(exc: Exception) -> BadRequest:
    """The 400 for a body declared FHIR JSON that is not JSON (truncated, garbage, not UTF-8)."""
    if isinstance(exc, json.JSONDecodeError):
        where = f": {exc.msg} at line {exc.lineno} column {exc.colno} (byte {exc.pos})"
    elif isinstance(exc, UnicodeDecodeError):
        where = f": not UTF-8 at byte {exc.start}"
    elif isinstance(exc, RecursionError):
        where = ": nested too deeply"
    else:
        where = f": {str(exc)[:200]}"
    return BadRequest(
        f"The body is declared application/fhir+json but is not well-formed JSON{where}.",
        expression="Binary",
        code="structure",
    )


def _check_element(key: str) -> None:
    if key in ("resourceType", "contentType", "data", "securityContext") or key in _IGNORED:
        return
    if key in _DOMAIN_RESOURCE:
        msg = f"Binary is a Resource, not a DomainResource: it has no {key!r} element"
        raise BadRequest(f"{msg} (R4 binary.html#resource).", expression=f"Binary.{key}")
    if key in ("implicitRules", "_implicitRules"):
        # A modifier element whose rules "must be understood when processing the content"
        # (R4 resource.html#implicitRules); fhirbin understands none, so it cannot accept one.
        raise BadRequest(
            "Binary.implicitRules is not supported: this server knows no implicit rules.",
            expression="Binary.implicitRules",
            code="not-supported",
        )
    if key.startswith("_"):  # R4 json.html#primitive: id/extensions of a primitive element
        raise BadRequest(
            f"Extensions on Binary.{key[1:]} are not supported.",
            expression=f"Binary.{key[1:]}",
            code="not-supported",
        )
    name = key[:100]
    raise BadRequest(f"Unknown element {name!r} in Binary.", expression=f"Binary.{name}")


def _string(obj: dict[str, Any], key: str, path: str = "Binary") -> str:
    value = obj[key]
    # R4 json.html#primitive: string values are never empty ("" is invalid, null is invalid).
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{path}.{key} must be a non-empty string.", expression=f"{path}.{key}")
    return value


def decode_data(text: str) -> bytes:
    """Binary.data as bytes, or BadRequest; shared by the JSON and XML parsers."""
    # A real RFC 4648 decoder, not the informative R4 regex (which forgets '/', datatypes.html).
    # Whitespace is allowed as in XML (datatypes.html#base64Binary); try without removing it.
    for candidate in (text, text.translate(_BASE64_WHITESPACE)):
        try:
            return base64.b64decode(candidate, validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII str
            continue
    raise BadRequest(
        "Binary.data is not valid base64 (RFC 4648 §4: A-Z a-z 0-9 + / with = padding).",
        expression="Binary.data",
    )


def _security_context(value: Any) -> str:
    path = "Binary.securityContext"
    if not isinstance(value, dict):
        raise BadRequest(f"{path} must be a JSON object (a Reference).", expression=path)
    for key in value:
        if key == "identifier":
            raise BadRequest(
                f"{path}.identifier is not supported: only securityContext.reference is "
                "(R4 binary.html#rest: X-Security-Context carries the reference).",
                expression=f"{path}.identifier",
                code="not-supported",
            )
        if key not in ("reference", "display", "type"):
            raise BadRequest(
                f"Unsupported element {key[:100]!r} in {path}.", expression=f"{path}.{key[:100]}"
            )
    if "reference" not in value:
        raise BadRequest(f"{path}.reference is required.", expression=f"{path}.reference")
    for key in ("display", "type"):  # accepted and not stored: the reference says it all
        if key in value:
            _string(value, key, path)
    return check_reference(_string(value, "reference", path), f"{path}.reference")
