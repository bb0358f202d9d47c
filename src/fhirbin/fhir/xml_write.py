"""FHIR XML (R4 xml.html) for what fhirbin serves: whole resources, and the Binary streamed.

Owns the XML form of the resources fhirbin writes: :func:`resource_to_xml` turns the FHIR JSON
shape (a dict, as built by :mod:`fhirbin.fhir.outcome`, :mod:`fhirbin.fhir.capability`,
:mod:`fhirbin.fhir.binary`) into FHIR XML, and the ``binary_xml_*`` functions mirror the JSON
Binary streaming of :mod:`fhirbin.fhir.binary`: ``head + base64(content) + tail`` with the exact
length known in advance (docs/decisions.md#streamed-fhir-form).

The mapping follows R4 xml.html and json.html:

* the root element is the resource type in the namespace ``http://hl7.org/fhir`` (xml.html:
  "FHIR elements are always in the namespace http://hl7.org/fhir"); every resource element,
  including one nested in ``Bundle.entry.resource`` or ``contained``, declares it, so a
  resource fragment reads the same standalone and nested;
* a primitive is ``<name value="..."/>`` (xml.html: "values of primitive types in a value
  attribute"), booleans as ``true``/``false``, numbers as JSON writes them;
* a JSON array is the element repeated, in array order (xml.html: repeating elements);
* a complex value is a nested element; the ``id`` of an element (not of a resource) is an
  attribute, the ``id`` of a resource an element (xml.html: "the id property on elements (but
  not on resources, where the resource id is an element)");
* a resource inside another (``resource``, ``contained``, ``outcome``) is wrapped:
  ``<resource><Binary xmlns="http://hl7.org/fhir">...</Binary></resource>`` (json.html#resources
  gives the inverse rule);
* elements are written in the order of the FHIR definitions, never in dict order (xml.html:
  "Elements must always appear in the order documented"). The order is a table here that covers
  exactly the elements fhirbin emits; an element it does not know is a ValueError, never a
  guess.

fhirbin writes no narrative and no primitive extensions, so ``text`` and JSON ``_name`` are
refused with ValueError as well. The only extensions it writes are complex-element ones where
the order table lists ``extension`` (the SMART ``oauth-uris`` on
``CapabilityStatement.rest.security``); an extension's ``url`` is an XML attribute.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from decimal import Decimal
from typing import Any, Final

from fhirbin.fhir.binary import (
    BinaryMeta,
    base64_chunks,
    base64_length,
    exactly,
    instant,
)

__all__ = [
    "FHIR_NS",
    "RESOURCE_TYPES",
    "XML_DECLARATION",
    "binary_xml_length",
    "binary_xml_parts",
    "binary_xml_stream",
    "escape_attribute",
    "resource_to_xml",
]

FHIR_NS: Final = "http://hl7.org/fhir"
XML_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>'
INDENT: Final = "  "

# --- the element order table ---------------------------------------------------------------
#
# Each entry maps an element name to its kind, in the order of the R4 definitions:
# _P is a primitive, _RES a resource (written wrapped), anything else names another entry of
# _ORDER (a datatype such as "Meta", or a backbone element such as "Bundle.entry"). A kind with
# no entry in _ORDER (Narrative, Extension, UsageContext...) is known by name only: meeting it
# is a ValueError.

PRIMITIVE: Final = ""
RESOURCE: Final = "@resource"
_P: Final = PRIMITIVE
_RES: Final = RESOURCE

# R4 resource.html#Resource: id, meta, implicitRules, language.
_RESOURCE: dict[str, str] = {"id": _P, "meta": "Meta", "implicitRules": _P, "language": _P}
# R4 domainresource.html: then text, contained, extension, modifierExtension.
_DOMAIN_RESOURCE: dict[str, str] = {
    **_RESOURCE,
    "text": "Narrative",
    "contained": _RES,
    "extension": "Extension",
    "modifierExtension": "Extension",
}

_ORDER: Final[dict[str, dict[str, str]]] = {
    # --- datatypes (R4 datatypes.html, resource.html#Meta) ---
    # R4 extensibility.html#Extension: url is an attribute (written by _complex), then the
    # nested extensions or one value[x]; only the value types fhirbin writes are listed.
    "Extension": {"extension": "Extension", "valueUri": _P, "valueCode": _P},
    "Meta": {
        "versionId": _P,
        "lastUpdated": _P,
        "source": _P,
        "profile": _P,
        "security": "Coding",
        "tag": "Coding",
    },
    "Coding": {"system": _P, "version": _P, "code": _P, "display": _P, "userSelected": _P},
    "CodeableConcept": {"coding": "Coding", "text": _P},
    "Reference": {"reference": _P, "type": _P, "identifier": "Identifier", "display": _P},
    "Identifier": {
        "use": _P,
        "type": "CodeableConcept",
        "system": _P,
        "value": _P,
        "period": "Period",
        "assigner": "Reference",
    },
    "Period": {"start": _P, "end": _P},
    "Signature": {
        "type": "Coding",
        "when": _P,
        "who": "Reference",
        "onBehalfOf": "Reference",
        "targetFormat": _P,
        "sigFormat": _P,
        "data": _P,
    },
    "ContactDetail": {"name": _P, "telecom": "ContactPoint"},
    "ContactPoint": {"system": _P, "value": _P, "use": _P, "rank": _P, "period": "Period"},
    # --- Binary (R4 binary.html#resource) ---
    "Binary": {**_RESOURCE, "contentType": _P, "securityContext": "Reference", "data": _P},
    # --- Bundle (R4 bundle.html#resource) ---
    "Bundle": {
        **_RESOURCE,
        "identifier": "Identifier",
        "type": _P,
        "timestamp": _P,
        "total": _P,
        "link": "Bundle.link",
        "entry": "Bundle.entry",
        "signature": "Signature",
    },
    "Bundle.link": {"relation": _P, "url": _P},
    "Bundle.entry": {
        "link": "Bundle.link",  # contentReference #Bundle.link
        "fullUrl": _P,
        "resource": _RES,
        "search": "Bundle.entry.search",
        "request": "Bundle.entry.request",
        "response": "Bundle.entry.response",
    },
    "Bundle.entry.search": {"mode": _P, "score": _P},
    "Bundle.entry.request": {
        "method": _P,
        "url": _P,
        "ifNoneMatch": _P,
        "ifModifiedSince": _P,
        "ifMatch": _P,
        "ifNoneExist": _P,
    },
    "Bundle.entry.response": {
        "status": _P,
        "location": _P,
        "etag": _P,
        "lastModified": _P,
        "outcome": _RES,
    },
    # --- Parameters (R4 parameters.html#resource): operation answers ($expunge, $signed-url);
    # only the value types fhirbin writes are listed ---
    "Parameters": {**_RESOURCE, "parameter": "Parameters.parameter"},
    "Parameters.parameter": {
        "name": _P,
        "valueInstant": _P,
        "valueInteger": _P,
        "valueUrl": _P,
        "resource": _RES,
        "part": "Parameters.parameter",
    },
    # --- OperationOutcome (R4 operationoutcome.html#resource) ---
    "OperationOutcome": {**_DOMAIN_RESOURCE, "issue": "OperationOutcome.issue"},
    "OperationOutcome.issue": {
        "severity": _P,
        "code": _P,
        "details": "CodeableConcept",
        "diagnostics": _P,
        "location": _P,
        "expression": _P,
    },
    # --- CapabilityStatement (R4 capabilitystatement.html#resource) ---
    "CapabilityStatement": {
        **_DOMAIN_RESOURCE,
        "url": _P,
        "version": _P,
        "name": _P,
        "title": _P,
        "status": _P,
        "experimental": _P,
        "date": _P,
        "publisher": _P,
        "contact": "ContactDetail",
        "description": _P,
        "useContext": "UsageContext",
        "jurisdiction": "CodeableConcept",
        "purpose": _P,
        "copyright": _P,
        "kind": _P,
        "instantiates": _P,
        "imports": _P,
        "software": "CapabilityStatement.software",
        "implementation": "CapabilityStatement.implementation",
        "fhirVersion": _P,
        "format": _P,
        "patchFormat": _P,
        "implementationGuide": _P,
        "rest": "CapabilityStatement.rest",
        "messaging": "CapabilityStatement.messaging",
        "document": "CapabilityStatement.document",
    },
    "CapabilityStatement.software": {"name": _P, "version": _P, "releaseDate": _P},
    "CapabilityStatement.implementation": {
        "description": _P,
        "url": _P,
        "custodian": "Reference",
    },
    "CapabilityStatement.rest": {
        "mode": _P,
        "documentation": _P,
        "security": "CapabilityStatement.rest.security",
        "resource": "CapabilityStatement.rest.resource",
        "interaction": "CapabilityStatement.rest.interaction",
        # contentReferences to the resource-level definitions
        "searchParam": "CapabilityStatement.rest.resource.searchParam",
        "operation": "CapabilityStatement.rest.resource.operation",
        "compartment": _P,
    },
    "CapabilityStatement.rest.security": {
        "extension": "Extension",
        "cors": _P,
        "service": "CodeableConcept",
        "description": _P,
    },
    "CapabilityStatement.rest.resource": {
        "type": _P,
        "profile": _P,
        "supportedProfile": _P,
        "documentation": _P,
        "interaction": "CapabilityStatement.rest.resource.interaction",
        "versioning": _P,
        "readHistory": _P,
        "updateCreate": _P,
        "conditionalCreate": _P,
        "conditionalRead": _P,
        "conditionalUpdate": _P,
        "conditionalDelete": _P,
        "referencePolicy": _P,
        "searchInclude": _P,
        "searchRevInclude": _P,
        "searchParam": "CapabilityStatement.rest.resource.searchParam",
        "operation": "CapabilityStatement.rest.resource.operation",
    },
    "CapabilityStatement.rest.resource.interaction": {"code": _P, "documentation": _P},
    "CapabilityStatement.rest.resource.searchParam": {
        "name": _P,
        "definition": _P,
        "type": _P,
        "documentation": _P,
    },
    "CapabilityStatement.rest.resource.operation": {
        "name": _P,
        "definition": _P,
        "documentation": _P,
    },
    "CapabilityStatement.rest.interaction": {"code": _P, "documentation": _P},
    "CapabilityStatement.document": {"mode": _P, "documentation": _P, "profile": _P},
    # --- AuditEvent (R4 auditevent.html#resource) ---
    "AuditEvent": {
        **_DOMAIN_RESOURCE,
        "type": "Coding",
        "subtype": "Coding",
        "action": _P,
        "period": "Period",
        "recorded": _P,
        "outcome": _P,
        "outcomeDesc": _P,
        "purposeOfEvent": "CodeableConcept",
        "agent": "AuditEvent.agent",
        "source": "AuditEvent.source",
        "entity": "AuditEvent.entity",
    },
    "AuditEvent.agent": {
        "type": "CodeableConcept",
        "role": "CodeableConcept",
        "who": "Reference",
        "altId": _P,
        "name": _P,
        "requestor": _P,
        "location": "Reference",
        "policy": _P,
        "media": "Coding",
        "network": "AuditEvent.agent.network",
        "purposeOfUse": "CodeableConcept",
    },
    "AuditEvent.agent.network": {"address": _P, "type": _P},
    "AuditEvent.source": {"site": _P, "observer": "Reference", "type": "Coding"},
    "AuditEvent.entity": {
        "what": "Reference",
        "type": "Coding",
        "role": "Coding",
        "lifecycle": "Coding",
        "securityLabel": "Coding",
        "name": _P,
        "description": _P,
        "query": _P,
        "detail": "AuditEvent.entity.detail",
    },
    # value[x]: valueString | valueBase64Binary
    "AuditEvent.entity.detail": {"type": _P, "valueString": _P, "valueBase64Binary": _P},
}

#: The resource types :func:`resource_to_xml` can write.
RESOURCE_TYPES: Final = frozenset(
    {"Binary", "Bundle", "OperationOutcome", "CapabilityStatement", "AuditEvent", "Parameters"}
)

# XML 1.0 §2.2 Char: what an XML document can hold at all. Anything else (C0 controls but tab,
# CR, LF; lone surrogates; U+FFFE/U+FFFF) cannot be written, not even as a character reference.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# XML 1.0 §3.3.3: a literal tab, CR or LF in an attribute value is normalised to a space by
# the reader, so they are written as character references to survive the round trip.
_ATTRIBUTE_ESCAPES: Final = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)

# A token is one tag (or the declaration) at a nesting depth; see _render.
Token = tuple[int, str]


def escape_attribute(text: str) -> str:
    """``text`` as the content of a double-quoted XML attribute.

    Characters that XML 1.0 cannot hold at all become U+FFFD: FHIR strings may not contain
    them either (R4 datatypes.html#string), and the writer serves error answers whose
    diagnostics may quote client input, so it must not fail on them.
    """
    return _NOT_XML_CHAR.sub("\ufffd", text).translate(_ATTRIBUTE_ESCAPES)


def resource_to_xml(
    resource: Mapping[str, Any], pretty: bool = False, *, declaration: bool = True
) -> bytes:
    """The FHIR XML (UTF-8) of a resource given in its FHIR JSON shape.

    Supports the resource types in :data:`RESOURCE_TYPES`, with the elements listed in this
    module's order table. ``pretty`` indents with two spaces, one element per line; otherwise
    no whitespace is written between tags. ``declaration=False`` leaves out the XML
    declaration, for a resource to be nested in another document (a Bundle entry). Raises
    ValueError for an element, value or resource type it does not know how to write.
    """
    tokens: list[Token] = []
    if declaration:
        tokens.append((0, XML_DECLARATION))
    resource_tokens(resource, 0, tokens)
    return render(tokens, pretty).encode()


# --- the writer (also used by fhirbin.fhir.xml_bundle) --------------------------------------


def render(tokens: list[Token], pretty: bool, *, continued: bool = False) -> str:
    """Join tokens: compact, or one per line indented by depth. ``continued`` means the
    tokens follow earlier output, so the first one starts on a new line too."""
    if not pretty:
        return "".join(text for _, text in tokens)
    lines = [INDENT * depth + text for depth, text in tokens]
    return ("\n" if continued and lines else "") + "\n".join(lines)


def resource_tokens(resource: Mapping[str, Any], depth: int, out: list[Token]) -> None:
    """Append the tokens of one resource element (declaring the FHIR namespace)."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or rtype not in RESOURCE_TYPES:
        raise ValueError(f"cannot write a {rtype!r} resource in XML: no element order known")
    opening = f'<{rtype} xmlns="{FHIR_NS}"'
    children: list[Token] = []
    _children(resource, rtype, depth + 1, children, is_resource=True)
    if children:
        out.append((depth, opening + ">"))
        out.extend(children)
        out.append((depth, f"</{rtype}>"))
    else:
        out.append((depth, opening + "/>"))


def element_tokens(
    name: str, value: Any, kind: str, path: str, depth: int, out: list[Token]
) -> None:
    """Append the tokens of element ``name`` (of ``kind``, see the order table), repeated
    when ``value`` is a list. ``path`` names it in error messages."""
    values = value if isinstance(value, list) else [value]
    if not values:  # R4 json.html: arrays are never empty
        raise ValueError(f"{path} is an empty array")
    for item in values:
        if kind == _P:
            out.append((depth, f'<{name} value="{escape_attribute(_primitive(item, path))}"/>'))
        elif kind == _RES:
            if not isinstance(item, Mapping):
                raise ValueError(f"{path} must be a resource (a JSON object)")
            out.append((depth, f"<{name}>"))
            resource_tokens(item, depth + 1, out)
            out.append((depth, f"</{name}>"))
        else:
            _complex(name, item, kind, path, depth, out)


def _complex(name: str, value: Any, kind: str, path: str, depth: int, out: list[Token]) -> None:
    if not isinstance(value, Mapping):
        raise ValueError(f"{path} must be a JSON object ({kind})")
    attrs = ""
    if "id" in value:  # xml.html: the id of an element is an attribute
        attrs = f' id="{escape_attribute(_primitive(value["id"], path + ".id"))}"'
    if kind == "Extension":  # xml.html: so is the url of an extension
        if "url" not in value:
            raise ValueError(f"{path}.url is required (ext-1)")
        attrs += f' url="{escape_attribute(_primitive(value["url"], path + ".url"))}"'
        value = {k: v for k, v in value.items() if k != "url"}
    children: list[Token] = []
    _children(value, kind, depth + 1, children, is_resource=False, path=path)
    if not children:  # R4 xml.html / ele-1: an element has a value, children or extensions
        raise ValueError(f"{path} is empty: FHIR elements are never empty")
    out.append((depth, f"<{name}{attrs}>"))
    out.extend(children)
    out.append((depth, f"</{name}>"))


def _children(
    obj: Mapping[str, Any],
    kind: str,
    depth: int,
    out: list[Token],
    *,
    is_resource: bool,
    path: str | None = None,
) -> None:
    order = _ORDER.get(kind)
    path = path or kind
    if order is None:
        raise ValueError(f"{path}: no XML element order known for {kind}")
    for key in obj:
        if (key == "resourceType" and is_resource) or (key == "id" and not is_resource):
            continue
        if key.startswith("_"):  # R4 json.html#primitive: extensions of a primitive
            raise ValueError(f"{path}.{key[1:]}: primitive extensions are not supported")
        if key not in order:
            raise ValueError(f"{path}.{key}: no known XML element order for this element")
    for name, child_kind in order.items():
        if name in obj:
            value = obj[name]
            if child_kind not in (_P, _RES) and child_kind not in _ORDER:
                raise ValueError(f"{path}.{name}: no XML element order known for {child_kind}")
            element_tokens(name, value, child_kind, f"{path}.{name}", depth, out)


def _primitive(value: Any, path: str) -> str:
    """The lexical form of a JSON primitive (R4 json.html#primitive, xml.html)."""
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value!r} is not a FHIR decimal")
        return json.dumps(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{path}: {value!r} is not a FHIR decimal")
        return str(value)
    if isinstance(value, str):
        # R4 xml.html: attributes are never empty (and json.html: strings are never "").
        if not value.strip():
            raise ValueError(f"{path}: a primitive value is never empty or whitespace")
        return value
    raise ValueError(f"{path}: {type(value).__name__} is not a FHIR primitive value")


# --- the Binary, streamed --------------------------------------------------------------------


def _binary_resource(meta: BinaryMeta) -> dict[str, Any]:
    # The same content as the JSON form (fhirbin.fhir.binary), data added by the caller.
    resource: dict[str, Any] = {
        "resourceType": "Binary",
        "id": meta.id,
        "meta": {"versionId": str(meta.version), "lastUpdated": instant(meta.last_updated)},
        "contentType": meta.content_type,
    }
    if meta.security_context is not None:
        resource["securityContext"] = {"reference": meta.security_context}
    return resource


def binary_xml_parts(
    meta: BinaryMeta, pretty: bool = False, *, declaration: bool = True
) -> tuple[bytes, bytes]:
    """``(head, tail)`` such that ``head + base64(content) + tail`` is the FHIR XML Binary.

    ``data`` is the last element of Binary (R4 binary.html#resource), so the head ends with
    ``<data value="`` and the tail is ``"/>`` plus the closing ``</Binary>``. Base64 needs no
    escaping in an attribute. An empty Binary (docs/decisions.md#empty-binary,
    ``meta.size == 0``) has no ``data``
    element, because XML attributes are never empty (R4 xml.html): its head is the whole
    resource and its tail is empty. ``declaration=False`` leaves out the XML declaration, for
    a Binary nested in a Bundle. The output is byte for byte :func:`resource_to_xml` of the
    same resource.
    """
    resource = _binary_resource(meta)
    if meta.size == 0:
        return resource_to_xml(resource, pretty, declaration=declaration), b""
    resource["data"] = "A"  # a placeholder: the last line of the document is then known
    text = resource_to_xml(resource, pretty, declaration=declaration).decode()
    newline = "\n" if pretty else ""
    end = f'<data value="A"/>{newline}</Binary>'
    if not text.endswith(end):  # pragma: no cover - the order table puts data last
        raise AssertionError("Binary.data is not the last element of the XML Binary")
    return (
        (text[: -len(end)] + '<data value="').encode(),
        f'"/>{newline}</Binary>'.encode(),
    )


def binary_xml_length(meta: BinaryMeta, pretty: bool = False, *, declaration: bool = True) -> int:
    """The exact byte length of the FHIR XML Binary, for ``Content-Length``."""
    head, tail = binary_xml_parts(meta, pretty, declaration=declaration)
    return len(head) + base64_length(meta.size) + len(tail)


async def binary_xml_stream(
    meta: BinaryMeta,
    content: AsyncIterable[bytes],
    pretty: bool = False,
    *,
    declaration: bool = True,
) -> AsyncIterator[bytes]:
    """The FHIR XML Binary of ``meta`` and its ``content``, streamed: exactly
    :func:`binary_xml_length` bytes, or ContentSizeMismatchError if the content is not
    ``meta.size`` bytes long. Pass ``declaration=False`` for a Bundle entry."""
    head, tail = binary_xml_parts(meta, pretty, declaration=declaration)
    pieces = aiter(base64_chunks(exactly(content, meta)))
    # The content's first piece before the head: a store that cannot be read fails the
    # response before its status is sent, so the client gets an error status, not a cut body.
    first = await anext(pieces, b"")
    yield head
    if first:
        yield first
    async for piece in pieces:
        yield piece
    if tail:
        yield tail
