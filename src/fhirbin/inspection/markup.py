"""XML, XHTML, SVG and HTML: script, frames and embedded objects, DTDs and entities.

Parsed as a stream with real parsers and no tree, so memory stays flat: expat (the parser
defusedxml hardens) for XML, which reports internal DTD subsets and entity declarations before
anything is expanded; libxml2's HTML parser (lxml, with a parser target) for HTML, which reads
tag soup as a browser would, lowercasing names. An XML document that is not well-formed is read
again as HTML, so that broken markup cannot hide a ``<script>`` from the XML parser.

Refused: ``<script>``; event-handler attributes (``on*``); ``javascript:``, ``vbscript:`` and
``data:`` URLs in links and sources, except ``data:image/png|jpeg|gif`` in an ``<img>`` (or an
SVG ``<image>``); ``<iframe>``, ``<frame>``, ``<object>``, ``<embed>``, ``<applet>``; a
``<foreignObject>`` holding any of these (they are refused anywhere); a meta refresh to a
script URL. A plain ``<!DOCTYPE html>`` is fine, as are head, body, styles and forms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.parsers import expat

from lxml import etree

from fhirbin.inspection.rules import Finding, Refused

_CHUNK = 256 * 1024
_SCRIPT = "script"
_EMBEDDING = frozenset({"iframe", "frame", "frameset", "object", "embed", "applet"})
_URL_ATTRIBUTES = frozenset(
    {
        "href",
        "src",
        "action",
        "formaction",
        "data",
        "poster",
        "background",
        "codebase",
        "lowsrc",
        "dynsrc",
        "srcdoc",
        "xlink:href",
        "to",
        "from",
        "values",
    }
)
_SAFE_DATA = ("data:image/png", "data:image/jpeg", "data:image/gif")
_IMAGES = frozenset({"img", "image"})


class _Judge:
    """Start tags and attributes in, findings out (shared by both parsers)."""

    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed

    def refuse(self, rule: str, found: str) -> None:
        if rule not in self.allowed:
            raise Refused(Finding(rule, found))

    def element(self, name: str, attributes: dict[str, str]) -> None:
        local = name.rsplit("}", 1)[-1].rsplit(" ", 1)[-1].split(":")[-1].lower()
        if local == _SCRIPT:
            self.refuse("markup-script", "The markup contains a <script> element.")
        if local in _EMBEDDING:
            self.refuse("markup-embedding", f"The markup contains an <{local}> element.")
        for raw_key, value in attributes.items():
            key = raw_key.rsplit("}", 1)[-1].rsplit(" ", 1)[-1].lower()
            if key.startswith("on"):
                self.refuse("markup-script", f"The markup has an event handler ({key}).")
            if key in _URL_ATTRIBUTES or raw_key.endswith("href"):
                self._url(local, key, value)
            if local == "meta" and key == "content":
                target = value.lower().partition("url=")[2]
                if target:
                    self._url(local, "http-equiv refresh", target)

    def _url(self, element: str, attribute: str, value: str) -> None:
        url = "".join(ch for ch in value if ch > " ").lower()
        if url.startswith(("javascript:", "vbscript:")):
            self.refuse("markup-script", f"The markup has a script URL in {attribute}.")
        if url.startswith("data:"):
            if element in _IMAGES and url.startswith(_SAFE_DATA):
                return
            self.refuse(
                "markup-script", f"The markup has a data: URL in {attribute} of <{element}>."
            )


def check_xml(path: Path, allowed: frozenset[str] = frozenset()) -> Finding | None:
    """The first finding in an XML document (XHTML, SVG, CDA, ...); not well-formed XML is
    judged as HTML."""
    judge = _Judge(allowed)
    parser = expat.ParserCreate(namespace_separator=" ")

    def doctype(name: str, system: str | None, public: str | None, internal: int) -> None:
        if internal:
            judge.refuse("markup-dtd", "The XML has an internal DTD subset.")

    def entity(name: str, *rest: Any) -> None:
        judge.refuse("markup-dtd", "The XML declares an entity.")

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.StartElementHandler = judge.element
    try:
        with path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
    except Refused as refused:
        return refused.finding
    except expat.ExpatError:
        return check_html(path, allowed)
    return None


class _Target:
    """An lxml parser target: sees every start tag, builds nothing."""

    def __init__(self, judge: _Judge) -> None:
        self.judge = judge

    def start(self, tag: str | bytes, attrib: dict[Any, Any]) -> None:
        self.judge.element(_text(tag), {_text(k): _text(v) for k, v in attrib.items()})

    def end(self, tag: str | bytes) -> None:
        pass

    def data(self, data: str | bytes) -> None:
        pass

    def comment(self, text: str | bytes) -> None:
        pass

    def close(self) -> None:
        pass


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def check_html(path: Path, allowed: frozenset[str] = frozenset()) -> Finding | None:
    """The first finding in an HTML document."""
    parser = etree.HTMLParser(target=_Target(_Judge(allowed)), no_network=True, recover=True)
    try:
        with path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                parser.feed(chunk)
        parser.close()
    except Refused as refused:
        return refused.finding
    except etree.LxmlError:
        return None
    return None
