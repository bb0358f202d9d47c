"""AuditEvent: audit records as FHIR R4 AuditEvents, which interaction a request is, and the
parameters of ``GET [base]/AuditEvent``.

Owns the FHIR side of fhirbin's audit trail (docs/security.md#audit), in the shape of IHE Basic
Audit Log Patterns (BALP, https://profiles.ihe.net/ITI/BALP/) over R4 auditevent.html:

* ``type`` is ``rest`` (audit-event-type, "Restful Operation") and ``subtype`` the
  restful-interaction code (``read``, ``vread``, ``search-type``, ``create`` ...); the token
  endpoint is DICOM 110114 "User Authentication" / 110122 "Login".
* ``action`` (R4 valueset-audit-event-action): ``C`` create, ``R`` read, vread and instance
  history, ``U`` update, ``D`` delete, ``E`` searches, type history and anything else
  (BALP Query uses ``E``).
* ``outcome`` (R4 valueset-audit-event-outcome): ``0`` success, ``4`` minor failure (a 4xx:
  the request was refused), ``8`` serious failure (a 5xx); ``outcomeDesc`` says why a request
  was refused (the OperationOutcome's diagnostics, never a body).
* ``agent``: the client (BALP agent:client, DICOM 110153 "Source Role ID": ``who.identifier``
  the OAuth client id, ``altId`` the token subject, ``requestor`` true, ``network`` its
  address) and the server (agent:server, 110152 "Destination Role ID").
* ``source``: this fhirbin (security-source-type 4, "Application Server").
* ``entity``: the resource (BALP entity:data, audit-entity-type 2 / object-role 4,
  ``what`` = ``Binary/id/_history/vid``), the search parameters of a query (entity:query,
  object-role 24, ``query`` = base64 of the parameters), the patient of a patient-context token
  (entity:patient, type 1 / role 1) and the HTTP transaction (entity:transaction, BALP
  ``XrequestId``: the X-Request-Id, plus the status and the bytes sent as ``detail``).

Records never hold content bytes or tokens (the caller's duty; nothing here could add them).
Pure: the API layer converts its records (any object with the attributes of
:class:`AuditFacts`) and passes the request's decoded query pairs in.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from fhirbin.errors import BadRequest
from fhirbin.fhir.binary import instant
from fhirbin.fhir.ids import is_valid_id, version_number
from fhirbin.fhir.search import (
    FORMAT_PARAMETERS,
    _count,
    _modifier,
    _once,
    date_condition,
    split_values,
)

__all__ = [
    "ACTIONS",
    "AUDIT_INTERACTIONS",
    "AUDIT_SEARCH_PARAMS",
    "AuditFacts",
    "AuditSearch",
    "Interaction",
    "audit_event",
    "classify",
    "outcome_for",
    "parse_audit_search",
]

#: R4 valueset-audit-event-action.
ACTIONS = frozenset("CRUDE")

#: What ``[base]/AuditEvent`` does, for the CapabilityStatement.
AUDIT_INTERACTIONS = ("read", "search-type")
AUDIT_SEARCH_PARAMS = (
    ("entity", "reference", "Exact relative reference, e.g. Binary/123 (no OR)."),
    ("date", "date", "AuditEvent.recorded; prefixes eq gt lt ge le sa eb ap (not ne); no OR."),
)

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_REST_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "Restful Operation",
}
_LOGIN_TYPE = {"system": _DCM, "code": "110114", "display": "User Authentication"}
_LOGIN_SUBTYPE = {"system": _DCM, "code": "110122", "display": "Login"}
_RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_CLIENT_ROLE = {"coding": [{"system": _DCM, "code": "110153", "display": "Source Role ID"}]}
_SERVER_ROLE = {"coding": [{"system": _DCM, "code": "110152", "display": "Destination Role ID"}]}
_SOURCE_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
    "code": "4",
    "display": "Application Server",
}
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_PERSON = {"system": _ENTITY_TYPE, "code": "1", "display": "Person"}
_SYSTEM_OBJECT = {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"}
_PATIENT_ROLE = {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"}
_DOMAIN_RESOURCE_ROLE = {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
_QUERY_ROLE = {"system": _OBJECT_ROLE, "code": "24", "display": "Query"}
_REQUEST_ID_TYPE = {
    "system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType",
    "code": "XrequestId",
    "display": "X-Request-Id",
}
# R4 valueset-network-type: 1 machine name, 2 IP address, 5 URI.
_MACHINE_NAME, _IP_ADDRESS, _URI = "1", "2", "5"

# A resource type name (R4: an upper-case letter, then letters); short enough that
# "Type/id" fits the 128 characters the audit table stores.
_TYPE_RE = re.compile(r"\A[A-Z][A-Za-z]{0,55}\Z")
# Version numbers the audit table can hold (a 32-bit INTEGER column on every database).
_MAX_VERSION = 2**31 - 1
_READS = frozenset({"GET", "HEAD"})
_SEARCH_NAMES = frozenset({"entity", "date", "_count", "_page"})


class AuditFacts(Protocol):
    """What :func:`audit_event` reads: ``fhirbin.metadata.base.AuditRecord`` fits."""

    @property
    def id(self) -> str: ...
    @property
    def recorded(self) -> datetime: ...
    @property
    def action(self) -> str: ...
    @property
    def subtype(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def status(self) -> int: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def source(self) -> str | None: ...
    @property
    def entity(self) -> str | None: ...
    @property
    def entity_version(self) -> int | None: ...
    @property
    def query(self) -> str | None: ...
    @property
    def bytes_sent(self) -> int | None: ...
    @property
    def detail(self) -> str | None: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def patient(self) -> str | None: ...


def outcome_for(status: int) -> str:
    """R4 valueset-audit-event-outcome for an HTTP status: 0 success, 4 a refusal (4xx),
    8 a server failure (5xx)."""
    if status >= 500:
        return "8"
    if status >= 400:
        return "4"
    return "0"


@dataclass(frozen=True)
class Interaction:
    """What a request is, from its method and path alone (so a refused request, which never
    reached a handler, is classified like the one it tried to be)."""

    action: str
    subtype: str
    entity: str | None = None
    version: int | None = None


_OTHER = Interaction("E", "operation")
_LOGIN = Interaction("E", "login")


def classify(method: str, path: str) -> Interaction:
    """The interaction of ``method`` on ``path`` (relative to the FHIR base: ``/Binary/1``).

    R4 http.html's URL patterns: ``[type]`` (search-type, create), ``[type]/_search``,
    ``[type]/_history`` (history-type), ``[type]/[id]`` (read, update, patch, delete),
    ``[type]/[id]/_history`` (history-instance), ``[type]/[id]/_history/[vid]`` (vread); the
    token endpoint is ``login``; anything else is ``operation`` (with its entity for an instance
    operation, ``[type]/[id]/$name``). ``entity`` is ``Type/id`` only
    when both are well-formed (a malformed id is never stored).
    """
    parts = [part for part in path.split("/") if part]
    if parts == ["auth", "token"]:
        return _LOGIN
    if not parts or _TYPE_RE.match(parts[0]) is None or len(parts) > 4:
        return _OTHER
    rtype, rest = parts[0], parts[1:]
    reading = method in _READS
    if not rest:
        if reading:
            return Interaction("E", "search-type")
        return Interaction("C", "create") if method == "POST" else _OTHER
    if rest == ["_search"]:
        return Interaction("E", "search-type") if method == "POST" else _OTHER
    if rest == ["_history"]:
        return Interaction("E", "history-type") if reading else _OTHER
    rid = rest[0]
    entity = f"{rtype}/{rid}" if is_valid_id(rid) else None
    if len(rest) == 1:
        if rid.startswith("$"):
            return _OTHER
        by_method = {"PUT": ("U", "update"), "PATCH": ("U", "patch"), "DELETE": ("D", "delete")}
        action, subtype = ("R", "read") if reading else by_method.get(method, ("E", "operation"))
        return Interaction(action, subtype, entity)
    if len(rest) == 2 and rest[1].startswith("$"):
        # An instance operation ($expunge): the entity is known even when it is refused.
        return Interaction("E", "operation", entity)
    if rest[1] != "_history" or not reading:
        return _OTHER
    if len(rest) == 2:
        return Interaction("R", "history-instance", entity)
    version = version_number(rest[2])
    if version is not None and version > _MAX_VERSION:
        version = None
    return Interaction("R", "vread", entity, version)


def audit_event(record: AuditFacts, *, server: str) -> dict[str, Any]:
    """The R4 AuditEvent (JSON shape) of one record; ``server`` is the FHIR base URL."""
    login = record.subtype == "login"
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": record.id,
        "type": _LOGIN_TYPE if login else _REST_TYPE,
        "subtype": [
            _LOGIN_SUBTYPE if login else {"system": _RESTFUL_INTERACTION, "code": record.subtype}
        ],
        "action": record.action,
        "recorded": instant(record.recorded),
        "outcome": record.outcome,
    }
    if record.detail:
        event["outcomeDesc"] = record.detail
    event["agent"] = [_client_agent(record), _server_agent(server)]
    event["source"] = {
        "site": server,
        "observer": {"display": "fhirbin"},
        "type": [_SOURCE_TYPE],
    }
    event["entity"] = _entities(record)
    return event


def _client_agent(record: AuditFacts) -> dict[str, Any]:
    # BALP agent:client. Who is known only from a verified token: a refused token's claims
    # are never trusted, so an unauthenticated request has an agent without ``who``.
    agent: dict[str, Any] = {"type": _CLIENT_ROLE}
    if record.client_id:
        agent["who"] = {"identifier": {"value": record.client_id}}
    if record.subject:
        agent["altId"] = record.subject
    agent["requestor"] = True
    if record.source:
        agent["network"] = {"address": record.source, "type": _network_type(record.source)}
    return agent


def _server_agent(server: str) -> dict[str, Any]:
    return {
        "type": _SERVER_ROLE,
        "who": {"display": "fhirbin"},
        "requestor": False,
        "network": {"address": server, "type": _URI},
    }


def _network_type(address: str) -> str:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return _MACHINE_NAME
    return _IP_ADDRESS


def _entities(record: AuditFacts) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    if record.entity:
        reference = record.entity
        if record.entity_version is not None:
            reference += f"/_history/{record.entity_version}"
        entities.append(
            {
                "what": {"reference": reference},
                "type": _SYSTEM_OBJECT,
                "role": _DOMAIN_RESOURCE_ROLE,
            }
        )
    if record.query is not None:
        # BALP entity:query: the parameters as applied, base64 (AuditEvent.entity.query).
        encoded = base64.b64encode(record.query.encode()).decode("ascii")
        query: dict[str, Any] = {"type": _SYSTEM_OBJECT, "role": _QUERY_ROLE}
        if encoded:  # FHIR has no empty strings: a search without parameters has no query
            query["query"] = encoded
        entities.append(query)
    if record.patient:
        # SMART's ``patient`` claim is an id; some identity providers send "Patient/<id>".
        patient = record.patient.removeprefix("Patient/")
        entities.append(
            {
                "what": {"reference": f"Patient/{patient}"},
                "type": _PERSON,
                "role": _PATIENT_ROLE,
            }
        )
    # BALP entity:transaction: the X-Request-Id; the HTTP status and the bytes sent, which
    # AuditEvent has no element for, as entity.detail.
    transaction: dict[str, Any] = {}
    if record.request_id:
        transaction["what"] = {"identifier": {"value": record.request_id}}
    transaction["type"] = _REQUEST_ID_TYPE
    details = [{"type": "http-status", "valueString": str(record.status)}]
    if record.bytes_sent is not None:
        details.append({"type": "bytes-sent", "valueString": str(record.bytes_sent)})
    transaction["detail"] = details
    entities.append(transaction)
    return entities


@dataclass(frozen=True)
class AuditSearch:
    """What ``GET [base]/AuditEvent`` asks for: ``entity`` exact; ``recorded`` in
    ``[since_us, until_us)``; ``count`` per page; ``page`` the raw cursor; ``used`` the pairs
    applied, for the self link."""

    entity: str | None
    since_us: int | None
    until_us: int | None
    count: int
    page: str | None
    used: list[tuple[str, str]]


def parse_audit_search(
    params: Sequence[tuple[str, str]],
    strict: bool,
    *,
    now_us: int | None = None,
    default_count: int = 20,
    max_count: int = 1000,
) -> AuditSearch:
    """The AuditEvent search the ``(name, value)`` pairs ask for.

    ``entity`` (R4 AuditEvent-entity, a reference) matches ``Type/id`` exactly, at most once,
    no OR. ``date`` (R4 AuditEvent-date, on ``recorded``) takes the prefixes of
    search.html#prefix except ``ne`` (a 400: the store reads one time window); repeats AND.
    ``_count`` and ``_page`` as for Binary. Empty values are ignored, modifiers are a 400,
    other names are ignored or, under ``strict``, a 400
    (docs/decisions.md#unknown-search-parameters).
    """
    entity: str | None = None
    since: int | None = None
    until: int | None = None
    count = min(default_count, max_count)
    page: str | None = None
    used: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in params:
        if name in FORMAT_PARAMETERS or value == "":
            continue
        base, colon, modifier = name.partition(":")
        if base not in _SEARCH_NAMES:
            if strict:
                raise BadRequest(
                    f"Unknown or unsupported parameter {name[:100]!r} (the request asked for "
                    "Prefer: handling=strict). AuditEvent supports entity, date, _count.",
                    expression=f"http.{name}",
                    code="not-supported",
                )
            continue
        if colon:
            raise _modifier(name, base, modifier)
        if name != "date":
            _once(name, seen)
        if name == "entity":
            entity = _entity(value)
            used.append((name, entity))
        elif name == "date":
            condition, applied = date_condition(value, now_us, name="date")
            if not condition.inside:
                raise BadRequest(
                    "The ne prefix is not supported on AuditEvent date (R4 search.html#prefix).",
                    expression="http.date",
                    code="not-supported",
                )
            if condition.lower_us is not None:
                since = condition.lower_us if since is None else max(since, condition.lower_us)
            if condition.upper_us is not None:
                until = condition.upper_us if until is None else min(until, condition.upper_us)
            used.append((name, applied))
        elif name == "_count":
            count = _count(value, max_count)
            used.append((name, str(count)))
        else:  # _page: the paging cursor, never in ``used``
            page = value
    return AuditSearch(entity, since, until, count, page, used)


def _entity(value: str) -> str:
    values = split_values(value, "entity")
    if len(values) != 1:
        raise BadRequest(
            f"entity {value[:100]!r} lists several values: OR on entity is not supported.",
            expression="http.entity",
            code="not-supported",
        )
    rtype, _, rid = values[0].partition("/")
    if _TYPE_RE.match(rtype) is None or not is_valid_id(rid):
        raise BadRequest(
            f"Invalid entity {value[:100]!r}: expected a relative reference Type/id, "
            "e.g. Binary/123 (R4 search.html#reference).",
            expression="http.entity",
        )
    return f"{rtype}/{rid}"
