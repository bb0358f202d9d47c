"""Reading a FHIR XML Binary from a create/update body (R4 binary.html#rest, xml.html).

The XML twin of :mod:`fhirbin.fhir.binary_parse`, with the same rules and the same answers:

* a body is a Binary resource only if it is well-formed UTF-8 XML whose root element is
  ``Binary`` in the FHIR namespace (R4 xml.html: "FHIR elements are always in the namespace
  http://hl7.org/fhir"). Any other XML (another root, a ``Binary`` in no namespace) is native
  content that merely has a FHIR media type, stored as it is (R4 binary.html#rest: the body is
  "accepted as is" unless it is a Binary resource); a body that is not well-formed UTF-8 XML is
  stored as is only under a generic XML type, and refused under ``application/fhir+xml``
  (docs/decisions.md#fhir-bodies-must-parse); this is exactly how the JSON parser treats bodies;
* except that a body with a DTD (``<!DOCTYPE``) is refused with BadRequest, never parsed on:
  FHIR XML has no use for one, and DTDs are how entity expansion ("billion laughs") and
  external entities (``SYSTEM "file:///etc/passwd"``) attack an XML parser (R4 xml.html warns
  about XML entities; OWASP XXE). defusedxml refuses them before anything is expanded or
  fetched, and a body that tries is not quietly stored either;
* a Binary resource is validated strictly, naming the first wrong element: Binary is a plain
  Resource (binary.html#resource), so ``text``, ``contained``, ``extension`` and
  ``modifierExtension`` are refused; ``implicitRules`` is not supported; ``contentType`` is a
  media type; ``data`` real base64 (whitespace allowed); ``securityContext`` a literal
  reference. Beyond JSON, XML has its own rules (xml.html): elements in the documented order,
  values in ``value`` attributes that are never empty, no text between elements, and an
  element at most once where the cardinality is 0..1 or 1..1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final
from xml.etree.ElementTree import Element, ParseError

# defusedxml ships no type hints (types-defusedxml would add them; unused-ignore keeps mypy
# quiet either way).
from defusedxml import DefusedXmlException  # type: ignore[import-untyped,unused-ignore]
from defusedxml.ElementTree import (  # type: ignore[import-untyped,unused-ignore]
    fromstring as defused_fromstring,
)

from fhirbin.errors import BadRequest
from fhirbin.fhir.binary_parse import ParsedBinary, decode_data
from fhirbin.fhir.negotiate import check_content_type
from fhirbin.fhir.references import check_reference

__all__ = ["parse_binary_xml"]

_NS: Final = "{http://hl7.org/fhir}"
# R4 binary.html#resource: the Resource elements, then Binary's own, in XML order.
_BINARY_ORDER: Final = (
    "id",
    "meta",
    "implicitRules",
    "language",
    "contentType",
    "securityContext",
    "data",
)
# R4 references.html#Reference, in XML order.
_REFERENCE_ORDER: Final = ("reference", "type", "identifier", "display")
# Binary is a Resource, not a DomainResource (R4 binary.html#resource, narrative.html#root).
_DOMAIN_RESOURCE: Final = frozenset({"text", "contained", "extension", "modifierExtension"})
_NAME_LIMIT: Final = 100


def parse_binary_xml(body: bytes, *, must_be_xml: bool = False) -> ParsedBinary | None:
    """The Binary a FHIR-XML create/update body holds, or None if the body is not a Binary.

    Raises BadRequest for a body with a DTD or entity declarations, and for a Binary that is
    not valid (the ``expression`` names the element). With ``must_be_xml`` (the body was
    declared ``application/fhir+xml``), a non-empty body that is not well-formed UTF-8 XML is a
    BadRequest too (docs/decisions.md#fhir-bodies-must-parse).
    """
    try:
        # R4 http.html#mime-type: FHIR XML is UTF-8. Decoding first also makes the parser
        # ignore whatever encoding the XML declaration names (expat would otherwise look up
        # any Python codec by that name).
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if must_be_xml and body:
            raise _not_xml(f"not UTF-8 at byte {exc.start}") from None
        return None
    try:
        root: Element = defused_fromstring(
            text, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:  # DTDForbidden, EntitiesForbidden, ...
        raise BadRequest(
            "XML with a DTD, entity declarations or external references is refused: FHIR XML "
            f"uses none of them and they are used to attack parsers ({type(exc).__name__}).",
        ) from None
    except ParseError as exc:  # not well-formed: native content with a generic XML type
        if must_be_xml and body:
            raise _not_xml(str(exc)[:200]) from None
        return None
    if root.tag != _NS + "Binary":
        return None
    return _binary(root)


def _not_xml(why: str) -> BadRequest:
    return BadRequest(
        f"The body is declared application/fhir+xml but is not well-formed XML: {why}.",
        expression="Binary",
        code="structure",
    )


def _binary(root: Element) -> ParsedBinary:
    if root.attrib:  # xml.html: a resource root carries only the namespace declaration
        name = next(iter(root.attrib))
        raise BadRequest(f"Unexpected attribute {_shown(name)!r} on Binary.", expression="Binary")
    elements = _children(root, "Binary", _BINARY_ORDER, _check_binary_child)
    if "language" in elements:
        _value(elements["language"], "Binary.language")
    if "meta" in elements and "value" in elements["meta"].attrib:
        raise BadRequest(
            "Binary.meta is a Meta, not a primitive: it has no value attribute.",
            expression="Binary.meta",
        )
    if "contentType" not in elements:
        raise BadRequest(
            "Binary.contentType is required (1..1, R4 binary.html#resource).",
            expression="Binary.contentType",
        )
    # Inside a resource, contentType describes the data, not the exchange (as binary_parse).
    content_type = check_content_type(
        _value(elements["contentType"], "Binary.contentType"),
        "Binary.contentType",
        describes_request=False,
    )
    data = b""
    if "data" in elements:
        data = decode_data(_value(elements["data"], "Binary.data"))
    security_context = None
    if "securityContext" in elements:
        security_context = _security_context(elements["securityContext"])
    body_id = _value(elements["id"], "Binary.id") if "id" in elements else None
    return ParsedBinary(content_type, security_context, data, body_id)


def _check_binary_child(name: str) -> None:
    if name in _DOMAIN_RESOURCE:
        msg = f"Binary is a Resource, not a DomainResource: it has no {name!r} element"
        raise BadRequest(f"{msg} (R4 binary.html#resource).", expression=f"Binary.{name}")
    if name == "implicitRules":
        # A modifier element whose rules "must be understood when processing the content"
        # (R4 resource.html#implicitRules); fhirbin understands none, so it cannot accept one.
        raise BadRequest(
            "Binary.implicitRules is not supported: this server knows no implicit rules.",
            expression="Binary.implicitRules",
            code="not-supported",
        )


def _check_reference_child(name: str) -> None:
    if name == "identifier":
        raise BadRequest(
            "Binary.securityContext.identifier is not supported: only securityContext."
            "reference is (R4 binary.html#rest: X-Security-Context carries the reference).",
            expression="Binary.securityContext.identifier",
            code="not-supported",
        )


def _children(
    parent: Element,
    path: str,
    order: tuple[str, ...],
    check: Callable[[str], None],
) -> dict[str, Element]:
    """The child elements of ``parent`` by name, each at most once and in ``order``.

    ``check(name)`` raises for a FHIR element that the caller refuses with its own message.
    """
    _no_text(parent.text, path)
    found: dict[str, Element] = {}
    last = -1
    for child in parent:
        _no_text(child.tail, path)
        name = _local_name(child.tag)
        if name is not None:
            check(name)
        if name is None or name not in order:
            shown = _shown(name if name is not None else child.tag)
            raise BadRequest(f"Unknown element {shown!r} in {path}.", expression=f"{path}.{shown}")
        if name in found:  # every element of Binary and Reference is 0..1 or 1..1
            raise BadRequest(
                f"{path}.{name} appears more than once; it is not a repeating element.",
                expression=f"{path}.{name}",
            )
        position = order.index(name)
        if position < last:
            raise BadRequest(
                f"{path}.{name} is out of order: elements must appear in the documented order "
                f"({', '.join(order)}) (R4 xml.html).",
                expression=f"{path}.{name}",
            )
        last = position
        found[name] = child
    return found


def _value(element: Element, path: str) -> str:
    """The ``value`` of a primitive element (R4 xml.html: primitives carry their value in a
    ``value`` attribute; attributes are never empty)."""
    for attribute in element.attrib:
        if attribute == "id":  # the id of the element: JSON's "_name": {"id": ...}
            raise BadRequest(
                f"Element ids and extensions on {path} are not supported.",
                expression=path,
                code="not-supported",
            )
        if attribute != "value":
            raise BadRequest(
                f"Unexpected attribute {_shown(attribute)!r} on {path}.", expression=path
            )
    _no_text(element.text, path)
    for child in element:
        if child.tag == _NS + "extension":
            raise BadRequest(
                f"Extensions on {path} are not supported.", expression=path, code="not-supported"
            )
        raise BadRequest(
            f"{path} is a primitive: unexpected element {_shown(child.tag)!r} in it.",
            expression=path,
        )
    value = element.get("value")
    if value is None:
        raise BadRequest(f"{path} has no value attribute.", expression=path)
    if not value.strip():
        raise BadRequest(f"{path} must have a non-empty value.", expression=path)
    return value


def _security_context(element: Element) -> str:
    path = "Binary.securityContext"
    for attribute in element.attrib:
        raise BadRequest(f"Unsupported attribute {_shown(attribute)!r} on {path}.", expression=path)
    elements = _children(element, path, _REFERENCE_ORDER, _check_reference_child)
    if "reference" not in elements:
        raise BadRequest(f"{path}.reference is required.", expression=f"{path}.reference")
    for name in ("type", "display"):  # accepted and not stored: the reference says it all
        if name in elements:
            _value(elements[name], f"{path}.{name}")
    reference = _value(elements["reference"], f"{path}.reference")
    return check_reference(reference, f"{path}.reference")


def _no_text(text: str | None, path: str) -> None:
    # FHIR XML holds values in attributes; text between elements is layout only (xml.html).
    if text is not None and text.strip():
        raise BadRequest(f"Unexpected text content in {path}.", expression=path)


def _local_name(tag: str) -> str | None:
    """The name of a FHIR element, or None for an element in another namespace (or none)."""
    return tag[len(_NS) :] if tag.startswith(_NS) else None


def _shown(name: str) -> str:
    return name[:_NAME_LIMIT]
