"""Content negotiation and media types: which representation a request gets, what a
``Content-Type`` may be. Owns the decisions in docs/decisions.md #read-representation,
#other-accept-types-get-the-content, #fhir-version and #unsupported-format: when a Binary is
answered with its native bytes and when with the FHIR JSON/XML resource, which format an
always-FHIR response (Bundle, OperationOutcome, CapabilityStatement) takes, and the validation
of the media type stored as ``Binary.contentType``. These run on every request, so regexes are
compiled once and Accept headers are parsed once per distinct header string (``lru_cache``).
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from fhirbin.errors import BadRequest, NotAcceptable, UnsupportedMediaType


class Representation(enum.Enum):
    NATIVE = "native"
    FHIR_JSON = "fhir+json"
    FHIR_XML = "fhir+xml"


# R4 http.html#mime-type: the FHIR types, plus the legacy DSTU2 spellings servers MAY accept.
FHIR_JSON_TYPES = frozenset({"application/fhir+json", "application/json+fhir"})
FHIR_XML_TYPES = frozenset({"application/fhir+xml", "application/xml+fhir"})
_FHIR_TYPES = FHIR_JSON_TYPES | FHIR_XML_TYPES | {"application/fhir+turtle"}
_XML_TYPES = FHIR_XML_TYPES | {"application/xml", "text/xml"}

# R4 http.html#version-parameter: the R4 value is "4.0" (major.minor). "4.0.1" names the same
# release, so it is accepted too (docs/decisions.md#fhir-version: another version is 406 in
# Accept, 415 in Content-Type).
SUPPORTED_FHIR_VERSIONS = frozenset({"4.0", "4.0.1"})

# R4 http.html#parameters lists the _format values; binary.html#rest says any JSON or XML value
# means the FHIR format, even a generic one (docs/decisions.md#read-representation).
_FORMATS: dict[str, Representation] = {
    **dict.fromkeys(["json", "application/json", *FHIR_JSON_TYPES], Representation.FHIR_JSON),
    **dict.fromkeys(
        ["xml", "text/xml", "application/xml", *FHIR_XML_TYPES], Representation.FHIR_XML
    ),
}
_UNSUPPORTED_FORMATS = dict.fromkeys(["html", "text/html"], "HTML") | dict.fromkeys(
    ["ttl", "text/turtle", "application/fhir+turtle"], "Turtle"
)

# RFC 9110 §5.6.2 token, §5.6.4 quoted-string (ASCII only: the value goes back out in a
# header, and R4 datatypes.html#code allows any character but a header does not), §5.6.6
# parameters (which may be empty: "text/plain;" is legal).
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # noqa: S105 (a regex, not a password)
_QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e]|\\[\t \x21-\x7e])*"'
_PARAM_RE = re.compile(rf"({_TOKEN})=({_TOKEN}|{_QUOTED})")
_MEDIA_TYPE_RE = re.compile(
    rf"\A({_TOKEN})/({_TOKEN})((?:[ \t]*;[ \t]*(?:{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))?)*)\Z"
)
# R4 datatypes.html#code: no leading/trailing whitespace, single whitespace inside.
_CODE_RE = re.compile(r"\A\S+(?:\s\S+)*\Z")
# RFC 9110 §12.4.2 qvalue, plus the leading-dot form (".2") some clients (Java) send.
_QVALUE_RE = re.compile(r"\A(?:[01](?:\.[0-9]*)?|\.[0-9]+)\Z")
_QUOTED_PAIR_RE = re.compile(r"\\(.)")


def media_type_essence(content_type: str) -> str:
    """The lowercase ``type/subtype`` of a media type, parameters dropped."""
    return content_type.split(";", 1)[0].strip().lower()


def is_fhir_json_type(content_type: str) -> bool:
    return media_type_essence(content_type) in FHIR_JSON_TYPES


def is_fhir_xml_type(content_type: str) -> bool:
    return media_type_essence(content_type) in FHIR_XML_TYPES


def read_representation(format_param: str | None, accept: str | None) -> Representation:
    """How to answer a read of a Binary: native bytes or the FHIR resource
    (docs/decisions.md#read-representation, #other-accept-types-get-the-content,
    #unsupported-format).

    ``_format`` (any JSON or XML value) always means FHIR and beats Accept (R4
    binary.html#rest). Otherwise only an explicit FHIR type in Accept whose q is strictly
    higher than that of every other range wins the FHIR form; ties, generic JSON/XML types,
    ``*/*``, browser defaults and no Accept at all get the native bytes. Raises NotAcceptable
    for an unsupported ``_format``, or when Accept accepts nothing but FHIR ranges with
    another ``fhirVersion``.
    """
    return _negotiate(format_param, accept, _read_from_accept, Representation.NATIVE)


def fhir_format(format_param: str | None, accept: str | None) -> Representation:
    """The format of an always-FHIR response (Bundle, OperationOutcome, CapabilityStatement).

    XML only when ``_format`` says so or when an XML type is the client's strict favourite;
    JSON otherwise, including for ``*/*``, ``text/html`` and no Accept.
    """
    return _negotiate(format_param, accept, _fhir_from_accept, Representation.FHIR_JSON)


def check_content_type(
    content_type: str | None,
    expression: str = "http.Content-Type",
    *,
    describes_request: bool = True,
) -> str:
    """The value to store as ``Binary.contentType``: the media type, verbatim (surrounding
    whitespace removed, case and parameters kept).

    BadRequest if it is missing or not ``type/subtype *(;param)``; UnsupportedMediaType if it
    describes the request (a ``Content-Type`` header) and is a FHIR type with another
    ``fhirVersion`` (docs/decisions.md#fhir-version).
    """
    value = (content_type or "").strip()
    if not value:
        raise BadRequest(
            "Content-Type is required: Binary.contentType is 1..1 (R4 binary.html#resource).",
            expression=expression,
        )
    m = _MEDIA_TYPE_RE.match(value) if _CODE_RE.match(value) else None
    if m is None:
        raise BadRequest(
            f"Invalid media type {value[:200]!r}: expected type/subtype with optional "
            "';name=value' parameters (RFC 9110 §8.3.1) and no double spaces (Binary."
            "contentType is a FHIR code, R4 datatypes.html#code).",
            expression=expression,
        )
    if m.group(1) == "*" or m.group(2) == "*":
        raise BadRequest(
            f"Invalid media type {value[:200]!r}: a wildcard is a media range, not the type "
            "of some content.",
            expression=expression,
        )
    if describes_request and f"{m.group(1)}/{m.group(2)}".lower() in _FHIR_TYPES:
        for name, raw in _PARAM_RE.findall(m.group(3)):
            if name.lower() == "fhirversion" and _unquote(raw) not in SUPPORTED_FHIR_VERSIONS:
                raise UnsupportedMediaType(
                    f"fhirVersion {_unquote(raw)!r} is not supported: this server speaks FHIR "
                    "R4 (fhirVersion=4.0) (R4 http.html#version-parameter).",
                    expression=expression,
                )
    return value


# --- internals ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Range:
    essence: str  # lowercase type/subtype
    q: float
    wrong_fhir_version: bool  # a FHIR type with a fhirVersion other than R4's


def _negotiate(
    format_param: str | None,
    accept: str | None,
    decide: Callable[[str], Representation | None],
    default: Representation,
) -> Representation:
    if format_param is not None and format_param.strip():
        by_format = _format_representation(format_param)
        if isinstance(by_format, str):
            raise NotAcceptable(by_format, expression="http._format")
        return by_format
    if accept is None or not accept.strip():
        return default
    choice = decide(accept)
    if choice is None:
        raise NotAcceptable(
            "Accept asks only for a FHIR version this server does not speak: only FHIR R4 "
            "(fhirVersion=4.0) is available (R4 http.html#version-parameter).",
            expression="http.Accept",
        )
    return choice


@functools.lru_cache(maxsize=64)
def _format_representation(format_param: str) -> Representation | str:
    """The representation ``_format`` asks for, or the message of the 406 to answer."""
    essence, *params = format_param.strip().lower().split(";")
    # An unescaped '+' in a query string decodes to a space (application/fhir json).
    essence = essence.strip().replace(" ", "+")
    if essence in _UNSUPPORTED_FORMATS:
        return (
            f"_format={format_param.strip()!r} asks for {_UNSUPPORTED_FORMATS[essence]}, which "
            "this server does not produce; use _format=json or _format=xml."
        )
    choice = _FORMATS.get(essence)
    if choice is None:
        return (
            f"Unknown _format {format_param.strip()[:100]!r}: use json or xml "
            "(R4 http.html#parameters)."
        )
    for param in params:
        name, _, value = param.partition("=")
        version = _unquote(value.strip())
        if name.strip() == "fhirversion" and version not in SUPPORTED_FHIR_VERSIONS:
            return f"fhirVersion {version!r} is not supported: this server speaks FHIR R4 (4.0)."
    return choice


@functools.lru_cache(maxsize=512)
def _read_from_accept(accept: str) -> Representation | None:
    """docs/decisions.md#read-representation for reads of a Binary; None means 406.

    A FHIR range with another ``fhirVersion`` names a representation this server does not
    have: it is ignored, unless nothing else in the header is acceptable (RFC 9110 §15.5.7),
    which makes the answer a 406 (docs/decisions.md#fhir-version).
    """
    best_json = best_xml = best_other = best_wrong = 0.0
    for r in _parse_accept(accept):
        if r.wrong_fhir_version:
            best_wrong = max(best_wrong, r.q)
        elif r.essence in FHIR_JSON_TYPES:
            best_json = max(best_json, r.q)
        elif r.essence in FHIR_XML_TYPES:
            best_xml = max(best_xml, r.q)
        else:
            best_other = max(best_other, r.q)
    best_fhir = max(best_json, best_xml)
    if best_wrong > 0 and best_fhir == best_other == 0:
        return None
    # Strictly greater: ties (and q=0, which never wins) go to the native bytes
    # (docs/decisions.md#read-representation).
    if best_fhir > best_other:
        return Representation.FHIR_JSON if best_json >= best_xml else Representation.FHIR_XML
    return Representation.NATIVE


@functools.lru_cache(maxsize=512)
def _fhir_from_accept(accept: str) -> Representation | None:
    best_xml = best_other = best_wrong = 0.0
    for r in _parse_accept(accept):
        if r.wrong_fhir_version:
            best_wrong = max(best_wrong, r.q)
        elif r.essence in _XML_TYPES:
            best_xml = max(best_xml, r.q)
        else:
            best_other = max(best_other, r.q)
    if best_wrong > 0 and best_xml == best_other == 0:  # as in _read_from_accept
        return None
    return Representation.FHIR_XML if best_xml > best_other else Representation.FHIR_JSON


@functools.lru_cache(maxsize=512)
def _parse_accept(accept: str) -> tuple[_Range, ...]:
    """The media ranges of an Accept header (RFC 9110 §12.5.1), leniently: elements without
    a ``/`` are skipped, a lone ``*`` means ``*/*``, and a q that is not a number from 0 to 1
    makes its range q=0 (not acceptable) rather than failing the request."""
    ranges = []
    for element in _split_unquoted(accept, ","):
        essence, *params = _split_unquoted(element, ";")
        essence = essence.strip().lower()
        if essence == "*":
            essence = "*/*"
        if "/" not in essence:
            continue
        q, fhir_version = 1.0, None
        for param in params:
            name, _, value = param.partition("=")
            name = name.strip().lower()
            if name == "q":
                q = _parse_q(value.strip())
            elif name == "fhirversion":
                fhir_version = _unquote(value.strip())
        wrong = fhir_version is not None and fhir_version not in SUPPORTED_FHIR_VERSIONS
        ranges.append(_Range(essence, q, wrong and essence in _FHIR_TYPES))
    return tuple(ranges)


def _parse_q(value: str) -> float:
    if _QVALUE_RE.match(value) is None:
        return 0.0
    q = float(value)
    return q if q <= 1.0 else 0.0


def _split_unquoted(text: str, sep: str) -> list[str]:
    """``text.split(sep)``, except inside RFC 9110 quoted strings."""
    if '"' not in text:
        return text.split(sep)
    parts: list[str] = []
    start, quoted, escaped = 0, False, False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _QUOTED_PAIR_RE.sub(r"\1", value[1:-1])
    return value
